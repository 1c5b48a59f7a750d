"""Checks bench/api's pure parts (kit/api.py): the load specs of bench/plans/api.plan, the Zipf key
draws (reproducible from the seed, s = 1 within sampling error), the per-request Redis figures from
two INFO readings, and the report's shape. Standard library only, no network, well under a second.

    python3 bench/tests/test_api.py        (or: python3 -m unittest discover -s bench/tests)
"""
import os
import subprocess
import sys
import unittest
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import api, compare_plan, rounds  # noqa: E402


class Loads(unittest.TestCase):
    def test_specs(self):
        self.assertEqual(api.parse_load("/"), {"kind": "path", "path": "/"})
        self.assertEqual(api.parse_load("zipf:10000:bench"), {"kind": "zipf", "keys": 10000, "namespace": "bench"})
        for bad in ("", "zipf", "zipf:0:bench", "zipf:100000:bench", "zipf:10:ab", "zipf:10:a/b", "hit"):
            with self.subTest(spec=bad), self.assertRaises(compare_plan.PlanError):
                api.parse_load(bad)

    def test_the_shipped_plan(self):
        plan = compare_plan.parse_plan((BENCH / "plans" / "api.plan").read_text())
        loads = {v.name: api.parse_load(v.env["API_LOAD"]) for v in plan.variants}
        self.assertEqual(loads["hitcore-root"]["kind"], "path")
        self.assertEqual({loads[n]["keys"] for n in loads if n != "hitcore-root"}, {100, 10000})
        # Each peer runs each load hitcore's /hit runs, so every goal compares like with like.
        for goal in plan.goals:
            if goal.other != plan.base:
                self.assertEqual(loads[goal.name], loads[goal.other], goal.text())

    def test_paths_are_valid_names_and_reproducible(self):
        load = api.parse_load("zipf:10000:bench")
        paths = api.load_paths(load, draws=2000, seed=7)
        self.assertEqual(paths, api.load_paths(load, draws=2000, seed=7))
        self.assertNotEqual(paths, api.load_paths(load, draws=2000, seed=8))
        for path in paths:
            ns, key = path.removeprefix("/hit/").split("/")
            self.assertRegex(ns, r"^[A-Za-z0-9_.-]{3,64}$")
            self.assertRegex(key, r"^k\d{5}$")
            self.assertTrue(1 <= int(key[1:]) <= 10000)
        self.assertEqual(api.load_paths({"kind": "path", "path": "/"}), ["/"])


class Zipf(unittest.TestCase):
    def test_frequencies_follow_one_over_k(self):
        keys, draws = 100, api.DRAWS
        counts = Counter(api.zipf_ranks(keys, draws, api.SEED))
        harmonic = sum(1 / k for k in range(1, keys + 1))
        for rank in (1, 2, 5, 10):
            expected = draws / (rank * harmonic)
            # Binomial sampling error is about sqrt(expected) (≤ 113 here): allow 5 of them.
            self.assertLess(abs(counts[rank] - expected), 5 * expected ** 0.5, f"rank {rank}")
        self.assertEqual(set(counts) - set(range(1, keys + 1)), set())

    def test_most_of_a_large_key_space_is_touched(self):
        ranks = set(api.zipf_ranks(10000, api.DRAWS, api.SEED))
        # s = 1 over 10,000 keys: the least popular key is drawn with p ≈ 1/(10,000 × 9.79),
        # so 65,536 draws reach roughly half of the tail: thousands of distinct keys.
        self.assertGreater(len(ranks), 4000)


READING_A = {"calls": {"incr": 100, "expire": 100, "info": 3}, "reads": 1000, "redis_s": 1.0, "server_s": 5.0,
             "wrk_s": 2.0}
READING_B = {"calls": {"incr": 1100, "expire": 1100, "info": 4, "get": 7}, "reads": 1501, "redis_s": 1.05,
             "server_s": 5.2, "wrk_s": 2.1}


class Figures(unittest.TestCase):
    def test_per_request(self):
        f = api.per_request(READING_A, READING_B, 1000)
        self.assertEqual(f["redis_calls"], {"expire": 1000, "get": 7, "incr": 1000})  # our own INFO left out
        self.assertEqual(f["commands_per_request"], 2.007)
        self.assertEqual(f["round_trips_per_request"], 0.5)  # 500 reads, less our own INFO's
        self.assertEqual(f["redis_cpu_us_per_request"], 50.0)
        self.assertEqual(f["server_cpu_us_per_request"], 200.0)
        self.assertEqual(f["wrk_cpu_us_per_request"], 100.0)
        self.assertEqual(api.per_request(READING_A, READING_B, 0), {"redis_calls": f["redis_calls"]})

    def test_wrk_cpu_is_the_reaped_childs(self):
        """A reading takes the CPU of children already waited for: a child that burns CPU between two
        readings (as wrk does) shows in `wrk_s`; the still running server would not."""
        class Client:
            def command(self, *_):
                return "total_reads_processed:1\r\n"
        me = os.getpid()
        a = api.redis_reading(Client(), me, [me])
        subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)
        b = api.redis_reading(Client(), me, [me])
        self.assertGreater(b["wrk_s"] - a["wrk_s"], 0.01)

    def test_report(self):
        wrk = {"requests": 1000, "rps": 500.0, "p50_ms": 1.0, "p99_ms": 3.0, "non_2xx_3xx": 0, "ok_2xx": 1000,
               "counted": 1003, "counter_after": 1003, **api.per_request(READING_A, READING_B, 1000)}
        row = {"id": "tokio-hit100", "title": "tokio-hit100", "argv": "x", "uses_redis": True, "status": "ok",
               "tests": {"wrk": wrk}}
        failed = dict(row, id="flask-hit100", status="did not start: gone", tests={})
        summary = {"title": "T", "plan": "api.plan", "plan_text": "title T\n", "started_utc": "now",
                   "machine": {"cpu_model": "CPU", "cpus_online": 2}, "load_at_start": [1, 2, 3],
                   "settings": {"threads": 2, "connections": 50, "duration": 2, "rounds": 1},
                   "loads": {"tokio-hit100": "/hit, Zipf over 100 keys", "flask-hit100": "/hit, Zipf over 100 keys"},
                   "rows": rounds.aggregate([[row, failed]]), "base": "tokio-hit100",
                   "goals": [{"goal": "a ≥ 2× b", "rps": 500.0, "other_rps": None, "ratio": None, "met": None}]}
        text = api.render(summary)
        self.assertTrue(text.index("## Machine") < text.index("## Throughput"))
        self.assertIn("| tokio-hit100 | /hit, Zipf over 100 keys | 500 | 500–500 | 1.000 | 1.00 | 3.00 | 0/0 "
                      "| 2.007 | 0.500 | 50.00 | 200.00 |", text)
        self.assertIn("| flask-hit100 | /hit, Zipf over 100 keys | did not start: gone |", text)
        self.assertIn("| tokio-hit100 | 1 | 1,000 | 1,003 | +3 |", text)
        self.assertLess(text.index("## Redis's cost per request"), text.index("## Every round"))
        self.assertIn("not measured", text)


if __name__ == "__main__":
    unittest.main()
