"""bench/tail: the open-loop tail of issue 14's target 3, measured with oha (bench/README.md,
"Open-loop tail", says how and why).

Owns the run: oha provisioned, the generator's closed-loop maximum against nginx (and, for context,
the others), the offered rates as fractions of it, interleaved rounds of `oha -q RATE
--latency-correction` against each server started fresh, with the CPU of oha, the server, Redis and
the rest of the machine read from /proc over each steady window and the counter checked after each.
The arithmetic is kit/tail_stats.py's, the report kit/tail_report.py's, the chart kit/charts.py's.
Every process started is stopped by PID at the end, on error and on Ctrl-C.
"""
from __future__ import annotations

import datetime
import os
import re
import shlex
import sys
from pathlib import Path

from . import machine, measure, perfstat, procs, provision, redisctl, servers, session, tail_report, tail_stats
from .procs import RunError, log

SERVERS = ["hitcore", "hitcore-1", "hitcore-pin", "nginx", "tokio"]
DEFAULT_SERVERS = ["hitcore", "nginx", "tokio"]
MODES = {
    "full": {"rounds": 3, "duration": 10, "max_duration": 10, "fractions": [0.10, 0.25, 0.50, 0.75]},
    "quick": {"rounds": 1, "duration": 3, "max_duration": 3, "fractions": [0.25, 0.50]},
}
WARMUP_S = 1
COUNTER_KEY = "hit"


def parse_args(argv):
    p = session.arguments(
        "bench/tail", description="Open-loop latency (oha -q RATE --latency-correction) of hitcore, nginx static and the tokio "
                    "peer at fractions of oha's own closed-loop maximum against nginx, in interleaved rounds; "
                    "writes bench/results/<date>-<host>-tail.md with a latency-vs-rate chart.")
    p.add_argument("--quick", action="store_true", help="one round of 3 s at 25 %% and 50 %%: checks the script")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, help="seconds per open-loop measurement (default 10)")
    p.add_argument("--rates", metavar="LIST", help="fractions of the maximum (default 0.10,0.25,0.50,0.75)")
    p.add_argument("--connections", "-c", type=int, default=100, help="oha -c (default 100)")
    p.add_argument("--only", metavar="LIST", type=session.choice(SERVERS, "server(s)"), help="servers, comma-separated: " + ", ".join(SERVERS) +
                   " (default hitcore,nginx,tokio; hitcore-1 is `hitcore -w 1`; hitcore-pin is the `hitcore` "
                   "row with --pin, each shard pinned to its CPU, the default before issue 14); nginx is always "
                   "measured for the maximum")
    p.add_argument("--hitcore-flags", default="", metavar="FLAGS",
                   help="extra flags for the `hitcore` row, in shell words (e.g. '-w 1' or '--keep-alive 5')")
    p.add_argument("--hitcore-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the hitcore rows (repeatable; e.g. HITCORE_SPIN_US=50)")
    p.add_argument("--max-rps", type=float, metavar="RPS",
                   help="skip the closed-loop measurement and take this as nginx's maximum (development)")
    p.add_argument("--cpus-load", metavar="LIST", help="pin oha with taskset -c LIST")
    p.add_argument("--name", help="results name after the date (default <host>-tail[-quick][-partial])")
    p.add_argument("--provision", action="store_true",
                   help="only provision (oha, bench/.venv, the tokio peer, hitcore) and exit: no load")
    p.add_argument("--render", type=Path, metavar="DIR",
                   help="only write the report (and chart) again from DIR/summary.json (and DIR/notes.md)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        summary = session.read_summary(args.render)
        charts = draw_chart(args.render / "summary.json", args.render.parent, summary["name"], args.render / "logs")
        path = args.render.parent / f"{summary['name']}.md"
        path.write_text(tail_report.render(summary, charts, _notes(args.render)))
        print(path)
        return 0
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode], mode=mode, connections=args.connections, cpus_load=args.cpus_load)
    try:
        if args.rates:
            settings["fractions"] = tail_stats.parse_fractions(args.rates)
        settings["hitcore_flags"] = shlex.split(args.hitcore_flags)
        settings["hitcore_env"] = {}
        for item in args.hitcore_env:
            name, eq, value = item.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"--hitcore-env wants NAME=VALUE, not {item!r}")
            settings["hitcore_env"][name] = value
        for flag, value, low in (("--rounds", args.rounds, 1), ("--duration", args.duration, 2),
                                 ("--connections", args.connections, 1)):
            if value is not None and value < low:
                raise ValueError(f"{flag} must be at least {low}, not {value}")
    except ValueError as error:
        print(f"bench/tail: {error}", file=sys.stderr)
        return 2
    settings.update({k: v for k, v in (("rounds", args.rounds), ("duration", args.duration)) if v})
    machine.raise_open_files_limit()
    return session.guard(run, args, settings, args.only or list(DEFAULT_SERVERS))


