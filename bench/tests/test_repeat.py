"""Checks `bench/run --repeat N`: kit/rounds.py folds the rounds into medians and spreads, and
kit/report.py renders them, on three rounds made from a real run's summary (tests/fixtures/
summary-quick.json) with req/s scaled by 0.9, 1.0 and 1.2, so the median is the recorded number.
Standard library only, no network, well under a second.

    python3 bench/tests/test_repeat.py        (or: python3 -m unittest discover -s bench/tests)
"""
import contextlib
import copy
import io
import json
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import main, md, report, rounds  # noqa: E402

SUMMARY = json.loads((Path(__file__).resolve().parent / "fixtures" / "summary-quick.json").read_text())
TOKIO = "tokio + hyper + redis-rs, 2 threads"
FACTORS = (0.9, 1.0, 1.2)  # req/s of rounds 1, 2, 3 against the recorded run: the median is round 2's


def original(row_id, key):
    return next(r for r in SUMMARY["rows"] + SUMMARY["scaling"] if r["id"] == row_id)["tests"][key]


def per_round(factors=FACTORS, tweak=None):
    """Rows and scaling points of each round: the recorded run's, req/s times the round's factor."""
    rows, scaling = [], []
    for n, factor in enumerate(factors, 1):
        r_rows, r_scaling = copy.deepcopy(SUMMARY["rows"]), copy.deepcopy(SUMMARY["scaling"])
        for row in r_rows + r_scaling:
            row["log"] = row["log"].replace(".log", f"-r{n}.log")
            row["peak_rss_kib"] += (n - 1) * 1024  # round 3 has the highest peak
            for test in row["tests"].values():
                test["rps"] *= factor
                test["raw"] = test["raw"].replace(".txt", f"-r{n}.txt")
                if "p99_ms" in test:
                    test["p99_ms"] /= factor
        if tweak:
            tweak(n, {r["id"]: r for r in r_rows + r_scaling})
        rows.append(r_rows)
        scaling.append(r_scaling)
    return rows, scaling


def summary_of(rows, scaling, drop=()):
    s = copy.deepcopy(SUMMARY)
    s["repeat"] = len(rows)
    s["rows"] = [r for r in rounds.aggregate(rows) if r["id"] not in drop]
    s["scaling"] = rounds.aggregate(scaling)
    s["rounds"] = [{"round": n} for n in range(1, len(rows) + 1)]
    return json.loads(json.dumps(s))  # as main.py writes it


def failures(n, by_id):
    """A failure in one round only, of each kind the medians would hide."""
    if n == 2:
        by_id["gunicorn-sync"]["tests"]["ab"]["failed"] = 7
        by_id["gunicorn-sync"]["tests"]["wrk"]["errors_read"] = 3
    if n == 3:
        by_id["hitcore-4"]["worker_timeouts"] = 1
    if n == 1:
        by_id["tokio-hyper"]["counter_after"]["ab"] -= 10  # 10 answers without an increment


def row_check(row_id):
    """The recorded run's whole-run counter excess (counter less 2xx) of a row."""
    counted, seen = report.counter_checks(next(r for r in SUMMARY["rows"] if r["id"] == row_id))["total"]
    return counted - seen


def table_line(text, heading, first_cell):
    section = text[text.index(heading):]
    return next(line for line in section.splitlines() if line.startswith(f"| {first_cell} |"))


class RoundsTest(unittest.TestCase):
    def test_median_min_max(self):
        t = rounds.median_test([{"rps": 3.0, "failed": 0, "error": None, "raw": "a"},
                                {"rps": 1.0, "failed": 2, "error": None, "raw": "b"},
                                {"rps": 2.0, "failed": 0, "error": None, "raw": "c"}])
        self.assertEqual((t["rps"], t["min"]["rps"], t["max"]["rps"]), (2.0, 1.0, 3.0))
        self.assertEqual((t["failed"], t["max"]["failed"]), (0, 2))
        self.assertEqual(t["rounds_ok"], [1, 2, 3])
        self.assertEqual(t["raw"], ["a", "b", "c"])
        two = rounds.median_test([{"rps": 1, "errors_read": 0, "error": None},
                                  {"rps": 4, "errors_read": 0, "error": None}])
        self.assertEqual(two["rps"], 2.5)
        self.assertIs(type(two["errors_read"]), int)

    def test_rounds_without_numbers(self):
        t = rounds.median_test([{"rps": 10, "error": None}, {"error": "wrk gave no result"}, None])
        self.assertEqual((t["rps"], t["rounds_ok"]), (10, [1]))
        self.assertEqual(t["round_errors"], {"2": "wrk gave no result", "3": "not run"})
        none = rounds.median_test([{"error": "x"}, None])
        self.assertEqual(none["error"], "round 1: x; round 2: not run")
        self.assertNotIn("rps", none)

    def test_aggregate_keeps_every_round(self):
        rows, _ = per_round(tweak=failures)
        agg = {r["id"]: r for r in rounds.aggregate(rows)}
        hit = agg["hitcore-4"]
        self.assertEqual([r["tests"]["wrk"]["rps"] for r in hit["rounds"]],
                         [original("hitcore-4", "wrk")["rps"] * f for f in FACTORS])
        self.assertAlmostEqual(hit["tests"]["wrk"]["rps"], original("hitcore-4", "wrk")["rps"])
        self.assertEqual(hit["worker_timeouts"], 1)  # the sum over the rounds
        self.assertEqual(hit["peak_rss_kib"], SUMMARY["rows"][6]["peak_rss_kib"] + 2048)  # the max
        self.assertEqual(agg["gunicorn-sync"]["tests"]["ab"]["max"]["failed"], 7)


