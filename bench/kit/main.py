"""bench/run's command line and the order of a run.

1. provision what the chosen rows need (kit/provision.py), each step skipped when already done;
2. start one password-protected redis-server on a free port (kit/redisctl.py);
3. for each server in turn, on the same port: start it, wait for a 200, `SET hit 0`, then
   ab (new connection per request), ab -k, wrk --latency, reading the counter after each, while
   sampling the memory of its process tree; stop it; count WORKER TIMEOUT lines in its log;
4. the shard-scaling run: hitcore -w 1 .. CPUs under wrk;
   with --repeat N, steps 3 and 4 are one round, run N times in turn (round 1: every server and the
   scaling points, round 2: all again, ...) on the same Redis; kit/rounds.py folds them into medians;
5. write bench/results/<date>-<host>[-quick][-partial].md, summary.json and the raw outputs under
   bench/results/<same name>/, and draw the PNG charts with bench/.venv's matplotlib.
A row that cannot run (a failed build, a server that does not start) is reported as such and the
run goes on. Every process started is stopped by PID at the end, on error and on Ctrl-C.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

from . import loadgen, machine, procs, provision, redisctl, report, rounds, servers, session
from .procs import log

MODES = {
    # ab request count and its time bound (s); wrk and scaling durations (s)
    "quick": {"ab_requests": 5000, "ab_time_limit": 20, "wrk_duration": 3, "scaling_duration": 3},
    "full": {"ab_requests": 50000, "ab_time_limit": 60, "wrk_duration": 10, "scaling_duration": 10},
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
                    "peers side by side, on this machine, and writes bench/results/<date>-<host>.md with charts.")
    p.add_argument("--quick", action="store_true",
                   help="short run (ab -n 5000, wrk 3 s): about 2 minutes on 2 cores once provisioned")
    p.add_argument("--port", type=int, default=8000, help="the port every server listens on (default 8000)")
    p.add_argument("--only", metavar="LIST",
                   help="comma-separated rows to run, by id or part of it: " + ", ".join(servers.ALL_IDS)
                        + " (e.g. hitcore,nginx)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY, help="ab -c and wrk -c (default 500)")
    p.add_argument("--requests", type=int, help="ab -n (default 50000, or 5000 with --quick)")
    p.add_argument("--duration", type=int, help="wrk -d seconds, scaling too (default 10, or 3 with --quick)")
    p.add_argument("--wrk-threads", type=int,
                   help="wrk -t (default 2, or the number of --cpus-load CPUs)")
    p.add_argument("--cpus-server", metavar="LIST", help="pin servers with taskset -c LIST (e.g. 0-7)")
    p.add_argument("--cpus-load", metavar="LIST", help="pin ab and wrk with taskset -c LIST (e.g. 8-13)")
    p.add_argument("--cpus-redis", metavar="LIST", help="pin redis-server with taskset -c LIST (e.g. 15)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run N rounds, interleaved (round 1: every server, round 2: every server, ...); the report "
                        "gives the median of each column, the req/s spread and every round's checks (default 1)")
    return p.parse_args(argv)


def count_cpus(text: str) -> int:
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for row in servers.ALL_IDS:
            print(row)
        return 0
    try:
        ids = servers.selected([s.strip() for s in args.only.split(",") if s.strip()] if args.only else None)
    except ValueError as error:
        print(f"bench/run: {error}", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print(f"bench/run: --repeat must be 1 or more, not {args.repeat}", file=sys.stderr)
        return 2
    machine.raise_open_files_limit()  # ab/wrk at c=500, Redis with many clients
    return session.guard(run, args, ids)


def run(args, ids: list[str]) -> int:
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode])
    if args.requests:
        settings["ab_requests"] = args.requests
    if args.duration:
        settings["wrk_duration"] = settings["scaling_duration"] = args.duration
    settings.update(mode=mode, concurrency=args.concurrency, port=args.port,
                    wrk_threads=args.wrk_threads or (count_cpus(args.cpus_load) if args.cpus_load else 2),
                    cpus_server=args.cpus_server, cpus_load=args.cpus_load, cpus_redis=args.cpus_redis)
    ncpu = count_cpus(args.cpus_server) if args.cpus_server else len(os.sched_getaffinity(0))
    started = datetime.datetime.now().astimezone()
    name = session.results_name(started, ("-quick" if args.quick else "") + ("-partial" if args.only else ""))
    out_dir = args.out.resolve()
    run_dir = out_dir / name
    # A rerun under the same name (same day, host and mode) replaces the earlier one's files.
    raw_dir, log_dir = session.fresh_run_dir(run_dir, also=[out_dir / f"{name}-rps.png", out_dir / f"{name}-scaling.png"])
    repeat = args.repeat
    log(f"bench/run {mode} run: {', '.join(ids)}"
        + (f", {repeat} rounds" if repeat > 1 else "") + f"; results -> {out_dir / name}.md")
    load_at_start = os.getloadavg()[0]
    busy_at_start = session.busy_check()

    # 1. Provisioning: each missing piece disables only the rows that need it.
    problems: dict[str, str | None] = {}
    apt_problem = provision.apt_packages(list(provision.APT_PACKAGES), log_dir)
    if apt_problem:
        log(f"cannot run: {apt_problem}")
        return 1
    problems["venv"] = provision.virtualenv("main", log_dir)
    if "gunicorn-eventlet" in ids:
        problems["eventlet"] = provision.virtualenv("eventlet", log_dir)
    if "tokio-hyper" in ids:
        problems["tokio"] = provision.tokio_peer(log_dir)
    hitcore_path = None
    if any(i.startswith("hitcore") for i in ids):
        if args.hitcore:
            hitcore_path = args.hitcore.resolve()
            problems["hitcore"] = None if os.access(hitcore_path, os.X_OK) else f"--hitcore {args.hitcore}: not an executable file"
        else:
            problems["hitcore"] = provision.hitcore(log_dir)
            hitcore_path = provision.HITCORE_BINARY
    for need, problem in problems.items():
        if problem:
            log(f"provision: {need}: {problem} (its rows will be reported as not run)")
    provisioned_at = procs.elapsed()

    if servers.port_in_use(args.port):
        log(f"cannot run: something already listens on 127.0.0.1:{args.port}; stop it or pass --port")
        return 1

    # 2. One Redis for the whole run.
    redis = redisctl.RedisServer(log_dir, cpus=args.cpus_redis)
    redis.wait_ready()
    redis_version = redis.version()
    log(f"redis-server {redis_version} on 127.0.0.1:{redis.port} (password set, no persistence)")

    summary = {
        "name": name, "started": started.isoformat(timespec="seconds"), "settings": settings,
        "machine": machine.describe(), "versions": machine.versions(hitcore_path, redis_version),
        "ncpu": ncpu, "repeat": repeat, "rows": [], "scaling": [], "original_2014": ORIGINAL_2014,
        "load_at_start": round(load_at_start, 2), "busy_at_start": busy_at_start, "busy_threshold": session.BUSY_PERCENT,
    }
    rounds_rows: list[list[dict]] = []
    rounds_scaling: list[list[dict]] = []
    rounds_meta: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hitcore-bench-") as tmp:
        ctx = servers.Context(port=args.port, redis_url=redis.url, ncpu=ncpu, server_cpus=args.cpus_server,
                              hitcore=hitcore_path, tmp=Path(tmp))
        rows = [i for i in ids if i != "hitcore-scaling"]
        # Rounds interleaved: every server once per round, so a drift of the machine's load hits all alike.
        for rnd in range(1, repeat + 1):
            tag = f"round {rnd}/{repeat}, " if repeat > 1 else ""
            suffix = f"-r{rnd}" if repeat > 1 else ""  # raw outputs and logs of each round kept apart
            if repeat > 1:
                log(f"round {rnd} of {repeat}")
            meta = {"round": rnd, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "load_at_start": round(os.getloadavg()[0], 2), "at_s": round(procs.elapsed(), 1)}
            this_rows, this_scaling = [], []
            for n, row_id in enumerate(rows, 1):
                spec = servers.spec_for(row_id, ctx)
                this_rows.append(bench_server(spec, f"({tag}{n}/{len(rows)})", ctx, redis, settings,
                                              raw_dir, log_dir, problems.get(spec.needs), suffix=suffix))
            if "hitcore-scaling" in ids:
                for shards in range(1, ncpu + 1):
                    spec = servers.hitcore(ctx, shards, row_id=f"hitcore-scaling-{shards}")
                    this_scaling.append(bench_server(spec, f"({tag}scaling {shards}/{ncpu})", ctx, redis, settings,
                                                     raw_dir, log_dir, problems.get("hitcore"), scaling=True,
                                                     suffix=suffix))
            meta["duration_s"] = round(procs.elapsed() - meta["at_s"], 1)
            rounds_rows.append(this_rows)
            rounds_scaling.append(this_scaling)
            rounds_meta.append(meta)
    if repeat > 1:
        # Rows hold the medians (and min/max) over the rounds, each with every round's raw row in "rounds".
        summary["rows"] = rounds.aggregate(rounds_rows)
        summary["scaling"] = rounds.aggregate(rounds_scaling)
        summary["rounds"] = rounds_meta
        summary["ratios"] = rounds.ratios(summary)
    else:
        summary["rows"], summary["scaling"] = rounds_rows[0], rounds_scaling[0]
    redis.stop()
    summary["provisioning_s"] = round(provisioned_at, 1)
    summary["duration_s"] = round(procs.elapsed(), 1)
    summary["load_at_end"] = round(os.getloadavg()[0], 2)

    # 5. Results.
    summary_path = session.write_summary(run_dir, summary)
    if problems.get("venv"):
        log(f"charts skipped: {problems['venv']}")
    charts = [] if problems.get("venv") else session.chart("run", [summary_path, out_dir, name], log_dir) or []
    for chart in charts:
        log(f"chart: {out_dir / chart}")
    failed = [r["id"] + (f" (round {n})" if repeat > 1 else "")
              for n, (these, points) in enumerate(zip(rounds_rows, rounds_scaling), 1)
              for r in these + points if r["status"] != "ok"]
    return session.finish(out_dir / f"{name}.md", report.render(summary, charts), failed,
                          what=f" (provisioning {provisioned_at:.0f}s)")


def bench_server(spec: servers.Spec, counter: str, ctx: servers.Context, redis: redisctl.RedisServer,
                 settings: dict, raw_dir: Path, log_dir: Path, problem: str | None, scaling: bool = False,
                 suffix: str = "") -> dict:
    """Runs one server through its tests; returns its row (status "ok" or why not).

    `suffix` ("-r2" for round 2 of a --repeat run) goes into its raw output and log file names."""
    row = {"id": spec.id, "title": spec.title, "argv": " ".join(spec.argv), "uses_redis": spec.uses_redis,
           "status": "ok", "tests": {}, "counter_after": {}, "load_before": round(os.getloadavg()[0], 2)}
    if problem:
        row["status"] = f"not run: {problem}"
        log(f"{counter} {spec.id}: {row['status']}")
        return row
    if not servers.wait_port_free(ctx.port):
        row["status"] = f"not run: 127.0.0.1:{ctx.port} still in use by the previous server"
        log(f"{counter} {spec.id}: {row['status']}")
        return row
    log(f"{counter} {spec.id}: starting {spec.title}")
    env = dict(os.environ, **spec.env)
    service = procs.Service(spec.id, spec.argv, log_dir / f"{spec.id}{suffix}.log", env=env)
    service.start_sampling()
    url = f"http://{ctx.bind}/"
    label = f"{counter} {spec.id}"
    try:
        not_ready = servers.wait_ready(service, spec, ctx.port)
        if not_ready:
            row["status"] = f"did not start: {not_ready}"
            log(f"{label}: {row['status']}")
            return row
        if spec.uses_redis:
            redis.set("hit", 0)
        c, n, t = settings["concurrency"], settings["ab_requests"], settings["ab_time_limit"]
        tests = []
        if not scaling:
            tests += [
                ("ab", f"ab -c {c} -n {n} -r -l (new connection per request)",
                 lambda p, l: loadgen.ab(url, n, c, t, False, p, l, settings["cpus_load"])),
                ("ab_k", f"ab -k -c {c} -n {n} -r -l (keep-alive)",
                 lambda p, l: loadgen.ab(url, n, c, t, True, p, l, settings["cpus_load"])),
            ]
        duration = settings["scaling_duration" if scaling else "wrk_duration"]
        tests.append(("wrk", f"wrk -t {settings['wrk_threads']} -c {c} -d {duration}s --latency",
                      lambda p, l: loadgen.wrk(url, settings["wrk_threads"], c, duration, p, l,
                                               settings["cpus_load"])))
        for key, description, runner in tests:
            log(f"{label}: {description}")
            outcome = runner(raw_dir / f"{spec.id}-{key.replace('_', '-')}{suffix}.txt", f"{label}: {key}")
            row["tests"][key] = outcome
            if outcome["error"]:
                log(f"{label}: {outcome['error']}")
            else:
                log(f"{label}: {key}: {_brief(outcome)}")
            if spec.uses_redis:
                time.sleep(0.3)  # let requests still in flight when the client stopped finish
                row["counter_after"][key] = redis.get_int("hit")
            if not service.alive():
                row["status"] = f"exited during {key} with status {service.proc.returncode}"
                log(f"{label}: {row['status']}")
                break
    finally:
        log(f"{label}: stopping (SIGTERM to pid {service.pid})")
        exit_status = service.stop(grace=15)
        row["exit_status"] = exit_status
        text = service.log_text()
        row["worker_timeouts"] = servers.worker_timeouts(text)
        row["log"] = f"{spec.id}{suffix}.log"
        if service.sampler:
            row["peak_rss_kib"] = service.sampler.peak_rss_kib
            row["peak_pss_kib"] = service.sampler.peak_pss_kib
            row["peak_processes"] = service.sampler.peak_processes
        if spec.uses_redis and row["status"] == "ok":
            row["counter_final"] = redis.get_int("hit")
    return row


def _brief(outcome: dict) -> str:
    if "p99_ms" in outcome:
        return (f"{outcome['rps']:,.0f} req/s, p50 {outcome.get('p50_ms', 0):.2f} ms, "
                f"p99 {outcome.get('p99_ms', 0):.2f} ms, non-2xx {outcome['non_2xx_3xx']}")
    return f"{outcome['rps']:,.0f} req/s, {outcome['complete']} complete, {outcome['failed']} failed"

