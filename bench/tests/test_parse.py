"""Checks kit/parse.py against real ab and wrk outputs (bench/tests/fixtures/, captured on Debian 12
with ab 2.3 and wrk 4.1.0), and kit/redisctl.py's INFO commandstats reader against Redis 7.0's, so
that the benchmark kit's numbers cannot silently rot.

Run from anywhere, with the system python3 (stdlib only), in well under a second:
    python3 bench/tests/test_parse.py        (or: python3 -m unittest discover -s bench/tests)
"""
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import parse, redisctl  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class AbTest(unittest.TestCase):
    def test_new_connection_per_request(self):
        r = parse.parse_ab(fixture("ab-tokio-hyper.txt"))
        self.assertEqual(r["concurrency"], 500)
        self.assertEqual(r["time_taken_s"], 0.241)
        self.assertEqual(r["complete"], 5000)
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["non_2xx"], 0)
        self.assertEqual(r["rps"], 20783.89)
        self.assertEqual(r["time_per_request_ms"], 24.057)
        self.assertEqual(r["time_per_request_all_ms"], 0.048)
        self.assertEqual([r[f"total_{k}_ms"] for k in ("min", "mean", "sd", "median", "max")], [2, 10, 3.7, 8, 28])
        self.assertEqual(r["ok_2xx"], 5000)
        self.assertNotIn("keepalive_requests", r)

    def test_keepalive(self):
        r = parse.parse_ab(fixture("ab-k-tokio-hyper.txt"))
        self.assertEqual(r["keepalive_requests"], 5000)
        self.assertEqual(r["rps"], 56219.57)
        self.assertEqual(r["time_per_request_ms"], 8.894)
        self.assertEqual(r["total_max_ms"], 22)

    def test_keepalive_refused_by_server(self):
        # gunicorn's sync worker closes every connection: ab -k then opens one per request.
        r = parse.parse_ab(fixture("ab-k-gunicorn-sync.txt"))
        self.assertEqual(r["complete"], 5000)
        self.assertEqual(r["keepalive_requests"], 0)
        self.assertEqual(r["ok_2xx"], 5000)

    def test_length_failures_without_l(self):
        # Without -l, every answer whose length differs from the first counts as failed.
        r = parse.parse_ab(fixture("ab-without-l-tokio-hyper.txt"))
        self.assertEqual(r["complete"], 2000)
        self.assertEqual(r["failed"], 1991)
        self.assertEqual((r["fail_connect"], r["fail_receive"], r["fail_length"], r["fail_exceptions"]),
                         (0, 0, 1991, 0))
        self.assertEqual(r["ok_2xx"], 2000)  # length failures are whole 2xx answers

    def test_non_2xx(self):
        r = parse.parse_ab(fixture("ab-404-tokio-hyper.txt"))
        self.assertEqual(r["complete"], 2000)
        self.assertEqual(r["failed"], 0)
        self.assertEqual(r["non_2xx"], 2000)
        self.assertEqual(r["ok_2xx"], 0)

    def test_no_summary(self):
        with self.assertRaises(parse.ParseError):
            parse.parse_ab("Benchmarking 127.0.0.1 (be patient)\napr_socket_recv: Connection refused (111)\n")


class WrkTest(unittest.TestCase):
    def test_keepalive_load(self):
        r = parse.parse_wrk(fixture("wrk-tokio-hyper.txt"))
        self.assertEqual(r["requests"], 232539)
        self.assertEqual(r["duration_s"], 3.03)
        self.assertEqual(r["rps"], 76840.26)
        self.assertEqual((r["p50_ms"], r["p75_ms"], r["p90_ms"], r["p99_ms"]), (5.29, 6.82, 8.19, 11.55))
        self.assertEqual((r["latency_avg_ms"], r["latency_max_ms"]), (5.45, 17.87))
        self.assertEqual(r["non_2xx_3xx"], 0)
        self.assertEqual(r["errors_timeout"], 0)
        self.assertEqual(r["ok_2xx"], 232539)

    def test_seconds_and_socket_errors(self):
        r = parse.parse_wrk(fixture("wrk-gunicorn-gevent.txt"))
        self.assertEqual(r["requests"], 2192)
        self.assertEqual(r["rps"], 714.87)
        self.assertAlmostEqual(r["p99_ms"], 1560.0)
        self.assertAlmostEqual(r["latency_max_ms"], 1920.0)
        self.assertEqual((r["errors_connect"], r["errors_read"], r["errors_write"], r["errors_timeout"]),
                         (0, 0, 0, 12))
        self.assertEqual(r["bytes_read"], int(347.24 * 1024))

    def test_non_2xx_and_microseconds(self):
        r = parse.parse_wrk(fixture("wrk-404-tokio-hyper.txt"))
        self.assertEqual(r["requests"], 135738)
        self.assertEqual(r["non_2xx_3xx"], 135738)
        self.assertEqual(r["ok_2xx"], 0)
        self.assertAlmostEqual(r["p50_ms"], 0.224)

    def test_units(self):
        self.assertAlmostEqual(parse.wrk_time_ms("512.00us"), 0.512)
        self.assertAlmostEqual(parse.wrk_time_ms("1.00m"), 60000.0)
        with self.assertRaises(parse.ParseError):
            parse.wrk_time_ms("fast")

    def test_no_result(self):
        with self.assertRaises(parse.ParseError):
            parse.parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused\n")


class CommandstatsTest(unittest.TestCase):
    def test_redis_7_commandstats(self):
        # `INFO commandstats` from redis-server 7.0.15 after INCR once and INCRBY twice, as sent (CRLF).
        info = ("# Commandstats\r\n"
                "cmdstat_incrby:calls=2,usec=13,usec_per_call=6.50,rejected_calls=0,failed_calls=0\r\n"
                "cmdstat_incr:calls=1,usec=8,usec_per_call=8.00,rejected_calls=0,failed_calls=0\r\n"
                "cmdstat_CONFIG|GET:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n")
        self.assertEqual(redisctl.parse_commandstats(info), {"incrby": 2, "incr": 1, "config|get": 12})

    def test_nothing_served_yet(self):
        self.assertEqual(redisctl.parse_commandstats("# Commandstats\r\n"), {})


if __name__ == "__main__":
    unittest.main()