def _notes(folder: Path) -> str | None:
    path = folder / "notes.md"
    return path.read_text() if path.exists() else None


def draw_chart(summary_path: Path, out_dir: Path, name: str, log_dir: Path) -> list[str]:
    return [] if session.chart("tail", [summary_path, out_dir / f"{name}.png"], log_dir) is None else [f"{name}.png"]


def _shards(flags: list[str], ncpu: int) -> int:
    """The shard count a hitcore command line asks for (-w N, --workers N, --workers=N), else ncpu."""
    for i, flag in enumerate(flags):
        if flag in ("-w", "--workers") and i + 1 < len(flags) and flags[i + 1].isdigit():
            return int(flags[i + 1])
        match = re.fullmatch(r"(?:--workers=|-w)(\d+)", flag)
        if match:
            return int(match.group(1))
    return ncpu


class Bench:
    """The run's state: Redis, the binaries, where outputs go, the port."""

    def __init__(self, settings: dict, redis: redisctl.RedisServer, oha: Path, hitcore: Path | None,
                 tokio: Path | None, raw_dir: Path, log_dir: Path):
        self.settings, self.redis, self.oha, self.hitcore, self.tokio = settings, redis, oha, hitcore, tokio
        self.raw_dir, self.log_dir = raw_dir, log_dir
        self.port, self.ncpu = redisctl.free_port(), len(os.sched_getaffinity(0))

    def spec(self, server: str) -> servers.Spec:
        ctx = servers.Context(port=self.port, redis_url=self.redis.url, ncpu=self.ncpu, server_cpus=None,
                              hitcore=self.hitcore, tmp=self.log_dir, tokio=self.tokio)
        if server == "nginx":
            return servers.nginx(ctx)
        if server == "tokio":
            return servers.tokio(ctx)
        if server == "hitcore-1":
            spec, shards = servers.hitcore(ctx, 1), 1
        else:
            flags = self.settings["hitcore_flags"]
            spec, shards = servers.hitcore(ctx, None, row_id=server), _shards(flags, self.ncpu)
            spec.argv += flags + (["--pin"] if server == "hitcore-pin" else [])
            spec.title = ("hitcore " + " ".join(flags) if flags else f"hitcore (one shard per CPU: {self.ncpu})") + \
                (", --pin" if server == "hitcore-pin" else "")
        spec.processes, spec.ready_line, spec.ready_count = 1 + shards, "Connected to Redis", shards
        spec.env.update(self.settings["hitcore_env"])
        if self.settings["hitcore_env"]:
            spec.title += " (" + " ".join(f"{k}={v}" for k, v in self.settings["hitcore_env"].items()) + ")"
        return spec

    def start(self, server: str, tag: str) -> tuple[procs.Service, servers.Spec]:
        spec = self.spec(server)
        service = servers.start(spec, self.port, self.log_dir / f"{tag}.log", name=tag)
        if spec.uses_redis:
            self.redis.set(COUNTER_KEY, 0)
        return service, spec

    def oha_run(self, service: procs.Service, uses_redis: bool, rate: int | None, duration: int,
                raw_name: str | None) -> dict:
        """One oha run against the started server: its parsed JSON, the steady window's CPU readings
        (1 s or a quarter in, to 0.5 s before the end) and the counter check."""
        s = self.settings
        argv = [str(self.oha), "--no-tui", "--output-format", "json", "-c", str(s["connections"]), "-z",
                f"{duration}s", "-w", "-t", "10s"] + (["-q", str(rate), "--latency-correction"] if rate else []) + [f"http://127.0.0.1:{self.port}/"]
        argv = (["taskset", "-c", s["cpus_load"]] + argv) if s["cpus_load"] else argv
        server_pids = [service.pid] + procs.descendants(service.pid)

        def reading(proc) -> dict:
            # bench/compare's reading (CPU seconds, the machine's, Redis's calls and the counter),
            # plus each side's run-queue wait and the server's context switches.
            r = measure.window_reading({"oha": [proc.pid], "server": server_pids, "redis": [self.redis.pid]},
                                       self.redis if uses_redis else None, COUNTER_KEY)
            switches = perfstat.switches_of(perfstat.tasks_of(server_pids))
            r.update(server_wait=measure.run_delay(server_pids), redis_wait=measure.run_delay([self.redis.pid]),
                     oha_wait=measure.run_delay([proc.pid]), vol=sum(v for v, _ in switches.values()),
                     nonvol=sum(n for _, n in switches.values()))
            return r

        marks, sample = measure.steady_window(duration, min(1.0, duration * 0.25), 0.5, reading)

        before = self.redis.get_int(COUNTER_KEY) if uses_redis else None
        result = procs.run(argv, timeout=duration + 60, label=f"oha {'-q ' + str(rate) if rate else 'closed loop'}",
                           while_running=sample if raw_name else None)
        if raw_name:
            (self.raw_dir / f"{raw_name}.json").write_text(result.stdout)
        if result.timed_out:
            raise RunError(f"oha did not finish within {duration + 60}s")
        if result.returncode != 0:
            raise RunError(f"oha exited with status {result.returncode}: {result.tail(2)}")
        try:
            out = {"oha": tail_stats.parse_oha(result.stdout), "argv": " ".join(argv)}
        except tail_stats.OhaError as error:
            raise RunError(str(error)) from None
        if len(marks) == 2:
            out["cpu"] = tail_stats.window_cpu(*marks)
        if uses_redis:
            after = self.redis.get_int(COUNTER_KEY)
            delta = out["counter_delta"] = None if after is None or before is None else after - before
            out["counter"] = tail_stats.counter_check(delta, out["oha"]["ok"], out["oha"]["aborted"], s["connections"])
        return out


