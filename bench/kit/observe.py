"""bench/observe: hitcore's own metrics, scraped every second through a run with a Redis restart
(bench/README.md, *Metrics through a Redis restart*, says what it runs and what the chart shows).

Owns the exposition parser, the series drawn from hitcore's counters alone, the scraper thread
(bench/compare's @scrape uses it too) and the order of a run; kit/charts.py draws the PNG. Every
process started is stopped by PID at the end, on error and on Ctrl-C.
"""
from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from . import loadgen, machine, procs, provision, redisctl, servers, session
from .procs import log

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\d+)?$')


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text (0.0.4) to {'name{labels}': value}; comments and blank lines skipped."""
    samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if not match:
            raise ValueError(f"not a sample line: {line!r}")
        name, labels, value = match.groups()
        samples[name + (labels or "")] = float(value)
    return samples


def _family(samples: dict[str, float], name: str) -> dict[str, float]:
    """The samples of `name`, by their label set ('' for none)."""
    out = {}
    for key, value in samples.items():
        base, _, labels = key.partition("{")
        if base == name:
            out[labels.rstrip("}")] = value
    return out


def _label(labels: str, name: str) -> str:
    match = re.search(name + r'="([^"]*)"', labels)
    return match.group(1) if match else ""


def series(scrapes: list[tuple[float, dict[str, float]]]) -> dict:
    """Per-interval series from consecutive scrapes [(seconds since start, samples)]."""
    out = {"t": [], "rps": {}, "coalescing": [], "redis_up": [], "unavailable": {}}
    for (t0, a), (t1, b) in zip(scrapes, scrapes[1:]):
        dt = t1 - t0
        if dt <= 0:
            continue
        out["t"].append(round(t1, 3))
        for key, family, label in (("rps", "hitcore_http_requests_total", "code"),
                                   ("unavailable", "hitcore_http_unavailable_total", "reason")):
            before, after = ({_label(k, label): v for k, v in _family(x, family).items()} for x in (a, b))
            for name in sorted(set(before) | set(after)):
                out[key].setdefault(name, [])
            for name, values in out[key].items():
                values.append(round(max(after.get(name, 0) - before.get(name, 0), 0) / dt, 1))
        trips = b.get("hitcore_redis_batch_increments_count", 0) - a.get("hitcore_redis_batch_increments_count", 0)
        incs = b.get("hitcore_redis_batch_increments_sum", 0) - a.get("hitcore_redis_batch_increments_sum", 0)
        out["coalescing"].append(round(incs / trips, 2) if trips > 0 else None)
        up = list(_family(b, "hitcore_redis_up").values())
        out["redis_up"].append(round(sum(up) / len(up), 3) if up else None)
    # A status never seen in an interval is dropped from the chart.
    out["rps"] = {code: v for code, v in out["rps"].items() if any(v)}
    out["unavailable"] = {reason: v for reason, v in out["unavailable"].items() if any(v)}
    return out


class Scraper(threading.Thread):
    """GET /metrics every `interval` seconds until stopped; keeps (seconds since `t0`, samples)."""

    def __init__(self, port: int, t0: float, interval: float = 1.0):
        super().__init__(daemon=True)
        self.port, self.t0, self.interval = port, t0, interval
        self.scrapes: list[tuple[float, dict[str, float]]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def scrape(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            text = response.read().decode()
            if response.status != 200:
                raise ValueError(f"status {response.status}")
            self.scrapes.append((time.monotonic() - self.t0, parse_exposition(text)))
        except (OSError, ValueError, http.client.HTTPException) as error:
            self.errors.append(f"{time.monotonic() - self.t0:.1f}s: {error}")
        finally:
            conn.close()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            self.scrape()
            next_at += self.interval
            self._halt.wait(max(next_at - time.monotonic(), 0))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.scrape()


def parse_args(argv):
    p = session.arguments(
        "bench/observe", hitcore="hitcore binary (default: cargo build --release, then target/release/hitcore)",
        description="Runs wrk against hitcore with --metrics-bind, scrapes /metrics every second, restarts "
                    "Redis in the middle, and draws requests/s by status, the coalescing factor and Redis "
                    "up/down from the scrapes.")
    p.add_argument("--workers", type=int, default=2, help="hitcore -w (default 2)")
    p.add_argument("--concurrency", type=int, default=100, help="wrk -c (default 100)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    p.add_argument("--duration", type=int, default=20, help="wrk -d seconds (default 20)")
    p.add_argument("--down", type=float, default=3.0, help="seconds Redis stays stopped (default 3)")
    p.add_argument("--chart", type=Path, help="also copy the chart here (e.g. docs/observability-redis-restart.png)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.duration < 5 or args.down <= 0 or args.down >= args.duration / 2:
        print("bench/observe: --duration must be at least 5 and --down between 0 and half of it", file=sys.stderr)
        return 2
    return session.guard(run, args)


def run(args) -> int:
    started = datetime.datetime.now().astimezone()
    name = session.results_name(started, "-observe")
    out_dir = args.out.resolve()
    log_dir = out_dir / name / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # Without --hitcore, cargo build --release first (quick when it is up to date), as bench/run does.
    problem = provision.apt_packages(["redis-server", "wrk"], log_dir) or (
        None if args.hitcore else provision.hitcore(log_dir))
    hitcore = args.hitcore.resolve() if args.hitcore else provision.HITCORE_BINARY
    if problem:
        log(f"cannot run: {problem}")
        return 1

    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    ctx = servers.Context(port=redisctl.free_port(), redis_url=redis.url, ncpu=len(os.sched_getaffinity(0)),
                          server_cpus=None, hitcore=hitcore, tmp=log_dir)
    spec, port, metrics_port = servers.hitcore(ctx, args.workers), ctx.port, redisctl.free_port()
    spec.argv += ["--metrics-bind", f"127.0.0.1:{metrics_port}"]
    try:
        server = servers.start(spec, port, log_dir / "hitcore.log", name="hitcore")
    except procs.RunError as error:
        log(f"cannot run: {error}")
        return 1
    redis.set("hit", 0)  # the readiness probe's GET / counted
    log(f"hitcore -w {args.workers} on 127.0.0.1:{port}, metrics on :{metrics_port}, Redis on :{redis.port}")

    t0 = time.monotonic()
    scraper = Scraper(metrics_port, t0)
    scraper.start()
    events = []
    result = {}

    def load():
        result.update(loadgen.wrk(f"http://127.0.0.1:{port}/", args.threads, args.concurrency, args.duration,
                                  out_dir / name / "wrk.txt", f"wrk -c {args.concurrency} -d {args.duration}s"))

    wrk = threading.Thread(target=load, daemon=True)
    wrk.start()
    time.sleep(max(args.duration * 0.4 - (time.monotonic() - t0), 0))
    events.append({"t": round(time.monotonic() - t0, 2), "event": "redis stopped"})
    log("stopping Redis")
    redis.stop()
    time.sleep(args.down)
    redis = redisctl.RedisServer(log_dir, port=redis.port, password=redis.password, log_name="redis-server-2.log")
    redis.wait_ready()
    events.append({"t": round(time.monotonic() - t0, 2), "event": "redis started"})
    log("Redis started again")
    wrk.join(timeout=args.duration + 60)
    time.sleep(1.0)
    scraper.stop()
    counter = redis.get_int("hit")
    server.stop()
    redis.stop()

    data = {
        "name": name, "started": started.isoformat(timespec="seconds"), "machine": machine.describe(),
        "settings": {"workers": args.workers, "concurrency": args.concurrency, "threads": args.threads,
                     "duration": args.duration, "down": args.down},
        "events": events, "wrk": result, "counter_after_restart": counter,
        "scrape_errors": scraper.errors, "series": series(scraper.scrapes),
        "scrapes": [{"t": round(t, 3), "samples": s} for t, s in scraper.scrapes],
    }
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    log(f"wrote {json_path} ({len(scraper.scrapes)} scrapes, {len(scraper.errors)} failed)")
    venv_problem = provision.virtualenv("main", log_dir)
    if venv_problem:
        log(f"no chart: {venv_problem}")
        return 3
    png = out_dir / f"{name}.png"
    if session.chart("observe", [json_path, png], log_dir, timeout=120) is None:
        return 3
    log(f"wrote {png}")
    if args.chart:
        args.chart.write_bytes(png.read_bytes())
        log(f"copied the chart to {args.chart}")
    return 0
