"""Provisioning: everything a run needs, installed only when missing (every step is idempotent):
the two virtualenvs, the cargo builds (the tokio peer, hitcore) and bench/tail's oha; the Debian
packages are only checked. bench/README.md's provisioning table says what each is and how.

Each function returns None when the thing is ready, or a one-line reason it is not; the tools then
skip what needs it (bench/run its rows) instead of failing the whole run.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import procs

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent

# command -> the Debian package that provides it
APT_PACKAGES = {
    "redis-server": "redis-server",
    "ab": "apache2-utils",
    "wrk": "wrk",
    "nginx": "nginx-light",
    "taskset": "util-linux",
}

VENVS = {
    # name: (folder, requirements file, modules that must import)
    "main": (BENCH / ".venv", BENCH / "requirements.txt",
             ["gunicorn", "gunicorn.workers.ggevent", "flask", "redis", "gevent", "tornado"]),
    "eventlet": (BENCH / ".venv-eventlet", BENCH / "requirements-eventlet.txt",
                 ["gunicorn.workers.geventlet", "eventlet", "flask", "redis"]),
}

TOKIO_MANIFEST = BENCH / "peers" / "tokio-hyper" / "Cargo.toml"
TOKIO_BINARY = BENCH / "peers" / "tokio-hyper" / "target" / "release" / "tokio-hyper-peer"
HITCORE_BINARY = REPO / "target" / "release" / "hitcore"
TOOLS = BENCH / ".tools"
# The oha flags bench/tail passes: an older oha that lacks one is not used.
OHA_FLAGS = ("--output-format", "--latency-correction", "--no-tui", "--wait-ongoing-requests-after-deadline")


def _which(command: str) -> str | None:
    # nginx lives in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin:/usr/local/sbin")


def apt_packages(commands: list[str]) -> str | None:
    """None when `commands` (and `python3 -m venv`) are all there, else the apt-get line that installs
    what is missing: the kit installs no system package itself (it would need root, and apt's lock)."""
    missing = sorted({APT_PACKAGES[c] for c in commands if not _which(c)})
    if subprocess.run(["python3", "-c", "import ensurepip, venv"], capture_output=True, timeout=30).returncode:
        missing.append("python3-venv")
    if missing:
        return f"missing {', '.join(missing)}: install them with `apt-get install {' '.join(missing)}`"
    procs.log("provision: apt packages present (" + ", ".join(commands) + ")")
    return None


def venv_python(name: str) -> Path:
    return VENVS[name][0] / "bin" / "python"


def _venv_ready(name: str) -> bool:
    """Made from its requirements file (a copy is kept inside) and its imports work."""
    folder, requirements, modules = VENVS[name]
    stamp = folder / ".kit-requirements.txt"
    if not (venv_python(name).exists() and stamp.exists() and stamp.read_text() == requirements.read_text()):
        return False
    probe = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    try:
        return subprocess.run([str(venv_python(name)), "-W", "ignore", "-c", probe] + modules,
                              capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def virtualenv(name: str, log_dir: Path) -> str | None:
    """Creates or refreshes one of the kit's virtualenvs; None when ready."""
    folder, requirements, modules = VENVS[name]
    if _venv_ready(name):
        procs.log(f"provision: {folder.name} present")
        return None
    procs.log(f"provision: creating {folder.name} from {requirements.name} (pip, a few minutes at most)")
    log_path = log_dir / f"pip-{folder.name.lstrip('.')}.log"
    pip = [str(venv_python(name)), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    for argv, what, timeout in ((["python3", "-m", "venv", "--clear", str(folder)], "python3 -m venv", 300),
                                (pip + ["--upgrade", "pip"], "pip upgrade", 300),
                                (pip + ["-r", str(requirements)], f"pip install -r {requirements.name}", 1200)):
        if not procs.run(argv, timeout=timeout, label=f"{what} in {folder.name}", output_path=log_path).ok:
            return f"{what} in {folder.name} failed (see {log_path})"
    stamp = folder / ".kit-requirements.txt"
    stamp.write_text(requirements.read_text())
    return None if _venv_ready(name) else f"{folder.name} was installed but cannot import {', '.join(modules)}"


def _cargo(argv: list[str], what: str, log_path: Path, timeout: float, binary: Path) -> str | None:
    """Runs a cargo build or install in the repository; None once it made `binary`."""
    if not shutil.which("cargo"):
        return f"cargo is not installed (a Rust toolchain is needed to build {what})"
    procs.log(f"provision: {' '.join(argv)}  ({what}; output in {log_path})")
    result = procs.run(argv, cwd=REPO, timeout=timeout, label=f"building {what}", tick=15, output_path=log_path)
    if not result.ok:
        why = f"took longer than {timeout:.0f}s" if result.timed_out else f"failed: {result.tail(1)}"
        return f"building {what} {why} (see {log_path})"
    return None if binary.exists() else f"{' '.join(argv[:2])} succeeded but {binary} does not exist"


def tokio_peer(log_dir: Path) -> str | None:
    return _cargo(["cargo", "build", "--release", "--manifest-path", str(TOKIO_MANIFEST)], "the tokio-hyper peer",
                  log_dir / "cargo-tokio-hyper.log", 1200, TOKIO_BINARY)


def hitcore(log_dir: Path) -> str | None:
    return _cargo(["cargo", "build", "--release"], "hitcore", log_dir / "cargo-hitcore.log", 1800, HITCORE_BINARY)


def _oha_usable(path: Path) -> bool:
    try:
        out = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and all(flag in out.stdout for flag in OHA_FLAGS)


def oha(log_dir: Path) -> tuple[Path | None, str | None]:
    """The oha to use (bench/.tools/bin, then ~/.cargo/bin, then PATH): (path, None), or (None, why
    not and the command that installs one; `log_dir` is unused since the kit builds no oha itself)."""
    for path in (TOOLS / "bin" / "oha", Path.home() / ".cargo" / "bin" / "oha", Path(shutil.which("oha") or "oha")):
        if _oha_usable(path):
            procs.log(f"provision: oha present ({path})")
            return path, None
    return None, (f"no oha with {', '.join(OHA_FLAGS)}: install one with "
                  f"`cargo install oha --locked --root {TOOLS}` (a few minutes of compiling)")
