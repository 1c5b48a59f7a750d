"""bench/layout: why the seed test (`ab -c 500`, a connection per request) depends on where shards run.

ab is one thread that needs a whole CPU on a small machine. This measures, for each server layout
in interleaved rounds, ab's throughput together with what explains it, all from /proc over the
ab run: how busy each CPU was, how long ab and each server process waited in a run queue for a CPU
(`/proc/PID/task/TID/schedstat`, field 2), how often the server's threads changed CPU
(`se.nr_migrations`), and the CPU each used. Layouts: `hitcore --pin` (each shard pinned to its CPU,
the first releases' only layout), `hitcore` (the default: shards placed by the kernel), `hitcore -w 1`
and nginx (`return 200`, unpinned workers, no Redis) as the static ceiling.

The pure parts (schedstat and /proc/stat readings, the per-run figures, medians) take text and
numbers, so bench/tests/test_layout.py tests them without running anything.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from . import loadgen, machine, procs, provision, redisctl, servers, session

VARIANTS = {
    # id: (title, hitcore flags or None for nginx)
    "pinned": ("hitcore --pin (one shard pinned to each CPU)", ["--pin"]),
    "default": ("hitcore (default: shards placed by the kernel)", []),
    "w1": ("hitcore -w 1", ["-w", "1"]),
    "nginx": ("nginx return 200 (static, no Redis), one worker per CPU, unpinned", None),
}


def parse_cpu_times(text: str) -> dict[str, tuple[int, int]]:
    """/proc/stat's `cpuN` lines as {"cpuN": (busy, total)} in clock ticks (idle and iowait are not busy)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0] != "cpu":
            ticks = [int(x) for x in parts[1:]]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            out[parts[0]] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return out


def busy_percent(before: dict, after: dict) -> dict[str, float]:
    """Each CPU's busy share between two parse_cpu_times readings, in %."""
    out = {}
    for cpu, (busy1, total1) in after.items():
        busy0, total0 = before.get(cpu, (0, 0))
        out[cpu] = round(100.0 * (busy1 - busy0) / (total1 - total0), 1) if total1 > total0 else 0.0
    return out


def parse_schedstat(text: str) -> tuple[int, int]:
    """A task's schedstat: (ns on a CPU, ns waiting in a run queue)."""
    run_ns, wait_ns, _slices = (int(x) for x in text.split()[:3])
    return run_ns, wait_ns


