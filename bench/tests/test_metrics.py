"""Checks the /metrics arithmetic of bench/compare's @scrape: kit/measure.py parses a real scrape
(tests/fixtures/metrics-scrape.txt, from hitcore -w 2 after a few requests and a stopped Redis) and
turns consecutive scrapes into requests/s by status, the coalescing factor and Redis up.
Standard library only, no network, well under a second.

    python3 bench/tests/test_metrics.py        (or: python3 -m unittest discover -s bench/tests)
"""
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import measure  # noqa: E402

SCRAPE = (Path(__file__).resolve().parent / "fixtures" / "metrics-scrape.txt").read_text()


class ParseExposition(unittest.TestCase):
    def test_a_real_scrape(self):
        s = measure.parse_exposition(SCRAPE)
        self.assertEqual(s['hitcore_http_requests_total{code="200"}'], 5)
        self.assertEqual(s['hitcore_http_requests_total{code="503"}'], 3)
        self.assertEqual(s["hitcore_shards"], 2)
        self.assertEqual(s['hitcore_http_request_duration_seconds_bucket{le="+Inf"}'], 9)
        self.assertEqual(s['hitcore_build_info{version="0.1.0"}'], 1)

    def test_garbage_is_refused(self):
        with self.assertRaises(ValueError):
            measure.parse_exposition("hitcore_shards{ 2\n")


class Series(unittest.TestCase):
    def scrape(self, ok, unavailable, incs, trips, up):
        return {
            'hitcore_http_requests_total{code="200"}': ok,
            'hitcore_http_requests_total{code="404"}': 0,
            'hitcore_http_requests_total{code="503"}': unavailable,
            'hitcore_http_unavailable_total{reason="redis_down"}': unavailable,
            "hitcore_redis_batch_increments_sum": incs,
            "hitcore_redis_batch_increments_count": trips,
            'hitcore_redis_up{shard="0"}': up[0],
            'hitcore_redis_up{shard="1"}': up[1],
        }

    def test_rates_coalescing_and_redis_up(self):
        scrapes = [
            (1.0, self.scrape(0, 0, 0, 0, (1, 1))),
            (2.0, self.scrape(1000, 0, 1000, 100, (1, 1))),
            (3.0, self.scrape(1000, 500, 1000, 100, (0, 1))),
            (4.5, self.scrape(1300, 500, 1300, 110, (1, 1))),
        ]
        s = measure.metrics_series(scrapes)
        self.assertEqual(s["t"], [2.0, 3.0, 4.5])
        self.assertEqual(s["rps"], {"200": [1000.0, 0.0, 200.0], "503": [0.0, 500.0, 0.0]})
        self.assertEqual(s["unavailable"], {"redis_down": [0.0, 500.0, 0.0]})
        self.assertEqual(s["coalescing"], [10.0, None, 30.0])
        self.assertEqual(s["redis_up"], [1.0, 0.5, 1.0])

    def test_a_restarted_counter_never_gives_a_negative_rate(self):
        s = measure.metrics_series([(1.0, self.scrape(10, 0, 10, 1, (1, 1))), (2.0, self.scrape(4, 0, 4, 1, (1, 1)))])
        self.assertEqual(s["rps"], {})


if __name__ == "__main__":
    unittest.main()