class RepeatReportTest(unittest.TestCase):
    def setUp(self):
        self.summary = summary_of(*per_round(tweak=failures))
        self.text = report.render(self.summary)

    def test_headings_say_median_of_n(self):
        for heading in ("## The original test", "## Keep-alive: ", "## Keep-alive, multi-threaded", "## Shard scaling"):
            line = next(l for l in self.text.splitlines() if l.startswith(heading))
            self.assertTrue(line.endswith("(median of 3 rounds)"), line)
        self.assertIn("**3 rounds** (`--repeat 3`), interleaved", self.text)

    def test_medians_and_spread(self):
        for key, heading in (("ab", "## The original test"), ("ab_k", "## Keep-alive: "),
                             ("wrk", "## Keep-alive, multi-threaded")):
            rps = original("hitcore-ncpu", key)["rps"]
            line = table_line(self.text, heading, "hitcore, one shard per CPU (2)")
            self.assertIn(f"| **{rps:,.0f}** | {rps * 0.9:,.0f}–{rps * 1.2:,.0f} |", line)
        line = table_line(self.text, "## Keep-alive, multi-threaded", "hitcore -w 4 --share-cpus")
        self.assertIn(f"| {original('hitcore-4', 'wrk')['p99_ms']:.2f} ms |", line)  # the median p99
        scaling = table_line(self.text, "## Shard scaling", "2")
        rps, one = original("hitcore-scaling-2", "wrk")["rps"], original("hitcore-scaling-1", "wrk")["rps"]
        self.assertIn(f"| **{rps:,.0f}** | {rps * 0.9:,.0f}–{rps * 1.2:,.0f} | {rps / one:.2f} |", scaling)

    def test_failures_of_one_round_show(self):
        self.assertIn("| 0 · 7 · 0 |", table_line(self.text, "## The original test", "gunicorn -w 4 sync"))
        self.assertIn("| 0/0/0/0 · 0/3/0/0 · 0/0/0/0 |",
                      table_line(self.text, "## Keep-alive, multi-threaded", "gunicorn -w 4 sync"))
        correctness = self.text[self.text.index("## Correctness and memory"):]
        tokio_rounds = correctness[correctness.index(f"| {TOKIO} | 1 |"):].splitlines()[:3]
        self.assertIn("(**10 LOST**)", tokio_rounds[0])  # round 1's ab
        self.assertTrue(tokio_rounds[1].startswith("|  | 2 | 5,000 = 5,000 |"))
        hitcore_rounds = correctness[correctness.index("| hitcore -w 4 --share-cpus | 1 |"):].splitlines()[:3]
        self.assertEqual([l.rsplit("|", 2)[1].strip() for l in hitcore_rounds], ["0", "0", "1"])  # WORKER TIMEOUT
        memory = table_line(self.text, "Peak RSS (sum over the process tree, max over the rounds)", "hitcore -w 1")
        self.assertIn(f"{(SUMMARY['scaling'][0]['peak_rss_kib'] + 2048) / 1024:,.1f} MiB", memory)

    def test_a_round_without_numbers_and_a_row_never_run(self):
        def tweak(n, by_id):
            if n == 2:
                by_id["nginx"]["tests"]["wrk"] = {"error": "wrk gave no result (timed out): ", "raw": "x"}
            by_id["tokio-hyper"].update(status="not run: cargo build failed", tests={}, counter_after={})
            by_id["tokio-hyper"].pop("counter_final")
        s = summary_of(*per_round(tweak=tweak))
        text = report.render(s)
        nginx = table_line(text, "## Keep-alive, multi-threaded", "nginx return 200 (static, no Redis), 2 workers")
        rps = original("nginx", "wrk")["rps"]
        self.assertIn(f"**{(rps * 0.9 + rps * 1.2) / 2:,.0f}**", nginx)  # the median of the two rounds left
        self.assertIn("(2 of 3 rounds; round 2: *wrk gave no result (timed out):*)", nginx)
        self.assertIn("| 0/0/0/0 · error · 0/0/0/0 | 0 · error · 0 |", nginx)
        self.assertIn("*not run: cargo build failed*", table_line(text, "## The original test", TOKIO))
        self.assertIn("| all | *not run: cargo build failed* |", text)
        self.assertIn("*not run: cargo build failed*", md.digest(text))

    def test_one_round_renders_as_before_the_fold(self):
        # bench/run folds a single run too; its report is the one an unfolded (older) summary gives.
        rows, scaling = per_round(factors=(1.0,))
        folded = summary_of(rows, scaling)
        folded["repeat"] = 1
        self.assertEqual(report.render(folded), report.render(SUMMARY))

    def test_console_digest(self):
        # What bench/run prints at the end: its headings and tables, from the report.
        digest = md.digest(self.text)
        self.assertTrue(digest.startswith("# "))
        self.assertNotIn("## Machine", digest)
        self.assertFalse([line for line in digest.splitlines() if line.startswith("|-")])
        for heading in ("## The original test", "## Keep-alive, multi-threaded", "## Shard scaling"):
            self.assertIn(heading, digest)
            line = table_line(self.text, heading, "gunicorn -w 4 sync" if heading != "## Shard scaling" else "1")
            self.assertIn(line, digest)

    def test_repeat_option(self):
        self.assertEqual(main.parse_args([]).repeat, 1)
        self.assertEqual(main.parse_args(["--repeat", "3"]).repeat, 3)
        with contextlib.redirect_stderr(io.StringIO()) as err, self.assertRaises(SystemExit) as exit:
            main.main(["--repeat", "0"])
        self.assertEqual(exit.exception.code, 2)
        self.assertIn("argument --repeat: a whole number ≥ 1, not '0'", err.getvalue())


if __name__ == "__main__":
    unittest.main()
