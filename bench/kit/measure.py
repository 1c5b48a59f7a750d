"""What the kit reads about processes, sockets and the machine while a load runs: /proc (RSS, open
descriptors, CPU of the whole machine and of everything else on it, run-queue waits), `ss` (accept
and socket queues), /proc/net/netstat's listen counters, the two background observers
bench/hostile runs beside a load (the memory/descriptor/queue sampler and the new-connection prober),
when a load is steady (`steady_window`: the two readings bench/compare and bench/tail take), and
hitcore's own /metrics (bench/compare's @scrape: the scraper thread, the parser, the series).

Reads only: it starts no process but `ss` and opens no connection but the prober's and the
scraper's. The process tree itself (descendants, CPU seconds of a set of PIDs) is kit/procs.py's.
"""
from __future__ import annotations

import datetime
import hashlib
import http.client
import os
import re
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from . import machine, perfstat, procs, redisctl


def rss_kib(pid: int) -> int:
    return procs.memory_kib(pid)[0]


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class OtherLoad:
    """CPU used by processes outside this run (not this script nor its descendants, nor kernel
    threads) between start() and stop(), in % of one core: a fuzzer or a build running beside the
    measurement. Processes that start meanwhile count in full; ones that exit meanwhile are missed."""

    def __init__(self):
        self.began = time.monotonic()
        self.ticks = self._snapshot()

    @staticmethod
    def _snapshot() -> dict:
        ours = {os.getpid(), *procs.descendants(os.getpid())}
        stats = {pid: procs.proc_stat(pid) for pid in procs.all_pids() if pid not in ours and pid != 2}
        return {pid: (int(f[11]) + int(f[12]), name) for pid, (name, f) in
                ((pid, s) for pid, s in stats.items() if s) if int(f[1]) != 2}  # not kernel threads

    def stop(self) -> dict:
        seconds = max(1e-6, time.monotonic() - self.began)
        now = self._snapshot()
        used: dict = {}
        for pid, (ticks, name) in now.items():
            delta = ticks - self.ticks.get(pid, (0, name))[0]
            if delta > 0:
                used[name] = used.get(name, 0) + delta
        hz = os.sysconf("SC_CLK_TCK")
        total = round(100 * sum(used.values()) / hz / seconds, 1)
        top = sorted(used.items(), key=lambda kv: -kv[1])[:3]
        return {"pct": total, "top": [f"{name} {100 * t / hz / seconds:.0f} %" for name, t in top
                                      if 100 * t / hz / seconds >= 1]}


def accept_queue(port: int) -> int | None:
    """Connections waiting in the accept queues of every listener on the port (ss's Recv-Q)."""
    try:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return None
    total = None
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 2 and cols[1].isdigit():
            total = (total or 0) + int(cols[1])
    return total