def parse_migrations(text: str) -> int:
    """`se.nr_migrations` from /proc/PID/task/TID/sched (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("se.nr_migrations"):
            return int(line.split(":")[1])
    return 0


def read_tasks(pids: list[int]) -> dict[int, dict]:
    """For every thread of the given processes: run and wait ns, migrations. Gone ones are skipped."""
    out = {}
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                run_ns, wait_ns = parse_schedstat(Path(f"{base}/schedstat").read_text())
                migrations = parse_migrations(Path(f"{base}/sched").read_text())
            except (OSError, ValueError):
                continue
            out[tid] = {"pid": pid, "run_ns": run_ns, "wait_ns": wait_ns, "migrations": migrations}
    return out


def task_delta(before: dict[int, dict], after: dict[int, dict]) -> dict:
    """Summed run, wait (ms) and migrations over the threads seen in `after` (new ones from 0)."""
    run = wait = moves = 0
    for tid, b in after.items():
        a = before.get(tid, {"run_ns": 0, "wait_ns": 0, "migrations": 0})
        run += b["run_ns"] - a["run_ns"]
        wait += b["wait_ns"] - a["wait_ns"]
        moves += b["migrations"] - a["migrations"]
    return {"run_ms": round(run / 1e6, 1), "wait_ms": round(wait / 1e6, 1), "migrations": moves}


def figures(ab: dict, seconds: float, cpus: dict, server: dict, per_process: list[dict], ab_sched: dict) -> dict:
    """One run's row: ab's result and what explains it, per request where that reads better."""
    done = ab.get("complete") or 0
    row = {"rps": ab.get("rps"), "complete": done, "failed": ab.get("failed"), "non_2xx": ab.get("non_2xx"),
           "seconds": round(seconds, 2), "cpu_busy_pct": cpus, "server": server, "processes": per_process,
           "ab": ab_sched}
    if done:
        row["server_cpu_us_per_request"] = round(1000.0 * server["run_ms"] / done, 2)
        row["server_wait_us_per_request"] = round(1000.0 * server["wait_ms"] / done, 2)
        row["ab_cpu_us_per_request"] = round(1000.0 * ab_sched.get("run_ms", 0) / done, 2)
        row["ab_wait_us_per_request"] = round(1000.0 * ab_sched.get("wait_ms", 0) / done, 2)
    return row


def median_row(rows: list[dict]) -> dict:
    """Medians of the numeric per-run figures that the summary table shows."""
    keys = ["rps", "failed", "server_cpu_us_per_request", "server_wait_us_per_request",
            "ab_cpu_us_per_request", "ab_wait_us_per_request"]
    out = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(statistics.median(values), 2) if values else None
    cpus = sorted({c for r in rows for c in r.get("cpu_busy_pct", {})}, key=lambda c: int(c[3:]))
    out["cpu_busy_pct"] = {c: round(statistics.median(r["cpu_busy_pct"].get(c, 0.0) for r in rows), 1)
                           for c in cpus}
    moves = [r["server"]["migrations"] for r in rows if "server" in r]
    out["server_migrations"] = statistics.median(moves) if moves else None
    out["rps_all"] = [r.get("rps") for r in rows]
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/layout", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--requests", type=int, default=50000, help="ab -n (default 50000)")
    p.add_argument("--concurrency", type=int, default=500, help="ab -c (default 500)")
    p.add_argument("--only", default=",".join(VARIANTS), help=f"variants, of {','.join(VARIANTS)}")
    p.add_argument("--hitcore", type=Path, default=provision.HITCORE_BINARY, help="the hitcore binary")
    p.add_argument("--out", type=Path, default=session.RESULTS, help="results folder")
    p.add_argument("--quick", action="store_true", help="one round of 5,000 requests: to check the script")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.requests = 1, 5000
    try:
        args.only = session.pick(args.only, list(VARIANTS), "variant(s)")
    except ValueError as error:
        p.error(str(error))
    if any(VARIANTS[v][1] is not None for v in args.only) and not args.hitcore.exists():
        p.error(f"{args.hitcore} does not exist: cargo build --release, or pass --hitcore")
    return args


def spec_for(variant: str, ctx: servers.Context) -> servers.Spec:
    title, flags = VARIANTS[variant]
    if flags is None:
        spec = servers.nginx(ctx)
        spec.id = variant
        return spec
    shards = 1 if flags[:2] == ["-w", "1"] else ctx.ncpu
    argv = [str(ctx.hitcore), "-b", ctx.bind] + flags
    return servers.Spec(variant, title, argv, env={"REDIS_URL": ctx.redis_url}, processes=1 + shards,
                        ready_line="Connected to Redis", ready_count=shards)


def measure(variant: str, ctx: servers.Context, redis: redisctl.RedisServer, args, tag: str,
            raw_dir: Path, log_dir: Path) -> dict:
    spec = spec_for(variant, ctx)
    try:
        service = servers.start(spec, ctx.port, log_dir / f"{tag}.log", name=variant)
    except procs.RunError as error:
        return {"status": str(error)}
    try:
        redis.set("hit", 0)
        pids = [service.pid] + procs.descendants(service.pid)
        marks: dict = {}
        ab_seen: dict = {}

        def while_running(proc) -> None:
            marks["cpu0"] = parse_cpu_times(Path("/proc/stat").read_text())
            marks["tasks0"] = read_tasks(pids)
            marks["t0"] = time.monotonic()
            # ab's own schedstat, read until it exits (its last reading is kept).
            while proc.poll() is None:
                seen = read_tasks([proc.pid])
                if seen:
                    ab_seen.update(seen)
                time.sleep(0.05)

        url = f"http://127.0.0.1:{ctx.port}/"
        result = loadgen.ab(url, args.requests, args.concurrency, 60, False, raw_dir / f"{tag}.txt", None,
                            while_running=while_running)
        t1 = time.monotonic()
        cpus = busy_percent(marks.get("cpu0", {}), parse_cpu_times(Path("/proc/stat").read_text()))
        tasks1 = read_tasks(pids)
        per_process = [dict(pid=pid, **task_delta({t: v for t, v in marks.get("tasks0", {}).items() if v["pid"] == pid},
                                                    {t: v for t, v in tasks1.items() if v["pid"] == pid}))
                       for pid in pids]
        row = figures(result, t1 - marks.get("t0", t1), cpus, task_delta(marks.get("tasks0", {}), tasks1),
                      per_process, task_delta({}, ab_seen))
        row["status"] = result.get("error") or "ok"
        if spec.uses_redis:
            row["counter"] = redis.get_int("hit")
        return row
    finally:
        service.stop(grace=15)


def main(argv=None) -> int:
    return session.guard(run, parse_args(argv))


def run(args) -> int:
    name = session.results_name(datetime.date.today(), "-layout" + ("-quick" if args.quick else ""))
    folder = args.out / name
    raw_dir, log_dir = session.fresh_run_dir(folder)
    missing = [c for c in ("ab", "nginx", "redis-server") if not shutil.which(c)]
    if missing:
        print(f"bench/layout: missing {missing}: run bench/run once to provision them")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="hitcore-layout-"))
    redis = redisctl.RedisServer(log_dir)
    load = {"start": os.getloadavg()}
    rows: dict[str, list[dict]] = {v: [] for v in args.only}
    try:
        redis.wait_ready()
        ctx = servers.Context(port=redisctl.free_port(), redis_url=redis.url, ncpu=os.cpu_count() or 1,
                              server_cpus=None, hitcore=args.hitcore, tmp=tmp)
        for round_no in range(1, args.rounds + 1):
            for variant in args.only:
                row = measure(variant, ctx, redis, args, f"{variant}-r{round_no}", raw_dir, log_dir)
                rows[variant].append(row)
                procs.log(f"round {round_no} {variant}: {row.get('rps')} req/s, failed {row.get('failed')}, "
                          f"CPUs {row.get('cpu_busy_pct')}, ab waited {row.get('ab_wait_us_per_request')} µs/req "
                          f"({row.get('status')})")
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load["end"] = os.getloadavg()
    summary = {"machine": machine.describe(), "load": load, "args": {k: str(v) for k, v in vars(args).items()},
               "rows": rows, "medians": {v: median_row([r for r in rows[v] if r.get("rps")]) for v in rows}}
    session.write_summary(folder, summary)
    report = args.out / f"{name}.md"
    report.write_text(render(summary))
    print(f"bench/layout: wrote {report}")
    return 0


# The report: summary.json as Markdown, machine first. Pure: text in, text out.

def _f(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def render(summary: dict) -> str:
    m = summary["machine"]
    load = summary["load"]
    args = summary["args"]
    medians = summary["medians"]
    lines = [
        "# Where shards run, under the seed test: bench/layout",
        "",
        f"Machine: {m.get('cpu_model')}, {m.get('cpus_online')} CPUs (allowed {m.get('cpus_allowed')}), "
        f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}, {m.get('os')}. Load average at the start "
        f"{load['start'][0]:.2f}, at the end {load['end'][0]:.2f}.",
        "",
        f"`ab -c {args['concurrency']} -n {args['requests']} -r -l` (a connection per request), "
        f"{args['rounds']} interleaved round(s), medians. From /proc over each ab run: each CPU's busy "
        "share, and the time ab and the server's threads spent on a CPU and waiting in a run queue for one "
        "(schedstat), per request; migrations are the server threads' moves between CPUs.",
        "",
        "| Layout | req/s (each round) | × nginx | failed | CPUs busy | ab on CPU / waiting, µs per request "
        "| server on CPU / waiting, µs per request | server migrations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nginx = (medians.get("nginx") or {}).get("rps")
    for variant, med in medians.items():
        if not med.get("rps"):
            status = next((r.get("status") for r in summary["rows"].get(variant, []) if r.get("status")), "no result")
            lines.append(f"| {VARIANTS[variant][0]} | {status} | | | | | | |")
            continue
        ratio = f"{med['rps'] / nginx:.2f}" if nginx else "–"
        each = ", ".join(_f(r) for r in med["rps_all"])
        cpus = " / ".join(f"{v:.0f} %" for v in med["cpu_busy_pct"].values())
        lines.append(
            f"| {VARIANTS[variant][0]} | **{_f(med['rps'])}** ({each}) | {ratio} | {_f(med['failed'])} | {cpus} "
            f"| {_f(med['ab_cpu_us_per_request'], 1)} / {_f(med['ab_wait_us_per_request'], 1)} "
            f"| {_f(med['server_cpu_us_per_request'], 1)} / {_f(med['server_wait_us_per_request'], 1)} "
            f"| {_f(med['server_migrations'])} |")
    lines += ["", "Per process, each round (pid: on CPU / waiting ms, migrations):", ""]
    for variant, rows in summary["rows"].items():
        for i, row in enumerate(rows, 1):
            parts = [f"{p['pid']}: {p['run_ms']:.0f} / {p['wait_ms']:.0f} ms, {p['migrations']}"
                     for p in row.get("processes", [])]
            ab = row.get("ab", {})
            lines.append(f"- {variant}, round {i}: ab {ab.get('run_ms', 0):.0f} / {ab.get('wait_ms', 0):.0f} ms; "
                         + "; ".join(parts))
    return "\n".join(lines) + "\n"
