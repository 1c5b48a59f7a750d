"""Checks bench/layout's pure parts (kit/layout.py): the per-run figures, medians and the report
(its /proc/stat and schedstat readers are machine.py's and measure.py's: tests/test_procs.py).

Run from anywhere, with the system python3 (stdlib only), in well under a second:
    python3 bench/tests/test_layout.py
"""
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import layout, md, rounds  # noqa: E402

class Figures(unittest.TestCase):
    def row(self, rps, wait_ms):
        ab = {"rps": rps, "complete": 50000, "failed": 0}
        return layout.figures(ab, 2.0, {"cpu0": 100.0, "cpu1": 40.0},
                              {"run_ms": 1000.0, "wait_ms": wait_ms, "migrations": 4}, [],
                              {"run_ms": 1500.0, "wait_ms": 250.0})

    def test_per_request_figures(self):
        row = self.row(25000.0, 100.0)
        self.assertEqual(row["server_cpu_us_per_request"], 20.0)
        self.assertEqual(row["server_wait_us_per_request"], 2.0)
        self.assertEqual(row["ab_cpu_us_per_request"], 30.0)
        self.assertEqual(row["ab_wait_us_per_request"], 5.0)

    def test_medians_and_report(self):
        rows = [self.row(r, w) for r, w in ((20000.0, 50.0), (30000.0, 150.0), (25000.0, 100.0))]
        med = layout.median_row(rows)
        self.assertEqual(med["rps"], 25000.0)
        self.assertEqual(med["server_wait_us_per_request"], 2.0)
        self.assertEqual(med["cpu_busy_pct"], {"cpu0": 100.0, "cpu1": 40.0})
        self.assertEqual(med["rps_all"], [20000.0, 30000.0, 25000.0])
        nginx = layout.median_row([self.row(20000.0, 0.0)])
        summary = {"machine": {"cpu_model": "Xeon", "cpus_online": 2}, "load": {"start": [1.0], "end": [2.0]},
                   "args": {"concurrency": "500", "requests": "50000", "rounds": "3"},
                   "medians": {"default": med, "nginx": nginx, "pinned": {"rps": None}},
                   "rows": {"default": rows, "nginx": [], "pinned": [{"status": "did not start: boom"}]}}
        text = layout.render(summary)
        self.assertIn("| **25,000** (20,000, 30,000, 25,000) | 1.25 | 0 | 100 % / 40 % | 30.0 / 5.0 | 20.0 / 2.0 | 4 |",
                      text)
        self.assertIn("did not start: boom", text)
        self.assertIn("Load average at the start 1.00, at the end 2.00", text)

    def test_the_report_of_a_compare_run(self):
        ok = {"id": "default", "title": "t", "argv": "x", "uses_redis": True, "status": "ok",
              "tests": {"ab": self.row(25000.0, 100.0)}}
        gone = dict(ok, id="pinned", status="pinned did not start: boom", tests={})
        summary = {"machine": {"cpu_model": "Xeon", "cpus_online": 2}, "load_at_start": [1.0, 1.0, 1.0],
                   "load_at_end": [2.0, 2.0, 2.0], "ab": {"concurrency": 500, "requests": 50000, "rounds": 1},
                   "rows": rounds.aggregate([[ok, gone]])}
        text = layout.render_run(summary)
        self.assertIn("| **25,000** (25,000) | – | 0 | 100 % / 40 % | 30.0 / 5.0 | 20.0 / 2.0 | 4 |", text)
        self.assertIn("| hitcore --pin (one shard pinned to each CPU) | pinned did not start: boom |", text)
        self.assertIn("`ab -c 500 -n 50000 -r -l`", text)
        # The console gets the report's digest: its heading and table, no separator row.
        digest = md.digest(text).splitlines()
        self.assertEqual(digest[0], "# Where shards run, under the seed test: bench/layout")
        self.assertTrue(digest[1].startswith("| Layout |") and not any(l.startswith("|-") for l in digest))


if __name__ == "__main__":
    unittest.main()