def socket_queues(port: int, client_port: int) -> list[dict]:
    """Both ends of one loopback connection: bytes waiting in each one's receive and send queues."""
    expr = f"( sport = :{port} and dport = :{client_port} ) or ( sport = :{client_port} and dport = :{port} )"
    try:
        out = subprocess.run(["ss", "-Htn", expr], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return []
    ends = []
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[1].isdigit() and cols[2].isdigit():
            side = "server" if cols[3].endswith(f":{port}") else "client"
            ends.append({"side": side, "state": cols[0], "recv_q": int(cols[1]), "send_q": int(cols[2])})
    return sorted(ends, key=lambda e: e["side"], reverse=True)


def median_rss(pid: int, samples: int = 5, every: float = 0.1) -> int:
    values = []
    for _ in range(samples):
        values.append(rss_kib(pid))
        time.sleep(every)
    return int(statistics.median(values))


class Sampler(procs.TreeSampler):
    """hitcore's process tree at 10 Hz (RSS per process, kept), and once a second each shard's open
    fds and the listeners' accept queue. Everything is kept with its time.monotonic() for windows."""

    def __init__(self, root: int, port: int, interval: float = 0.1):
        super().__init__(root, interval, pss=False, series=True)
        self.port = port
        self.fds: list[tuple[float, dict]] = []    # (t, {pid: open fds}) for the shards
        self.queue: list[tuple[float, int]] = []   # (t, accept queue)

    def sample(self) -> list[int]:
        pids = super().sample()
        if self._samples % 10 == 1:
            now = time.monotonic()
            self.fds.append((now, {pid: fd_count(pid) for pid in pids[1:]}))
            q = accept_queue(self.port)
            if q is not None:
                self.queue.append((now, q))
        return pids

    def peak_tree_rss(self, t0: float, t1: float) -> int | None:
        values = [sum(v.values()) for t, v in self.rss if t0 <= t <= t1]
        return max(values) if values else None

    def peak_rss(self, pid: int, t0: float, t1: float) -> int | None:
        values = [v.get(pid, 0) for t, v in self.rss if t0 <= t <= t1 and v.get(pid)]
        return max(values) if values else None

    def held(self, base: dict, t0: float, t1: float) -> dict:
        """Connections the shards held (open fds less those at rest), average and maximum."""
        totals = []
        for t, v in self.fds:
            if t0 <= t <= t1:
                totals.append(sum(max(0, (n or 0) - base.get(pid, 0)) for pid, n in v.items() if n is not None))
        return avg_max(totals)

    def accept_queue(self, t0: float, t1: float) -> dict:
        return avg_max([q for t, q in self.queue if t0 <= t <= t1])


def avg_max(values: list) -> dict:
    if not values:
        return {"avg": None, "max": None, "samples": 0}
    return {"avg": round(sum(values) / len(values), 1), "max": max(values), "samples": len(values)}


PROBE_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_head(conn: socket.socket) -> bytes:
    """Reads from `conn` until an answer's head is complete or the peer closes: what arrived."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def probe_once(port: int, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """One new connection, one GET /: (status, None) or (None, what went wrong)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(PROBE_REQUEST)
            data = read_head(s)
    except socket.timeout:
        return None, "timeout"
    except ConnectionRefusedError:
        return None, "refused"
    except ConnectionResetError:
        return None, "reset"
    except OSError as error:
        return None, type(error).__name__
    try:
        return int(data.split(b"\r\n", 1)[0].split()[1]), None
    except (IndexError, ValueError):
        return None, "no answer" if not data else "bad answer"


class Prober(threading.Thread):
    """A new connection every `every` seconds, one GET / each: (t, status, latency s, error)."""

    def __init__(self, port: int, every: float = 0.25, timeout: float = 5.0):
        super().__init__(daemon=True)
        self.port, self.every, self.timeout = port, every, timeout
        self.results: list[tuple[float, int | None, float, str | None]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            began = time.monotonic()
            status, error = probe_once(self.port, self.timeout)
            self.results.append((began, status, time.monotonic() - began, error))
            self._stop_event.wait(max(0.0, self.every - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.timeout + 2)


def probe_summary(results, t0: float | None = None, t1: float | None = None) -> dict:
    """Probes started in [t0, t1]: how many got a 200, their latency, the longest wait for one."""
    picked = [r for r in results if (t0 is None or r[0] >= t0) and (t1 is None or r[0] <= t1)]
    ok = [r for r in picked if r[1] == 200]
    errors: dict = {}
    for _, status, _, error in picked:
        if status != 200:
            key = error or f"HTTP {status}"
            errors[key] = errors.get(key, 0) + 1
    latencies = sorted(r[2] * 1000 for r in ok)
    # The longest time without a 200 answer: between window start, each answer's end, window end.
    ends = sorted(r[0] + r[2] for r in ok)
    gap = None
    if picked:
        start = t0 if t0 is not None else picked[0][0]
        stop = t1 if t1 is not None else max(r[0] + r[2] for r in picked)
        points = [start] + [e for e in ends if start <= e <= stop] + [stop]
        gap = round(max(b - a for a, b in zip(points, points[1:])) * 1000, 1) if len(points) > 1 else None
    return {
        "sent": len(picked), "ok": len(ok), "errors": errors,
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "longest_gap_ms": gap,
    }


def steady_window(duration: float, warm: float, margin: float, read) -> tuple[list, Callable]:
    """A load generator's `while_running` hook that takes `read(proc)` twice, `warm` s after the load
    started and `margin` s before its end: its steady part, every connection open and none closing
    yet. Returns the list the two readings go into, and the hook."""
    marks: list = []

    def sample(proc) -> None:
        t0 = time.monotonic()
        time.sleep(warm)
        marks.append(read(proc))
        time.sleep(max(0.1, t0 + duration - margin - time.monotonic()))
        marks.append(read(proc))
    return marks, sample


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (every CPU, idle and iowait excluded), in seconds."""
    return machine.cpu_times()["cpu"][0] / os.sysconf("SC_CLK_TCK")


def window_reading(pids: dict[str, list[int]], redis=None, counter: str = "hit") -> dict:
    """One end of a steady window: the clock, the CPU seconds of each named group of processes (e.g.
    "redis", "server", "wrk") and of the whole machine, and with `redis` (a RedisServer) the counter
    and INFO commandstats' calls and usec. Two of them make `window_figures`."""
    r = {"t": time.monotonic(), "machine": machine_cpu_seconds()}
    r.update({name: procs.cpu_seconds(group) for name, group in pids.items()})
    if redis:
        with redis.client() as client:
            info = client.command("INFO", "commandstats")
            r["counter"] = int(client.command("GET", counter) or 0)
        r["calls"] = redisctl.parse_commandstats(info)
        r["usec"] = redisctl.parse_commandstats_usec(info)
    return r


def window_figures(a: dict, b: dict) -> dict:
    """The steady window between two readings: CPU as % of one CPU, Redis's commands and batch size."""
    window = b["t"] - a["t"]
    if window <= 0:
        return {}
    out = {"window_s": round(window, 2)}
    for key in ("redis", "replica", "sentinels", "server", "wrk", "machine"):
        out[f"{key}_cpu_pct"] = round(100.0 * (b.get(key, 0) - a.get(key, 0)) / window, 1)
    ours = sum(b.get(k, 0) - a.get(k, 0) for k in ("redis", "replica", "sentinels", "server", "wrk"))
    out["other_cpu_pct"] = round(100.0 * ((b["machine"] - a["machine"]) - ours) / window, 1)
    if "counter" in a and "counter" in b:
        served = b["counter"] - a["counter"]
        calls = {k: b["calls"].get(k, 0) - a["calls"].get(k, 0) for k in ("incr", "incrby", "wait")}
        out.update(window_increments=served, window_rps=round(served / window, 1),
                   incr_calls=calls["incr"], incrby_calls=calls["incrby"], wait_calls=calls["wait"])
        commands = calls["incr"] + calls["incrby"]
        out["requests_per_command"] = round(served / commands, 1) if commands else None
        out["commands_per_s"] = round(commands / window, 1)
        redis_s = b["redis"] - a["redis"]
        out["redis_cpu_us_per_command"] = round(1e6 * redis_s / commands, 2) if commands else None
        out["redis_cpu_pct_per_100k_rps"] = round(100.0 * redis_s / served * 1e5, 2) if served else None
        # The server's CPU per request: on a shared machine a steadier figure than req/s, which
        # moves with whatever else runs (the server gets less CPU; it needs no more per request).
        server_s = b["server"] - a["server"]
        out["server_cpu_us_per_request"] = round(1e6 * server_s / served, 2) if served else None
        exec_us = sum(b["usec"].get(k, 0) - a["usec"].get(k, 0) for k in ("incr", "incrby", "wait"))
        out["redis_exec_us_per_command"] = round(exec_us / commands, 2) if commands else None
    return out



def binary_identity(path: str) -> str:
    """`path` (sha256 prefix, size, mtime UTC): which build a variant ran, beyond `--version`."""
    data = Path(path).read_bytes()
    stamp = datetime.datetime.fromtimestamp(Path(path).stat().st_mtime, datetime.timezone.utc)
    return f"{path} (sha256 {hashlib.sha256(data).hexdigest()[:12]}, {len(data):,} bytes, built {stamp:%Y-%m-%d %H:%M} UTC)"


def socket_summary() -> str | None:
    """The TCP line of `ss -s` (sockets by state), or None without ss."""
    try:
        out = subprocess.run(["ss", "-s"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((line.strip() for line in out.splitlines() if line.startswith("TCP:")), None)


LISTEN_COUNTERS = {"ListenOverflows": "listen_overflows", "ListenDrops": "listen_drops"}


def parse_netstat(text: str) -> dict[str, int]:
    """/proc/net/netstat's TcpExt counters named in LISTEN_COUNTERS, by our names."""
    lines = text.splitlines()
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:]))
            return {ours: int(row[k]) for k, ours in LISTEN_COUNTERS.items() if k in row}
    return {}


def listen_counters() -> dict[str, int]:
    try:
        return parse_netstat(Path("/proc/net/netstat").read_text())
    except OSError:
        return {}


def parse_schedstat(text: str) -> tuple[int, int]:
    """A task's schedstat: (ns on a CPU, ns waiting in a run queue)."""
    run_ns, wait_ns, _slices = (int(x) for x in text.split()[:3])
    return run_ns, wait_ns


def read_tasks(pids: list[int]) -> dict[int, dict]:
    """For every thread of the given processes: ns on a CPU and waiting in a run queue (schedstat).
    Threads gone meanwhile are skipped."""
    out = {}
    for tid, pid in perfstat.tasks_of(pids).items():
        try:
            run_ns, wait_ns = parse_schedstat(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text())
        except (OSError, ValueError):
            continue
        out[tid] = {"pid": pid, "run_ns": run_ns, "wait_ns": wait_ns}
    return out


def run_delay(pids: list[int]) -> float:
    """Seconds the threads of `pids` have spent runnable but waiting for a CPU so far: the direct
    measure of "behind a busy CPU"."""
    return sum(t["wait_ns"] for t in read_tasks(pids).values()) / 1e9


# hitcore's /metrics: the exposition parser, the series drawn from its counters alone (bench/compare's
# @scrape and @redis-restart; kit/charts.py's redis-restart chart) and the scraper thread.

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


def metrics_series(scrapes: list[tuple[float, dict[str, float]]]) -> dict:
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
