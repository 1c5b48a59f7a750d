"""bench/run's command line and the order of a run (bench/README.md, "What a run does"): provision
what the chosen rows need, one redis-server, each server in turn through kit/trial.py, then the
shard scaling; --repeat's rounds folded by kit/rounds.py; the report (kit/report.py), summary.json
and raw/. A row that cannot run is reported as such and the run goes on.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
from pathlib import Path

from . import compare, loadgen, machine, procs, provision, redisctl, report, rounds, servers, session, trial
from .procs import log

MODES = {  # ab's request count and time bound (s), wrk's duration (s)
    "quick": {"ab_requests": 5000, "ab_time_limit": 20, "wrk_duration": 3},
    "full": {"ab_requests": 50000, "ab_time_limit": 60, "wrk_duration": 10},
}
CONCURRENCY = 500

# The 2014 original's numbers (gunicorn -w 4, ab -c 500, 50000 requests), quoted for reference.
ORIGINAL_2014 = [
    ("gunicorn -w 4 sync", "1336", "793 failed, WORKER TIMEOUT restarts"),
    ("gunicorn -w 4 tornado", "3573", "543 failed"),
    ("gunicorn -w 4 eventlet", "6131", ""),
    ("gunicorn -w 4 gevent", "6538", ""),
]


def parse_args(argv):
    p = session.arguments(
        "bench/run", hitcore="hitcore binary to test (default: cargo build --release, then target/release/hitcore)",
        description="Reproduces the original gunicorn/Flask hit-counter benchmark with hitcore and its "
                    "peers side by side, on this machine, and writes bench/results/<date>-<host>.md.")
    p.add_argument("--quick", action="store_true",
                   help="short run (ab -n 5000, wrk 3 s): about 2 minutes on 2 cores once provisioned")
    p.add_argument("--only", metavar="LIST",
                   help="comma-separated rows to run, by id or part of it: " + ", ".join(servers.ALL_IDS)
                        + " (e.g. hitcore,nginx)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--repeat", type=compare.at_least(1), default=1, metavar="N",
                   help="run N rounds, interleaved (round 1: every server, round 2: every server, ...); the report "
                        "gives the median of each column, the req/s spread and every round's checks (default 1)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        print("\n".join(servers.ALL_IDS))
        return 0
    try:
        ids = servers.selected([s.strip() for s in args.only.split(",") if s.strip()] if args.only else None)
    except ValueError as error:
        print(f"bench/run: {error}", file=sys.stderr)
        return 2
    machine.raise_open_files_limit()  # ab/wrk at c=500, Redis with many clients
    return session.guard(run, args, ids)


def provision_all(args, ids: list[str], log_dir: Path) -> tuple[dict, Path | None]:
    """Each missing piece disables only the rows that need it: {need: problem or None}, the hitcore binary."""
    problems = {"venv": provision.virtualenv("main", log_dir)}
    if "gunicorn-eventlet" in ids:
        problems["eventlet"] = provision.virtualenv("eventlet", log_dir)
    if "tokio-hyper" in ids:
        problems["tokio"] = provision.tokio_peer(log_dir)
    hitcore = None
    if any(i.startswith("hitcore") for i in ids):
        if args.hitcore:
            hitcore = args.hitcore.resolve()
            problems["hitcore"] = None if os.access(hitcore, os.X_OK) else f"--hitcore {args.hitcore}: not an executable file"
        else:
            problems["hitcore"], hitcore = provision.hitcore(log_dir), provision.HITCORE_BINARY
    for need, problem in problems.items():
        if problem:
            log(f"provision: {need}: {problem} (its rows will be reported as not run)")
    return problems, hitcore


def run(args, ids: list[str]) -> int:
    mode = "quick" if args.quick else "full"
    port = redisctl.free_port()
    settings = dict(MODES[mode], mode=mode, concurrency=CONCURRENCY, port=port, wrk_threads=2)
    ncpu = len(os.sched_getaffinity(0))
    started = datetime.datetime.now().astimezone()
    name = session.results_name(started, ("-quick" if args.quick else "") + ("-partial" if args.only else ""))
    out_dir = args.out.resolve()
    # A rerun under the same name (same day, host and mode) replaces the earlier one's files.
    raw_dir, log_dir = session.fresh_run_dir(out_dir / name)
    log(f"bench/run {mode} run: {', '.join(ids)}" + (f", {args.repeat} rounds" if args.repeat > 1 else "")
        + f"; results -> {out_dir / name}.md")
    summary = {"name": name, "started": started.isoformat(timespec="seconds"), "settings": settings,
               "machine": machine.describe(), "load_at_start": [round(x, 2) for x in os.getloadavg()],
               "busy_at_start": session.busy_check(), "busy_threshold": session.BUSY_PERCENT}
    problem = provision.apt_packages(list(provision.APT_PACKAGES))
    if problem:
        log(f"cannot run: {problem}")
        return 1
    problems, hitcore_path = provision_all(args, ids, log_dir)
    summary["provisioning_s"] = round(procs.elapsed(), 1)

    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    redis_version = redis.version()
    log(f"redis-server {redis_version} on 127.0.0.1:{redis.port} (password set, no persistence)")
    summary.update(versions=machine.versions(hitcore_path, redis_version), ncpu=ncpu, repeat=args.repeat,
                   original_2014=ORIGINAL_2014)
    per_round: list[list[dict]] = []
    with tempfile.TemporaryDirectory(prefix="hitcore-bench-") as tmp:
        ctx = servers.Context(port=port, redis_url=redis.url, ncpu=ncpu, server_cpus=None,
                              hitcore=hitcore_path, tmp=Path(tmp))
        specs = [servers.spec_for(i, ctx) for i in ids if i != "hitcore-scaling"]
        if "hitcore-scaling" in ids:
            specs += [servers.hitcore(ctx, n, row_id=f"hitcore-scaling-{n}") for n in range(1, ncpu + 1)]
        for rnd in range(1, args.repeat + 1):
            # raw outputs and logs of each round kept apart: <server>-<test>-r<round>.txt
            suffix, tag = (f"-r{rnd}", f"round {rnd}/{args.repeat}, ") if args.repeat > 1 else ("", "")
            meta = {"round": rnd, "at_s": round(procs.elapsed(), 1), "load_at_start": round(os.getloadavg()[0], 2)}
            rows = []
            for n, spec in enumerate(specs, 1):
                label = f"({tag}{n}/{len(specs)}) {spec.id}"
                problem = problems.get(spec.needs)
                if problem:
                    rows.append(dict(trial.new_row(spec), status=f"not run: {problem}"))
                    continue
                loads = classic_loads(settings, raw_dir, suffix, spec.id, "scaling" in spec.id)
                rows.append(trial.run(spec, port, redis, loads, log_dir, label, suffix))
            per_round.append(rows)
            summary.setdefault("rounds", []).append(dict(meta, duration_s=round(procs.elapsed() - meta["at_s"], 1)))
    redis.stop()
    all_rows = rounds.aggregate(per_round)
    summary["rows"] = [r for r in all_rows if "scaling" not in r["id"]]
    summary["scaling"] = [r for r in all_rows if "scaling" in r["id"]]
    summary.update(duration_s=round(procs.elapsed(), 1), load_at_end=[round(x, 2) for x in os.getloadavg()])
    session.write_summary(out_dir / name, summary)
    failed = [f"{r['id']} ({r['status']})" for r in all_rows if r["status"] != "ok"]
    return session.finish(out_dir / f"{name}.md", report.render(summary), failed,
                          what=f" (provisioning {summary['provisioning_s']:.0f}s)")


def classic_loads(settings: dict, raw_dir: Path, suffix: str, row_id: str, scaling: bool) -> list:
    """The original test's loads as kit/trial.py runs them: ab, ab -k (not for a scaling point), wrk."""
    c, n, limit = settings["concurrency"], settings["ab_requests"], settings["ab_time_limit"]
    t, d = settings["wrk_threads"], settings["wrk_duration"]
    url = f"http://127.0.0.1:{settings['port']}/"

    def ab(keepalive: bool):
        raw = raw_dir / f"{row_id}-{'ab-k' if keepalive else 'ab'}{suffix}.txt"
        return lambda _service, label: loadgen.ab(url, n, c, limit, keepalive, raw, label)

    def wrk(_service, label: str) -> dict:
        return loadgen.wrk(url, t, c, d, raw_dir / f"{row_id}-wrk{suffix}.txt", label)

    loads = [] if scaling else [("ab", f"ab -c {c} -n {n} -r -l (new connection per request)", ab(False)),
                                ("ab_k", f"ab -k -c {c} -n {n} -r -l (keep-alive)", ab(True))]
    return loads + [("wrk", f"wrk -t {t} -c {c} -d {d}s --latency", wrk)]
