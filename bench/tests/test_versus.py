"""Checks bench/hostile's vs-nginx measurement on paper: kit/versus.py's medians over rounds and the
target-5 verdict, and its section of the report (kit/hostile_report.py), on runs made from the
phases of a recorded quick run (tests/fixtures/summary-hostile-quick.json). Standard library only,
no network, well under a second.

    python3 bench/tests/test_versus.py        (or: python3 -m unittest discover -s bench/tests)
"""
import copy
import json
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import hostile, hostile_report, md, versus  # noqa: E402

SUMMARY = json.loads((Path(__file__).resolve().parent / "fixtures" / "summary-hostile-quick.json").read_text())
PHASE = SUMMARY["tests"]["slowloris"][0]["slowloris"]   # a real phase: wrk, probes, attacker window, CPU


def phase(p99: float, rps: float, closed_per_s: float = 100.0, error: str | None = None) -> dict:
    out = copy.deepcopy(PHASE)
    out["wrk"] = dict(out["wrk"], p99_ms=p99, rps=rps, errors_read=1)
    out["attacker"] = dict(out["attacker"], closed_per_s=closed_per_s)
    if error:
        out["wrk"] = {"error": error}
    return out


def run(victim: str, rnd: int, alone: float, attacked: float, rps: float = 50000.0, **kw) -> dict:
    r = {"id": f"vs-nginx-r{rnd}-{victim}", "victim": victim, "round": rnd, "conns": 5000,
         "baseline": phase(alone, rps), "slowloris": phase(attacked, rps / 2, **kw)}
    if victim == "nginx":
        r["nginx"] = {"exit_status": 0, "limits": {"worker_connections": 6144, "worker_rlimit_nofile": 12288},
                      "notable": [], "argv": "nginx -p x"}
    else:
        r["hitcore"] = copy.deepcopy(SUMMARY["tests"]["slowloris"][0]["hitcore"])
    return r


RUNS = [run("hitcore", 3, 1.5, 12.0), run("nginx", 3, 1.1, 3.0, closed_per_s=0.0),
        run("hitcore", 1, 1.3, 10.0), run("nginx", 1, 1.0, 2.0, closed_per_s=0.0),
        run("hitcore", 2, 1.4, 11.0), run("nginx", 2, 5.0, 9.0, closed_per_s=0.0)]


class Fold(unittest.TestCase):
    def test_medians_and_each_round_in_round_order(self):
        folded = versus.fold(RUNS)
        self.assertEqual(list(folded), ["hitcore", "nginx"])
        h = folded["hitcore"]
        self.assertEqual(h["baseline"]["p99_ms"], 1.4)
        self.assertEqual(h["slowloris"]["p99_ms"], 11.0)
        self.assertEqual(h["slowloris"]["p99_ms_each"], [10.0, 11.0, 12.0])
        self.assertEqual(h["slowloris"]["rps"], 25000.0)
        self.assertEqual(h["slowloris"]["socket_errors"], 1)   # errors_read=1, the rest 0
        self.assertEqual(h["slowloris"]["closed_per_s"], 100.0)
        self.assertEqual(h["slowloris"]["rounds_ok"], 3)
        self.assertEqual(folded["nginx"]["slowloris"]["p99_ms"], 3.0)
        self.assertEqual(folded["nginx"]["slowloris"]["closed_per_s"], 0.0)

    def test_a_failed_round_is_left_out_and_named(self):
        runs = copy.deepcopy(RUNS)
        runs[2]["slowloris"] = phase(0, 0, error="wrk gave no result (timed out)")
        runs[3]["error"] = "nginx did not start: exited with status 1"
        del runs[3]["baseline"], runs[3]["slowloris"]
        folded = versus.fold(runs)
        h = folded["hitcore"]["slowloris"]
        self.assertEqual(h["p99_ms_each"], [None, 11.0, 12.0])
        self.assertEqual(h["p99_ms"], 11.5)
        self.assertEqual(h["failed"], ["round 1: wrk gave no result (timed out)"])
        self.assertEqual(folded["nginx"]["baseline"]["failed"], ["round 1: nginx did not start: exited with status 1"])
        self.assertEqual(folded["nginx"]["baseline"]["rounds_ok"], 2)

    def test_verdict(self):
        v = versus.verdict(versus.fold(RUNS))
        self.assertEqual((v["p99_ms"], v["other_p99_ms"], v["ratio"], v["met"]), (11.0, 3.0, 3.667, False))
        better = versus.fold([run("hitcore", 1, 1.0, 2.0), run("nginx", 1, 1.0, 2.0)])
        self.assertTrue(versus.verdict(better)["met"])       # equal is enough: ≤
        self.assertIsNone(versus.verdict(versus.fold(RUNS[:1]))["met"])  # no nginx: not measured
        self.assertIsNone(versus.verdict({}, ours="hitcore-wc1000")["ratio"])


