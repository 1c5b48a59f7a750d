"""Child processes: every one the kit starts is bounded in time and stopped by its PID. `run()` (a
command to completion under a timeout), `Service` (a long-running child in its own session, so a
Ctrl-C at the terminal reaches only the kit, which stops it: SIGTERM to its PID, then SIGKILL to it
and every descendant, by PID), `cleanup()` (every child still running, however a run ends), `log()`
(the "[  12.3s] ..." progress lines), and a process tree read from /proc (`descendants()`,
`cpu_seconds()`, `memory_kib()`; `TreeSampler`, its peak memory at ~10 Hz).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

START = time.monotonic()

# Every child still running, so that cleanup() can stop them whatever went wrong.
_LIVE: list["Service | subprocess.Popen"] = []
_LIVE_LOCK = threading.Lock()


def elapsed() -> float:
    return time.monotonic() - START


def log(message: str) -> None:
    """One progress line, prefixed with the seconds since the run started."""
    print(f"[{elapsed():6.1f}s] {message}", flush=True)


def _register(item) -> None:
    with _LIVE_LOCK:
        _LIVE.append(item)


def _unregister(item) -> None:
    with _LIVE_LOCK:
        if item in _LIVE:
            _LIVE.remove(item)


class RunError(Exception):
    """A measurement that could not be made; the run goes on with the next one."""


@dataclass
class Result:
    """What a bounded command did."""
    argv: list
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 5) -> str:
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL: always by the child's own PID."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def run(argv, timeout: float, label: str | None = None, cwd=None, env=None, tick: float = 5.0,
        output_path: Path | None = None, while_running=None) -> Result:
    """Runs argv to completion within `timeout` seconds and returns its output.

    With `label`, prints a progress line every `tick` seconds. With `output_path`, stdout and stderr
    go to that file (long outputs such as builds) instead of memory. `while_running(popen)` is called
    once the child started; the timeout counts its time, and an exception from it (or a signal
    handler's) still stops the child. It must return well before the child ends: a full pipe blocks
    the child meanwhile."""
    began = time.monotonic()
    out_file = open(output_path, "w") if output_path else None
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, text=True,
                                stdout=out_file or subprocess.PIPE,
                                stderr=subprocess.STDOUT if out_file else subprocess.PIPE)
    except OSError as error:
        if out_file:
            out_file.close()
        return Result(argv, 127, "", f"cannot start {argv[0]}: {error}", False, 0.0)
    _register(proc)
    timed_out, stdout, stderr = False, "", ""
    try:
        if while_running:
            while_running(proc)
        while True:
            remaining = began + timeout - time.monotonic()
            if remaining <= 0:
                timed_out = True
                _terminate(proc, grace=5)
                with contextlib.suppress(subprocess.TimeoutExpired, ValueError):  # a grandchild holds the pipe
                    stdout, stderr = proc.communicate(timeout=10)
                break
            try:
                stdout, stderr = proc.communicate(timeout=min(tick, remaining))
                break
            except subprocess.TimeoutExpired:
                if label:
                    log(f"{label} ... {time.monotonic() - began:.0f}s")
    finally:
        _terminate(proc, grace=2)
        _unregister(proc)
        for stream in (proc.stdout, proc.stderr):  # left open when an exception cut communicate() short
            if stream and not stream.closed:
                stream.close()
        if out_file:
            out_file.close()
    if out_file:
        stdout = Path(output_path).read_text(errors="replace")
    return Result(argv, proc.returncode, stdout or "", stderr or "", timed_out, time.monotonic() - began)


def proc_stat(pid) -> tuple[str, list[bytes]] | None:
    """/proc/PID/stat as (command name, the fields after it: state, ppid, pgrp, session, ...), None
    when the process has gone. The name may hold spaces and parentheses: the fields start after the
    last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace"), stat[stat.rfind(b")") + 2:].split()


