"""bench/syscalls: kernel crossings per request, counted, for hitcore, nginx and the tokio peer, a
`compare.Tool` over bench/plans/syscalls.plan (how and why: bench/README.md, "Syscalls per
request"): per round, server and load shape, `perf stat` (kit/perfstat.py) around exactly N
requests; with --instructions, callgrind (kit/callgrind.py). Counts, not times.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from . import (callgrind, compare, compare_plan, compare_report, loadgen, machine, measure, perfstat, procs, provision,
               redisctl, servers, session)
from .procs import RunError, log
from .rounds import stats

PLAN = provision.BENCH / "plans" / "syscalls.plan"
SERVERS = ["hitcore", "nginx", "tokio"]
SHAPES = ["keepalive", "close", "idle"]
SERVER_TITLES = {"hitcore": "hitcore -w 1", "nginx": "nginx, 1 worker (static)",
                 "tokio": "tokio + hyper + redis-rs, 1 worker thread"}
CONNECTIONS = 50
MODES = {
    "full": {"requests": 20000, "warmup": 2000, "rounds": 3, "idle_seconds": 5, "callgrind_requests": 5000},
    "quick": {"requests": 2000, "warmup": 200, "rounds": 1, "idle_seconds": 2, "callgrind_requests": 1000},
}
COUNTER_KEY = "hit"


def per_unit(counts: dict[str, int], units: float) -> dict[str, float]:
    """Every count divided by `units` (requests, or seconds for the idle shape)."""
    return {k: v / units for k, v in counts.items()} if units else {}


def fold(measurements: list[dict]) -> dict:
    """The rounds of each (server, shape) folded: {server: {shape: {"rounds": n, "roles": {role:
    {name: {"median", "min", "max", "values"}}}}}}, over the per-request (per-second for idle)
    counts of every round that completed. A name missing from a round counts 0 in it."""
    groups: dict = {}
    for m in measurements:
        if not m.get("error"):
            groups.setdefault(m["server"], {}).setdefault(m["shape"], []).append(m)
    out: dict = {}
    for server, shapes in groups.items():
        for shape, runs in shapes.items():
            roles = {role: {name: stats([m["per_unit"].get(role, {}).get(name, 0.0) for m in runs])
                            for name in sorted({n for m in runs for n in m["per_unit"].get(role, {})})}
                     for role in sorted({r for m in runs for r in m["per_unit"]})}
            cell = out.setdefault(server, {})[shape] = {"rounds": len(runs), "roles": roles}
            commands = [m["redis_commands_per_request"] for m in runs if m.get("redis_commands_per_request") is not None]
            if commands:
                cell["redis_commands_per_request"] = stats(commands)
    return out


def fold_instructions(records: list[dict]) -> dict:
    """{server: {shape: {"median", "min", "max", "values"}}} of instructions per request."""
    out: dict = {}
    for r in records:
        if not r.get("error") and r.get("per_request") is not None:
            out.setdefault(r["server"], {}).setdefault(r["shape"], []).append(r["per_request"])
    return {sv: {sh: stats(v) for sh, v in shapes.items()} for sv, shapes in out.items()}


class Syscalls:
    """One server's measurements in one round (compare.Tool's measure), and their folding."""

    def __init__(self, settings: dict, shapes: list[str], with_perf: bool, with_callgrind: bool):
        self.settings, self.shapes = settings, shapes
        self.with_perf, self.with_callgrind = with_perf, with_callgrind
        self.port = 0
        self.redis: redisctl.RedisServer | None = None
        self.log_dir = self.raw_dir = Path(".")

    def load(self, shape: str, requests: int, raw_path: Path | None) -> dict:
        """Exactly `requests` requests of the shape; RunError unless every one was answered 2xx."""
        out = loadgen.ab(f"http://127.0.0.1:{self.port}/", requests, CONNECTIONS, 600, shape == "keepalive",
                         raw_path, f"{shape} {requests}")
        if out["error"] or out["ok_2xx"] != requests:
            raise RunError(out["error"] or f"{out['ok_2xx']} of {requests} requests answered 2xx "
                           f"({out['failed']} failed, {out['non_2xx']} non-2xx)")
        return out

    def tool_measure(self, variant, filled: dict, rnd: int, redis, _args, raw_dir: Path, log_dir: Path) -> dict:
        """compare.Tool's measure: perf's shapes, callgrind's, or both, by the options."""
        self.port, self.raw_dir, self.log_dir = filled["port"], raw_dir, log_dir
        self.redis = redis
        name = variant.name
        row = compare.new_row(variant, filled, title=SERVER_TITLES.get(name, name))
        spec = compare.server_spec(variant, filled)
        steps = [("measurements", self.server_round, self.with_perf),
                 ("instructions", self.instructions_round, self.with_callgrind)]
        for key, step, enabled in steps:
            if not enabled:
                continue
            try:
                row[key] = step(name, spec, rnd)
            except RunError as error:
                log(f"round {rnd}, {name}: {error}")
                row[key] = [{"server": name, "shape": "*", "round": rnd, "error": str(error)}]
            failed = [f"{m['shape']}: {m['error']}" for m in row[key] if m.get("error")]
            if failed:
                row["status"] = "; ".join(failed)
        return row

    def fold(self, summary: dict, _run_dir: Path) -> None:
        records = {key: [m for row in summary["rows"] for r in row["rounds"] for m in r.get(key, [])]
                   for key in ("measurements", "instructions")}
        summary.update(servers=[r["id"] for r in summary["rows"]], shapes=self.shapes,
                       measurements=records["measurements"], folded=fold(records["measurements"]))
        if self.with_callgrind:
            summary.update(instructions=records["instructions"],
                           instructions_folded=fold_instructions(records["instructions"]))

    def measure(self, server: str, shape: str, service: procs.Service, uses_redis: bool, rnd: int) -> dict:
        """One shape under perf stat, on a started server."""
        stem, requests = f"{server}-{shape}-r{rnd}", self.settings["requests"]
        record = {"server": server, "shape": shape, "round": rnd, "error": None}
        if shape != "idle":
            self.load(shape, self.settings["warmup"], None)
        server_pids = record["server_pids"] = [service.pid] + procs.descendants(service.pid)
        roles = {tid: "server" for tid in measure.tasks_of(server_pids)}
        redis_pids = [self.redis.pid] if self.redis else []
        roles.update({tid: "redis" for tid in measure.tasks_of(redis_pids)})
        before_cmds, before_hit = self.redis_counts()
        counter = perfstat.Counter(server_pids + redis_pids, self.raw_dir / f"{stem}.perf.csv")
        try:
            record["perf_setup_s"] = round(counter.enable(), 1)
            switches, window = measure.switches_of(roles), time.monotonic()
            if shape == "idle":
                time.sleep(self.settings["idle_seconds"])
                record["load"] = {"seconds": self.settings["idle_seconds"]}
            else:
                record["load"] = self.load(shape, requests, self.raw_dir / f"{stem}.load.txt")
            counter.disable()
            switched = measure.switch_deltas(switches, measure.switches_of(roles), roles)
            # The idle shape is per second of the counted window (enable's ack to disable's ack).
            record["window_s"] = round(time.monotonic() - window, 3)
            text = counter.stop()
        finally:
            counter.close()
        after_cmds, after_hit = self.redis_counts()
        roles.update({tid: "server" for tid in measure.tasks_of(server_pids)})
        by_role = perfstat.aggregate(perfstat.parse(text), roles)
        perfstat.compress(self.raw_dir / f"{stem}.perf.csv")  # ~365 lines per thread, mostly zeros
        # perf's context-switches are both kinds; /proc tells voluntary (the thread blocked: a
        # server's own doing) from nonvoluntary (preempted: the machine's other work).
        for role, kinds in switched.items():
            by_role.setdefault(role, {}).update({f"cs-{kind}": n for kind, n in kinds.items()})
        units = record["window_s"] if shape == "idle" else requests
        commands = {k: after_cmds.get(k, 0) - before_cmds.get(k, 0) for k in ("incr", "incrby")}
        record.update(counts=by_role, units=units,
                      per_unit={role: per_unit(counts, units) for role, counts in by_role.items()},
                      redis_commands=commands, counter_delta=after_hit - before_hit)
        if shape != "idle" and uses_redis:
            record["redis_commands_per_request"] = (commands["incr"] + commands["incrby"]) / requests
            if record["counter_delta"] != requests:
                record["warning"] = f"the counter grew by {record['counter_delta']}, not {requests}"
        srv = by_role.get("server", {})
        log(f"{stem}: {srv.get('total', 0) / units:.2f} syscalls and {srv.get(perfstat.SWITCHES, 0) / units:.3f} "
            f"context switches per {'second' if shape == 'idle' else 'request'} (perf set up in {record['perf_setup_s']}s)")
        return record

    def redis_counts(self) -> tuple[dict, int]:
        """Redis's calls per command and the counter; nothing without a Redis (nginx alone)."""
        if not self.redis:
            return {}, 0
        return self.redis.command_calls(), self.redis.get_int(COUNTER_KEY) or 0

    def each_shape(self, server: str, rnd: int, shapes: list[str], service: procs.Service, one) -> list[dict]:
        """`one(shape)`'s record for each shape on the started server, a failed shape recorded as
        such (the others still measured); then the server stopped."""
        out = []
        try:
            for shape in shapes:
                log(f"round {rnd}: {server}, {shape}")
                try:
                    out.append(one(shape))
                except (RunError, perfstat.PerfError, OSError, redisctl.RedisError) as error:
                    log(f"{server} {shape} round {rnd}: {error}")
                    out.append({"server": server, "shape": shape, "round": rnd, "error": str(error)})
                if not service.alive():
                    raise RunError(f"{server} exited during {shape}")
        finally:
            service.stop(grace=30)
        return out

    def server_round(self, server: str, spec: servers.Spec, rnd: int) -> list[dict]:
        service = servers.start(spec, self.port, self.log_dir / f"{server}-r{rnd}.log", name=f"{server}-r{rnd}")
        return self.each_shape(server, rnd, [s for s in self.shapes if s != "idle" or rnd == 1], service,
                               lambda shape: self.measure(server, shape, service, spec.uses_redis, rnd))

    def instructions_round(self, server: str, spec: servers.Spec, rnd: int) -> list[dict]:
        """The server under callgrind (slow to start: up to 3 minutes), its dumps in
        callgrind/SERVER-rROUND: user-space instructions per request for each shape."""
        if server == "nginx":
            # A forked child under valgrind (nginx's worker) cannot be reached by callgrind_control
            # (no vgdb until it execs): nginx serves from its one process instead, the same event
            # loop and request path as a worker's.
            config = Path(spec.argv[spec.argv.index("-c") + 1])
            config.write_text(config.read_text().replace("master_process on;", "master_process off;"))
            spec.processes = 1
        out_dir = self.log_dir / "callgrind" / f"{server}-r{rnd}"
        out_dir.mkdir(parents=True, exist_ok=True)
        name, requests = f"{server}-callgrind-r{rnd}", self.settings["callgrind_requests"]
        service = servers.start(spec, self.port, self.log_dir / f"{name}.log", name=name,
                                argv=callgrind.wrap(spec.argv, out_dir), timeout=180, settle=2.0)

        def one(shape: str) -> dict:
            record = {"server": server, "shape": shape, "round": rnd, "error": None, "requests": requests}
            self.load(shape, max(1, self.settings["warmup"] // 4), None)
            raw = self.raw_dir / f"{server}-{shape}-r{rnd}.callgrind-load.txt"
            totals = counted(service, out_dir, lambda: record.update(load=self.load(shape, requests, raw)))
            record.update(per_process={str(pid): n for pid, n in totals.items()},
                          instructions=sum(totals.values()), per_request=sum(totals.values()) / requests)
            log(f"{server}-{shape}-r{rnd}: {record['per_request']:.0f} instructions per request (callgrind)")
            return record
        return self.each_shape(server, rnd, [s for s in self.shapes if s != "idle"], service, one)


def counted(service: procs.Service, out_dir: Path, during) -> dict[int, int]:
    """The instructions of each of the server's processes while `during()` runs (counters zeroed
    before it, dumped after it)."""
    pids = [service.pid] + procs.descendants(service.pid)
    if not callgrind.zero(pids):
        raise RunError("callgrind_control -z reached none of the server's processes")
    during()
    totals = callgrind.read_totals(out_dir, callgrind.dump(pids))
    if not totals:
        raise RunError("callgrind wrote no dump")
    return totals


def parse_args(argv):
    p = session.arguments(
        "bench/syscalls", description="Counts syscalls (by name) and context switches per request for hitcore -w 1, nginx "
                    "(1 worker) and the tokio peer (1 thread), keep-alive and a connection per request, with "
                    "perf stat; writes bench/results/<date>-syscalls/summary.md.")
    p.add_argument("--quick", action="store_true", help="2000 requests, one round: to check the script")
    p.add_argument("--requests", type=compare.at_least(1), help="requests per measurement (default 20000)")
    p.add_argument("--rounds", type=compare.at_least(1), help="rounds (default 3)")
    p.add_argument("--only", metavar="LIST", type=session.choice(SERVERS, "server(s)"),
                   help="servers, comma-separated: " + ", ".join(SERVERS))
    p.add_argument("--shapes", metavar="LIST", type=session.choice(SHAPES, "shape(s)"),
                   help="load shapes, comma-separated: " + ", ".join(SHAPES))
    p.add_argument("--instructions", action="store_true",
                   help="also count user-space instructions per request under callgrind (5000 requests per "
                        "shape and round; slow)")
    p.add_argument("--instructions-only", action="store_true", help="only the callgrind part, no perf")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen, shapes = args.only or list(SERVERS), args.shapes or list(SHAPES)
    plan = compare_plan.parse_plan(PLAN.read_text())
    plan.only(chosen)
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode], mode=mode)
    settings.update({k: v for k, v in (("requests", args.requests), ("rounds", args.rounds)) if v})
    with_perf, with_callgrind = not args.instructions_only, args.instructions or args.instructions_only
    tools = ("ab", "redis-server") + (("perf",) if with_perf else ()) + \
        (("valgrind", "callgrind_control") if with_callgrind else ()) + (("nginx",) if "nginx" in chosen else ())
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        log(f"cannot run: `{missing[0]}` is not installed (perf: apt-get install linux-perf; valgrind)")
        return 1
    settings["perf"] = machine.first_line(["perf", "--version"]) if with_perf else None
    args.name = "syscalls" + ("-quick" if args.quick else "") + ("-instructions" if args.instructions_only else "") \
        + ("-partial" if args.only or args.shapes else "")
    args.plan, args.rounds, args.dry_run = PLAN, settings["rounds"], False
    args.connections, args.duration = CONNECTIONS, None
    run = Syscalls(settings, shapes, with_perf, with_callgrind)
    tool = compare.Tool(measure=run.tool_measure, render=compare_report.syscalls_render, table=None,
                        summary={"syscalls": settings}, name="bench/syscalls", fold=run.fold)
    machine.raise_open_files_limit()
    return session.guard(compare.run, args, plan, {}, tool)