def closed_loop(bench: Bench, server: str) -> dict:
    """oha's closed-loop maximum against `server` (started fresh): a warm-up, then -z max_duration."""
    log(f"closed loop: oha -c {bench.settings['connections']} -z {bench.settings['max_duration']}s against {server}")
    service, spec = bench.start(server, f"{server}-max")
    try:
        bench.oha_run(service, spec.uses_redis, None, WARMUP_S, None)
        out = bench.oha_run(service, spec.uses_redis, None, bench.settings["max_duration"], f"{server}-max")
    finally:
        service.stop()
    out.update(server=server)
    log(f"  {server}: {out['oha']['ok_rps']:,.0f} 2xx/s closed loop, p99 {out['oha']['p99_ms']} ms, "
        f"oha at {out.get('cpu', {}).get('oha_pct', '?')} % of a CPU")
    return out


def server_round(bench: Bench, server: str, rnd: int, rates: dict[float, int]) -> list[dict]:
    out: list[dict] = []
    failed = lambda error: [{"server": server, "round": rnd, "fraction": f, "rate": r, "error": str(error)}  # noqa: E731
                            for f, r in rates.items() if f not in {m["fraction"] for m in out}]
    try:
        service, spec = bench.start(server, f"{server}-r{rnd}")
    except RunError as error:
        log(f"round {rnd}, {server}: {error}")
        return failed(error)
    try:
        bench.oha_run(service, spec.uses_redis, min(rates.values()), WARMUP_S, None)
        for fraction, rate in rates.items():
            record = {"server": server, "round": rnd, "fraction": fraction, "rate": rate, "error": None,
                      "load1": round(os.getloadavg()[0], 2)}
            try:
                record.update(bench.oha_run(service, spec.uses_redis, rate, bench.settings["duration"],
                                            f"{server}-{int(round(fraction * 1000)):04d}-r{rnd}"))
                o = record["oha"]
                o["achieved_ratio"] = tail_stats.achieved_ratio(o["ok_rps"], rate)
                log(f"round {rnd}, {server} at {rate:,}/s: p50 {o['p50_ms']} p99 {o['p99_ms']} p99.9 {o['p999_ms']} "
                    f"max {o['max_ms']} ms, {o['ok_rps']:,.0f} 2xx/s, oha {record.get('cpu', {}).get('oha_pct', '?')} %, "
                    f"counter {record.get('counter', '-')}")
            except (RunError, OSError, redisctl.RedisError) as error:
                log(f"round {rnd}, {server} at {rate}/s: {error}")
                record["error"] = str(error)
            out.append(record)
            if not service.alive():
                raise RunError(f"{server} exited during round {rnd}")
    except RunError as error:
        log(f"round {rnd}, {server}: {error}")
        out += failed(error)
    finally:
        service.stop()
        timeouts = servers.worker_timeouts(service.log_text())
        for m in out if timeouts else []:
            m.setdefault("warning", f"{timeouts} WORKER TIMEOUT lines in its log")
    return out


