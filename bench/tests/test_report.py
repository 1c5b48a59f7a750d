"""Checks kit/report.py renders a real run's summary (tests/fixtures/summary-quick.json, from a
`bench/run --quick` on a 2-core machine) and its failure cases, without running anything.

    python3 bench/tests/test_report.py        (or: python3 -m unittest discover -s bench/tests)
"""
import copy
import json
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import md, report  # noqa: E402

SUMMARY = json.loads((Path(__file__).resolve().parent / "fixtures" / "summary-quick.json").read_text())


def row(summary, row_id):
    return next(r for r in summary["rows"] + summary["scaling"] if r["id"] == row_id)


class ReportTest(unittest.TestCase):
    def test_every_row_and_number_appears(self):
        text = report.render(SUMMARY)
        self.assertTrue(text.startswith("# hitcore benchmark"))
        self.assertLess(text.index("## Machine"), text.index("## The original test"))
        for r in SUMMARY["rows"]:
            self.assertIn(r["title"], text)
            self.assertIn(f"**{r['tests']['ab']['rps']:,.0f}**", text)
            self.assertIn(f"**{r['tests']['wrk']['rps']:,.0f}**", text)
        self.assertIn("| gunicorn -w 4 sync | 1336 |", text)  # the 2014 reference
        self.assertNotIn(".png", text)  # no charts: the tables carry every figure
        # one shard's req/s is the scaling table's base: "× one shard" 1.00 and 100 % of linear
        one = row(SUMMARY, "hitcore-scaling-1")["tests"]["wrk"]["rps"]
        self.assertIn(f"| 1 | **{one:,.0f}** | 1.00 | 100.0 |", text)
        two = row(SUMMARY, "hitcore-scaling-2")["tests"]["wrk"]["rps"]
        self.assertIn(f"| 2 | **{two:,.0f}** | {two / one:.2f} | {50 * two / one:.1f} |", text)

    def test_correctness_and_memory_of_every_row(self):
        text = report.render(SUMMARY)
        section = text[text.index("## Correctness and memory"):]
        gunicorn = row(SUMMARY, "gunicorn-sync")
        self.assertIn("| gunicorn -w 4 sync | 1 | 5,000 = 5,000 | 5,000 = 5,000 |", section)
        self.assertIn(f"| {gunicorn['peak_rss_kib'] / 1024:,.1f} MiB |", section)
        self.assertIn("| nginx return 200 (static, no Redis), 2 workers | 1 | no Redis | no Redis |", section)

    def test_counter_checks(self):
        checks = report.counter_checks(row(SUMMARY, "gunicorn-sync"))
        self.assertEqual(checks["ab"], (5000, 5000))
        self.assertEqual(checks["ab_k"], (5000, 5000))
        counted, seen = checks["total"]
        self.assertEqual(counted, row(SUMMARY, "gunicorn-sync")["counter_final"])
        self.assertGreaterEqual(counted, seen)

    def test_rows_that_did_not_run(self):
        s = copy.deepcopy(SUMMARY)
        broken = row(s, "hitcore-4")
        broken.update(status="did not start: exited with status 2: error: invalid value for '--workers'",
                      tests={}, counter_after={})
        broken.pop("counter_final", None)
        lost = row(s, "tokio-hyper")
        lost["counter_after"]["ab"] = 4990
        text = report.render(s)
        self.assertIn("*did not start: exited with status 2", text)
        self.assertIn("(**10 LOST**)", text)
        self.assertIn("did not start", md.digest(text))


if __name__ == "__main__":
    unittest.main()