def descendants(root: int) -> list[int]:
    """The PIDs of every live descendant of `root` (not root itself), found through /proc."""
    children: dict[int, list[int]] = {}
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        stat = proc_stat(pid)
        if stat and len(stat[1]) > 1:
            children.setdefault(int(stat[1][1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pids) -> float:
    """utime + stime of the given processes (all their threads) so far, in seconds; a process that
    has gone counts 0. The difference of two readings over a wall-clock window, times 100, is the
    % of one CPU the processes used in it."""
    stats = [s for s in map(proc_stat, pids) if s]
    return sum(int(f[11]) + int(f[12]) for _, f in stats) / os.sysconf("SC_CLK_TCK")  # proc(5)'s 14 and 15


def read(path: str, pattern: str | None = None) -> str | None:
    """A /proc (or any) file's text, stripped, or with `pattern` its first group (multi-line mode);
    None when unreadable (a process gone) or not matched. The kit's one reader of such files."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    match = re.search(pattern, text, re.M) if pattern else None
    return match.group(1).strip() if match else (None if pattern else text)


def memory_kib(pid: int, with_pss: bool = False) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) when it has gone."""
    pss = read(f"/proc/{pid}/smaps_rollup", r"^Pss:\s+(\d+)") if with_pss else None
    return int(read(f"/proc/{pid}/status", r"^VmRSS:\s+(\d+)") or 0), int(pss or 0)


class TreeSampler(threading.Thread):
    """Samples a process tree at ~10 Hz: peak summed RSS/PSS and the largest process count."""

    def __init__(self, root: int, pss: bool = True):
        super().__init__(daemon=True)
        self.root, self.pss = root, pss
        self.peak_rss_kib = self.peak_pss_kib = self.peak_processes = self._samples = 0
        self.known_pids: set[int] = set()
        self._tree: list[int] = []
        self._stop_event = threading.Event()

    def sample(self) -> None:
        # Finding the tree reads every /proc/N/stat: do it once a second (and whenever a known process
        # has gone), and read only the tree's own memory in between, so that the sampler takes almost
        # no CPU from the server it measures.
        self._samples += 1
        if self._samples % 10 == 1 or not all(os.path.exists(f"/proc/{p}") for p in self._tree):
            self._tree = [self.root] + descendants(self.root)
            self.known_pids.update(self._tree)
        memory = [memory_kib(pid, with_pss=self.pss) for pid in self._tree]
        self.peak_rss_kib = max(self.peak_rss_kib, sum(r for r, _ in memory))
        self.peak_pss_kib = max(self.peak_pss_kib, sum(p for _, p in memory))
        self.peak_processes = max(self.peak_processes, sum(1 for r, _ in memory if r))

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=3)


class Service:
    """A long-running child in its own session, with its output in a log file."""

    def __init__(self, name: str, argv, log_path: Path, env=None, cwd=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log_file = open(log_path, "w")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.sampler: TreeSampler | None = None
        _register(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start_sampling(self) -> None:
        self.sampler = TreeSampler(self.pid)
        self.sampler.start()

    def log_text(self) -> str:
        try:
            if not self._log_file.closed:
                self._log_file.flush()
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> int | None:
        """Stops the service and every process under it; returns its exit status."""
        if self.sampler:
            self.sampler.stop()
        # Remember the whole tree first: once the root is gone its children are re-parented.
        tree = set(descendants(self.pid)) if self.alive() else set()
        if self.sampler:
            tree |= self.sampler.known_pids - {self.pid}
        _terminate(self.proc, grace)
        # Children that outlived their parent (or a SIGKILLed parent): by PID, if still of our session.
        deadline = time.monotonic() + 5
        for pid in sorted(tree):
            while self._owns(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._owns(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log_file.close()
        _unregister(self)
        return self.proc.returncode

    def _owns(self, pid: int) -> bool:
        """Whether `pid` is a live process (not a zombie) of this service's session."""
        stat = proc_stat(pid)  # fields: state ppid pgrp session ...
        return bool(stat) and stat[1][0] != b"Z" and int(stat[1][3]) == self.pid


def cleanup() -> None:
    """Stops every child still running, newest first."""
    with _LIVE_LOCK:
        items = list(reversed(_LIVE))
    for item in items:
        try:
            if isinstance(item, Service):
                log(f"cleanup: stopping {item.name} (pid {item.pid})")
                item.stop(grace=5)
            else:
                _terminate(item, grace=2)
                _unregister(item)
        except Exception as error:  # keep cleaning up the others
            print(f"cleanup: {error}", file=sys.stderr)
