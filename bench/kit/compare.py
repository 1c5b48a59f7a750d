"""bench/compare: a plan's variants side by side under wrk, in interleaved rounds (bench/README.md,
*Variants side by side*, says what it measures and reports): the options and start the tools on its
run share, the run (one Redis; each round, each variant started, measured under wrk or by a `Tool`,
stopped by PID), the measure under wrk with the steady window's readings and @attack or @flood
beside it, and the summary: the rounds folded, the goals checked.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import (compare_plan, compare_report, loadgen, machine, md, procs, provision, redisctl, rounds, servers,
               session)
from .attack import Attack, window as attack_window
from .measure import (binary_identity, fd_count, listen_counters, socket_summary, steady_window, window_figures,
                      window_reading)
from .procs import log

WARM_S, MARGIN_S = 1.0, 0.5  # the steady window inside each wrk run


def at_least(minimum: int):
    """An argparse `type`: a whole number ≥ `minimum`, else a usage error (exit 2)."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"a whole number ≥ {minimum}, not {text!r}")
        return int(text)
    return parse


def arguments(prog: str = "bench/compare", description: str = "Runs a plan's variants (bench/plans/*.plan: "
              "named command lines with their environment) side by side under wrk in interleaved rounds, and "
              "writes bench/results/<date>-<name>/summary.md.", load: str = "wrk",
              plan: Path | None = None) -> argparse.ArgumentParser:
    """bench/compare's options; bench/api's and bench/tail's too, which give their `plan` and so have
    no PLAN nor --render (bench/compare renders their results), and under oha (`load`) no --threads."""
    p = session.arguments(prog, description, hitcore="{hitcore} (default target/release/hitcore, built if missing)")
    if plan:
        p.set_defaults(plan=plan)
    else:
        p.add_argument("plan", type=Path, help="the plan file (see bench/plans/ and kit/compare_plan.py)")
        p.add_argument("--render", action="store_true",
                       help="only write summary.md again from PLAN's summary.json (PLAN a results folder)")
    p.add_argument("--rounds", type=at_least(1), default=3, help="interleaved rounds (default 3, or the plan's)")
    p.add_argument("--duration", type=at_least(2), default=5, help=f"{load} seconds (default 5, or the plan's)")
    p.add_argument("--connections", type=at_least(1), default=500, help=f"{load} -c (default 500, or the plan's)")
    if load == "wrk":
        p.add_argument("--threads", type=at_least(1), default=2, help="wrk -t (default 2)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="fill the plan's {NAME} placeholder (e.g. --set baseline=../old/hitcore)")
    p.add_argument("--name", help="results folder name after the date (default: the plan's file name)")
    p.add_argument("--only", type=lambda text: [n for n in text.split(",") if n], metavar="LIST",
                   help="only these variants, comma-separated (goals about others are dropped)")
    p.add_argument("--quick", action="store_true", help="one round of 3 s (`-quick` after the results name): "
                   "checks a plan")
    p.add_argument("--dry-run", action="store_true", help="print the filled command lines and exit")
    return p


def parse_args(argv):
    return arguments().parse_args(argv)


def start(parser: argparse.ArgumentParser, argv: list[str]):
    """What bench/compare, bench/api and bench/tail do first: `argv` parsed, the plan read, `argv`
    parsed again after the plan's `defaults` (so the command line's options win), --set read, --quick
    made one round of 3 s, the open-files limit raised. (args, plan, sets); PlanError or OSError."""
    plan = compare_plan.parse_plan(parser.parse_args(argv).plan.read_text())
    args = parser.parse_args(plan.defaults + argv)
    sets = compare_plan.parse_sets(args.set)
    if args.quick:
        args.rounds, args.duration = 1, 3
    nofile = machine.raise_open_files_limit()
    if nofile[0] < args.connections + 256:
        log(f"warning: the open-files limit is {nofile[0]} (hard {nofile[1]}), too few for -c {args.connections} "
            "(a descriptor per connection, in the client and in a server): raise the hard limit (`ulimit -Hn`)")
    args.limits = machine.limits(nofile)
    return args, plan, sets


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.render:
        summary = json.loads((args.plan / "summary.json").read_text())
        render = compare_report.tail_render if "tail" in summary else compare_report.render
        (args.plan / "summary.md").write_text(render(summary))
        print(args.plan / "summary.md")
        return 0
    try:
        args, plan, sets = start(arguments(), argv)
        if args.only:
            plan.only(args.only)
    except (OSError, compare_plan.PlanError) as error:
        print(f"bench/compare: {args.plan}: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return 2
    if args.quick:
        args.name = (args.name or args.plan.stem) + "-quick"
    try:
        return session.guard(run, args, plan, sets)
    except compare_plan.PlanError as error:  # a placeholder unknown once filled: before anything ran
        print(f"bench/compare: {args.plan}: {error}", file=sys.stderr)
        return 2


def new_row(variant, filled: dict, **extra) -> dict:
    """A variant's row for one round, as kit/rounds.py folds it; the measure fills its "tests"."""
    return {"id": variant.name, "title": variant.name, "argv": " ".join(filled["argv"]),
            "uses_redis": variant.uses_redis, "status": "ok", "tests": {}, **extra}


@contextlib.contextmanager
def started(variant, filled: dict, redis, log_path: Path, row: dict, **start):
    """The variant's server started and ready (procs.RunError if not), the counter at 0; on leaving,
    stopped by PID, with its exit status and WORKER TIMEOUT lines in `row`. `start`: servers.start's
    options."""
    service = servers.start(server_spec(variant, filled), filled["port"], log_path, name=log_path.stem, **start)
    try:
        if redis and variant.uses_redis:
            redis.set("hit", 0)
        yield service
    finally:
        row["exit_status"] = service.stop(grace=15)
        row["worker_timeouts"] = servers.worker_timeouts(service.log_text())


def server_spec(variant, filled: dict) -> servers.Spec:
    """A variant's server as servers' start and readiness take it: ready once its processes run and,
    with @shards, once every shard logged that it reached Redis."""
    processes, shards = variant.readiness(filled["cpus"])
    return servers.Spec(variant.name, variant.name, filled["argv"], env=filled["env"],
                        uses_redis=variant.uses_redis, processes=processes,
                        ready_line="Connected to Redis" if shards else "", ready_count=shards, https=variant.https)


def measure(variant, filled: dict, round_no: int, redis: redisctl.RedisServer | None, args, raw_dir: Path,
            log_dir: Path) -> dict:
    """One variant, one round: start, wrk with the samplers, stop. Returns the round's row."""
    tag = f"{variant.name}-r{round_no}"
    redis = redis if variant.uses_redis else None
    row = new_row(variant, filled, load_before=round(os.getloadavg()[0], 2), log=f"{tag}.log")
    if variant.attack:
        row["attack"] = f"slowloris:{variant.attack}"
    try:
        with started(variant, filled, redis, log_dir / f"{tag}.log", row) as service:
            row["tests"]["wrk"] = under_wrk(variant, filled, service, redis, args, log_dir / f"{tag}-attack.log",
                                            raw_dir / f"{tag}.txt", row)
    except procs.RunError as error:
        row["status"] = str(error)
    finally:
        shutil.rmtree(filled["scratch"], ignore_errors=True)
    log(f"{tag}: " + (md.brief(row["tests"]["wrk"]) if row["tests"] else row["status"]))
    return row


def under_wrk(variant, filled: dict, service, redis, args, attack_log: Path, raw: Path, row: dict) -> dict:
    """wrk against the started server, with the steady window's readings, the attackers or the
    flood beside it when the variant asks for them; the wrk result with every figure."""
    port = filled["port"]
    flood, attack = [], None
    try:
        server_pids = [service.pid] + procs.descendants(service.pid)
        result = {}
        if variant.attack:
            # The server's memory before the attackers, against its peak beside them: what each
            # connection they hold costs it.
            result["rss_before_attack_kib"] = sum(procs.memory_kib(pid)[0] for pid in server_pids)
            attack = Attack(variant.attack, port, attack_log, args.duration + 150)
            result["attack_ramp_s"] = attack.wait_ready()
        groups = {"redis": [redis.pid] if redis else [], "server": server_pids}
        if attack:  # its CPU is neither the server's nor other work
            groups["attacker"] = [attack.pid]

        def reading(proc) -> dict:
            r = window_reading(groups | {"wrk": [proc.pid]}, redis)
            # How the connections spread over the server's processes (open descriptors: a shard's or
            # worker's connections plus a few of its own), and the kernel's socket totals: the
            # window's end is what a run with many connections reports.
            r.update(fds=[fd_count(pid) for pid in server_pids], ss=socket_summary())
            return r

        marks, sample = steady_window(args.duration, WARM_S, MARGIN_S, reading)
        url = f"{'https' if variant.https else 'http'}://127.0.0.1:{port}/"
        flood += [subprocess.Popen(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time",
                                   str(args.duration)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for _ in range(variant.flood)]
        listen0 = listen_counters()
        memory = procs.TreeSampler(service.pid, pss=False)
        memory.start()
        wrk_t0 = time.monotonic()
        result.update(loadgen.wrk(url, args.threads, args.connections, args.duration, raw, None,
                                  while_running=sample, headers=("Connection: close",) if variant.close else ()))
        wrk_t1 = time.monotonic()
        memory.stop()
        result["peak_rss_kib"] = memory.peak_rss_kib
        listen1 = listen_counters()
        if attack:
            result.update(attack_window(attack.stop(), wrk_t0, wrk_t1))
            if result.get("attack_open_avg"):
                result["kib_per_attack_conn"] = round(
                    (result["peak_rss_kib"] - result["rss_before_attack_kib"]) / result["attack_open_avg"], 2)
        if flood:
            result["flood_handshakes_per_s"] = flood_rate(flood, args.duration)
        # Connections the kernel turned away at a full accept queue during the whole wrk run (its
        # connect burst included): the whole machine's count, but only this run opens connections.
        result.update({k: listen1[k] - listen0[k] for k in listen1 if k in listen0})
        time.sleep(0.3)  # requests in flight when wrk stopped finish in the server
        if redis:
            result["counter_after"] = redis.get_int("hit")
        if len(marks) == 2:
            result.update(window_figures(*marks, answered_rps=result.get("rps")))
            result["server_fds"] = marks[1].get("fds")
            result["ss_tcp"] = marks[1].get("ss")
        if result["error"]:
            row["status"] = f"wrk: {result['error']}"
        if not service.alive():
            row["status"] = f"exited during wrk with status {service.proc.returncode}"
        return result
    finally:
        if attack:
            attack.stop()
        for client in flood:  # s_time stops by itself after -time; this is for a run cut short
            if client.poll() is None:
                client.kill()
                client.wait()


def flood_rate(clients: list[subprocess.Popen], duration: int) -> float | None:
    """The handshakes per second the @flood clients completed together (openssl s_time's
    `N connections in T real seconds`; its other line divides by user CPU seconds), or None if one
    said nothing usable."""
    total = 0.0
    for client in clients:
        try:
            out = client.communicate(timeout=duration + 30)[0]
        except subprocess.TimeoutExpired:
            client.kill()
            return None
        found = re.search(r"(\d+) connections in (\d+) real seconds", out)
        if not found or float(found.group(2)) <= 0:
            return None
        total += int(found.group(1)) / float(found.group(2))
    return round(total, 1)


@dataclass
class Tool:
    """What a tool built on this run brings of its own (bench/api, bench/tail): how one variant is
    measured in one round (measure's signature), its report, its console table (None: the report's
    digest, md.digest) and summary keys; `prepare(fill, redis, args, raw_dir, log_dir)` runs once
    before the rounds (bench/tail's closed-loop maximum; `fill(variant)` gives a variant's filled
    command line) and returns why the run cannot go on, or None; `fold(summary, run_dir)` adds the
    tool's figures to the summary before it is written."""
    measure: Callable = measure
    render: Callable = compare_report.render
    table: Callable | None = compare_report.table
    summary: dict = field(default_factory=dict)
    name: str = "bench/compare"
    prepare: Callable | None = None
    fold: Callable | None = None


def missing(plan, args, sets: dict, values: dict, log_dir: Path) -> str | None:
    """What the plan's commands need and cannot have, or None: hitcore, the tokio peer and
    bench/.venv (a plan's gunicorn) are built or installed when missing, as bench/run does."""
    used = plan.placeholders()
    problem = None
    if "hitcore" in used and not args.hitcore and "hitcore" not in sets:
        problem = provision.hitcore(log_dir)
    if not problem and "tokio" in used and "tokio" not in sets and not provision.TOKIO_BINARY.exists():
        problem = provision.tokio_peer(log_dir)
    if not problem and any(".venv/" in w for v in plan.variants for w in v.words()):
        problem = provision.virtualenv("main", log_dir)
    for key in ("hitcore", "tokio"):
        if not problem and key in used and not os.access(values[key], os.X_OK):
            problem = f"{{{key}}} = {values[key]} is not an executable file"
    return problem


def run(args, plan, sets, tool: Tool | None = None) -> int:
    tool = tool or Tool()
    started = datetime.datetime.now(datetime.timezone.utc)
    name = args.name or args.plan.stem
    run_dir = args.out.resolve() / f"{started:%Y-%m-%d}-{name}"
    raw_dir, log_dir = session.fresh_run_dir(run_dir)

    hitcore = args.hitcore.resolve() if args.hitcore else provision.HITCORE_BINARY
    cpus = len(os.sched_getaffinity(0))
    base_values = {"hitcore": str(hitcore), "tokio": str(provision.TOKIO_BINARY), "cpus": str(cpus),
                   "connections": str(args.connections)}
    base_values.update(sets)
    used = plan.placeholders()
    problem = None if args.dry_run else missing(plan, args, sets, base_values, log_dir)
    if problem:
        log(f"cannot run: {problem}")
        return 1
    # Every placeholder known before anything starts: a typo fails now, not after the first round.
    probe_values = dict.fromkeys(compare_plan.KIT_PLACEHOLDERS, "x") | base_values
    for v in plan.variants:
        for word in v.words():
            compare_plan.fill(word, probe_values)

    load_at_start = os.getloadavg()
    summary = {
        "name": name, "plan": str(args.plan), "plan_text": args.plan.read_text(), "title": plan.title,
        "command": shlex.join([tool.name] + sys.argv[1:]), "started_utc": started.isoformat(timespec="seconds"),
        "machine": machine.describe(), "busy_at_start": session.busy_check(),
        "load_at_start": [round(x, 2) for x in load_at_start], "limits": getattr(args, "limits", None),
        "settings": {"rounds": args.rounds, "duration": args.duration, "connections": args.connections,
                     "threads": getattr(args, "threads", None), "warm_s": WARM_S, "margin_s": MARGIN_S},
    }
    log(f"{tool.name} {plan.title}: {len(plan.variants)} variants × {args.rounds} rounds; load average "
        f"{load_at_start[0]:.2f}; results -> {run_dir}")
    with tempfile.TemporaryDirectory(prefix="hitcore-compare-") as tmp:
        tmp = Path(tmp)
        redis = None
        if "redis_url" in used:
            redis = redisctl.RedisServer(log_dir, workdir=tmp)
            redis.wait_ready()
            base_values["redis_url"] = redis.url
            summary["redis"] = [f"redis-server on 127.0.0.1:{redis.port} (password, no persistence)"]
        if used & {"tls_cert", "tls_key"} or any(v.https for v in plan.variants):
            cert, key = servers.certificate(tmp / "https-cert")
            base_values.update(tls_cert=str(cert), tls_key=str(key))
        summary["versions"] = machine.versions(hitcore if hitcore.exists() else None,
                                               redis.version() if redis else None)
        summary["binaries"] = {k: binary_identity(base_values[k]) for k in sorted(used & set(base_values))
                               if os.access(base_values[k], os.X_OK)}

        def fill(v) -> dict:
            """A variant's command line and environment with every placeholder filled for one start:
            a fresh port and scratch folder, and its nginx config when it names one."""
            scratch = tmp / f"scratch-{v.name}"
            scratch.mkdir(parents=True, exist_ok=True)
            port = redisctl.free_port()
            values = dict(base_values, bind=f"127.0.0.1:{port}", port=str(port), tmp=str(scratch))
            if "nginx_conf" in v.placeholders():
                tls = (values["tls_cert"], values["tls_key"]) if v.https else None
                # Room for wrk's clients and the attackers', as an operator expecting them would give.
                clients = args.connections + (v.attack + 100 if v.attack else 0)
                # One worker per CPU, or the processes @procs names less the master.
                workers = v.procs - 1 if v.procs_given and v.procs > 1 else cpus
                conf, _limits = servers.write_nginx_conf(scratch, values["bind"], workers, clients, tls)
                values["nginx_conf"] = str(conf)
            return {"argv": [compare_plan.fill(w, values) for w in v.argv],
                    "env": {k: compare_plan.fill(x, values) for k, x in v.env.items()},
                    "port": port, "cpus": cpus, "scratch": scratch}

        try:
            problem = tool.prepare and not args.dry_run and tool.prepare(fill, redis, args, raw_dir, log_dir)
            if problem:
                log(f"cannot run: {problem}")
                return 1
            per_round, meta = [], []
            for rnd in range(1, args.rounds + 1):
                log(f"round {rnd} of {args.rounds}")
                meta.append({"round": rnd, "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S"),
                             "load1": round(os.getloadavg()[0], 2)})
                rows = []
                for v in plan.variants:
                    filled = fill(v)
                    if args.dry_run:
                        env = " ".join(f"{k}=…" for k in filled["env"])
                        print(f"{v.name}: {env} {' '.join(filled['argv'])}")
                        continue
                    rows.append(tool.measure(v, filled, rnd, redis, args, raw_dir, log_dir))
                if args.dry_run:
                    return 0
                per_round.append(rows)
        finally:
            if redis:
                redis.stop()
    rows = rounds.aggregate(per_round)
    summary.update(rounds=meta, load_at_end=[round(x, 2) for x in os.getloadavg()], rows=rows, base=plan.base,
                   goals=compare_plan.check_goals(plan, {r["id"]: r["tests"].get("wrk", {}) for r in rows}),
                   duration_s=round(procs.elapsed(), 1), **tool.summary)
    if tool.fold:
        tool.fold(summary, run_dir)
    session.write_summary(run_dir, summary)
    failed = [f"{r['id']} ({r['status']})" for r in summary["rows"] if r["status"] != "ok"]
    return session.finish(run_dir / "summary.md", tool.render(summary), failed,
                          tool.table(summary) if tool.table else None)
