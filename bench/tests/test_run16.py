"""Checks bench/device/run16's own logic without running anything: the CPU layout, and its report
(run16_report.py: the targets, what failed, the kit's tables) rendered from rows in kit/trial.py's
shape whose wrk results bench/kit/parse.py made of a recorded output in fixtures/, so that run16 and
the kit cannot drift apart on a key. Standard library only, well under a second.

    python3 bench/tests/test_run16.py        (or: python3 -m unittest discover -s bench/tests)
"""
import copy
import importlib.machinery
import importlib.util
import sys
import unittest
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import parse  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RPS = parse.parse_wrk((FIXTURES / "wrk-tokio-hyper.txt").read_text())["rps"]


def load_run16():
    """bench/device/run16 as a module (it has no .py suffix); its main() does not run."""
    loader = importlib.machinery.SourceFileLoader("run16", str(BENCH / "device" / "run16"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("run16", loader))
    loader.exec_module(module)
    return module


run16 = load_run16()
report = run16.run16_report


def wrk_result(factor=1.0, redis_cpu=12.5, per_command=20.0, counter=True):
    """wrk's figures with the steady window's; without `counter` (the /hit rows: their counter is not
    `hit`) the window's CPU figures only."""
    r = parse.parse_wrk((FIXTURES / "wrk-tokio-hyper.txt").read_text())
    r["rps"] *= factor
    r.update(error=None, redis_cpu_pct=redis_cpu, server_cpu_pct=180.0, wrk_cpu_pct=95.0, machine_cpu_pct=300.0,
             other_cpu_pct=0.0, window_s=1.5)
    if counter:
        r.update(window_rps=r["rps"], requests_per_command=per_command, commands_per_s=r["rps"] / per_command)
    return r


def row(row_id, round_no, wrk, in_flight=3):
    """One round of one server as kit/trial.py returns it (run16 adds the round)."""
    counted = wrk["ok_2xx"] + in_flight if wrk.get("ok_2xx") else None
    return {"id": row_id, "title": row_id, "argv": row_id, "uses_redis": True, "round": round_no,
            "status": "ok" if not wrk.get("error") else f"wrk: {wrk['error']}", "tests": {"wrk": wrk},
            "counter_after": {"wrk": counted}, "counter_final": counted, "worker_timeouts": 0,
            "peak_rss_kib": 20480, "peak_pss_kib": 10240, "peak_processes": 9}


def summary(small=False):
    """Two rounds: tokio at the recorded req/s, hitcore -w 8 at 4× and 5× it, on /hit 1.8× and 2.6×,
    over HTTPS 1.5× and 1.7×, linear scaling; a third round where the tokio peer's wrk gave no
    result, after which the deadline stopped it."""
    lay = run16.layout(small, list(range(16)))
    per_round = []
    for r in (1, 2):
        rows = [row("tokio-8", r, wrk_result(1.0)), row("hitcore-8", r, wrk_result(3.0 + r)),
                row("tokio-hit", r, wrk_result(0.5, counter=False)),
                row("hitcore-hit", r, wrk_result(0.5 * (1.0 + 0.8 * r), counter=False)),
                row("tokio-https", r, wrk_result(0.8)),
                row("hitcore-https", r, wrk_result(0.8 * (1.3 + 0.2 * r)))]
        rows += [row(f"hitcore-scaling-{k}", r, wrk_result(k)) for k in lay["scaling"]]
        per_round.append(rows)
    per_round.append([row("tokio-8", 3, {"error": "wrk gave no result (timed out)"})])
    return {"layout": lay, "duration_s": 5, "rounds": 3, "rounds_done": 3, "deadline_s": 300.0, "small": small,
            "per_round": per_round, "skipped": ["hitcore-8 round 3: not started, the deadline would pass"],
            "interrupted": None, "command": "run16 --out /tmp/x", "wall_s": 200.0,
            "machine": {"cpu_model": "Test CPU", "cpus_online": 16, "cpus_allowed": "0-15", "kernel": "6.1.0",
                        "arch": "x86_64", "os": "Debian", "memory_gib": 64.0, "glibc": "glibc 2.39",
                        "python": "3.12.3", "hostname": "device", "governor": "performance",
                        "loadavg": "0.01 0.02 0.03 1/200 42"},
            "nofile": 65536, "somaxconn": "4096", "busy_at_start": 0.5, "versions": {"hitcore": "hitcore 0.1.0"}}


class LayoutTest(unittest.TestCase):
    def test_sixteen_cpus(self):
        lay = run16.layout(False, list(range(16)))
        self.assertEqual((lay["server"], lay["wrk"], lay["redis"]), (list(range(8)), list(range(8, 15)), [15]))
        self.assertEqual((lay["shards"], lay["scaling"], lay["mode"], lay["degraded"]), (8, [1, 2, 4, 8], "full", False))

    def test_fewer_cpus_scale_down_and_say_so(self):
        lay = run16.layout(False, list(range(6)))
        self.assertEqual((lay["server"], lay["wrk"], lay["redis"], lay["scaling"]), ([0, 1], [2, 3, 4], [5], [1, 2]))
        self.assertTrue(lay["degraded"])
        self.assertIn("scaled down", lay["mode"])

    def test_small_shares_every_cpu(self):
        lay = run16.layout(True, [0, 1])
        self.assertEqual((lay["server"], lay["redis"], lay["scaling"], lay["degraded"]), ([0, 1], [0, 1], [1, 2], False))


class StepsTest(unittest.TestCase):
    def test_the_peers_interleaved_and_flipped_then_scaling(self):
        lay = run16.layout(False, list(range(16)))
        first, second = run16.round_steps(lay, 1), run16.round_steps(lay, 2)
        peers = ["tokio-8", "hitcore-8", "tokio-hit", "hitcore-hit", "tokio-https", "hitcore-https"]
        scaling = [("hitcore", k, f"hitcore-scaling-{k}", 256, "/") for k in (1, 2, 4, 8)]
        self.assertEqual([s[2] for s in first[:6]], peers)
        self.assertEqual([s[2] for s in second[:6]], peers[::-1])
        self.assertEqual((first[6:], second[6:]), (scaling, scaling))
        self.assertEqual(first[3], ("hitcore", 8, "hitcore-hit", 500, "hit"))
        self.assertEqual(second[0], ("hitcore", 8, "hitcore-https", 500, "https"))

    def test_https_servers_get_the_bundles_certificate(self):
        run = run16.Run.__new__(run16.Run)
        run.lay, run.bin, run.tls, run.port = run16.layout(False, list(range(16))), Path("/b"), Path("/t"), 80
        run.redis = SimpleNamespace(url="redis://:x@127.0.0.1:6379/0")
        tokio = run.spec("tokio", 8, "tokio-https", "https")
        hitcore = run.spec("hitcore", 8, "hitcore-https", "https")
        self.assertEqual(tokio.argv[-4:], ["--tls-cert", "/t/server.crt", "--tls-key", "/t/server.key"])
        self.assertEqual(hitcore.argv[-4:], ["--certfile", "/t/server.crt", "--keyfile", "/t/server.key"])
        self.assertTrue(tokio.https and hitcore.https)
        plain = run.spec("hitcore", 8, "hitcore-hit", "hit")
        self.assertFalse(plain.https or "--certfile" in plain.argv)


class FailuresTest(unittest.TestCase):
    def test_in_flight_requests_are_no_failure(self):
        self.assertEqual(report.failures({"per_round": [[row("hitcore-8", 1, wrk_result())]]}), [])

    def test_lost_answers_and_missing_numbers(self):
        lost = row("hitcore-8", 1, wrk_result(), in_flight=-7)
        broken = row("tokio-8", 2, {"error": "wrk gave no result (timed out)"})
        self.assertEqual(report.failures({"per_round": [[lost], [broken]]}),
                         ["hitcore-8 round 1: 7 answers without an increment (LOST)",
                          "tokio-8 round 2: wrk: wrk gave no result (timed out)"])


class ReportTest(unittest.TestCase):
    def test_every_section_with_the_kit_parsers_numbers(self):
        text = report.render(summary())
        self.assertIn("| CPU layout | full, each under `taskset -c`: servers on 0-7 (tokio peer `-t 8`, hitcore "
                      "`-w N --cpus <first N> --pin`), wrk on 8-14 (`-t 7`), Redis on 15 |", text)
        order = ["## Machine", "## Targets", "## Peers", "## Scaling", "## Redis's side and CPU",
                 "## Correctness", "## Skipped and failed", "Files: "]
        self.assertEqual([text.index(h) for h in order], sorted(text.index(h) for h in order))
        # bench/compare's throughput table: median, min–max, the ratio to the tokio peer, errors each round
        self.assertIn(f"| tokio-8 | {RPS:,.0f} | {RPS:,.0f}–{RPS:,.0f} | 1.000 |", text)
        self.assertIn(f"| hitcore-8 | {RPS * 4.5:,.0f} | {RPS * 4:,.0f}–{RPS * 5:,.0f} | 4.500 |", text)
        self.assertIn("| 0/0 · 0/0 · no result |", text)  # the tokio peer's third round gave no result
        self.assertIn(f"| hitcore -w 8: ≥ 800k req/s (wrk -c 500) | {RPS * 4.5:,.0f} req/s | **not met** |", text)
        self.assertIn("| ≥ 2.5× the tokio peer, same run | 4.50× (r1: 4.00×, r2: 5.00×) | **met** |", text)
        self.assertIn("| /hit over 10,000 keys ≥ 2× tokio (issue 20) | 2.20× (r1: 1.80×, r2: 2.60×) "
                      "| **met** |", text)
        self.assertIn("| HTTPS keep-alive ≥ 2× tokio (issue 21) | 1.60× (r1: 1.50×, r2: 1.70×) "
                      "| **not met** |", text)
        self.assertIn(f"| hitcore-hit | {RPS * 1.1:,.0f} | {RPS * 0.9:,.0f}–{RPS * 1.3:,.0f} | 1.100 |",
                      text)
        self.assertIn("| tokio-https | ", text)
        # the /hit rows' window has no `hit` counter: no Redis-side figures, their CPU still shown
        self.assertNotIn("| hitcore-hit | " + f"{RPS * 1.1:,.0f} | 12.5 |", text)
        self.assertIn("| hitcore-hit | 180 |", text)
        self.assertIn("| 1 → 8 shards ≥ 90 % of linear (wrk -c 256) | 100.0 % | **met** |", text)
        self.assertIn("| Redis below 30 % of its CPU (during hitcore -w 8's wrk) | 12.5 % | **met** |", text)
        # bench/run's scaling table (kit/report.py): median, min–max, × one shard, % of linear
        self.assertIn(f"| 8 | **{RPS * 8:,.0f}** | {RPS * 8:,.0f}–{RPS * 8:,.0f} | 8.00 | 100.0 |", text)
        self.assertIn("| hitcore-scaling-8 | " + f"{RPS * 8:,.0f} | 12.5 |", text)  # Redis's side
        correctness = text[text.index("## Correctness"):]
        self.assertIn("| hitcore-8 | 1 | – | – | 232,542 vs 232,539 (+3) | 232,542 vs 232,539 (+3) | 0 |", correctness)
        self.assertIn("| hitcore-hit | 1 | – | – |", correctness)
        self.assertIn("- skipped: hitcore-8 round 3: not started, the deadline would pass", text)
        self.assertIn("- did not complete: tokio-8 round 3: wrk: wrk gave no result (timed out)", text)
        self.assertIn("| Kernel, OS | Linux 6.1.0 x86_64, Debian |", text)
        self.assertIn("somaxconn 4096", text)
        self.assertNotIn("None", text)

    def test_small_mode_gives_no_verdict(self):
        text = report.render(summary(small=True))
        self.assertIn("(--small: a test of the script, not a measurement)", text)
        self.assertNotIn("**met**", text)
        self.assertNotIn("**not met**", text)

    def test_nothing_measured(self):
        s = copy.deepcopy(summary())
        s.update(per_round=[], rounds_done=0, interrupted="Stop: signal SIGTERM", skipped=[])
        text = report.render(s)
        self.assertIn("**Stopped early: Stop: signal SIGTERM.**", text)
        self.assertIn("| HTTPS keep-alive ≥ 2× tokio (issue 21) | – | not measured |", text)
        self.assertNotIn("## Skipped and failed", text)


if __name__ == "__main__":
    unittest.main()
