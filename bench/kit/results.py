"""A run's results folder: its name's host part, and a fresh folder for a rerun under the same name.

Every tool writes `bench/results/<date>-<host>-<tool>[...].md` beside a folder of the same name with
`raw/`, `logs/` and `summary.json`; a rerun the same day replaces the earlier run's files rather
than mixing its raw outputs with them. Pure file handling: it must not start processes.
"""
from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path


def host_tag() -> str:
    """The host name as it goes into a results name: anything but letters, digits, `.`, `_`, `-` replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "host"


def fresh_run_dir(run_dir: Path, also=(), keep_logs: bool = False) -> tuple[Path, Path]:
    """Removes an earlier run's `raw/`, `logs/` (unless `keep_logs`), `summary.json` and the paths in
    `also` (its charts), then creates `raw/` and `logs/`. Returns them."""
    raw_dir, log_dir = run_dir / "raw", run_dir / "logs"
    stale = [raw_dir, run_dir / "summary.json", *also] + ([] if keep_logs else [log_dir])
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    raw_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    return raw_dir, log_dir
