"""bench/layout: the seed test (`ab -c 500`, a connection per request) against shard layouts, with
what explains its throughput from /proc (bench/README.md, *Where shards run*, says what and why).

Owns the per-run figures and medians, the measure of one layout and the report; the layouts are
plans/layout-ab.plan's variants, the rounds, Redis and summary.json bench/compare's run (its Tool),
the /proc readers machine.py's and measure.py's. The pure parts are tested by bench/tests/test_layout.py.
"""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

from . import compare, compare_plan, loadgen, procs, provision, servers, session
from .machine import busy_percent, cpu_times
from .measure import read_tasks, task_delta
from .md import fmt

PLAN = provision.BENCH / "plans" / "layout-ab.plan"
VARIANTS = {
    # id: (title, hitcore flags or None for nginx)
    "pinned": ("hitcore --pin (one shard pinned to each CPU)", ["--pin"]),
    "default": ("hitcore (default: shards placed by the kernel)", []),
    "w1": ("hitcore -w 1", ["-w", "1"]),
    "nginx": ("nginx return 200 (static, no Redis), one worker per CPU, unpinned", None),
}


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
    p = session.arguments("bench/layout", __doc__.split("\n\n")[0], "the hitcore binary", default=provision.HITCORE_BINARY)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--requests", type=int, default=50000, help="ab -n (default 50000)")
    p.add_argument("--concurrency", type=int, default=500, help="ab -c (default 500)")
    p.add_argument("--only", default=list(VARIANTS), type=session.choice(list(VARIANTS), "variant(s)"), help=f"variants, of {','.join(VARIANTS)}")
    p.add_argument("--quick", action="store_true", help="one round of 5,000 requests: to check the script")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.requests = 1, 5000
    if any(VARIANTS[v][1] is not None for v in args.only) and not args.hitcore.exists():
        p.error(f"{args.hitcore} does not exist: cargo build --release, or pass --hitcore")
    return args


def measure(variant, filled: dict, round_no: int, setups, args, raw_dir: Path, log_dir: Path, _scratch: Path) -> dict:
    """One layout, one round, in bench/compare's run (kit/compare.py's Tool): ab, with /proc read
    around it (each CPU, the server's threads) and ab's own schedstat read until it exits."""
    tag, redis = f"{variant.name}-r{round_no}", setups.by_setup.get(variant.setup() or "")
    spec = compare.server_spec(variant, filled, VARIANTS[variant.name][0])
    row = {"id": spec.id, "title": spec.title, "argv": " ".join(spec.argv), "uses_redis": spec.uses_redis,
           "status": "ok", "tests": {}}
    try:
        service = servers.start(spec, filled["port"], log_dir / f"{tag}.log", name=tag)
    except procs.RunError as error:
        row["status"] = str(error)
        return row
    try:
        if redis:
            redis.set("hit", 0)
        pids = [service.pid] + procs.descendants(service.pid)
        marks: dict = {}
        ab_seen: dict = {}

        def while_running(proc) -> None:
            marks.update(cpu0=cpu_times(), tasks0=read_tasks(pids), t0=time.monotonic())
            while proc.poll() is None:  # ab's own schedstat, read until it exits (the last reading kept)
                ab_seen.update(read_tasks([proc.pid]))
                time.sleep(0.05)

        result = loadgen.ab(f"http://127.0.0.1:{filled['port']}/", args.requests, args.concurrency, 60, False,
                            raw_dir / f"{tag}.txt", None, while_running=while_running)
        t1 = time.monotonic()
        cpus = busy_percent(marks.get("cpu0", {}), cpu_times())
        cpus.pop("cpu", None)  # the table shows each CPU
        tasks0, tasks1 = marks.get("tasks0", {}), read_tasks(pids)
        per_process = [dict(pid=pid, **task_delta({t: v for t, v in tasks0.items() if v["pid"] == pid},
                                                    {t: v for t, v in tasks1.items() if v["pid"] == pid}))
                       for pid in pids]
        ab = figures(result, t1 - marks.get("t0", t1), cpus, task_delta(tasks0, tasks1), per_process,
                     task_delta({}, ab_seen))
        ab.update(status=result.get("error") or "ok", error=result.get("error"))
        if redis:
            ab["counter"] = redis.get_int("hit")
        row["tests"]["ab"] = ab
        procs.log(f"{tag}: {ab.get('rps')} req/s, failed {ab.get('failed')}, CPUs {cpus}, ab waited "
                  f"{ab.get('ab_wait_us_per_request')} µs/req ({ab['status']})")
        return row
    finally:
        service.stop(grace=15)


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = [c for c in ("ab", "nginx", "redis-server") if not shutil.which(c)]
    if missing:
        print(f"bench/layout: missing {missing}: run bench/run once to provision them")
        return 1
    # bench/compare's run over plans/layout-ab.plan's variants (the ones --only names), this measure.
    plan = compare_plan.parse_plan(PLAN.read_text())
    plan.variants = [v for v in plan.variants if v.name in args.only]
    args.plan, args.name, args.dry_run, args.quiet_load = PLAN, f"{session.host_tag()}-layout" + (
        "-quick" if args.quick else ""), False, None
    args.duration, args.connections, args.threads = None, args.concurrency, None
    ab = {"concurrency": args.concurrency, "requests": args.requests, "rounds": args.rounds}
    return session.guard(compare.run, args, plan, {"hitcore": str(args.hitcore.resolve())},
                         compare.Tool(measure, render_run, None, {"ab": ab}, "bench/layout"))


def view(summary: dict) -> dict:
    """bench/compare's summary as the report reads it: each layout's rounds, their medians."""
    rows = {r["id"]: [x["tests"].get("ab") or {"status": x["status"]} for x in r["rounds"]] for r in summary["rows"]}
    return {"machine": summary["machine"], "args": summary["ab"], "rows": rows,
            "load": {"start": summary["load_at_start"], "end": summary.get("load_at_end", [0.0])},
            "medians": {v: median_row([r for r in rs if r.get("rps")]) for v, rs in rows.items()}}


def render_run(summary: dict) -> str:
    return render(view(summary))


# The report: summary.json as Markdown, machine first. Pure: text in, text out.

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
        each = ", ".join(fmt(r) for r in med["rps_all"])
        cpus = " / ".join(f"{v:.0f} %" for v in med["cpu_busy_pct"].values())
        lines.append(
            f"| {VARIANTS[variant][0]} | **{fmt(med['rps'])}** ({each}) | {ratio} | {fmt(med['failed'])} | {cpus} "
            f"| {fmt(med['ab_cpu_us_per_request'], ',.1f')} / {fmt(med['ab_wait_us_per_request'], ',.1f')} "
            f"| {fmt(med['server_cpu_us_per_request'], ',.1f')} / {fmt(med['server_wait_us_per_request'], ',.1f')} "
            f"| {fmt(med['server_migrations'])} |")
    lines += ["", "Per process, each round (pid: on CPU / waiting ms, migrations):", ""]
    for variant, rows in summary["rows"].items():
        for i, row in enumerate(rows, 1):
            parts = [f"{p['pid']}: {p['run_ms']:.0f} / {p['wait_ms']:.0f} ms, {p['migrations']}"
                     for p in row.get("processes", [])]
            ab = row.get("ab", {})
            lines.append(f"- {variant}, round {i}: ab {ab.get('run_ms', 0):.0f} / {ab.get('wait_ms', 0):.0f} ms; "
                         + "; ".join(parts))
    return "\n".join(lines) + "\n"
