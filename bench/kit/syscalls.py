"""bench/syscalls: kernel crossings per request, counted, for hitcore, nginx and the tokio peer
(issue 14's starting measurement; see bench/README.md, "Syscalls per request").

For each round, each server in turn (hitcore -w 1, nginx with one worker, the tokio + hyper +
redis-rs peer with one worker thread), started fresh on a free port against the run's one Redis,
and for each load shape:

- keepalive  `ab -k -c 50 -n N`: 50 keep-alive connections, one request in flight on each;
- close      `ab -c 50 -n N`: a new connection per request (the seed test's shape);
- pipelined  kit/pipeclient.py: 50 keep-alive connections, 16 requests written at once on each;
- idle       no load for a few seconds (round 1 only): the background a server costs per second;

it runs a short warm-up of the same shape, attaches `perf stat` (kit/perfstat.py) to the server's
processes and to redis-server, enables the counters, runs exactly N requests, disables them, and
divides every syscall count and the context switches by the requests answered. Redis's INFO
commandstats before and after give the Redis commands per request (hitcore's coalescing).

Counts, not times: nothing here reports a rate, so a busy machine changes the numbers only where
the batching itself changes (how many requests one read or one Redis command carries).
Raw perf (gzipped) and load-generator outputs go to bench/results/<date>-<host>-syscalls/raw/, every count
to its summary.json, and the tables to bench/results/<date>-<host>-syscalls.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from . import callgrind, machine, perfstat, procs, provision, redisctl, servers, session
from .procs import log

PIPECLIENT = Path(__file__).resolve().with_name("pipeclient.py")
SERVERS = ["hitcore", "nginx", "tokio"]
SHAPES = ["keepalive", "close", "pipelined", "idle"]
SERVER_TITLES = {"hitcore": "hitcore -w 1", "nginx": "nginx, 1 worker (static)",
                 "tokio": "tokio + hyper + redis-rs, 1 worker thread"}
SHAPE_TITLES = {"keepalive": "keep-alive (`ab -k -c 50`)", "close": "a connection per request (`ab -c 50`)",
                "pipelined": "pipelined keep-alive (50 connections × 16 requests per write)",
                "idle": "idle (no load)"}
CONNECTIONS, DEPTH = 50, 16
MODES = {
    "full": {"requests": 20000, "warmup": 2000, "rounds": 3, "idle_seconds": 5, "callgrind_requests": 5000},
    "quick": {"requests": 2000, "warmup": 200, "rounds": 1, "idle_seconds": 2, "callgrind_requests": 1000},
}
COUNTER_KEY = "hit"


RunError = session.RunError  # bench/tests/test_perfstat.py expects it here


# ---------------------------------------------------------------------------------------------
# Pure helpers (tested by bench/tests/test_perfstat.py)

def load_counts(text: str) -> dict:
    """ab's (and pipeclient's) Complete / Failed / Non-2xx lines -> {complete, failed, non_2xx, ok}."""
    out = {}
    for label, key in (("Complete requests", "complete"), ("Failed requests", "failed"),
                       ("Non-2xx responses", "non_2xx")):
        match = re.search(rf"^{label}:\s+(\d+)", text, re.M)
        out[key] = int(match.group(1)) if match else (None if key == "complete" else 0)
    if out["complete"] is None:
        raise RunError("the load generator printed no 'Complete requests' line")
    out["ok"] = out["complete"] - out["failed"] - out["non_2xx"]
    return out


def per_unit(counts: dict[str, int], units: float) -> dict[str, float]:
    """Every count divided by `units` (requests, or seconds for the idle shape)."""
    return {k: v / units for k, v in counts.items()} if units else {}


def fold(measurements: list[dict]) -> dict:
    """The rounds of each (server, shape) folded: {server: {shape: {"rounds": n, "roles": {role:
    {name: {"median", "min", "max", "values"}}}}}}, over the per-request (per-second for idle)
    counts of every round that completed. A name missing from a round counts 0 in it."""
    groups: dict = {}
    for m in measurements:
        if m.get("error"):
            continue
        groups.setdefault(m["server"], {}).setdefault(m["shape"], []).append(m)
    out: dict = {}
    for server, shapes in groups.items():
        for shape, runs in shapes.items():
            roles: dict = {}
            for role in sorted({r for m in runs for r in m["per_unit"]}):
                names = sorted({n for m in runs for n in m["per_unit"].get(role, {})})
                roles[role] = {}
                for name in names:
                    values = [m["per_unit"].get(role, {}).get(name, 0.0) for m in runs]
                    roles[role][name] = {"median": statistics.median(values), "min": min(values),
                                         "max": max(values), "values": values}
            extra = {}
            for key in ("redis_commands_per_request", "incrby_per_request"):
                values = [m[key] for m in runs if m.get(key) is not None]
                if values:
                    extra[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
            out.setdefault(server, {})[shape] = {"rounds": len(runs), "roles": roles, **extra}
    return out


# ---------------------------------------------------------------------------------------------
# Running

class Run:
    def __init__(self, args, settings: dict, raw_dir: Path, log_dir: Path, redis: redisctl.RedisServer,
                 hitcore: Path, tokio: Path):
        self.args = args
        self.settings = settings
        self.raw_dir = raw_dir
        self.log_dir = log_dir
        self.redis = redis
        self.hitcore = hitcore
        self.tokio = tokio
        self.port = args.port or redisctl.free_port()

    def spec(self, server: str) -> servers.Spec:
        ctx = servers.Context(port=self.port, redis_url=self.redis.url, ncpu=1, server_cpus=None,
                              hitcore=self.hitcore, tmp=self.log_dir)
        if server == "hitcore":
            return servers.hitcore(ctx, 1)
        if server == "nginx":
            return servers.nginx(ctx)
        spec = servers.tokio(ctx)
        spec.argv[0] = str(self.tokio)
        return spec

    def load(self, shape: str, requests: int, raw_path: Path | None) -> dict:
        url = f"http://127.0.0.1:{self.port}/"
        if shape == "pipelined":
            argv = [sys.executable, str(PIPECLIENT), "--port", str(self.port), "--requests", str(requests),
                    "--connections", str(CONNECTIONS), "--depth", str(DEPTH)]
        else:
            argv = ["ab"] + (["-k"] if shape == "keepalive" else []) + [
                "-c", str(CONNECTIONS), "-n", str(requests), "-r", "-l", url]
        result = procs.run(argv, timeout=600, label=f"{shape} {requests}")
        if raw_path:
            raw_path.write_text(f"$ {' '.join(argv)}\n" + result.stdout +
                                (("\n---- stderr ----\n" + result.stderr) if result.stderr.strip() else ""))
        if result.timed_out:
            raise RunError(f"{argv[0]} did not finish {requests} requests within 600s")
        counts = load_counts(result.stdout)
        if counts["ok"] != requests:
            raise RunError(f"{counts['ok']} of {requests} requests answered 2xx "
                           f"({counts['failed']} failed, {counts['non_2xx']} non-2xx): {result.tail(2)}")
        return counts

    def measure(self, server: str, shape: str, service: procs.Service, uses_redis: bool, rnd: int) -> dict:
        stem = f"{server}-{shape}-r{rnd}"
        record = {"server": server, "shape": shape, "round": rnd, "error": None}
        requests = self.settings["requests"]
        if shape != "idle":
            self.load(shape, self.settings["warmup"], None)
        server_pids = [service.pid] + procs.descendants(service.pid)
        roles = {tid: "server" for tid in perfstat.tasks_of(server_pids)}
        roles.update({tid: "redis" for tid in perfstat.tasks_of([self.redis.service.pid])})
        record["server_pids"] = server_pids
        before_cmds = self.redis.command_calls()
        before_hit = self.redis.get_int(COUNTER_KEY) or 0
        counter = perfstat.Counter(server_pids + [self.redis.service.pid], self.raw_dir / f"{stem}.perf.csv")
        try:
            record["perf_setup_s"] = round(counter.enable(), 1)
            switches = perfstat.switches_of(roles)
            window = time.monotonic()
            if shape == "idle":
                time.sleep(self.settings["idle_seconds"])
                record["load"] = {"seconds": self.settings["idle_seconds"]}
            else:
                record["load"] = self.load(shape, requests, self.raw_dir / f"{stem}.load.txt")
            counter.disable()
            switched = perfstat.switch_deltas(switches, perfstat.switches_of(roles), roles)
            # The idle shape is per second of the counted window (enable's ack to disable's ack).
            record["window_s"] = round(time.monotonic() - window, 3)
            text = counter.stop()
        finally:
            counter.close()
        after_cmds = self.redis.command_calls()
        after_hit = self.redis.get_int(COUNTER_KEY) or 0
        roles.update({tid: "server" for tid in perfstat.tasks_of(server_pids)})
        by_role = perfstat.aggregate(perfstat.parse(text), roles)
        # ~365 lines per thread, mostly zeros: kept whole, compressed (zcat reads it).
        perfstat.compress(self.raw_dir / f"{stem}.perf.csv")
        # perf's context-switches are both kinds; /proc tells voluntary (the thread blocked: a
        # server's own doing) from nonvoluntary (preempted: the machine's other work).
        for role, kinds in switched.items():
            for kind, n in kinds.items():
                by_role.setdefault(role, {})[f"cs-{kind}"] = n
        record["counts"] = by_role
        record["threads"] = sorted(perfstat.parse(text))
        units = record["window_s"] if shape == "idle" else requests
        record["units"] = units
        record["per_unit"] = {role: per_unit(counts, units) for role, counts in by_role.items()}
        commands = {k: after_cmds.get(k, 0) - before_cmds.get(k, 0) for k in ("incr", "incrby")}
        record["redis_commands"] = commands
        record["counter_delta"] = after_hit - before_hit
        if shape != "idle" and uses_redis:
            record["redis_commands_per_request"] = (commands["incr"] + commands["incrby"]) / requests
            record["incrby_per_request"] = commands["incrby"] / requests
            if record["counter_delta"] != requests:
                record["warning"] = f"the counter grew by {record['counter_delta']}, not {requests}"
        server_counts = by_role.get("server", {})
        log(f"{stem}: {server_counts.get('total', 0) / units:.2f} syscalls and "
            f"{server_counts.get(perfstat.SWITCHES, 0) / units:.3f} context switches per "
            f"{'second' if shape == 'idle' else 'request'} (perf set up in {record['perf_setup_s']}s)")
        return record

    def server_round(self, server: str, rnd: int, shapes: list[str]) -> list[dict]:
        spec = self.spec(server)
        if servers.port_in_use(self.port) and not servers.wait_port_free(self.port):
            raise RunError(f"port {self.port} is still busy")
        service = procs.Service(f"{server}-r{rnd}", spec.argv, self.log_dir / f"{server}-r{rnd}.log",
                                env={**os.environ, **spec.env})
        out = []
        try:
            problem = servers.wait_ready(service, spec, self.port)
            if problem:
                raise RunError(f"{server} did not start: {problem}")
            for shape in shapes:
                if shape == "idle" and rnd != 1:
                    continue
                log(f"round {rnd}: {server}, {shape}")
                try:
                    out.append(self.measure(server, shape, service, spec.uses_redis, rnd))
                except (RunError, perfstat.PerfError, OSError, redisctl.RedisError) as error:
                    log(f"{server} {shape} round {rnd}: {error}")
                    out.append({"server": server, "shape": shape, "round": rnd, "error": str(error)})
                if not service.alive():
                    raise RunError(f"{server} exited during {shape}")
        finally:
            service.stop()
        return out


    def instructions_round(self, server: str, rnd: int, shapes: list[str]) -> list[dict]:
        """The server under callgrind: user-space instructions per request for each shape."""
        spec = self.spec(server)
        if server == "nginx":
            # A forked child under valgrind (nginx's worker) cannot be reached by callgrind_control
            # (no vgdb until it execs): nginx serves from its one process instead, the same event
            # loop and request path as a worker's.
            config = self.log_dir / "nginx" / "nginx.conf"
            config.write_text(config.read_text().replace("master_process on;", "master_process off;"))
            spec.processes = 1
        if servers.port_in_use(self.port) and not servers.wait_port_free(self.port):
            raise RunError(f"port {self.port} is still busy")
        out_dir = self.log_dir / "callgrind" / f"{server}-r{rnd}"
        out_dir.mkdir(parents=True, exist_ok=True)
        service = procs.Service(f"{server}-callgrind-r{rnd}", callgrind.wrap(spec.argv, out_dir),
                                self.log_dir / f"{server}-callgrind-r{rnd}.log", env={**os.environ, **spec.env})
        requests = self.settings["callgrind_requests"]
        out = []
        try:
            problem = servers.wait_ready(service, spec, self.port, timeout=180, settle=2.0)
            if problem:
                raise RunError(f"{server} did not start under callgrind: {problem}")
            for shape in shapes:
                if shape == "idle":
                    continue
                log(f"callgrind round {rnd}: {server}, {shape}")
                record = {"server": server, "shape": shape, "round": rnd, "error": None, "requests": requests}
                try:
                    self.load(shape, max(1, self.settings["warmup"] // 4), None)
                    pids = [service.pid] + procs.descendants(service.pid)
                    if not callgrind.zero(pids):
                        raise RunError("callgrind_control -z reached none of the server's processes")
                    record["load"] = self.load(shape, requests, self.raw_dir / f"{server}-{shape}-r{rnd}.callgrind-load.txt")
                    reached = callgrind.dump(pids)
                    totals = callgrind.read_totals(out_dir, reached)
                    if not totals:
                        raise RunError("callgrind wrote no dump")
                    record["per_process"] = {str(pid): n for pid, n in totals.items()}
                    record["instructions"] = sum(totals.values())
                    record["per_request"] = record["instructions"] / requests
                    log(f"{server}-{shape}-r{rnd}: {record['per_request']:.0f} instructions per request (callgrind)")
                except (RunError, OSError) as error:
                    log(f"{server} {shape} callgrind round {rnd}: {error}")
                    record["error"] = str(error)
                out.append(record)
                if not service.alive():
                    raise RunError(f"{server} exited under callgrind during {shape}")
        finally:
            service.stop(grace=30)
        return out


def fold_instructions(records: list[dict]) -> dict:
    """{server: {shape: {"median", "min", "max", "values"}}} of instructions per request."""
    out: dict = {}
    for r in records:
        if r.get("error") or r.get("per_request") is None:
            continue
        out.setdefault(r["server"], {}).setdefault(r["shape"], []).append(r["per_request"])
    return {sv: {sh: {"median": statistics.median(v), "min": min(v), "max": max(v), "values": v}
                 for sh, v in shapes.items()} for sv, shapes in out.items()}


# ---------------------------------------------------------------------------------------------
# Report

KEY_NAMES = ["total", "context-switches", "cs-voluntary", "cs-nonvoluntary", "recvfrom", "recvfrom:err", "read", "read:err", "sendto", "write", "writev",
             "epoll_wait", "epoll_ctl", "io_uring_enter", "accept4", "accept4:err", "close", "shutdown", "setsockopt",
             "getsockopt", "getsockname", "ioctl", "clock_gettime", "futex", "sched_yield"]


def _fmt(stat: dict | None, spread: bool = True) -> str:
    if not stat:
        return "0"
    median = stat["median"]
    text = f"{median:.2f}" if median < 100 else f"{median:.0f}"
    if spread and stat["max"] - stat["min"] > 0.005:
        text += f" ({stat['min']:.2f}–{stat['max']:.2f})"
    return text


def render(summary: dict) -> str:
    folded = summary["folded"]
    m = summary["machine"]
    lines = [f"# Syscalls per request: {summary['name']}", "",
             f"`{summary['command']}`, started {summary['started']}, {summary['duration_s']:.0f} s.", "",
             "## Machine", "",
             f"- {m.get('cpu_model')} × {m.get('cpus_online')} CPUs ({m.get('cpus_allowed')} allowed), "
             f"{m.get('memory_gib')} GiB, {m.get('os')}, kernel {m.get('kernel')}",
             f"- load average at start {summary['load_at_start']}, at end {summary['load_at_end']} "
             "(counts, not times: see the method)"]
    for k, v in summary["versions"].items():
        lines.append(f"- {k}: {v}")
    s = summary["settings"]
    lines += [""]
    if summary["measurements"]:
        lines += ["## Method", "",
                  f"Each server on its own, started fresh each round ({s['rounds']} rounds), against one Redis. For each "
                  f"shape: a warm-up of {s['warmup']} requests, then `perf stat -e raw_syscalls:sys_enter,"
                  f"'syscalls:sys_enter_*',context-switches -e syscalls:sys_exit_recvfrom --filter 'ret < 0' (and "
                  f"read, accept4) --per-thread -p <server's processes>,<redis-server>` "
                  f"enabled around exactly {s['requests']} requests ({CONNECTIONS} connections), every count "
                  "divided by the requests. Server processes: hitcore's supervisor and shard, nginx's master and "
                  "worker, the tokio peer's one process (its main thread runs the accept loop, one worker thread "
                  "the connections). Medians of the rounds, (min–max) where they differ. `total` is "
                  "raw_syscalls:sys_enter, every syscall once; the named columns are its largest parts. Context "
                  "switches: perf's count, then (vol.) the voluntary ones from /proc/TID/status (the thread "
                  "blocked; the rest were preemptions by the machine's other work, `cs-nonvoluntary`). `X:err` "
                  "counts the calls of X that failed (ret < 0 on its exit tracepoint: EAGAIN, a recv that found "
                  "no data or an accept that found no connection); they are part of X's count, not added to it.", ""]
    for shape in summary["shapes"] if summary["measurements"] else []:
        if shape == "idle":
            continue
        lines += [f"## {SHAPE_TITLES[shape]}", "",
                  "| server | syscalls / req | context switches / req; voluntary | largest syscalls / req | "
                  "Redis syscalls / req | Redis ctx sw / req; voluntary | Redis commands / req |",
                  "|---|---|---|---|---|---|---|"]
        for server in summary["servers"]:
            cell = folded.get(server, {}).get(shape)
            if not cell:
                lines.append(f"| {SERVER_TITLES[server]} | not measured | | | | | |")
                continue
            srv = cell["roles"].get("server", {})
            red = cell["roles"].get("redis", {})
            tops = sorted(((n, st) for n, st in srv.items() if perfstat.is_syscall(n)),
                          key=lambda kv: -kv[1]["median"])[:6]
            top_text = ", ".join(f"{n} {st['median']:.2f}" for n, st in tops if st["median"] >= 0.005)
            uses = server != "nginx"
            lines.append(
                f"| {SERVER_TITLES[server]} | {_fmt(srv.get('total'))} | {_fmt(srv.get(perfstat.SWITCHES))}; "
                f"vol. {_fmt(srv.get('cs-voluntary'), False)} | "
                f"{top_text} | {_fmt(red.get('total')) if uses else '–'} | "
                f"{_fmt(red.get(perfstat.SWITCHES)) + '; vol. ' + _fmt(red.get('cs-voluntary'), False) if uses else '–'} | "
                f"{_fmt(cell.get('redis_commands_per_request')) if uses else '–'} |")
        lines.append("")
    # Per-name detail: every syscall above 0.01 per request anywhere, server processes.
    shapes = [sh for sh in summary["shapes"] if sh != "idle"] if summary["measurements"] else []
    if shapes:
        lines += ["## Every syscall of the server processes, per request (medians)", ""]
    cols = [(sv, sh) for sh in shapes for sv in summary["servers"] if folded.get(sv, {}).get(sh)]
    names = set()
    for sv, sh in cols:
        names |= {n for n, st in folded[sv][sh]["roles"].get("server", {}).items() if st["median"] >= 0.01}
    order = [n for n in KEY_NAMES if n in names] + sorted(names - set(KEY_NAMES))
    if cols:
        lines.append("| syscall | " + " | ".join(f"{sv} {sh}" for sv, sh in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for n in order:
            vals = [folded[sv][sh]["roles"].get("server", {}).get(n) for sv, sh in cols]
            lines.append(f"| {n} | " + " | ".join(f"{v['median']:.3f}" if v else "0" for v in vals) + " |")
        lines.append("")
    if summary.get("instructions_folded"):
        ins = summary["instructions_folded"]
        shapes_i = [sh for sh in summary["shapes"] if sh != "idle"]
        lines += ["## User-space instructions per request (callgrind)", "",
                  f"The server under `valgrind --tool=callgrind --trace-children=yes`, counters zeroed after a "
                  f"warm-up and dumped after exactly {s['callgrind_requests']} requests (`callgrind_control -z/-d` "
                  "on each of its processes); Ir of all of them, libc included, kernel excluded. Under callgrind "
                  "a server runs ~50× slower, so it finds more requests waiting per wake-up than at full speed. "
                  "nginx runs with `master_process off` here (callgrind_control cannot reach a forked worker): "
                  "one process, the same event loop and request path as its worker.", "",
                  "| server | " + " | ".join(SHAPE_TITLES[sh] for sh in shapes_i) + " |",
                  "|---|" + "---|" * len(shapes_i)]
        for server in summary["servers"]:
            if server not in ins:
                continue
            cells = []
            for sh in shapes_i:
                st = ins[server].get(sh)
                cells.append("–" if not st else f"{st['median']:,.0f}" + (
                    f" ({st['min']:,.0f}–{st['max']:,.0f})" if len(st["values"]) > 1 else ""))
            lines.append(f"| {SERVER_TITLES[server]} | " + " | ".join(cells) + " |")
        lines.append("")
    if "idle" in summary["shapes"] and summary["measurements"]:
        lines += ["## Idle: per second, no load", "", "| server | syscalls / s | context switches / s | largest |",
                  "|---|---|---|---|"]
        for server in summary["servers"]:
            cell = folded.get(server, {}).get("idle")
            if not cell:
                continue
            srv = cell["roles"].get("server", {})
            tops = sorted(((n, st) for n, st in srv.items() if perfstat.is_syscall(n)),
                          key=lambda kv: -kv[1]["median"])[:5]
            lines.append(f"| {SERVER_TITLES[server]} | {_fmt(srv.get('total'))} | "
                         f"{_fmt(srv.get(perfstat.SWITCHES))} | "
                         + ", ".join(f"{n} {st['median']:.1f}" for n, st in tops) + " |")
        lines.append("")
    errors = [m for m in summary["measurements"] + summary.get("instructions", [])
              if m.get("error") or m.get("warning")]
    if errors:
        lines += ["## Problems", ""]
        for m in errors:
            lines.append(f"- {m['server']} {m['shape']} round {m['round']}: {m.get('error') or m.get('warning')}")
        lines.append("")
    lines += [f"Raw outputs: `{summary['name']}/raw/` (`*.perf.csv.gz`: perf's per-thread counts, gzipped; "
              "`*.load.txt`: the load generator's), every number in `summary.json`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/syscalls",
        description="Counts syscalls (by name) and context switches per request for hitcore -w 1, nginx "
                    "(1 worker) and the tokio peer (1 thread), keep-alive, a connection per request and "
                    "pipelined, with perf stat; writes bench/results/<date>-<host>-syscalls.md.")
    p.add_argument("--quick", action="store_true", help="2000 requests, one round: to check the script")
    p.add_argument("--requests", type=int, help="requests per measurement (default 20000)")
    p.add_argument("--rounds", type=int, help="rounds (default 3)")
    p.add_argument("--only", metavar="LIST", help="servers, comma-separated: " + ", ".join(SERVERS))
    p.add_argument("--shapes", metavar="LIST", help="load shapes, comma-separated: " + ", ".join(SHAPES))
    p.add_argument("--instructions", action="store_true",
                   help="also count user-space instructions per request under callgrind (5000 requests per "
                        "shape and round; slow)")
    p.add_argument("--instructions-only", action="store_true", help="only the callgrind part, no perf")
    p.add_argument("--hitcore", type=Path, metavar="PATH", help="hitcore binary (default target/release/hitcore)")
    p.add_argument("--tokio", type=Path, metavar="PATH",
                   help="tokio peer binary (default bench/peers/tokio-hyper/target/release/tokio-hyper-peer)")
    p.add_argument("--port", type=int, default=0, help="port for the servers (default: a free one)")
    p.add_argument("--out", type=Path, default=session.RESULTS, help="results folder (default bench/results)")
    return p.parse_args(argv)


def _list(value: str | None, known: list[str], what: str) -> list[str]:
    if not value:
        return list(known)
    picked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in picked if v not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)} (known: {', '.join(known)})")
    return [k for k in known if k in picked]


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        chosen = _list(args.only, SERVERS, "server(s)")
        shapes = _list(args.shapes, SHAPES, "shape(s)")
    except ValueError as error:
        print(f"bench/syscalls: {error}", file=sys.stderr)
        return 2
    for flag, value in (("--requests", args.requests), ("--rounds", args.rounds)):
        if value is not None and value < 1:
            print(f"bench/syscalls: {flag} must be at least 1, not {value}", file=sys.stderr)
            return 2
    return session.guard(run, args, chosen, shapes)


def run(args, chosen: list[str], shapes: list[str]) -> int:
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode], mode=mode)
    if args.requests:
        settings["requests"] = args.requests
    if args.rounds:
        settings["rounds"] = args.rounds
    machine.raise_open_files_limit()
    started = datetime.datetime.now().astimezone()
    name = session.results_name(started, "-syscalls") + ("-quick" if args.quick else "") + \
        ("-instructions" if args.instructions_only else "") + ("-partial" if args.only or args.shapes else "")
    out_dir = args.out.resolve()
    run_dir = out_dir / name
    raw_dir, log_dir = session.fresh_run_dir(run_dir)
    with_perf = not args.instructions_only
    with_callgrind = args.instructions or args.instructions_only
    tools = ("ab", "redis-server") + (("perf",) if with_perf else ()) + \
        (("valgrind", "callgrind_control") if with_callgrind else ()) + (("nginx",) if "nginx" in chosen else ())
    for tool in tools:
        if not shutil.which(tool):
            log(f"cannot run: `{tool}` is not installed (perf: apt-get install linux-perf; valgrind)")
            return 1
    try:
        hitcore = session.binary(args.hitcore, provision.HITCORE_BINARY, "hitcore") if "hitcore" in chosen else None
        tokio = session.binary(args.tokio, provision.TOKIO_BINARY, "the tokio peer") if "tokio" in chosen else None
    except RunError as error:
        log(f"cannot run: {error}")
        return 1
    log(f"bench/syscalls {mode} run: {', '.join(chosen)} × {', '.join(shapes)}, {settings['requests']} requests, "
        f"{settings['rounds']} rounds; results -> {out_dir / name}.md")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    redis_version = redis.version()
    versions = machine.versions(hitcore, redis_version)
    keep = ("hitcore", "tokio-hyper peer", "rustc", "nginx", "redis-server", "ab", "python (system, runs the kit)")
    versions = {k: v for k, v in versions.items() if k in keep}
    versions["perf"] = machine._first_line(["perf", "--version"]) or "unknown"
    ctx = Run(args, settings, raw_dir, log_dir, redis, hitcore, tokio)
    measurements: list[dict] = []
    instructions: list[dict] = []
    try:
        for rnd in range(1, settings["rounds"] + 1):
            for server in chosen if with_perf else []:
                try:
                    measurements += ctx.server_round(server, rnd, shapes)
                except RunError as error:
                    log(f"round {rnd}, {server}: {error}")
                    measurements.append({"server": server, "shape": "*", "round": rnd, "error": str(error)})
        for rnd in range(1, settings["rounds"] + 1):
            for server in chosen if with_callgrind else []:
                try:
                    instructions += ctx.instructions_round(server, rnd, shapes)
                except RunError as error:
                    log(f"callgrind round {rnd}, {server}: {error}")
                    instructions.append({"server": server, "shape": "*", "round": rnd, "error": str(error)})
    finally:
        redis.stop()
    summary = {
        "name": name, "started": started.isoformat(timespec="seconds"), "settings": settings,
        "command": "bench/syscalls" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "machine": machine.describe(), "versions": versions, "servers": chosen, "shapes": shapes,
        "hitcore_binary": str(hitcore) if hitcore else None, "tokio_binary": str(tokio) if tokio else None,
        "load_at_start": load_at_start, "load_at_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(procs.elapsed(), 1), "measurements": measurements,
    }
    summary["folded"] = fold(measurements)
    if with_callgrind:
        summary["instructions"] = instructions
        summary["instructions_folded"] = fold_instructions(instructions)
    session.write_summary(run_dir, summary)
    report_path = out_dir / f"{name}.md"
    report_path.write_text(render(summary))
    log(f"done in {procs.elapsed():.0f}s: {report_path}")
    return 3 if any(m.get("error") for m in measurements + instructions) else 0
