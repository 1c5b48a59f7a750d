"""Checks kit/trial.py, the server run bench/run and bench/device/run16 share, on real short-lived
processes: a stand-in server (the system python3) that answers 200 without counting, a real
redis-server on a free port (skipped where none is installed), and a server that exits at once.
kit/report.py's checks must call the uncounted answers LOST. A few seconds, no network.

    python3 bench/tests/test_trial.py        (or: python3 -m unittest discover -s bench/tests)
"""
import http.client
import shutil
import sys
import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import redisctl, report, servers, trial  # noqa: E402

# Answers GET / with 200 and counts nothing: every answer it gives is one the counter never saw.
SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"1")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def five_gets(port: int):
    """A load for trial.run: five GET / on one connection, counted as wrk would count them."""
    def runner(service, label):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        ok = 0
        for _ in range(5):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            ok += response.status == 200
        conn.close()
        return {"error": None, "rps": 5.0, "requests": 5, "ok_2xx": ok, "p99_ms": 1.0, "non_2xx_3xx": 5 - ok}
    return runner


class TrialTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="test-trial-"))
        self.port = redisctl.free_port()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    @unittest.skipUnless(shutil.which("redis-server"), "redis-server is not installed")
    def test_answers_the_counter_never_saw_are_lost(self):
        redis = redisctl.RedisServer(self.tmp)
        try:
            redis.wait_ready()
            redis.set("hit", 42)  # trial.run must reset it once the server answers
            spec = servers.Spec("stand-in", "stand-in", [sys.executable, "-c", SERVER, str(self.port)],
                                env={"REDIS_URL": redis.url})
            row = trial.run(spec, self.port, redis, [("wrk", "five GETs", five_gets(self.port))], self.tmp,
                            "test", "-r1")
        finally:
            redis.stop()
        self.assertEqual(row["status"], "ok")
        self.assertEqual((row["counter_after"], row["counter_final"]), ({"wrk": 0}, 0))
        self.assertEqual(row["tests"]["wrk"]["ok_2xx"], 5)
        self.assertEqual(report.lost(row), 5)
        self.assertEqual(report.counter_checks(row)["wrk"], (0, 5))
        self.assertGreater(row["peak_rss_kib"], 0)
        self.assertEqual((row["worker_timeouts"], row["log"]), (0, "stand-in-r1.log"))
        self.assertTrue((self.tmp / "stand-in-r1.log").exists())

    def test_a_server_that_exits_says_why_and_runs_no_load(self):
        argv = [sys.executable, "-c", "import sys; print('error: unknown flag --bogus'); sys.exit(2)"]
        spec = servers.Spec("broken", "broken", argv, uses_redis=False)
        row = trial.run(spec, self.port, None, [("wrk", "never", five_gets(self.port))], self.tmp, "test")
        self.assertTrue(row["status"].startswith("did not start: exited with status 2"), row["status"])
        self.assertIn("unknown flag --bogus", row["status"])
        self.assertEqual((row["tests"], row["exit_status"]), ({}, 2))
        self.assertNotIn("counter_final", row)

    def test_the_callers_counter(self):
        """run16's /hit rows count every K:* key: trial.run reads their `counter()`, not Redis's `hit`."""
        spec = servers.Spec("stand-in", "stand-in", [sys.executable, "-c", SERVER, str(self.port)])
        resets = []
        redis = SimpleNamespace(set=lambda key, value: resets.append((key, value)))
        load = ("wrk", "five GETs", five_gets(self.port))
        row = trial.run(spec, self.port, redis, [load], self.tmp, "test", counter=lambda: 5)
        self.assertEqual((row["counter_after"], row["counter_final"], report.lost(row)), ({"wrk": 5}, 5, 0))
        self.assertEqual(resets, [("hit", 0)])


if __name__ == "__main__":
    unittest.main()
