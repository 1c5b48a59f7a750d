"""Checks bench/layout's pure parts (kit/layout.py): reading /proc/stat, schedstat
and sched, the per-run figures, medians and the report, on texts copied from this machine's /proc.

Run from anywhere, with the system python3 (stdlib only), in well under a second:
    python3 bench/tests/test_layout.py
"""
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import layout  # noqa: E402

# /proc/stat of the 2-CPU VM, two readings 1 s apart (cpu, cpu0, cpu1 and a line that is not a CPU).
STAT_0 = """cpu  10 0 10 180 0 0 0 0 0 0
cpu0 5 0 5 90 0 0 0 0 0 0
cpu1 5 0 5 90 0 0 0 0 0 0
intr 12345 0 0
"""
STAT_1 = """cpu  140 0 40 220 0 0 0 0 0 0
cpu0 105 0 5 90 0 0 0 0 0 0
cpu1 35 0 35 120 10 0 0 0 0 0
intr 12400 0 0
"""
# /proc/PID/task/TID/sched, trimmed (Linux 6.18).
SCHED = """hitcore-shard0 (12345, #threads: 3)
-------------------------------------------------------------------
se.exec_start                                :       9812345.123456
se.nr_migrations                             :                   17
nr_switches                                  :                 4242
"""


class Readers(unittest.TestCase):
    def test_cpu_busy_share_leaves_idle_and_iowait_out(self):
        busy = layout.busy_percent(layout.parse_cpu_times(STAT_0), layout.parse_cpu_times(STAT_1))
        # cpu1: 100 ticks passed, 30 idle and 10 iowait of them, so 60 busy.
        self.assertEqual(busy, {"cpu0": 100.0, "cpu1": 60.0})

    def test_schedstat_and_migrations(self):
        self.assertEqual(layout.parse_schedstat("123456789 987654 321\n"), (123456789, 987654))
        self.assertEqual(layout.parse_migrations(SCHED), 17)
        self.assertEqual(layout.parse_migrations("nothing here\n"), 0)

    def test_task_delta_counts_new_threads_from_zero(self):
        before = {1: {"pid": 1, "run_ns": 1_000_000, "wait_ns": 0, "migrations": 1}}
        after = {1: {"pid": 1, "run_ns": 3_000_000, "wait_ns": 500_000, "migrations": 3},
                 2: {"pid": 1, "run_ns": 2_000_000, "wait_ns": 1_500_000, "migrations": 0}}
        self.assertEqual(layout.task_delta(before, after), {"run_ms": 4.0, "wait_ms": 2.0, "migrations": 2})


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


if __name__ == "__main__":
    unittest.main()
