"""What the kit reads about processes, sockets and the machine while a load runs, and when: the
steady window (`steady_window`, `window_reading`, `window_figures`), open descriptors, each
thread's run-queue wait and context switches, `ss -s`, the listen counters, and which binary a
variant ran. It starts no process but `ss`; the process tree itself is kit/procs.py's.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Callable

from . import machine, procs, redisctl


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


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
    return machine.cpu_times()[0] / os.sysconf("SC_CLK_TCK")


def window_reading(pids: dict[str, list[int]], redis=None, counter: str = "hit") -> dict:
    """One end of a steady window: the clock, the CPU seconds of each named group of processes (e.g.
    "redis", "server", "wrk") and of the whole machine, and with `redis` (a RedisServer) the counter
    and INFO commandstats' calls and usec. Two of them make `window_figures`."""
    r = {"t": time.monotonic(), "machine": machine_cpu_seconds(), "groups": list(pids)}
    r.update({name: procs.cpu_seconds(group) for name, group in pids.items()})
    if redis:
        with redis.client() as client:
            info = client.command("INFO", "commandstats")
            r["counter"] = int(client.command("GET", counter) or 0)
        r["calls"] = redisctl.parse_commandstats(info)
        r["usec"] = redisctl.parse_commandstats(info, "usec")
    return r


def window_figures(a: dict, b: dict, answered_rps: float | None = None) -> dict:
    """The steady window between two readings: each group's CPU as % of one CPU (`GROUP_cpu_pct`),
    the machine's and the rest of it (other work); where the readings have them, each group's
    run-queue wait in ms per second (`GROUP_wait`: seconds, run_delay's) and the server's context
    switches per second (`vol`, `nonvol`); and Redis's commands and batch size. The server's CPU per
    request is per increment, or for a server that counts nothing (nginx) per `answered_rps`."""
    window = b["t"] - a["t"]
    if window <= 0:
        return {}
    out = {"window_s": round(window, 2)}
    groups = tuple(b.get("groups", ("redis", "replica", "sentinels", "server", "wrk")))
    for key in groups + ("machine",):
        out[f"{key}_cpu_pct"] = round(100.0 * (b.get(key, 0) - a.get(key, 0)) / window, 1)
    ours = sum(b.get(k, 0) - a.get(k, 0) for k in groups)
    out["other_cpu_pct"] = round(100.0 * ((b["machine"] - a["machine"]) - ours) / window, 1)
    for key in [k for k in b if k.endswith("_wait") and k in a]:
        out[f"{key[:-5]}_runq_ms_per_s"] = round(1000.0 * (b[key] - a[key]) / window, 1)
    for key, name in (("vol", "server_voluntary_per_s"), ("nonvol", "server_nonvoluntary_per_s")):
        if key in a and key in b:
            out[name] = round((b[key] - a[key]) / window, 1)
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
    if out.get("server_cpu_us_per_request") is None and answered_rps and "server_cpu_pct" in out:
        out["server_cpu_us_per_request"] = round(out["server_cpu_pct"] * 1e4 / answered_rps, 2)
    return out


def binary_identity(path: str) -> str:
    """`path` (sha256 prefix, size, mtime UTC): which build a variant ran, beyond `--version`."""
    data = Path(path).read_bytes()
    stamp = datetime.datetime.fromtimestamp(Path(path).stat().st_mtime, datetime.timezone.utc)
    return f"{path} (sha256 {hashlib.sha256(data).hexdigest()[:12]}, {len(data):,} bytes, built {stamp:%Y-%m-%d %H:%M} UTC)"


def socket_summary() -> str | None:
    """The TCP line of `ss -s` (sockets by state), or None without ss."""
    return machine.first_line(["ss", "-s"], prefix="TCP:", timeout=5)


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
    return parse_netstat(procs.read("/proc/net/netstat") or "")


def parse_schedstat(text: str) -> tuple[int, int]:
    """A task's schedstat: (ns on a CPU, ns waiting in a run queue)."""
    run_ns, wait_ns, _slices = (int(x) for x in text.split()[:3])
    return run_ns, wait_ns


def tasks_of(pids) -> dict[int, int]:
    """{tid: pid} for every thread of the given processes, from /proc/PID/task."""
    out = {}
    for pid in pids:
        try:
            out.update({int(tid): pid for tid in os.listdir(f"/proc/{pid}/task") if tid.isdigit()})
        except OSError:
            continue
    return out


def run_delay(pids: list[int]) -> float:
    """Seconds the threads of `pids` have spent runnable but waiting for a CPU so far (schedstat):
    the direct measure of "behind a busy CPU". Threads gone meanwhile count 0."""
    total = 0
    for tid, pid in tasks_of(pids).items():
        try:
            total += parse_schedstat(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text())[1]
        except (OSError, ValueError):
            continue
    return total / 1e9


def switches_of(tids) -> dict[int, tuple[int, int]]:
    """{tid: (voluntary, nonvoluntary)} context switches so far, from /proc/TID/status: a thread
    that blocks (voluntary) or is preempted (nonvoluntary, other work on its CPU). A thread that
    has gone is left out."""
    out = {}
    for tid in tids:
        try:
            text = Path(f"/proc/{tid}/status").read_text()
        except OSError:
            continue
        counts = dict(re.findall(r"^(voluntary|nonvoluntary)_ctxt_switches:\s+(\d+)", text, re.M))
        out[tid] = (int(counts.get("voluntary", 0)), int(counts.get("nonvoluntary", 0)))
    return out


def switch_deltas(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
                  roles: dict[int, str]) -> dict[str, dict[str, int]]:
    """{role: {"voluntary": n, "nonvoluntary": n}} between two `switches_of` readings, over the
    threads present in both."""
    out: dict[str, dict[str, int]] = {}
    for tid in after.keys() & before.keys():
        sums = out.setdefault(roles.get(tid, "other"), {"voluntary": 0, "nonvoluntary": 0})
        sums["voluntary"] += after[tid][0] - before[tid][0]
        sums["nonvoluntary"] += after[tid][1] - before[tid][1]
    return out
