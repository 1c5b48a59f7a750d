"""User-space instructions per request with callgrind, for `bench/syscalls --instructions` (how:
bench/README.md): the server's command line under callgrind (`wrap`), its processes' counters
zeroed and dumped (`zero`, `dump`: callgrind_control) and each one's newest dump read
(`read_totals`: Ir in its own code and libraries, not the kernel's). Callgrind runs ~50× slower, so
batches are larger than at full speed: compare servers under the same tool only.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import procs


def wrap(argv: list[str], out_dir: Path) -> list[str]:
    """The server's command line under callgrind, one output file per process in `out_dir`."""
    return ["valgrind", "--tool=callgrind", "--trace-children=yes", "--dump-instr=no",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p"] + argv


def _control(flag: str, pids, timeout: float = 120) -> list[int]:
    """Runs `callgrind_control FLAG PID` for each pid; returns the pids it reached."""
    reached = []
    for pid in pids:
        result = procs.run(["callgrind_control", flag, str(pid)], timeout=timeout)
        if result.ok and "OK" in result.stdout:
            reached.append(pid)
    return reached


def zero(pids) -> list[int]:
    return _control("-z", pids)


def dump(pids) -> list[int]:
    return _control("-d", pids)


def parse_totals(text: str) -> int | None:
    """A callgrind output's instruction count: its `summary:` line (the run's total; the `totals:`
    line at the end, the sum of the cost lines, is the fallback), first event (Ir)."""
    for key in ("summary", "totals"):
        match = re.search(rf"^{key}:\s+(\d+)", text, re.M)
        if match:
            return int(match.group(1))
    return None


def newest_dumps(out_dir: Path, pids) -> dict[int, Path]:
    """{pid: its newest numbered dump file} (`callgrind.out.<pid>.<n>`, largest n)."""
    found: dict[int, tuple[int, Path]] = {}
    for path in out_dir.glob("callgrind.out.*.*"):
        match = re.fullmatch(r"callgrind\.out\.(\d+)\.(\d+)", path.name)
        if not match:
            continue
        pid, n = int(match.group(1)), int(match.group(2))
        if pid in pids and (pid not in found or n > found[pid][0]):
            found[pid] = (n, path)
    return {pid: path for pid, (_, path) in found.items()}


def read_totals(out_dir: Path, pids) -> dict[int, int]:
    """{pid: instructions} from each process's newest dump."""
    out = {}
    for pid, path in newest_dumps(out_dir, set(pids)).items():
        total = parse_totals(path.read_text(errors="replace"))
        if total is not None:
            out[pid] = total
    return out
