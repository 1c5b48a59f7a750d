"""bench/tail: the open-loop tail of issue 14's target 3, measured with oha.

1. provision oha (kit/provision.py: `~/.cargo/bin/oha` or PATH if recent enough, else `cargo
   install oha --locked --root bench/.tools`), check the binaries, start the run's one
   password-protected Redis;
2. the generator's own closed-loop maximum: oha without -q (`-c N -z D`) against nginx, then, for
   context, against hitcore and the tokio peer, each started fresh;
3. the offered rates: fractions of nginx's figure (kit/tail_stats.py);
4. rounds (the server order rotated each round): each server started fresh, `SET hit 0`, a short
   warm-up, then for each rate `oha -q RATE --latency-correction -c N -z D -w` (open loop: a
   request's latency counts from when it was due, not when a connection was free), with the CPU
   of oha, the server, Redis and the rest of the machine read from /proc over the steady window,
   Redis's commands in it (the batch size) and the server's involuntary context switches; the
   counter against the 2xx answers after each;
5. fold the rounds into medians, check the goal, and write bench/results/<date>-<host>-tail.md
   (kit/tail_report.py), its PNG (kit/charts.py tail, under bench/.venv's matplotlib), and the
   folder with summary.json, raw/ (oha's JSON) and logs/ (ignored by git).
Every process started is stopped by PID at the end, on error and on Ctrl-C.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from . import machine, measure, perfstat, procs, provision, redisctl, servers, session, tail_report, tail_stats
from .procs import log

SERVERS = ["hitcore", "hitcore-1", "hitcore-pin", "nginx", "tokio"]
DEFAULT_SERVERS = ["hitcore", "nginx", "tokio"]
MODES = {
    "full": {"rounds": 3, "duration": 10, "max_duration": 10, "fractions": [0.10, 0.25, 0.50, 0.75]},
    "quick": {"rounds": 1, "duration": 3, "max_duration": 3, "fractions": [0.25, 0.50]},
}
WARMUP_S = 1
COUNTER_KEY = "hit"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/tail",
        description="Open-loop latency (oha -q RATE --latency-correction) of hitcore, nginx static and the tokio "
                    "peer at fractions of oha's own closed-loop maximum against nginx, in interleaved rounds; "
                    "writes bench/results/<date>-<host>-tail.md with a latency-vs-rate chart.")
    p.add_argument("--quick", action="store_true", help="one round of 3 s at 25 %% and 50 %%: checks the script")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, help="seconds per open-loop measurement (default 10)")
    p.add_argument("--max-duration", type=int, help="seconds of the closed-loop maximum (default 10)")
    p.add_argument("--rates", metavar="LIST", help="fractions of the maximum (default 0.10,0.25,0.50,0.75)")
    p.add_argument("--connections", "-c", type=int, default=100, help="oha -c (default 100)")
    p.add_argument("--only", metavar="LIST", help="servers, comma-separated: " + ", ".join(SERVERS) +
                   " (default hitcore,nginx,tokio; hitcore-1 is `hitcore -w 1`; hitcore-pin is the `hitcore` "
                   "row with --pin, each shard pinned to its CPU, the default before issue 14); nginx is always measured "
                   "for the maximum")
    p.add_argument("--hitcore-flags", default="", metavar="FLAGS",
                   help="extra flags for the `hitcore` row, in shell words (e.g. '-w 1' or '--keep-alive 5')")
    p.add_argument("--hitcore-env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the hitcore rows (repeatable; e.g. HITCORE_SPIN_US=50)")
    p.add_argument("--no-max-all", action="store_true",
                   help="measure the closed-loop maximum against nginx only (not hitcore's and tokio's too)")
    p.add_argument("--max-rps", type=float, metavar="RPS",
                   help="skip the closed-loop measurement and take this as nginx's maximum (development)")
    p.add_argument("--oha-threads", type=int, metavar="N",
                   help="oha --worker-threads (default: oha's own, the physical cores)")
    p.add_argument("--cpus-load", metavar="LIST", help="pin oha with taskset -c LIST")
    p.add_argument("--hitcore", type=Path, metavar="PATH", help="hitcore binary (default target/release/hitcore)")
    p.add_argument("--tokio", type=Path, metavar="PATH",
                   help="tokio peer binary (default bench/peers/tokio-hyper/target/release/tokio-hyper-peer)")
    p.add_argument("--oha", type=Path, metavar="PATH", help="oha binary (default: provisioned, see bench/README.md)")
    p.add_argument("--name", help="results name after the date (default <host>-tail[-quick][-partial])")
    p.add_argument("--out", type=Path, default=session.RESULTS, help="results folder (default bench/results)")
    p.add_argument("--provision", action="store_true",
                   help="only provision (oha, bench/.venv, the tokio peer, hitcore) and exit: no load")
    p.add_argument("--render", type=Path, metavar="DIR",
                   help="only write the report (and chart) again from DIR/summary.json (and DIR/notes.md)")
    return p.parse_args(argv)


def _servers(text: str | None) -> list[str]:
    if not text:
        return list(DEFAULT_SERVERS)
    picked = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in picked if s not in SERVERS]
    if unknown:
        raise ValueError(f"unknown server(s) {', '.join(unknown)} (known: {', '.join(SERVERS)})")
    return [s for s in SERVERS if s in picked]


def _env_pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"--hitcore-env wants NAME=VALUE, not {item!r}")
        out[name] = value
    return out


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        return render_again(args.render, args.out)
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode], mode=mode, connections=args.connections)
    try:
        chosen = _servers(args.only)
        if args.rates:
            settings["fractions"] = tail_stats.parse_fractions(args.rates)
        settings["hitcore_flags"] = shlex.split(args.hitcore_flags)
        settings["hitcore_env"] = _env_pairs(args.hitcore_env)
    except ValueError as error:
        print(f"bench/tail: {error}", file=sys.stderr)
        return 2
    for flag, value, low in (("--rounds", args.rounds, 1), ("--duration", args.duration, 2),
                             ("--max-duration", args.max_duration, 2), ("--connections", args.connections, 1)):
        if value is not None and value < low:
            print(f"bench/tail: {flag} must be at least {low}, not {value}", file=sys.stderr)
            return 2
    for key, value in (("rounds", args.rounds), ("duration", args.duration), ("max_duration", args.max_duration)):
        if value:
            settings[key] = value
    settings["oha_threads"] = args.oha_threads
    settings["cpus_load"] = args.cpus_load
    machine.raise_open_files_limit()
    return session.guard(run, args, settings, chosen)


def render_again(folder: Path, out: Path) -> int:
    summary = json.loads((folder / "summary.json").read_text())
    charts = draw_chart(folder / "summary.json", folder.parent, summary["name"], folder / "logs")
    path = folder.parent / f"{summary['name']}.md"
    path.write_text(tail_report.render(summary, charts, _notes(folder)))
    print(path)
    return 0


def _notes(folder: Path) -> str | None:
    path = folder / "notes.md"
    return path.read_text() if path.exists() else None


def draw_chart(summary_path: Path, out_dir: Path, name: str, log_dir: Path) -> list[str]:
    return [f"{name}.png"] if session.chart("tail", [summary_path, out_dir / f"{name}.png"], log_dir) else []


def provision_all(log_dir: Path, need_binaries: bool) -> tuple[Path | None, str | None]:
    """oha (and, with need_binaries, bench/.venv, the tokio peer, hitcore): (oha's path, problem)."""
    oha, problem = provision.oha(log_dir)
    if need_binaries:
        for step in (lambda: provision.virtualenv("main", log_dir), lambda: provision.tokio_peer(log_dir),
                     lambda: provision.hitcore(log_dir)):
            problem = problem or step()
    return oha, problem


class Bench:
    """The run's state: Redis, the binaries, where outputs go, the port."""

    def __init__(self, args, settings: dict, redis: redisctl.RedisServer, oha: Path, hitcore: Path | None,
                 tokio: Path | None, raw_dir: Path, log_dir: Path):
        self.args, self.settings, self.redis = args, settings, redis
        self.oha, self.hitcore, self.tokio = oha, hitcore, tokio
        self.raw_dir, self.log_dir = raw_dir, log_dir
        self.port = redisctl.free_port()
        self.ncpu = len(os.sched_getaffinity(0))

    def spec(self, server: str) -> servers.Spec:
        ctx = servers.Context(port=self.port, redis_url=self.redis.url, ncpu=self.ncpu, server_cpus=None,
                              hitcore=self.hitcore, tmp=self.log_dir)
        if server == "nginx":
            return servers.nginx(ctx)
        if server == "tokio":
            spec = servers.tokio(ctx)
            spec.argv[0] = str(self.tokio)
            return spec
        if server == "hitcore-1":
            spec = servers.hitcore(ctx, 1)
            shards = 1
        else:
            spec = servers.hitcore(ctx, None, row_id=server)
            flags = self.settings["hitcore_flags"]
            spec.argv += flags
            shards = _shards(flags, self.ncpu)
            spec.title = "hitcore " + " ".join(flags) if flags else f"hitcore (one shard per CPU: {self.ncpu})"
            if server == "hitcore-pin":
                spec.argv.append("--pin")
                spec.title += ", --pin"
        spec.processes, spec.ready_line, spec.ready_count = 1 + shards, "Connected to Redis", shards
        spec.env.update(self.settings["hitcore_env"])
        if self.settings["hitcore_env"]:
            spec.title += " (" + " ".join(f"{k}={v}" for k, v in self.settings["hitcore_env"].items()) + ")"
        return spec

    def oha_argv(self, rate: int | None, duration: int) -> list[str]:
        argv = [str(self.oha), "--no-tui", "--output-format", "json", "-c", str(self.settings["connections"]),
                "-z", f"{duration}s", "-w", "-t", "10s"]
        if self.settings["oha_threads"]:
            argv += ["--worker-threads", str(self.settings["oha_threads"])]
        if rate:
            argv += ["-q", str(rate), "--latency-correction"]
        argv.append(f"http://127.0.0.1:{self.port}/")
        return (["taskset", "-c", self.settings["cpus_load"]] + argv) if self.settings["cpus_load"] else argv

    def start(self, server: str, tag: str) -> tuple[procs.Service, servers.Spec]:
        spec = self.spec(server)
        if servers.port_in_use(self.port) and not servers.wait_port_free(self.port):
            raise session.RunError(f"port {self.port} is still busy")
        service = procs.Service(tag, spec.argv, self.log_dir / f"{tag}.log", env={**os.environ, **spec.env})
        problem = servers.wait_ready(service, spec, self.port)
        if problem:
            service.stop()
            raise session.RunError(f"{server} did not start: {problem}")
        if spec.uses_redis:
            self.redis.set(COUNTER_KEY, 0)
        return service, spec

    def oha_run(self, service: procs.Service, uses_redis: bool, rate: int | None, duration: int,
                raw_name: str | None) -> dict:
        """One oha run against the started server: its parsed JSON, the window's CPU readings and
        the counter check."""
        argv = self.oha_argv(rate, duration)
        server_pids = [service.pid] + procs.descendants(service.pid)
        marks: list[dict] = []

        def reading(proc) -> dict:
            r = {"t": time.monotonic(), "oha": procs.cpu_seconds([proc.pid]),
                 "server": procs.cpu_seconds(server_pids), "redis": procs.cpu_seconds([self.redis.pid]),
                 "machine": measure.machine_cpu_seconds()}
            r["server_wait"] = measure.run_delay(server_pids)
            r["redis_wait"] = measure.run_delay([self.redis.pid])
            r["oha_wait"] = measure.run_delay([proc.pid])
            switches = perfstat.switches_of(perfstat.tasks_of(server_pids))
            r["vol"] = sum(v for v, _ in switches.values())
            r["nonvol"] = sum(n for _, n in switches.values())
            if uses_redis:
                calls = self.redis.command_calls()
                r["incr"], r["incrby"] = calls.get("incr", 0), calls.get("incrby", 0)
                r["counter"] = self.redis.get_int(COUNTER_KEY) or 0
            return r

        def sample(proc) -> None:
            warm = min(1.0, duration * 0.25)
            time.sleep(warm)
            marks.append(reading(proc))
            time.sleep(max(0.2, duration - warm - 0.5))
            marks.append(reading(proc))

        before = self.redis.get_int(COUNTER_KEY) if uses_redis else None
        result = procs.run(argv, timeout=duration + 60, label=f"oha {'-q ' + str(rate) if rate else 'closed loop'}",
                           while_running=sample if raw_name else None)
        if raw_name:
            (self.raw_dir / f"{raw_name}.json").write_text(result.stdout)
        if result.timed_out:
            raise session.RunError(f"oha did not finish within {duration + 60}s")
        if result.returncode != 0:
            raise session.RunError(f"oha exited with status {result.returncode}: {result.tail(2)}")
        try:
            out = {"oha": tail_stats.parse_oha(result.stdout)}
        except tail_stats.OhaError as error:
            raise session.RunError(str(error)) from None
        if len(marks) == 2:
            out["cpu"] = tail_stats.window_cpu(marks[0], marks[1])
        if uses_redis:
            after = self.redis.get_int(COUNTER_KEY)
            delta = None if after is None or before is None else after - before
            out["counter_delta"] = delta
            out["counter"] = tail_stats.counter_check(delta, out["oha"]["ok"], out["oha"]["aborted"],
                                                      self.settings["connections"])
        out["argv"] = " ".join(argv)
        return out


def _shards(flags: list[str], ncpu: int) -> int:
    """The shard count a hitcore command line asks for (-w N, --workers N, --workers=N), else ncpu."""
    for i, flag in enumerate(flags):
        if flag in ("-w", "--workers") and i + 1 < len(flags) and flags[i + 1].isdigit():
            return int(flags[i + 1])
        match = re.fullmatch(r"(?:--workers=|-w)(\d+)", flag)
        if match:
            return int(match.group(1))
    return ncpu


def closed_loop(bench: Bench, server: str) -> dict:
    """oha's closed-loop maximum against `server` (started fresh): a warm-up, then -z max_duration."""
    tag = f"{server}-max"
    log(f"closed loop: oha -c {bench.settings['connections']} -z {bench.settings['max_duration']}s against {server}")
    service, spec = bench.start(server, tag)
    try:
        bench.oha_run(service, spec.uses_redis, None, WARMUP_S, None)
        out = bench.oha_run(service, spec.uses_redis, None, bench.settings["max_duration"], tag)
    finally:
        service.stop()
    out.update(server=server)
    log(f"  {server}: {out['oha']['ok_rps']:,.0f} 2xx/s closed loop, p99 {out['oha']['p99_ms']} ms, "
        f"oha at {out.get('cpu', {}).get('oha_pct', '?')} % of a CPU")
    return out


def server_round(bench: Bench, server: str, rnd: int, rates: dict[float, int]) -> list[dict]:
    tag = f"{server}-r{rnd}"
    out = []
    try:
        service, spec = bench.start(server, tag)
    except session.RunError as error:
        log(f"round {rnd}, {server}: {error}")
        return [{"server": server, "round": rnd, "fraction": f, "rate": r, "error": str(error)}
                for f, r in rates.items()]
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
                log(f"round {rnd}, {server} at {rate:,}/s: p50 {o['p50_ms']} p99 {o['p99_ms']} p99.9 "
                    f"{o['p999_ms']} max {o['max_ms']} ms, {o['ok_rps']:,.0f} 2xx/s, oha "
                    f"{record.get('cpu', {}).get('oha_pct', '?')} %, counter {record.get('counter', '-')}")
            except (session.RunError, OSError, redisctl.RedisError) as error:
                log(f"round {rnd}, {server} at {rate}/s: {error}")
                record["error"] = str(error)
            out.append(record)
            if not service.alive():
                raise session.RunError(f"{server} exited during round {rnd}")
    except session.RunError as error:
        log(f"round {rnd}, {server}: {error}")
        done = {m["fraction"] for m in out}
        out += [{"server": server, "round": rnd, "fraction": f, "rate": r, "error": str(error)}
                for f, r in rates.items() if f not in done]
    finally:
        service.stop()
        record_log = service.log_text()
        if servers.worker_timeouts(record_log):
            for m in out:
                m.setdefault("warning", f"{servers.worker_timeouts(record_log)} WORKER TIMEOUT lines in its log")
    return out


def run(args, settings: dict, chosen: list[str]) -> int:
    started = datetime.datetime.now().astimezone()
    suffix = ("-quick" if args.quick else "") + ("-partial" if args.only or args.rates or args.hitcore_flags or args.hitcore_env else "")
    name = f"{started:%Y-%m-%d}-" + (args.name or f"{session.host_tag()}-tail{suffix}")
    out_dir = args.out.resolve()
    run_dir = out_dir / name
    raw_dir, log_dir = run_dir / "raw", run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.provision:
        oha, problem = provision_all(log_dir, need_binaries=True)
        log(problem or f"provisioned: {oha}")
        return 1 if problem else 0
    session.fresh_run_dir(run_dir, keep_logs=True)  # the logs already hold provisioning's
    if args.oha:
        oha, problem = args.oha.resolve(), None
    else:
        oha, problem = provision_all(log_dir, need_binaries=False)
    if problem:
        log(f"cannot run: {problem}")
        return 1
    for tool in ("redis-server", "nginx") + (("taskset",) if args.cpus_load else ()):
        if not provision._which(tool):
            log(f"cannot run: `{tool}` is not installed (bench/run provisions it)")
            return 1
    try:
        hitcore = session.binary(args.hitcore, provision.HITCORE_BINARY, "hitcore") \
            if any(s.startswith("hitcore") for s in chosen) else None
        tokio = session.binary(args.tokio, provision.TOKIO_BINARY, "the tokio peer") \
            if "tokio" in chosen else None
    except session.RunError as error:
        log(f"cannot run: {error}")
        return 1
    log(f"bench/tail {settings['mode']} run: {', '.join(chosen)}, rates {settings['fractions']} of the maximum, "
        f"{settings['rounds']} rounds of {settings['duration']}s, -c {settings['connections']}; "
        f"results -> {out_dir / name}.md")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    busy_at_start = session.busy_check()
    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    versions = machine.versions(hitcore, redis.version())
    keep = ("hitcore", "tokio-hyper peer", "rustc", "nginx", "redis-server", "python (system, runs the kit)")
    versions = {k: v for k, v in versions.items() if k in keep}
    versions["oha"] = machine._first_line([str(oha), "--version"]) or "unknown"
    bench = Bench(args, settings, redis, oha, hitcore, tokio, raw_dir, log_dir)
    maxima: list[dict] = []
    measurements: list[dict] = []
    try:
        if args.max_rps:
            max_rps = args.max_rps
            maxima.append({"server": "nginx", "given": True, "oha": {"ok_rps": max_rps}})
        else:
            try:
                maxima.append(closed_loop(bench, "nginx"))
            except session.RunError as error:
                log(f"cannot run: the closed-loop maximum against nginx failed: {error}")
                return 1
            max_rps = maxima[0]["oha"]["ok_rps"]
            for server in ([] if args.no_max_all else [s for s in chosen if s != "nginx"]):
                try:
                    maxima.append(closed_loop(bench, server))
                except session.RunError as error:
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
    titles = {s: bench.spec(s).title for s in chosen}
    summary = {
        "name": name, "started": started.isoformat(timespec="seconds"), "settings": settings,
        "command": "bench/tail" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "machine": machine.describe(), "versions": versions, "servers": chosen, "titles": titles,
        "binaries": {k: measure.binary_identity(str(v)) for k, v in (("hitcore", hitcore), ("tokio", tokio), ("oha", oha)) if v},
        "load_at_start": load_at_start, "busy_at_start": busy_at_start,
        "load_at_end": [round(x, 2) for x in os.getloadavg()], "duration_s": round(procs.elapsed(), 1),
        "max_rps": max_rps, "maxima": maxima, "rates": {str(f): r for f, r in rates.items()},
        "measurements": measurements,
    }
    summary["folded"] = tail_stats.fold(measurements)
    summary["verdicts"] = tail_stats.verdicts(summary["folded"])
    charts = draw_chart(session.write_summary(run_dir, summary), out_dir, name, log_dir)
    report_path = out_dir / f"{name}.md"
    report_path.write_text(tail_report.render(summary, charts, _notes(run_dir)))
    log(f"done in {procs.elapsed():.0f}s: {report_path}")
    return 3 if any(m.get("error") for m in measurements) else 0
