"""The shell every bench tool runs in: its parser's shared options, signals and cleanup, its results
folder (a rerun the same day replaces the earlier run's raw/, logs/ and summary.json rather than
mixing with them), and its last step (the report written, its digest printed, the exit status).
It must not start servers or load generators (servers.py, loadgen.py and the tools do).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import signal
import socket
from pathlib import Path

from . import machine, md, procs, provision
from .procs import log

RESULTS = provision.BENCH / "results"
BUSY_PERCENT = 20  # CPU use by other work before a run above which the run warns and its report says so


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def guard(run, *args) -> int:
    """Runs `run(*args)` with Ctrl-C, SIGTERM and SIGHUP (also sent to a kit started in the background,
    where SIGINT is ignored by default) turned into KeyboardInterrupt, and stops every process the
    run started, by PID, however it ends. 130 when interrupted."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        return run(*args)
    except KeyboardInterrupt:
        log("interrupted: stopping every process this run started")
        return 130
    finally:
        procs.cleanup()


def results_name(started: datetime.datetime, suffix: str) -> str:
    """`<date>-<host><suffix>`, the name of a run's report and folder (the host name's characters
    other than letters, digits, `.`, `_` and `-` replaced)."""
    return f"{started:%Y-%m-%d}-{re.sub(r'[^A-Za-z0-9._-]', '-', socket.gethostname()) or 'host'}{suffix}"


def fresh_run_dir(run_dir: Path) -> tuple[Path, Path]:
    """Removes an earlier run's `raw/`, `logs/` and `summary.json`, then creates `raw/` and `logs/`.
    Returns them."""
    raw_dir, log_dir = run_dir / "raw", run_dir / "logs"
    for path in (raw_dir, log_dir):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    (run_dir / "summary.json").unlink(missing_ok=True)
    return raw_dir, log_dir


def arguments(prog: str, description: str, hitcore: str = "hitcore binary (default target/release/hitcore)"):
    """The parser every tool starts from, with the options they all have: --hitcore (`hitcore` its
    help) and --out."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--hitcore", type=Path, metavar="PATH", help=hitcore)
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    return p


def choice(known: list[str], what: str):
    """An argparse `type` for a comma-separated choice from `known`, in `known`'s order: an unknown
    one is a usage error that names it."""
    def parse(value: str) -> list[str]:
        picked = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in picked if v not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
        return [k for k in known if k in picked]
    return parse


def busy_check() -> float | None:
    """How busy the CPUs are before a run (1 s of /proc/stat); warns above BUSY_PERCENT."""
    busy = machine.cpu_busy_percent()
    if busy is not None and busy > BUSY_PERCENT:
        log(f"warning: the CPUs are {busy:.0f} % busy before the run starts: other work competes with it, "
            "so the numbers will be worse and noisier than on a quiet machine")
    return busy


def write_summary(run_dir: Path, summary: dict) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


def finish(report: Path, text: str, failed: list[str], digest: str | None = None, what: str = "") -> int:
    """A run's last step: its report written, its digest (md.digest's, or `digest`) printed, and its
    exit status: 3 when some measurement did not complete (`failed` names them), else 0."""
    report.write_text(text)
    print()
    print(digest or md.digest(text))
    log(f"done in {procs.elapsed():.0f}s{what}: {report}")
    if failed:
        log(f"did not complete: {', '.join(failed)} (see the report)")
        return 3
    return 0
