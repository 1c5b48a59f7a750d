"""The machine a run happened on, and the version of every program in it.

Everything here is read from the system or asked of the programs themselves at run time; a
version that cannot be read is reported as such, never guessed. Also the few machine settings a
run reads or lifts (`sysctl()`, `raise_open_files_limit()`), shared by bench/run, bench/compare
and bench/device/run16.
"""
from __future__ import annotations

import json
import os
import platform
import re
import resource
import socket
import subprocess
import time
from pathlib import Path

from . import provision


def first_line(argv: list[str], timeout: float = 20) -> str | None:
    """The first non-empty line a command prints (stdout or stderr), or None."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def cpu_list(cpus) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    cpus = sorted(cpus)
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)


def cpu_times(text: str | None = None) -> dict[str, tuple[int, int]]:
    """/proc/stat's `cpu` (every CPU) and `cpuN` lines as {name: (busy, total)} in clock ticks;
    idle and iowait are not busy. The kit's one reader of /proc/stat."""
    out = {}
    for line in (Path("/proc/stat").read_text() if text is None else text).splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu"):
            ticks = [int(x) for x in parts[1:9]]
            out[parts[0]] = (sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0), sum(ticks))
    return out


def busy_percent(before: dict, after: dict) -> dict[str, float]:
    """Each CPU's (and `cpu`, all of them) busy share between two cpu_times readings, in %."""
    out = {}
    for cpu, (busy1, total1) in after.items():
        busy0, total0 = before.get(cpu, (0, 0))
        out[cpu] = round(100.0 * (busy1 - busy0) / (total1 - total0), 1) if total1 > total0 else 0.0
    return out


def cpu_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy all CPUs are right now (0-100 %), over `seconds`: before a run starts this is other
    work competing with the benchmark."""
    try:
        before = cpu_times()
        time.sleep(seconds)
        after = cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return busy_percent(before, after)["cpu"] if after["cpu"][1] > before["cpu"][1] else None


def sysctl(name: str) -> str | None:
    """A kernel setting by its sysctl name ("net.core.somaxconn"), tabs as spaces; None if unreadable."""
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip().replace("\t", " ")
    except OSError:
        return None


def raise_open_files_limit() -> tuple[int, int]:
    """ab/wrk at c=500, Redis with thousands of clients: lifts the soft open-files limit to the hard
    one (65536 when the hard one is unlimited). Returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def limits(nofile: tuple[int, int]) -> dict:
    """What bounds a many-connection run, for its report: the open-files limits (soft, hard) given,
    and the listen and port sysctls by their last name (somaxconn, tcp_max_syn_backlog, ...)."""
    return {"nofile_soft": nofile[0], "nofile_hard": nofile[1],
            **{k.split(".")[-1]: sysctl(k) for k in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
                                                     "net.ipv4.tcp_syncookies", "net.ipv4.ip_local_port_range")}}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def describe() -> dict:
    """The machine: hostname, kernel, arch, CPUs (online, allowed, model, MHz), memory, OS, glibc,
    Python, the CPU frequency governor, and the load average when it was called."""
    info: dict = {"hostname": socket.gethostname(), "kernel": platform.release(),
                  "arch": platform.machine(), "cpus_online": os.cpu_count(),
                  "cpus_allowed": cpu_list(os.sched_getaffinity(0)),
                  "glibc": os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None,
                  "python": platform.python_version(),
                  "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "not exposed",
                  "loadavg": _read("/proc/loadavg")}
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        info["cpu_model"] = match.group(1).strip() if match else "unknown"
        match = re.search(r"^cpu MHz\s*:\s*(.+)$", text, re.M)
        info["cpu_mhz"] = match.group(1).strip() if match else None
    except OSError:
        info["cpu_model"] = "unknown"
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        info["memory_gib"] = round(int(match.group(1)) / 1024 / 1024, 1)
    except (OSError, AttributeError):
        info["memory_gib"] = None
    try:
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.M)
        info["os"] = match.group(1) if match else "unknown"
    except OSError:
        info["os"] = "unknown"
    return info


def _venv_versions(name: str, packages: list[str]) -> dict:
    python = provision.venv_python(name)
    if not python.exists():
        return {}
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = None\n"
            "print(json.dumps(out))")
    try:
        out = subprocess.run([str(python), "-c", code] + packages, capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return {}


def _cargo_lock_versions(lock: Path, crates: list[str]) -> dict:
    try:
        text = lock.read_text()
    except OSError:
        return {}
    found = {}
    for name, version in re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text):
        if name in crates:
            found[name] = version
    return found


def versions(hitcore: Path | None, redis_version: str | None) -> dict:
    """Versions of every server and tool, as each reports itself."""
    v: dict = {}
    v["python (system, runs the kit)"] = platform.python_version()
    main = _venv_versions("main", ["gunicorn", "flask", "redis", "gevent", "tornado"])
    if main:
        python = first_line([str(provision.venv_python("main")), "--version"])
        v["bench/.venv"] = ", ".join([python or "python ?"] + [f"{k} {main[k]}" for k in main])
    ev = _venv_versions("eventlet", ["gunicorn", "eventlet", "flask", "redis"])
    if ev:
        v["bench/.venv-eventlet"] = ", ".join(f"{k} {ev[k]}" for k in ev)
    crates = _cargo_lock_versions(provision.TOKIO_MANIFEST.with_name("Cargo.lock"), ["tokio", "hyper", "redis"])
    if crates:
        v["tokio-hyper peer"] = ", ".join(f"{k} {crates[k]}" for k in ("tokio", "hyper", "redis") if k in crates)
    if hitcore and hitcore.exists():
        v["hitcore"] = first_line([str(hitcore), "--version"]) or "unknown"
    v["rustc"] = first_line(["rustc", "--version"]) or "not installed"
    v["nginx"] = (first_line(["nginx", "-v"]) or "unknown").replace("nginx version: ", "")
    v["redis-server"] = redis_version or first_line(["redis-server", "--version"]) or "unknown"
    v["ab"] = (first_line(["ab", "-V"]) or "unknown").replace("This is ", "")
    v["wrk"] = first_line(["wrk", "-v"]) or "unknown"
    if v["wrk"]:
        v["wrk"] = re.sub(r"\s+Copyright.*$", "", v["wrk"])
    return v