class Report(unittest.TestCase):
    def summary(self, runs) -> dict:
        s = copy.deepcopy(SUMMARY)
        s["tests"] = {"vs-nginx": {"id": "vs-nginx", "conns": 5000, "rounds": 3, "shards": 2, "runs": runs,
                                   "folded": versus.fold(runs), "verdict": versus.verdict(versus.fold(runs))}}
        s["versions"]["nginx"] = "nginx/1.22.1"
        return s

    def test_the_section_and_the_verdict(self):
        text = hostile_report.render(self.summary(RUNS))
        self.assertIn("## 5. Under attack, beside nginx", text)
        self.assertIn("`worker_connections` (6,144)", text)
        self.assertIn("| hitcore (default flags) | wrk + 5,000 slowloris | **11.00 ms** | 10.00 · 11.00 · 12.00 |", text)
        self.assertIn("| nginx `return 200` (static) | wrk alone | **1.10 ms** | 1.00 · 5.00 · 1.10 |", text)
        self.assertIn("hitcore (default flags) 11.00 ms against nginx 3.00 ms (ratio 3.67): **not met**", text)
        self.assertIn("| nginx | nginx/1.22.1 |", text)
        # hitcore's runs reach the log table; nginx's do not (they have no hitcore log)
        self.assertIn("| vs-nginx-r1-hitcore |", text)
        self.assertNotIn("| vs-nginx-r1-nginx |", text)
        self.assertNotIn("None", text)
        self.assertIn("| nginx `return 200` (static) | wrk alone | **1.10 ms** |", md.digest(text))

    def test_the_other_hitcore_layouts_are_compared_too(self):
        runs = RUNS + [run("hitcore-ht60", 1, 1.0, 2.5)]
        s = self.summary(runs)
        s["tests"]["vs-nginx"]["verdicts_other"] = [versus.verdict(versus.fold(runs), ours="hitcore-ht60")]
        text = hostile_report.render(s)
        self.assertIn("- For comparison: hitcore `--header-timeout 60` 2.50 ms against "
                      "nginx 3.00 ms (ratio 0.83): **met**.", text)

    def test_notes_render_after_the_measurements(self):
        s = self.summary(RUNS)
        s["notes"] = ["### What limits it", "", "- the closes and reopens."]
        text = hostile_report.render(s)
        self.assertIn("## Notes\n\n### What limits it\n\n- the closes and reopens.\n", text)
        self.assertLess(text.index("## 5. Under attack"), text.index("## Notes"))
        self.assertLess(text.index("## Notes"), text.index("## What hitcore's logs said"))

    def test_a_failed_run_shows(self):
        runs = copy.deepcopy(RUNS)
        runs[3] = {"id": "vs-nginx-r1-nginx", "victim": "nginx", "round": 1, "error": "nginx did not start: x"}
        text = hostile_report.render(self.summary(runs))
        self.assertIn("**vs-nginx-r1-nginx did not complete**: nginx did not start: x", text)
        self.assertIn("nginx `return 200` (static), baseline: round 1: nginx did not start: x", text)


class Selection(unittest.TestCase):
    def test_vs_nginx_runs_only_when_asked(self):
        self.assertNotIn("vs-nginx", hostile.DEFAULT_TESTS)
        self.assertIn("vs-nginx", hostile.TESTS)
        self.assertEqual([v for v, _ in hostile.VS_VICTIMS],
                         ["hitcore", "hitcore-wc1000", "hitcore-ht60", "nginx"])
        self.assertEqual(set(dict(hostile.VS_VICTIMS)), set(hostile_report.VS_TITLES))
        self.assertIsNone(dict(hostile.VS_VICTIMS)["nginx"])


if __name__ == "__main__":
    unittest.main()
