"""The machine a run happened on, the version of every program in it (read or asked of the program
at run time, never guessed), and the few machine settings a run reads or lifts (`sysctl()`,
`raise_open_files_limit()`), shared by bench/run, bench/compare and bench/device/run16.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import resource
import socket
import subprocess
import time
from pathlib import Path

from . import procs, provision


def first_line(argv: list[str], prefix: str = "", timeout: float = 20) -> str | None:
    """The first non-empty line (starting with `prefix`) a command prints, stdout or stderr; or None."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (line.strip() for line in (out.stdout + "\n" + out.stderr).splitlines())
    return next((line for line in lines if line and line.startswith(prefix)), None)


def cpu_list(cpus) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts: list[list[int]] = []
    for cpu in sorted(cpus):
        if parts and parts[-1][1] == cpu - 1:
            parts[-1][1] = cpu
        else:
            parts.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def cpu_times(text: str | None = None) -> tuple[int, int]:
    """/proc/stat's `cpu` line (every CPU) as (busy, total) clock ticks; idle and iowait are not busy.
    The kit's one reader of /proc/stat."""
    line = (Path("/proc/stat").read_text() if text is None else text).splitlines()[0]
    ticks = [int(x) for x in line.split()[1:9]]
    return sum(ticks) - sum(ticks[3:5]), sum(ticks)


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The CPUs' busy share between two cpu_times readings, in %; None when no tick passed."""
    ticks = after[1] - before[1]
    return round(100.0 * (after[0] - before[0]) / ticks, 1) if ticks > 0 else None


def cpu_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy all CPUs are right now (0-100 %), over `seconds`: before a run starts this is other
    work competing with the benchmark."""
    try:
        before = cpu_times()
        time.sleep(seconds)
        return busy_percent(before, cpu_times())
    except (OSError, ValueError, IndexError):
        return None


def sysctl(name: str) -> str | None:
    """A kernel setting by its sysctl name ("net.core.somaxconn"), tabs as spaces; None if unreadable."""
    value = procs.read("/proc/sys/" + name.replace(".", "/"))
    return value and value.replace("\t", " ")


def raise_open_files_limit() -> tuple[int, int]:
    """ab/wrk at c=500, Redis with thousands of clients: lifts the soft open-files limit to the hard
    one (65536 when the hard one is unlimited). Returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (65536 if hard == resource.RLIM_INFINITY else hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def limits(nofile: tuple[int, int]) -> dict:
    """What bounds a many-connection run, for its report: the open-files limits (soft, hard) given,
    and the listen and port sysctls by their last name (somaxconn, tcp_max_syn_backlog, ...)."""
    return {"nofile_soft": nofile[0], "nofile_hard": nofile[1],
            **{k.split(".")[-1]: sysctl(k) for k in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
                                                     "net.ipv4.tcp_syncookies", "net.ipv4.ip_local_port_range")}}


def describe() -> dict:
    """The machine: hostname, kernel, arch, CPUs (online, allowed, model), memory, OS, glibc,
    Python, the CPU frequency governor, and the load average when it was called."""
    memory = procs.read("/proc/meminfo", r"^MemTotal:\s+(\d+) kB")
    return {"hostname": socket.gethostname(), "kernel": platform.release(), "arch": platform.machine(),
            "cpus_online": os.cpu_count(), "cpus_allowed": cpu_list(os.sched_getaffinity(0)),
            "cpu_model": procs.read("/proc/cpuinfo", r"^model name\s*:\s*(.+)$") or "unknown",
            "memory_gib": memory and round(int(memory) / 1024 / 1024, 1),
            "os": procs.read("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)') or "unknown",
            "glibc": os.confstr("CS_GNU_LIBC_VERSION"), "python": platform.python_version(),
            "governor": procs.read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "not exposed",
            "loadavg": procs.read("/proc/loadavg")}


def _venv_versions(name: str, packages: list[str]) -> str | None:
    """"python 3.x, pkg version, ..." of one of the kit's virtualenvs, from its packages' metadata."""
    folder = provision.VENVS[name][0]
    sites = [str(p) for p in folder.glob("lib/python*/site-packages")]
    if not sites:
        return None
    found = {d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions(path=sites)}
    python = first_line([str(provision.venv_python(name)), "--version"]) or "python ?"
    return ", ".join([python] + [f"{p} {found[p]}" for p in packages if p in found])


def versions(hitcore: Path | None, redis_version: str | None) -> dict:
    """Versions of every server and tool, as each reports itself."""
    v = {"python (system, runs the kit)": platform.python_version(),
         "bench/.venv": _venv_versions("main", ["gunicorn", "flask", "redis", "gevent", "tornado"]),
         "bench/.venv-eventlet": _venv_versions("eventlet", ["gunicorn", "eventlet", "flask", "redis"])}
    with contextlib.suppress(OSError):
        lock = provision.TOKIO_MANIFEST.with_name("Cargo.lock").read_text()
        crates = dict(re.findall(r'\[\[package\]\]\nname = "(tokio|hyper|redis)"\nversion = "([^"]+)"', lock))
        v["tokio-hyper peer"] = ", ".join(f"{k} {crates[k]}" for k in ("tokio", "hyper", "redis") if k in crates)
    if hitcore and hitcore.exists():
        v["hitcore"] = first_line([str(hitcore), "--version"]) or "unknown"
    v["rustc"] = first_line(["rustc", "--version"]) or "not installed"
    v["nginx"] = (first_line(["nginx", "-v"]) or "unknown").replace("nginx version: ", "")
    v["redis-server"] = redis_version or first_line(["redis-server", "--version"]) or "unknown"
    v["ab"] = (first_line(["ab", "-V"]) or "unknown").replace("This is ", "")
    v["wrk"] = re.sub(r"\s+Copyright.*$", "", first_line(["wrk", "-v"]) or "unknown")
    return {k: value for k, value in v.items() if value}
