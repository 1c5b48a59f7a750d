"""Counting a running server's kernel crossings with `perf stat` (bench/syscalls): syscalls by name
and context switches, per thread, over exactly the window a load ran in. `Counter` attaches perf
with its events disabled, then enables and disables them through its control FIFO, each call
returning at perf's ack (why: bench/README.md, "Syscalls per request"); threads created after it
attached count in their parent's line. `parse()` reads perf's CSV, `aggregate()` folds threads into
the caller's roles ("server", "redis"), failed recvfrom/read/accept4 named `recvfrom:err` etc.
"""
from __future__ import annotations

import contextlib
import errno
import gzip
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from . import procs

# raw_syscalls:sys_enter counts every syscall once whatever its name: the total to check the
# per-name sum against (a syscall without its own tracepoint shows as the difference).
TOTAL = "raw_syscalls:sys_enter"
SWITCHES = "context-switches"
# The syscalls whose failures (ret < 0: EAGAIN, almost always) say something: a recv that found no
# data, an accept that found no connection. Counted on their exit tracepoints with a filter, and
# named `recvfrom:err` and so on: they are a part of `recvfrom`, not syscalls of their own.
FAILURES = ["recvfrom", "read", "accept4"]
EVENTS = [TOTAL, "syscalls:sys_enter_*", SWITCHES]


def event_args(failures=None) -> list[str]:
    """perf's -e (and --filter) arguments: the events, then each failure counter with its filter."""
    args = ["-e", ",".join(EVENTS)]
    for name in (FAILURES if failures is None else failures):
        args += ["-e", f"syscalls:sys_exit_{name}", "--filter", "ret < 0"]
    return args


class PerfError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Parsing (pure)

def _count(field: str) -> int | None:
    """A count field: an integer, or None for `<not counted>` (the thread never ran while the event
    was enabled) and `<not supported>`."""
    field = field.strip()
    if field.startswith("<"):
        return None
    return int(float(field)) if "." in field else int(field)


