"""The processes a bench/hostile measurement runs, and what they say: the servers under attack
(hitcore or nginx, each with the sampler of its process tree) and the attackers (kit/attackers.py,
one process each, whose JSON counter lines are read back from their logs).

Every process is a procs.Service, stopped by PID. It measures nothing by itself: kit/hostile.py
decides what runs when; kit/measure.py reads /proc and ss.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from . import measure, procs, servers, session
from .procs import log

ATTACKERS = Path(__file__).resolve().with_name("attackers.py")


LOG_LINE = re.compile(r"^\[[^\]]+\] \[(\d+)\] \[([A-Z]+)\] (.*)$")


def analyse_log(text: str, shards: int) -> dict:
    """What hitcore's log says: warnings and errors (grouped, numbers replaced by N, one example
    each), connections closed at the cap, shard boots beyond the first ones, WORKER TIMEOUTs, and
    lines that are not in the log format at all (a panic message, say)."""
    groups: dict = {}
    evicted = boots = timeouts = 0
    stray: list[str] = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            if line.strip():
                stray.append(line.strip())
            continue
        level, message = m.group(2), m.group(3)
        if "Booting worker with pid" in message:
            boots += 1
        if "WORKER TIMEOUT" in message:
            timeouts += 1
        e = re.search(r"closed (\d+) connections that were idle or slow", message)
        if e:
            evicted += int(e.group(1))
        if level in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{level} " + re.sub(r"\d+", "N", message)
            group = groups.setdefault(key, {"level": level, "count": 0, "example": message})
            group["count"] += 1
    return {
        "evicted_at_cap": evicted, "shard_boots": boots, "shard_restarts": max(0, boots - shards),
        "worker_timeouts": timeouts, "notable": sorted(groups.values(), key=lambda g: -g["count"]),
        "stray_lines": stray[:20], "stray_count": len(stray),
    }


class Victim:
    """A server under attack, started and ready (servers.start), with the sampler of its process
    tree (hitcore's shards, or nginx's workers, are `shard_pids`); `stop()` returns what its log
    said. Subclasses give the spec."""

    kind = "server"

    def __init__(self, ctx, name: str, spec: servers.Spec):
        self.ctx, self.name, self.spec = ctx, name, spec
        log(f"{name}: starting {spec.title}")
        self.service = servers.start(spec, ctx.port, ctx.log_dir / f"{self.log_name}.log", name=self.log_name)
        try:
            self.shard_pids = self._workers()
        except session.RunError:
            self.service.stop()
            raise
        time.sleep(0.3)  # the readiness probe's connection is closed by now
        self.base_fds = {pid: measure.fd_count(pid) or 0 for pid in self.shard_pids}
        self.sampler = measure.Sampler(self.service.pid, self.ctx.port)
        self.sampler.start()

    def _workers(self) -> list[int]:
        return procs.descendants(self.service.pid)

    def tree(self) -> list[int]:
        return [self.service.pid] + procs.descendants(self.service.pid)

    def tree_rss(self) -> int:
        return sum(measure.rss_kib(p) for p in self.tree())

    def alive_check(self, what: str) -> None:
        if not self.service.alive():
            raise session.RunError(f"{self.kind} exited during {what} with status {self.service.proc.returncode}")
        gone = [p for p in self.shard_pids if not os.path.exists(f"/proc/{p}")]
        if gone:
            raise session.RunError(f"{self.kind} worker process(es) {gone} gone during {what}")

    def stop(self) -> dict:
        self.sampler.stop()
        began = time.monotonic()
        status = self.service.stop(grace=15)
        info = self.read_log(self.service.log_text())
        info.update(exit_status=status, stop_s=round(time.monotonic() - began, 1), log=f"logs/{self.log_name}.log")
        log(f"{self.name}: {self.kind} stopped (exit {status}, {info['stop_s']}s)")
        return info


class Hitcore(Victim):
    kind = "hitcore"

    def __init__(self, ctx, name: str, flags: list[str], shards: int):
        self.flags, self.shards, self.log_name = flags, shards, f"hitcore-{name}"
        argv = [str(ctx.hitcore), "-b", f"127.0.0.1:{ctx.port}"] + flags
        spec = servers.Spec(name, f"hitcore {' '.join(flags) or '(default flags)'}", argv,
                            env={"REDIS_URL": ctx.redis.url}, processes=1 + shards)
        super().__init__(ctx, name, spec)

    def _workers(self) -> list[int]:
        """Shard PIDs in shard order, from the "Booting worker" lines (else the children)."""
        found = {int(m.group(2)): int(m.group(1)) for m in
                 re.finditer(r"Booting worker with pid: (\d+) \(shard (\d+)", self.service.log_text())}
        pids = [found[i] for i in sorted(found) if os.path.exists(f"/proc/{found[i]}")]
        pids = pids if len(pids) == self.shards else procs.descendants(self.service.pid)
        if len(pids) != self.shards:
            raise session.RunError(f"expected {self.shards} shard processes, found {len(pids)}")
        return pids

    def read_log(self, text: str) -> dict:
        info = analyse_log(text, self.shards)
        info["argv"] = "hitcore " + " ".join(self.spec.argv[1:])
        log(f"{self.name}: {info['evicted_at_cap']} connections closed at the cap, "
            f"{len(info['notable'])} kinds of warning/error in the log")
        return info


class Nginx(Victim):
    """nginx's static `return 200` (kit/servers.py's config, one worker per CPU, limits sized for
    `connections` clients)."""
    kind = "nginx"

    def __init__(self, ctx, name: str, connections: int):
        self.log_name = name
        sctx = servers.Context(port=ctx.port, redis_url="", ncpu=ctx.ncpu, server_cpus=None, hitcore=None,
                               tmp=ctx.log_dir)
        spec = servers.nginx(sctx, connections=connections, folder=ctx.log_dir / f"{name}-prefix")
        self.config = (ctx.log_dir / f"{name}-prefix" / "nginx.conf").read_text()
        super().__init__(ctx, name, spec)

    def read_log(self, text: str) -> dict:
        groups: dict = {}
        for line in text.splitlines():
            m = re.search(r"\[(alert|crit|error|emerg|warn)\] \d+#\d+: (.*)$", line)
            if m:
                key = m.group(1) + " " + re.sub(r"\d+", "N", m.group(2))
                group = groups.setdefault(key, {"level": m.group(1), "count": 0, "example": m.group(2)})
                group["count"] += 1
        limits = {k: int(v) for k, v in re.findall(r"(worker_connections|worker_rlimit_nofile) (\d+);", self.config)}
        return {"argv": " ".join(self.spec.argv), "limits": limits,
                "notable": sorted(groups.values(), key=lambda g: -g["count"])}


class Attacker:
    """A kit/attackers.py process; its JSON counter lines are read from its log."""

    def __init__(self, ctx, name: str, mode: str, options: list[str]):
        self.name = name
        argv = [sys.executable, str(ATTACKERS), mode, "--port", str(ctx.port)] + options
        self.log_path = ctx.log_dir / f"{name}.log"
        self.service = procs.Service(name, argv, self.log_path)
        self.started = time.monotonic()
        self.final: list[dict] = []
        self.stopped = False

    def lines(self) -> list[dict]:
        out = []
        for line in self.service.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def last(self) -> dict:
        lines = self.lines()
        return lines[-1] if lines else {}

    def wait(self, predicate, timeout: float, what: str, quiet: bool = False) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in reversed(self.lines()):
                if predicate(line):
                    return line
            if not self.service.alive():
                raise session.RunError(f"{self.name} exited: {self.service.log_text()[-400:]}")
            time.sleep(0.2)
        if not quiet:
            log(f"{self.name}: {what} not reached within {timeout:.0f}s: {json.dumps(self.last())}")
        return None

    def cpu(self) -> float:
        return procs.cpu_seconds([self.service.pid]) if self.service.alive() else 0.0

    def stop(self) -> list[dict]:
        if self.stopped:
            return self.final
        self.stopped = True
        self.service.stop(grace=10)
        self.final = self.lines()
        tail = [l for l in self.service.log_text().splitlines() if l.strip() and not l.startswith("{")]
        if tail:
            log(f"{self.name}: said: {' | '.join(tail[-3:])}")
        return self.final


def window(lines: list[dict], t0: float, t1: float) -> dict:
    """An attacker's counters over [t0, t1]: averages of its levels, growth of its totals."""
    inside = [l for l in lines if t0 <= l["t"] <= t1]
    before = [l for l in lines if l["t"] <= t0]
    after = [l for l in lines if l["t"] >= t1]
    first = before[-1] if before else (inside[0] if inside else None)
    last = after[0] if after else (inside[-1] if inside else None)
    out: dict = {"samples": len(inside)}
    for key in ("open", "connecting", "idle"):
        values = [l[key] for l in inside if key in l]
        if values:
            out[f"{key}_avg"] = round(sum(values) / len(values), 1)
            out[f"{key}_min"] = min(values)
    if first and last:
        seconds = max(1e-9, last["t"] - first["t"])
        for key in ("opened", "closed_by_server", "connect_failed", "requests_sent", "answers"):
            if key in last:
                out[key] = last[key] - first.get(key, 0)
        if "closed_by_server" in out:
            out["closed_per_s"] = round(out["closed_by_server"] / seconds, 1)
        out["window_s"] = round(seconds, 2)
    return out