def run(args, settings: dict, chosen: list[str]) -> int:
    started = datetime.datetime.now().astimezone()
    partial = args.only or args.rates or args.hitcore_flags or args.hitcore_env
    name = f"{started:%Y-%m-%d}-" + (args.name or f"{session.host_tag()}-tail" + ("-quick" if args.quick else "")
                                     + ("-partial" if partial else ""))
    run_dir = args.out.resolve() / name
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.provision:
        oha, problem = provision.oha(log_dir)
        for step in (lambda: provision.virtualenv("main", log_dir), lambda: provision.tokio_peer(log_dir),
                     lambda: provision.hitcore(log_dir)):
            problem = problem or step()
        log(problem or f"provisioned: {oha}")
        return 1 if problem else 0
    raw_dir, _ = session.fresh_run_dir(run_dir, keep_logs=True)  # the logs already hold provisioning's
    oha, problem = provision.oha(log_dir)
    missing = [t for t in ("redis-server", "nginx") + (("taskset",) if args.cpus_load else ()) if not provision._which(t)]
    problem = problem or (f"`{missing[0]}` is not installed (bench/run provisions it)" if missing else None)
    try:
        hitcore = session.binary(args.hitcore, provision.HITCORE_BINARY, "hitcore") \
            if any(s.startswith("hitcore") for s in chosen) else None
        tokio = session.binary(None, provision.TOKIO_BINARY, "the tokio peer") if "tokio" in chosen else None
    except RunError as error:
        problem = problem or str(error)
    if problem:
        log(f"cannot run: {problem}")
        return 1
    log(f"bench/tail {settings['mode']} run: {', '.join(chosen)}, rates {settings['fractions']} of the maximum, "
        f"{settings['rounds']} rounds of {settings['duration']}s, -c {settings['connections']}; results -> {run_dir}.md")
    summary = session.header(name, started, settings, "bench/tail", session.busy_check())
    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    keep = ("hitcore", "tokio-hyper peer", "rustc", "nginx", "redis-server", "python (system, runs the kit)")
    versions = {k: v for k, v in machine.versions(hitcore, redis.version()).items() if k in keep}
    versions["oha"] = machine._first_line([str(oha), "--version"]) or "unknown"
    bench = Bench(settings, redis, oha, hitcore, tokio, raw_dir, log_dir)
    maxima: list[dict] = []
    measurements: list[dict] = []
    try:
        if args.max_rps:
            max_rps = args.max_rps
            maxima.append({"server": "nginx", "given": True, "oha": {"ok_rps": max_rps}})
        else:
            try:
                maxima.append(closed_loop(bench, "nginx"))
            except RunError as error:
                log(f"cannot run: the closed-loop maximum against nginx failed: {error}")
                return 1
            max_rps = maxima[0]["oha"]["ok_rps"]
            for server in [s for s in chosen if s != "nginx"]:
                try:
                    maxima.append(closed_loop(bench, server))
                except RunError as error:
                    maxima.append({"server": server, "error": str(error)})
        rates = tail_stats.rates(max_rps, settings["fractions"])
        log("offered rates: " + ", ".join(f"{tail_stats.percent_label(f)} = {r:,}/s" for f, r in rates.items()))
        for rnd in range(1, settings["rounds"] + 1):
            shift = (rnd - 1) % len(chosen)
            for server in chosen[shift:] + chosen[:shift]:
                log(f"round {rnd}: {server}")
                measurements += server_round(bench, server, rnd, rates)
    finally:
        redis.stop()
    summary.update(
        versions=versions, servers=chosen, titles={s: bench.spec(s).title for s in chosen},
        binaries={k: measure.binary_identity(str(v)) for k, v in (("hitcore", hitcore), ("tokio", tokio), ("oha", oha)) if v},
        load_at_end=[round(x, 2) for x in os.getloadavg()], duration_s=round(procs.elapsed(), 1), max_rps=max_rps,
        maxima=maxima, rates={str(f): r for f, r in rates.items()}, measurements=measurements,
        folded=tail_stats.fold(measurements))
    summary["verdicts"] = tail_stats.verdicts(summary["folded"])
    charts = draw_chart(session.write_summary(run_dir, summary), run_dir.parent, name, log_dir)
    failed = [f"{m['server']} at {m['rate']:,}/s round {m['round']}" for m in measurements if m.get("error")]
    return session.finish(run_dir.with_name(name + ".md"), tail_report.render(summary, charts, _notes(run_dir)), failed)
