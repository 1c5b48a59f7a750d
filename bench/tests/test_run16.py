"""Checks bench/device/run16's own logic without running anything: the CPU layout, the correctness
verdicts, and its report (run16_report.py) rendered from wrk and ab results that bench/kit/parse.py
made of the recorded outputs in fixtures/, so that run16 and the kit cannot drift apart on a key.
Standard library only, well under a second.

    python3 bench/tests/test_run16.py        (or: python3 -m unittest discover -s bench/tests)
"""
import importlib.machinery
import importlib.util
import sys
import types
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import parse  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_run16():
    """bench/device/run16 as a module (it has no .py suffix); its main() does not run."""
    loader = importlib.machinery.SourceFileLoader("run16", str(BENCH / "device" / "run16"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("run16", loader))
    loader.exec_module(module)
    return module


run16 = load_run16()


def wrk_result(factor=1.0, connections=500):
    r = parse.parse_wrk((FIXTURES / "wrk-tokio-hyper.txt").read_text())
    r["rps"] *= factor
    r.update(error=None, tag="wrk", connections=connections, counter_delta=r["ok_2xx"] + 3, incr_calls=0,
             incrby_calls=r["ok_2xx"] // 20, redis_cpu_pct=12.5, server_cpu_pct=180.0, wrk_cpu_pct=95.0,
             window_s=1.5, window_rps=r["rps"], requests_per_command=20.0)
    return r


def row(name, group, kind, shards, round_no, wrk=None, ab=None, status="ok"):
    tests = {k: v for k, v in (("wrk", wrk), ("ab", ab)) if v is not None}
    return {"id": name, "title": name, "group": group, "kind": kind, "shards": shards, "round": round_no,
            "argv": f"{kind} -w {shards}", "uses_redis": True, "status": status, "tests": tests}


def fake_run(small=False):
    lay = run16.layout(small, list(range(16)))
    ab = parse.parse_ab((FIXTURES / "ab-tokio-hyper.txt").read_text())
    ab.update(error=None, counter_delta=5000, tag="hitcore-8-ab-r1")
    rounds = [[], [], []]
    for r in (1, 2):
        rounds[r - 1].append(row("tokio-8", "peers", "tokio", 8, r, wrk_result(1.0)))
        rounds[r - 1].append(row("hitcore-8", "peers", "hitcore", 8, r, wrk_result(3.0 + r), ab if r == 1 else None))
        for k in lay["scaling"]:
            rounds[r - 1].append(row(f"scaling-hitcore-{k}", "scaling", "hitcore", k, r, wrk_result(k, 256)))
    extra = wrk_result(2.0)
    extra.update(incr_calls=extra["ok_2xx"], incrby_calls=0, requests_per_command=1.0, redis_cpu_pct=95.0)
    rounds[0].append(row("hitcore-8-no-coalesce", "extra", "hitcore", 8, 1, extra))
    rounds[2].append(row("tokio-8", "peers", "tokio", 8, 3, {"error": "wrk gave no result (timed out)"},
                         status="wrk: wrk gave no result (timed out)"))
    loads = [("wrk", rounds[0][1]["tests"]["wrk"], 500), ("ab", ab, 0)]
    correctness, _ = run16.correctness("hitcore-8", 1, loads, loads[0][1]["ok_2xx"] + 5000 + 3)
    results = {"rounds": rounds, "correctness": correctness, "skipped": ["rounds 3..3: not started"], "errors": []}
    info = {"machine": {"cpu_model": "Test CPU", "cpus_online": 16, "cpus_allowed": "0-15", "kernel": "6.1.0",
                        "arch": "x86_64", "os": "Debian", "memory_gib": 64.0, "glibc": "glibc 2.39",
                        "python": "3.12.3", "hostname": "device", "governor": "performance",
                        "loadavg": "0.01 0.02 0.03 1/200 42"},
            "limits": {"nofile_before": 1024, "nofile": 65536, "somaxconn": "4096", "tcp_migrate_req": "1"},
            "busy_before": 0.5, "versions": {"hitcore": "hitcore 0.1.0"}}
    args = types.SimpleNamespace(deadline=300.0, rounds=3)
    return types.SimpleNamespace(lay=lay, results=results, info=info, small=small, args=args, rounds_done=2,
                                 interrupted=None, wrk_c=500, scaling_c=256, ab_c=500, ab_n=50000, ab_limit=30,
                                 duration=5)


class LayoutTest(unittest.TestCase):
    def test_sixteen_cpus(self):
        lay = run16.layout(False, list(range(16)))
        self.assertEqual((lay["server"], lay["wrk"], lay["ab"], lay["redis"]),
                         (list(range(8)), list(range(8, 14)), [14], [15]))
        self.assertEqual((lay["shards"], lay["scaling"], lay["mode"], lay["degraded"]), (8, [1, 2, 4, 8], "full", False))

    def test_fewer_cpus_scale_down_and_say_so(self):
        lay = run16.layout(False, list(range(6)))
        self.assertEqual((lay["server"], lay["wrk"], lay["ab"], lay["redis"]), ([0, 1], [2, 3], [4], [5]))
        self.assertTrue(lay["degraded"])
        self.assertIn("scaled down", lay["mode"])

    def test_small_shares_every_cpu(self):
        lay = run16.layout(True, [0, 1])
        self.assertEqual((lay["server"], lay["redis"], lay["scaling"], lay["degraded"]), ([0, 1], [0, 1], [1, 2], False))


class CorrectnessTest(unittest.TestCase):
    wrk = {"tag": "w", "ok_2xx": 1000, "counter_delta": 1010}
    ab = {"tag": "a", "ok_2xx": 490, "failed": 10, "counter_delta": 495}

    def test_in_flight_requests_are_slack(self):
        rows, problem = run16.correctness("s", 1, [("wrk", self.wrk, 50), ("ab", self.ab, 0)], 1000 + 490 + 60)
        self.assertIsNone(problem)
        self.assertEqual([r["verdict"] for r in rows], [None, None, "ok"])
        self.assertEqual((rows[-1]["diff"], rows[-1]["slack"]), (60, 60))
        self.assertEqual(rows[0]["diff"], 10)

    def test_lost_and_extra(self):
        _, problem = run16.correctness("s", 2, [("wrk", self.wrk, 50)], 999)
        self.assertIn("(LOST)", problem)
        _, problem = run16.correctness("s", 2, [("wrk", self.wrk, 50)], 1051)
        self.assertIn("(EXTRA)", problem)

    def test_a_load_without_numbers_is_not_checked(self):
        rows, problem = run16.correctness("s", 1, [("wrk", {"tag": "w", "error": "x"}, 50)], 7)
        self.assertIsNone(problem)
        self.assertEqual(rows[0]["verdict"], "not checked")

    def test_an_interrupted_step_is_not_checked(self):
        # wrk finished, then ab was cut short by the time limit: its answers are in the counter only.
        rows, problem = run16.correctness("s", 1, [("wrk", self.wrk, 50)], 1000 + 2000, interrupted=True)
        self.assertIsNone(problem)
        self.assertEqual([r["verdict"] for r in rows], ["not checked"])


class ReportTest(unittest.TestCase):
    def test_every_section_with_the_kit_parsers_numbers(self):
        run = fake_run()
        text = run16.run16_report.render(run, 200.0)
        order = ["## Machine", "## CPU layout", "## Targets", "## Peers", "## `ab -c 500", "## Scaling",
                 "## Redis's side and CPU", "## Correctness", "## Skipped and errors", "## Files"]
        self.assertEqual([text.index(h) for h in order], sorted(text.index(h) for h in order))
        rps = parse.parse_wrk((FIXTURES / "wrk-tokio-hyper.txt").read_text())["rps"]
        # bench/compare's throughput table: median, min–max, the ratio to the tokio peer, errors each round
        self.assertIn(f"| tokio-8 | {rps:,.0f} | {rps:,.0f}–{rps:,.0f} | 1.000 |", text)
        self.assertIn(f"| hitcore-8 | {rps * 4.5:,.0f} | {rps * 4:,.0f}–{rps * 5:,.0f} | 4.500 |", text)
        self.assertIn("| 0/0 · 0/0 · no result |", text)  # the tokio peer's third round gave no result
        self.assertIn("**Ratio hitcore -w 8 / tokio peer (medians): 4.50x**; per round: r1: 4.00x, r2: 5.00x.", text)
        self.assertIn(f"| hitcore -w 8: >= 800k req/s (wrk -c 500) | {rps * 4.5:,.0f} req/s | **not met** |", text)
        self.assertIn("| 1 -> 8 shards >= 90 % of linear (wrk -c 256) | 100.0 % | **met** |", text)
        self.assertIn("| Redis below 30 % of its CPU (during hitcore -w 8's wrk) | 12.5 % | **met** |", text)
        self.assertIn(f"| 8 | 0-7 | **{rps * 8:,.0f}** | {rps * 8:,.0f} · {rps * 8:,.0f} | 100.0 |", text)
        self.assertIn("| hitcore-8-no-coalesce | 153,681 | 95.0 |", text)  # Redis's side: one INCR per request
        # ab, from parse_ab, in bench/run's ab table (kit/report.py)
        self.assertIn("| hitcore-8 | 0.241 s | 5,000 | 0 | **20,784** | 24.057 ms | 0.048 ms | 2 ms | 10 ms | 8 ms | 28 ms |", text)
        self.assertIn("| hitcore-8 r1: all its loads, read after it stopped |", text)
        self.assertIn("**ok** (slack 500)", text)
        self.assertIn("| Kernel, OS | Linux 6.1.0 x86_64, Debian |", text)
        self.assertIn("somaxconn 4096", text)
        self.assertNotIn("None", text)

    def test_small_mode_gives_no_verdict(self):
        run = fake_run(small=True)
        text = run16.run16_report.render(run, 40.0)
        self.assertIn("(--small: a test of the script, not a measurement)", text)
        self.assertNotIn("**met**", text)
        self.assertNotIn("**not met**", text)

    def test_nothing_measured(self):
        run = fake_run()
        run.results = {"rounds": [[], [], []], "correctness": [], "skipped": [], "errors": []}
        run.rounds_done, run.interrupted = 0, "signal SIGTERM"
        text = run16.run16_report.render(run, 3.0)
        self.assertIn("**Stopped early: signal SIGTERM.**", text)
        self.assertIn("| not measured |", text)


if __name__ == "__main__":
    unittest.main()
