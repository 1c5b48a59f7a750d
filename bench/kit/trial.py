"""One server through its loads, the unit both bench/run and bench/device/run16 repeat: start it,
wait until it answers, `SET hit 0`, run each load reading the counter after each, stop it, read the
counter once more, and record its process tree's peak memory and WORKER TIMEOUT lines.

It owns only that server's process; Redis, the port and the loads (runner functions) are the
caller's: it must not build a command line or choose a load.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from . import md, procs, servers
from .procs import log

SETTLE_S = 0.3  # requests still in flight when a client stops finish before the counter is read


def new_row(spec: servers.Spec) -> dict:
    return {"id": spec.id, "title": spec.title, "argv": " ".join(spec.argv), "uses_redis": spec.uses_redis,
            "status": "ok", "tests": {}, "counter_after": {}, "load_before": round(os.getloadavg()[0], 2)}


def run(spec: servers.Spec, port: int, redis, loads: list, log_dir: Path, label: str, suffix: str = "",
        ready_timeout: float = 30.0, counter=None) -> dict:
    """`loads`: (key, description, runner) in order; `runner(service, label)` runs one load against the
    started `service` and returns its outcome (kit/loadgen.py's dict, "error" None when it gave numbers).
    `suffix` ("-r2" for round 2) goes into the log's name; `counter()` reads the count (default: `hit`)."""
    row, counter = new_row(spec), counter or (lambda: redis.get_int("hit"))
    if not servers.wait_port_free(port):
        row["status"] = f"not run: 127.0.0.1:{port} still in use by the previous server"
        log(f"{label}: {row['status']}")
        return row
    log(f"{label}: starting {spec.title}")
    service = procs.Service(spec.id, spec.argv, log_dir / f"{spec.id}{suffix}.log", env=dict(os.environ, **spec.env))
    service.start_sampling()
    try:
        not_ready = servers.wait_ready(service, spec, port, timeout=ready_timeout)
        if not_ready:
            row["status"] = f"did not start: {not_ready}"
            log(f"{label}: {row['status']}")
            return row
        if spec.uses_redis:
            redis.set("hit", 0)  # after the readiness probe: the counter counts the loads only
        for key, description, runner in loads:
            log(f"{label}: {description}")
            outcome = row["tests"][key] = runner(service, f"{label}: {key}")
            log(f"{label}: {key}: {md.brief(outcome)}")
            if spec.uses_redis:
                time.sleep(SETTLE_S)
                row["counter_after"][key] = counter()
            if not service.alive():
                row["status"] = f"exited during {key} with status {service.proc.returncode}"
                log(f"{label}: {row['status']}")
                break
    finally:
        log(f"{label}: stopping (SIGTERM to pid {service.pid})")
        sampler = service.sampler
        row.update(exit_status=service.stop(grace=15), worker_timeouts=servers.worker_timeouts(service.log_text()),
                   log=f"{spec.id}{suffix}.log", peak_rss_kib=sampler.peak_rss_kib,
                   peak_pss_kib=sampler.peak_pss_kib, peak_processes=sampler.peak_processes)
        if spec.uses_redis and row["status"] == "ok":
            row["counter_final"] = counter()  # nothing in flight any more
    return row
