"""Hostile clients beside a load: the kit/attackers.py process that a bench/compare variant's
`@attack=MODE:N` runs next to wrk, and what its counters say over wrk's run.

Owns starting the attacker, waiting until its pressure is in place (every slowloris connection
opened once, every idle connection answered and idle, every flood connect started), its counters
over a window and its stop by PID. It must not start servers or load generators (kit/compare.py
does) nor format a report (kit/compare_report.py).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import procs
from .procs import RunError, log

ATTACKERS = Path(__file__).resolve().with_name("attackers.py")
# What each mode's JSON counter lines say once its pressure is in place (see attackers.py).
READY = {
    "slowloris": lambda size, line: line.get("opened", 0) >= size,
    "idle": lambda size, line: bool(line.get("ready")),
    "flood": lambda size, line: bool(line.get("all_started")),
    "pipeline": lambda size, line: True,
}
SETTLE_S = 2.0  # after that, slowloris's and the flood's closing and reopening reach a steady state


class Attack:
    """One attackers.py process against 127.0.0.1:port, its counter lines in its log."""

    def __init__(self, mode: str, size: int, port: int, log_path: Path, max_seconds: float):
        self.mode, self.size = mode, size
        amount = ["--seconds", str(size)] if mode == "pipeline" else ["--conns", str(size)]
        argv = [sys.executable, str(ATTACKERS), mode, "--port", str(port), *amount, "--max-seconds", str(max_seconds)]
        self.service = procs.Service(f"attack-{mode}", argv, log_path)
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
        """Waits until the mode's pressure is in place, then SETTLE_S; returns the seconds it took.
        RunError when the attacker exits or the deadline passes first."""
        deadline = time.monotonic() + timeout
        while not any(READY[self.mode](self.size, line) for line in self.lines()):
            if not self.service.alive():
                raise RunError(f"the {self.mode} attacker exited: {self.service.log_text()[-300:]}")
            if time.monotonic() > deadline:
                last = (self.lines() or [{}])[-1]
                raise RunError(f"the {self.mode} attacker was not in place within {timeout:.0f}s: {json.dumps(last)}")
            time.sleep(0.2)
        took = time.monotonic() - self.started
        log(f"the {self.mode} attacker is in place after {took:.1f}s")
        time.sleep(SETTLE_S)
        return round(took, 1)

    def stop(self) -> list[dict]:
        if not self.stopped:
            self.stopped = True
            self.service.stop(grace=10)
        return self.lines()


def window(lines: list[dict], t0: float, t1: float) -> dict:
    """The attacker's counters over [t0, t1] (time.monotonic(), system-wide on Linux, as its own
    `t`): the average of each level (connections open, connecting, idle) and the growth of each total
    (opened, closed by the server, requests written ...), with the server's closes per second."""
    inside = [line for line in lines if t0 <= line["t"] <= t1]
    before = [line for line in lines if line["t"] <= t0]
    after = [line for line in lines if line["t"] >= t1]
    first = before[-1] if before else (inside[0] if inside else None)
    last = after[0] if after else (inside[-1] if inside else None)
    out: dict = {}
    for key in ("open", "connecting", "idle"):
        values = [line[key] for line in inside if key in line]
        if values:
            out[f"attack_{key}_avg"] = round(sum(values) / len(values), 1)
    if first and last:
        seconds = max(1e-9, last["t"] - first["t"])
        for key in ("opened", "closed_by_server", "connect_failed", "answers"):
            if key in last:
                out[f"attack_{key}"] = last[key] - first.get(key, 0)
        if "attack_closed_by_server" in out:
            out["attack_closed_per_s"] = round(out["attack_closed_by_server"] / seconds, 1)
    # The pipeline's totals: it writes until the server stops reading, mostly before wrk starts.
    for key in ("requests_written", "closed_after_s"):
        if lines and key in lines[-1]:
            out[f"attack_{key}"] = lines[-1][key]
    return out