def parse(text: str) -> dict[str, dict[str, int]]:
    """perf stat's `-x,` output, with or without --per-thread, into {thread: {event: count}}.

    With --per-thread each line is `comm-tid,count,unit,event,runtime,percent,...`; without it
    `count,unit,event,...` and everything is under the thread label "all". Comments (`# started
    on ...`) and blank lines are skipped; `<not counted>` counts as 0 (the event was open but its
    thread did not run in the window). Raises PerfError when no count line is found."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields, thread = line.split(","), "all"
        # A count field is a number or <...>; a thread label (comm-tid) is neither.
        first = fields[0].strip()
        if not (first.startswith("<") or first.replace(".", "", 1).isdigit()):
            thread, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        count, event = fields[0], fields[2]
        try:
            value = _count(count)
        except ValueError:
            continue  # not a count line (perf's own messages, if they ever land in the file)
        out.setdefault(thread.strip(), {})[event.strip()] = value or 0
    if not out:
        raise PerfError("no counts in perf stat's output")
    return out


def thread_id(label: str) -> int | None:
    """`hitcore-shard0-4242` -> 4242 (a thread's comm may itself contain dashes); "all" -> None."""
    head, sep, tail = label.rpartition("-")
    return int(tail) if sep and tail.isdigit() else None


def syscall_name(event: str) -> str:
    """`syscalls:sys_enter_recvfrom` -> `recvfrom`; the total and context switches keep a short
    name of their own (`total`, `context-switches`)."""
    if event == TOTAL:
        return "total"
    prefix = "syscalls:sys_enter_"
    if event.startswith(prefix):
        return event[len(prefix):]
    failed = "syscalls:sys_exit_"
    return event[len(failed):] + ":err" if event.startswith(failed) else event


def is_syscall(name: str) -> bool:
    """Whether a short name counts syscalls of its own (not the total, context switches or a
    `:err` part of another)."""
    return name not in ("total", SWITCHES) and not name.endswith(":err") and not name.startswith("cs-")


def aggregate(threads: dict[str, dict[str, int]], roles: dict[int, str]) -> dict[str, dict[str, int]]:
    """Sums threads into roles: {role: {name: count}} with short names (`syscall_name`), zero
    counts dropped. `roles` maps a tid to its role; a thread not in it goes to "other"."""
    out: dict[str, dict[str, int]] = {}
    for label, events in threads.items():
        tid = thread_id(label)
        role = roles.get(tid, "other") if tid is not None else "all"
        sums = out.setdefault(role, {})
        for event, count in events.items():
            if count:
                name = syscall_name(event)
                sums[name] = sums.get(name, 0) + count
    return out


def compress(path: Path) -> Path:
    """Replaces `path` with `path.gz` (perf's output is ~365 mostly-zero lines per thread)."""
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(target, "wb") as dst:
        dst.write(src.read())
    path.unlink()
    return target


# ---------------------------------------------------------------------------------------------
# Running perf

class Counter:
    """One perf stat attached to `pids` with its events disabled (a procs.Service, so a run cut
    short stops it too); see the module docstring."""

    def __init__(self, pids, output: Path):
        self.output = output
        self._dir = Path(tempfile.mkdtemp(prefix="hitcore-perf-"))
        self._ctl_path, self._ack_path = self._dir / "ctl", self._dir / "ack"
        os.mkfifo(self._ctl_path)
        os.mkfifo(self._ack_path)
        # O_RDWR: the ack FIFO then never reads as end-of-file before perf opens it for writing.
        self._ack = os.open(self._ack_path, os.O_RDWR | os.O_NONBLOCK)
        self._ctl: int | None = None
        self._said = ""
        argv = ["perf", "stat", "-x,", "--per-thread", "-D", "-1",
                "--control", f"fifo:{self._ctl_path},{self._ack_path}",
                "-o", str(output), "-p", ",".join(str(p) for p in pids)] + event_args()
        self.service = procs.Service("perf-stat", argv, self._dir / "perf.log")
        self.proc = self.service.proc

    def _perf_said(self) -> str:
        """What perf printed (its errors), the last of it."""
        lines = self.service.log_text().splitlines() if self._dir.exists() else []
        return " | ".join(line.strip() for line in lines if line.strip())[-400:] or self._said

    def _command(self, word: str, timeout: float) -> float:
        """Sends a control command and waits for perf's ack; returns the seconds it took."""
        began = time.monotonic()
        deadline = began + timeout
        while self._ctl is None:
            if self.proc.poll() is not None:
                raise PerfError(f"perf stat exited ({self.proc.returncode}): {self._perf_said()}")
            try:
                self._ctl = os.open(self._ctl_path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:  # ENXIO: perf has not opened it for reading yet
                    raise
                if time.monotonic() > deadline:
                    raise PerfError(f"perf stat did not open its control FIFO within {timeout:.0f}s")
                time.sleep(0.1)
        os.write(self._ctl, f"{word}\n".encode())
        got = b""
        while b"ack" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PerfError(f"perf stat did not acknowledge '{word}' within {timeout:.0f}s")
            if self.proc.poll() is not None:
                raise PerfError(f"perf stat exited ({self.proc.returncode}): {self._perf_said()}")
            ready, _, _ = select.select([self._ack], [], [], min(left, 1.0))
            if ready:
                got += os.read(self._ack, 64)
        return time.monotonic() - began

    def enable(self) -> float:
        """Returns once counting is on: perf has opened every event (the seconds that took)."""
        return self._command("enable", 600)

    def disable(self) -> float:
        return self._command("disable", 60)

    def stop(self, timeout: float = 300.0) -> str:
        """Stops perf (SIGINT: it writes its counts and exits) and returns its output file's text."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise PerfError(f"perf stat did not exit within {timeout:.0f}s of SIGINT") from None
        finally:
            self.close()
        try:
            return self.output.read_text()
        except OSError as error:
            raise PerfError(f"perf stat wrote no output: {error}; it said: {self._perf_said()}")

    def close(self) -> None:
        """Stops perf if it still runs (SIGTERM, then SIGKILL) and removes the FIFOs (safe twice)."""
        if self._dir.exists():
            self._said = self._perf_said()
        self.service.stop(grace=5)
        for fd in (self._ctl, self._ack):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ctl = self._ack = None
        shutil.rmtree(self._dir, ignore_errors=True)
