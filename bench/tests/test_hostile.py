"""Checks bench/hostile's report (kit/hostile_report.py) on a recorded run
(tests/fixtures/summary-hostile-quick.json, from a `bench/hostile --quick` on a 2-core machine), and
its bookkeeping helpers (kit/victims.py, kit/measure.py, kit/attackers.py) on made-up inputs, without running anything.

    python3 bench/tests/test_hostile.py        (or: python3 -m unittest discover -s bench/tests)
"""
import copy
import json
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import attackers, hostile_report, md, measure, victims  # noqa: E402

SUMMARY = json.loads((Path(__file__).resolve().parent / "fixtures" / "summary-hostile-quick.json").read_text())


class ReportTest(unittest.TestCase):
    def test_sections_in_order_with_their_numbers(self):
        text = hostile_report.render(SUMMARY)
        self.assertTrue(text.startswith("# hitcore against hostile clients"))
        order = ["## Machine", "## 1. Normal-client latency", "## 2. RSS per idle", "## 3. Flood",
                 "## 4. A client that pipelines", "## What hitcore's logs said"]
        self.assertEqual([text.index(h) for h in order], sorted(text.index(h) for h in order))
        for run in SUMMARY["tests"]["slowloris"]:
            for key in ("baseline", "slowloris"):
                self.assertIn(f"**{run[key]['wrk']['rps']:,.0f}**", text)
        idle = SUMMARY["tests"]["idle"]
        self.assertIn(f"**{idle['kib_per_conn']:.2f} KiB**", text)
        self.assertIn("target ≤ 8 KiB", text)
        self.assertIn(f"{SUMMARY['tests']['flood']['peak_tree_rss_kib']:,} KiB", text)
        self.assertIn(f"≈ {SUMMARY['tests']['pipeline']['pipelined_answered']:,}", text)
        self.assertNotIn("None", text)

    def test_a_measurement_that_failed(self):
        s = copy.deepcopy(SUMMARY)
        s["tests"]["idle"] = {"id": "idle", "flags": s["tests"]["idle"]["flags"], "conns": 10000,
                              "error": "hitcore did not start: exited with status 2",
                              "hitcore": {"exit_status": 2, "notable": [], "argv": "hitcore -w 1"}}
        s["tests"]["slowloris"][1]["slowloris"]["wrk"] = {"error": "wrk gave no result (timed out)"}
        text = hostile_report.render(s)
        self.assertIn("**Did not complete**: hitcore did not start", text)
        self.assertIn("*wrk gave no result (timed out)*", text)
        self.assertIn("*wrk gave no result (timed out)*", md.digest(text))

    def test_other_work_during_a_measurement_is_said(self):
        s = copy.deepcopy(SUMMARY)
        quiet = {"pct": 1.0, "top": []}
        for run in s["tests"]["slowloris"]:
            run["baseline"]["other_load"] = run["slowloris"]["other_load"] = quiet
        s["tests"]["idle"]["other_load"] = s["tests"]["pipeline"]["pipeline"]["other_load"] = quiet
        s["tests"]["flood"]["flood"]["other_load"] = quiet
        self.assertNotIn("**Other work ran", hostile_report.render(s))
        s["tests"]["flood"]["flood"]["other_load"] = {"pct": 150.0, "top": ["http_request 90 %", "resp_reply 60 %"]}
        text = hostile_report.render(s)
        self.assertIn("**Other work ran during some measurements**", text)
        self.assertIn("flood: 150 % (http_request 90 %, resp_reply 60 %)", text)
        s["tests"]["flood"]["flood"]["other_load"] = {"pct": 2.0, "top": []}
        self.assertNotIn("**Other work ran", hostile_report.render(s))

    def test_busy_machine_is_said(self):
        s = copy.deepcopy(SUMMARY)
        s["busy_at_start"] = 95.0
        self.assertIn("**Busy machine**", hostile_report.render(s))
        s["busy_at_start"] = 3.0
        self.assertNotIn("**Busy machine**", hostile_report.render(s))


class BookkeepingTest(unittest.TestCase):
    def test_log_analysis(self):
        log = "\n".join([
            "[2026-11-27 02:24:44 +0000] [1] [INFO] Booting worker with pid: 2 (shard 0, cpu 0)",
            "[2026-11-27 02:24:44 +0000] [1] [INFO] Booting worker with pid: 3 (shard 1, cpu 1)",
            "[2026-11-27 02:24:45 +0000] [2] [WARNING] at the --worker-connections cap (2): closed 3 connections "
            "that were idle or slow to send a request",
            "[2026-11-27 02:24:46 +0000] [2] [WARNING] at the --worker-connections cap (2): closed 4 connections "
            "that were idle or slow to send a request",
            "[2026-11-27 02:24:47 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:3)",
            "[2026-11-27 02:24:47 +0000] [1] [INFO] Booting worker with pid: 4 (shard 1, cpu 1)",
            "thread 'main' panicked at src/x.rs:1:1",
        ])
        info = victims.analyse_log(log, shards=2)
        self.assertEqual(info["evicted_at_cap"], 7)
        self.assertEqual(info["shard_restarts"], 1)
        self.assertEqual(info["worker_timeouts"], 1)
        self.assertEqual(info["notable"][0]["count"], 2)
        self.assertEqual(info["stray_count"], 1)

    def test_probe_summary(self):
        # (start, status, latency s, error): answers end at 1.1, 1.6 and 4.1; one timeout between
        results = [(1.0, 200, 0.1, None), (1.5, 200, 0.1, None), (2.0, None, 2.0, "timeout"), (4.0, 200, 0.1, None)]
        p = measure.probe_summary(results, 1.0, 5.0)
        self.assertEqual((p["sent"], p["ok"], p["errors"]), (4, 3, {"timeout": 1}))
        self.assertEqual(p["longest_gap_ms"], 2500.0)
        self.assertEqual(p["max_ms"], 100.0)

    def test_attacker_window(self):
        lines = [{"t": float(t), "open": 100 - t, "opened": 10 * t, "closed_by_server": 10 * t, "connect_failed": 0}
                 for t in range(10)]
        w = victims.window(lines, 2.0, 6.0)
        self.assertEqual(w["closed_by_server"], 40)
        self.assertEqual(w["closed_per_s"], 10.0)
        self.assertEqual(w["open_min"], 94)

    def test_answer_parsing(self):
        self.assertEqual(attackers._parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n4"), (200, False))
        self.assertEqual(attackers._parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n42"), (200, True))
        self.assertEqual(attackers._parse_answer(b"HTTP/1.1 200 OK\r\n"), (None, False))


if __name__ == "__main__":
    unittest.main()
