"""Slowloris beside a load: the kit/slowloris.py process that a bench/compare variant's
`@attack=slowloris:N` runs next to wrk, and what its counters say over wrk's run.

Owns starting the attacker, waiting until its pressure is in place (every connection opened once),
its counters over a window and its stop by PID. It must not start servers or load generators
(kit/compare.py does) nor format a report (kit/compare_report.py).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import procs
from .procs import RunError, log

SLOWLORIS = Path(__file__).resolve().with_name("slowloris.py")
SETTLE_S = 2.0  # after that, the closing and reopening reach a steady state


class Attack:
    """One slowloris.py process against 127.0.0.1:port, its counter lines in its log."""

    def __init__(self, size: int, port: int, log_path: Path, max_seconds: float):
        self.size = size
        argv = [sys.executable, str(SLOWLORIS), "--port", str(port), "--conns", str(size),
                "--max-seconds", str(max_seconds)]
        self.service = procs.Service("attack-slowloris", argv, log_path)
        self.pid, self.started = self.service.pid, time.monotonic()
        self.stopped = False

    def lines(self) -> list[dict]:
        out = []
        for line in self.service.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line being written as we read
        return out

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Waits until every connection was opened once, then SETTLE_S; returns the seconds it took.
        RunError when the attacker exits or the deadline passes first."""
        deadline = time.monotonic() + timeout
        while not any(line.get("opened", 0) >= self.size for line in self.lines()):
            if not self.service.alive():
                raise RunError(f"the attacker exited: {self.service.log_text()[-300:]}")
            if time.monotonic() > deadline:
                last = (self.lines() or [{}])[-1]
                raise RunError(f"the attacker was not in place within {timeout:.0f}s: {json.dumps(last)}")
            time.sleep(0.2)
        took = time.monotonic() - self.started
        log(f"the attacker is in place after {took:.1f}s")
        time.sleep(SETTLE_S)
        return round(took, 1)

    def stop(self) -> list[dict]:
        if not self.stopped:
            self.stopped = True
            self.service.stop(grace=10)
        return self.lines()


def window(lines: list[dict], t0: float, t1: float) -> dict:
    """The attacker's counters over [t0, t1] (time.monotonic(), system-wide on Linux, as its own
    `t`): the average of the connections open, the growth of each total (opened, closed by the
    server ...), and the server's closes per second."""
    inside = [line for line in lines if t0 <= line["t"] <= t1]
    before = [line for line in lines if line["t"] <= t0]
    after = [line for line in lines if line["t"] >= t1]
    first = before[-1] if before else (inside[0] if inside else None)
    last = after[0] if after else (inside[-1] if inside else None)
    out: dict = {}
    if inside:
        out["attack_open_avg"] = round(sum(line["open"] for line in inside) / len(inside), 1)
    if first and last:
        seconds = max(1e-9, last["t"] - first["t"])
        for key in ("opened", "closed_by_server", "connect_failed"):
            if key in last:
                out[f"attack_{key}"] = last[key] - first.get(key, 0)
        if "attack_closed_by_server" in out:
            out["attack_closed_per_s"] = round(out["attack_closed_by_server"] / seconds, 1)
    return out
