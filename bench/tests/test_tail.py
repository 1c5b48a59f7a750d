"""Checks bench/tail's arithmetic and report: kit/tail_stats.py reads oha's JSON (real outputs of
oha 1.16.0, tests/fixtures/oha-*.json), makes the offered rates, checks the counter, folds rounds
into medians and judges the goal; kit/compare_report.py renders a recorded quick run
(tests/fixtures/tail-summary-quick.json: `bench/tail --quick --only hitcore,nginx` on the 2-CPU
VM while other engineers built; its numbers mean little, its shape is real). Standard library only, no network,
well under a second.

Fixtures:
- oha-open-loop.json: `oha --no-tui --output-format json -c 100 -z 3s -w -t 10s -q 20200
  --latency-correction` against nginx's static `return 200` (an earlier quick run's raw/nginx-0250-r1.json);
- oha-closed-loop.json: the same without -q, the generator's maximum (its raw/nginx-max.json);
- oha-refused.json: `-c 2 -z 1s -q 50` against a port nothing listens on (every request refused);
- oha-deadline.json: `-c 10 -z 1s` without `-w` against a server that takes 0.3 s per answer:
  the requests in flight at the deadline are aborted.

    python3 bench/tests/test_tail.py        (or: python3 -m unittest discover -s bench/tests)
"""
import json
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import compare_report, measure, tail_stats  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class FractionsTest(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(tail_stats.parse_fractions("0.10, 0.25,50%,0.25"), [0.1, 0.25, 0.5])
        self.assertEqual(tail_stats.parse_fractions("1"), [1.0])

    def test_bad(self):
        for text, needle in (("0", "above 0"), ("1.5", "at most 1"), ("abc", "'abc'"), ("", "no fraction"),
                             ("-0.2", "above 0"), ("25%%", "'25%%'")):
            with self.assertRaises(ValueError) as ctx:
                tail_stats.parse_fractions(text)
            self.assertIn(needle, str(ctx.exception))

    def test_rates(self):
        self.assertEqual(tail_stats.rates(134_321.7, [0.1, 0.25, 0.5, 0.75]),
                         {0.1: 13400, 0.25: 33600, 0.5: 67200, 0.75: 100700})
        self.assertEqual(tail_stats.rates(100, [0.1]), {0.1: 100})  # never below 100/s

    def test_labels(self):
        self.assertEqual(tail_stats.percent_label(0.25), "25 %")
        self.assertEqual(tail_stats.percent_label(0.125), "12.5 %")
        self.assertEqual(tail_stats.percent_label(0.1), "10 %")


class OhaTest(unittest.TestCase):
    def test_open_loop(self):
        text = fixture("oha-open-loop.json")
        raw = json.loads(text)
        out = tail_stats.parse_oha(text)
        self.assertEqual(out["ok"], raw["statusCodeDistribution"]["200"])
        self.assertEqual(out["non_2xx"], 0)
        self.assertEqual(out["error_count"], 0)
        self.assertEqual(out["aborted"], 0)  # -w: requests in flight at the deadline were waited for
        # seconds -> milliseconds, every percentile the report uses
        for key, name in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")):
            self.assertAlmostEqual(out[name], raw["latencyPercentiles"][key] * 1000, places=2)
        self.assertAlmostEqual(out["max_ms"], raw["summary"]["slowest"] * 1000, places=2)
        self.assertLessEqual(out["p50_ms"], out["p99_ms"])
        self.assertLessEqual(out["p99_ms"], out["p999_ms"])
        self.assertLessEqual(out["p999_ms"], out["max_ms"])
        # 20,200/s offered for 3 s: the achieved rate is the offered one, within a few per cent
        self.assertAlmostEqual(out["ok_rps"], 20200, delta=1000)
        self.assertAlmostEqual(out["ok_rps"], out["ok"] / raw["summary"]["total"], delta=0.1)

    def test_closed_loop(self):
        out = tail_stats.parse_oha(fixture("oha-closed-loop.json"))
        self.assertGreater(out["ok"], 0)
        self.assertGreater(out["ok_rps"], 40000)  # 25 % of it was the open-loop fixture's rate

    def test_refused(self):
        out = tail_stats.parse_oha(fixture("oha-refused.json"))
        self.assertEqual(out["ok"], 0)
        self.assertEqual(out["ok_rps"], 0)
        self.assertGreater(out["error_count"], 0)
        self.assertTrue(any("onnect" in name for name in out["errors"]), out["errors"])

    def test_deadline_kept_apart(self):
        out = tail_stats.parse_oha(fixture("oha-deadline.json"))
        self.assertGreater(out["aborted"], 0)
        self.assertNotIn(tail_stats.DEADLINE_ERROR, out["errors"])
        self.assertEqual(out["error_count"], 0)

    def test_not_json(self):
        for text in ("", "Error: connection refused\n", '{"no": "summary"}'):
            with self.assertRaises(tail_stats.OhaError):
                tail_stats.parse_oha(text)

    def test_leading_noise(self):
        text = "a warning line\n" + fixture("oha-open-loop.json")
        self.assertEqual(tail_stats.parse_oha(text)["ok"], tail_stats.parse_oha(fixture("oha-open-loop.json"))["ok"])


class CounterTest(unittest.TestCase):
    def test_cases(self):
        self.assertEqual(tail_stats.counter_check(1000, 1000, 0, 100), "ok")
        self.assertEqual(tail_stats.counter_check(1050, 1000, 0, 100), "ok")   # in flight when oha stopped
        self.assertEqual(tail_stats.counter_check(1150, 1000, 60, 100), "ok")  # + aborted ones
        self.assertEqual(tail_stats.counter_check(1101, 1000, 0, 100), "+101")
        self.assertEqual(tail_stats.counter_check(990, 1000, 0, 100), "LOST 10")
        self.assertEqual(tail_stats.counter_check(None, 1000, 0, 100), "not read")


def measurement(server, rnd, fraction, p99, p999, rate=1000, ok_rps=1000.0, error=None):
    m = {"server": server, "round": rnd, "fraction": fraction, "rate": rate, "error": error}
    if not error:
        m["oha"] = {"p50_ms": p99 / 4, "p90_ms": p99 / 2, "p99_ms": p99, "p999_ms": p999, "max_ms": p999 * 2,
                    "ok_rps": ok_rps, "achieved_ratio": ok_rps / rate}
        m["cpu"] = {"oha_cpu_pct": 50.0, "server_cpu_pct": 40.0 + rnd, "redis_cpu_pct": 5.0}
    return m


class FoldTest(unittest.TestCase):
    def setUp(self):
        self.ms = [
            measurement("hitcore", 1, 0.25, 1.9, 3.0), measurement("hitcore", 2, 0.25, 2.1, 2.5),
            measurement("hitcore", 3, 0.25, 2.9, 9.0),
            measurement("nginx", 3, 0.25, 1.7, 4.0), measurement("nginx", 1, 0.25, 1.4, 2.0),
            measurement("nginx", 2, 0.25, 2.5, 5.0),
            measurement("hitcore", 1, 0.5, 20.9, 30.0), measurement("hitcore", 2, 0.5, 0, 0, error="oha exited"),
            measurement("hitcore", 3, 0.5, 30.3, 40.0, ok_rps=900.0),  # fell behind the offered 1000/s
            measurement("nginx", 1, 0.5, 31.3, 45.0), measurement("nginx", 2, 0.5, 7.6, 10.0),
            measurement("nginx", 3, 0.5, 9.3, 12.0),
        ]

    def test_medians_in_round_order(self):
        folded = tail_stats.fold(self.ms)
        cell = folded["nginx"]["0.25"]
        self.assertEqual(cell["rounds"], 3)
        self.assertEqual(cell["p99_ms"]["values"], [1.4, 2.5, 1.7])  # rounds 1, 2, 3
        self.assertEqual(cell["p99_ms"]["median"], 1.7)
        self.assertEqual((cell["p99_ms"]["min"], cell["p99_ms"]["max"]), (1.4, 2.5))
        self.assertEqual(cell["cpu"]["server_cpu_pct"]["median"], 42.0)
        self.assertIsNone(cell["cpu"]["requests_per_command"])

    def test_failed_round_left_out(self):
        cell = tail_stats.fold(self.ms)["hitcore"]["0.5"]
        self.assertEqual(cell["rounds"], 2)
        self.assertEqual(cell["p99_ms"]["median"], (20.9 + 30.3) / 2)
        self.assertEqual(cell["errors"], ["round 2: oha exited"])

    def test_verdicts(self):
        folded = tail_stats.fold(self.ms)
        at25, at50 = tail_stats.verdicts(folded)
        # 25 %: hitcore p99 2.1 > nginx 1.7: not met, although p99.9 3.0 <= 4.0
        self.assertFalse(at25["met"])
        self.assertEqual((at25["hitcore_p99_ms"], at25["nginx_p99_ms"]), (2.1, 1.7))
        self.assertEqual(at25["rounds_met"], "1/3")  # round 2: 2.1 <= 2.5 and 2.5 <= 5.0
        # 50 %: medians 25.6 > 9.3: not met; pairs only the rounds hitcore has
        self.assertFalse(at50["met"])
        self.assertEqual(at50["rounds_met"], "1/2")
        # hitcore's round 3 answered 90 % of the offered rate; every median here is below 10 ms
        self.assertEqual(at50["saturated"], {"hitcore": [3], "nginx": []})
        self.assertEqual(at25["saturated"], {"hitcore": [], "nginx": []})

    def test_saturated(self):
        self.assertFalse(tail_stats.saturated({"p50_ms": 0.8, "achieved_ratio": 0.999}))
        self.assertTrue(tail_stats.saturated({"p50_ms": 0.8, "achieved_ratio": 0.88}))  # fell behind
        self.assertTrue(tail_stats.saturated({"p50_ms": 166.0, "achieved_ratio": 0.997}))  # queued, then drained
        self.assertFalse(tail_stats.saturated({"p50_ms": None}))

    def test_verdict_met_and_missing(self):
        ms = [measurement("hitcore", 1, 0.25, 1.0, 2.0), measurement("nginx", 1, 0.25, 1.0, 2.0)]
        at25, at50 = tail_stats.verdicts(tail_stats.fold(ms))
        self.assertTrue(at25["met"])  # equal counts as met: "<="
        self.assertIsNone(at50["met"])


class WindowTest(unittest.TestCase):
    def test_bench_tails_readings(self):
        # measure.window_figures on bench/tail's readings: its groups, run-queue waits and switches
        before = {"t": 10.0, "groups": ["oha", "server", "redis"], "oha": 5.0, "server": 3.0, "redis": 1.0,
                  "machine": 20.0, "calls": {"incr": 0, "incrby": 100}, "usec": {}, "counter": 1000, "vol": 10,
                  "nonvol": 5, "server_wait": 0.3, "redis_wait": 0.1}
        after = {"t": 12.0, "groups": ["oha", "server", "redis"], "oha": 6.2, "server": 4.0, "redis": 1.2,
                 "machine": 23.8, "calls": {"incr": 50, "incrby": 250}, "usec": {}, "counter": 5000, "vol": 30,
                 "nonvol": 405, "server_wait": 0.5, "redis_wait": 0.12}
        out = measure.window_figures(before, after)
        self.assertEqual((out["oha_cpu_pct"], out["server_cpu_pct"], out["redis_cpu_pct"]), (60.0, 50.0, 10.0))
        self.assertEqual((out["machine_cpu_pct"], out["other_cpu_pct"]), (190.0, 70.0))
        self.assertNotIn("wrk_cpu_pct", out)                 # not one of this reading's groups
        self.assertEqual(out["commands_per_s"], 100.0)
        self.assertEqual(out["requests_per_command"], 20.0)
        self.assertEqual(out["server_cpu_us_per_request"], 250.0)  # 1 s of CPU for 4,000 requests
        self.assertEqual(out["server_nonvoluntary_per_s"], 200.0)
        self.assertEqual(out["server_runq_ms_per_s"], 100.0)  # 0.2 s of waiting over 2 s
        self.assertEqual(out["redis_runq_ms_per_s"], 10.0)
        self.assertNotIn("oha_runq_ms_per_s", out)  # not read: left out, not zero
        self.assertEqual(measure.window_figures(after, before), {})


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.summary = json.loads(fixture("tail-summary-quick.json"))

    def test_folded_again(self):
        # the fixture's folding and verdicts are what today's code makes of its measurements
        self.assertEqual(tail_stats.fold(self.summary["measurements"]), self.summary["folded"])
        self.assertEqual(tail_stats.verdicts(self.summary["folded"]), self.summary["verdicts"])

    def test_render(self):
        self.summary.update(notes=["found it"])
        text = compare_report.tail_render(self.summary)
        m = self.summary["machine"]
        self.assertTrue(text.startswith("# Open-loop tail"))
        self.assertLess(text.index("## Machine"), text.index("## The generator's closed-loop maximum"))
        self.assertIn(f"{m['cpus_online']} CPUs", text)
        self.assertIn("| Load average at start / end | " + ", ".join(map(str, self.summary["load_at_start"])), text)
        self.assertIn("## Notes\n\nfound it", text)
        for fraction, rate in self.summary["rates"].items():
            self.assertIn(f"{rate:,} requests/s offered", text)
        self.assertIn("## The goal", text)
        verdict = self.summary["verdicts"][0]
        self.assertIn("**met**" if verdict["met"] else "not met", text)
        for server in self.summary["servers"]:
            self.assertIn(f"| {server} |", text)
        # every round has its own line in "Every round"
        rounds = text[text.index("## Every round"):text.index("## Correctness")]
        self.assertEqual(sum(1 for line in rounds.splitlines() if line.startswith("| 25 %") or line.startswith("| 50 %")),
                         len(self.summary["measurements"]))

    def test_render_problems(self):
        summary = json.loads(json.dumps(self.summary))
        m = next(m for m in summary["measurements"] if m.get("counter"))
        m["counter"], m["counter_delta"] = "LOST 3", m["oha"]["ok"] - 3
        failed = summary["measurements"][-1]
        failed.pop("oha", None)
        failed["error"] = "oha exited with status 1"
        summary["folded"] = tail_stats.fold(summary["measurements"])
        text = compare_report.tail_render(summary)
        self.assertIn("**1 differ**", text)
        self.assertIn("LOST 3", text)
        self.assertIn("oha exited with status 1", text)


if __name__ == "__main__":
    unittest.main(verbosity=1)
