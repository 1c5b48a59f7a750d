"""bench/tail: the open-loop tail (issue 22's goal 2) under oha, a `compare.Tool` over
bench/plans/tail.plan (how and why: bench/README.md, "Open-loop tail"): oha's closed-loop maxima
before the rounds, then in each round each server's oha runs at the offered rates, with their
readings. The arithmetic is kit/tail_stats.py's, the report kit/compare_report.py's.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from . import compare, compare_plan, compare_report, machine, measure, procs, provision, session, tail_stats
from .procs import RunError, log

PLAN = provision.BENCH / "plans" / "tail.plan"
DEFAULT_SERVERS = ["hitcore", "nginx", "tokio"]
# The offered rates, as fractions of oha's closed-loop maximum (the plan's `defaults` line says the
# rest of the load; --quick is one round of 3 s, and a closed-loop maximum of 3 s instead of 10).
FRACTIONS = {"full": [0.10, 0.25, 0.50, 0.75], "quick": [0.25, 0.50]}
WARMUP_S = 1
COUNTER_KEY = "hit"


def main(argv=None) -> int:
    p = compare.arguments("bench/tail", "Open-loop latency (oha -q RATE --latency-correction) of hitcore, nginx "
                          "static and the tokio peer (bench/plans/tail.plan, default hitcore,nginx,tokio) at fractions "
                          "of oha's own closed-loop maximum against nginx (measured whether named or not), in "
                          "interleaved rounds; writes bench/results/<date>-tail/summary.md.", "oha", PLAN)
    p.add_argument("--rates", metavar="LIST", help="fractions of the maximum (default 0.10,0.25,0.50,0.75)")
    p.add_argument("--max-rps", type=float, metavar="RPS",
                   help="skip the closed-loop measurement and take this as nginx's maximum (development)")
    p.add_argument("--cpus-load", metavar="LIST", help="pin oha with taskset -c LIST")
    try:
        args, plan, sets = compare.start(p, list(sys.argv[1:] if argv is None else argv))
        mode = "quick" if args.quick else "full"
        fractions = tail_stats.parse_fractions(args.rates) if args.rates else FRACTIONS[mode]
        nginx = plan.variant("nginx")
        plan.only(args.only or DEFAULT_SERVERS)
    except (ValueError, compare_plan.PlanError) as error:
        print(f"bench/tail: {error}", file=sys.stderr)
        return 2
    args.name = args.name or "tail" + ("-quick" if args.quick else "") + ("-partial" if args.only or args.rates else "")
    settings = {"mode": mode, "max_duration": 3 if args.quick else 10, "fractions": fractions,
                "servers": [v.name for v in plan.variants], "cpus_load": args.cpus_load}
    tail = Tail(args, settings, nginx, plan.variants)
    tool = compare.Tool(measure=tail.measure, render=compare_report.tail_render, table=None, summary={"tail": settings},
                        name="bench/tail", prepare=tail.prepare, fold=tail.fold)
    return session.guard(compare.run, args, plan, sets, tool)


class Tail:
    """The run's oha, offered rates and closed-loop maxima, between prepare() and the rounds."""

    def __init__(self, args, settings: dict, nginx, variants: list):
        self.args, self.settings, self.nginx, self.variants = args, settings, nginx, variants
        self.oha: Path | None = None
        self.rates: dict[float, int] = {}
        self.maxima: list[dict] = []

    def prepare(self, fill, redis, args, raw_dir: Path, log_dir: Path) -> str | None:
        """oha found (or installed), then the closed-loop maxima and the offered rates."""
        self.oha, problem = provision.oha(log_dir)
        if problem:
            return problem
        self.settings["oha"] = machine.first_line([str(self.oha), "--version"]) or "unknown"
        if args.max_rps:
            self.maxima = [{"server": "nginx", "given": True, "oha": {"ok_rps": args.max_rps}}]
        else:
            others = [v for v in self.variants if v.name != "nginx"]
            for variant in [self.nginx] + others:
                try:
                    self.maxima.append(self.closed_loop(variant, fill(variant), redis, raw_dir, log_dir))
                except RunError as error:
                    if variant is self.nginx:
                        return f"the closed-loop maximum against nginx failed: {error}"
                    self.maxima.append({"server": variant.name, "error": str(error)})
        self.rates = tail_stats.rates(self.maxima[0]["oha"]["ok_rps"], self.settings["fractions"])
        log("offered rates: " + ", ".join(f"{tail_stats.percent_label(f)} = {r:,}/s" for f, r in self.rates.items()))
        return None

    def closed_loop(self, variant, filled: dict, redis, raw_dir: Path, log_dir: Path) -> dict:
        """oha's closed-loop maximum against a fresh `variant`: a warm-up, then -z max_duration."""
        seconds = self.settings["max_duration"]
        log(f"closed loop: oha -c {self.args.connections} -z {seconds}s against {variant.name}")
        redis = redis if variant.uses_redis else None
        with compare.started(variant, filled, redis, log_dir / f"{variant.name}-max.log", {}) as service:
            self.oha_run(service, redis, filled["port"], None, WARMUP_S, None)
            out = self.oha_run(service, redis, filled["port"], None, seconds, raw_dir / f"{variant.name}-max.json")
        log(f"  {variant.name}: {out['oha']['ok_rps']:,.0f} 2xx/s closed loop, p99 {out['oha']['p99_ms']} ms")
        return dict(out, server=variant.name)

    def oha_run(self, service: procs.Service, redis, port: int, rate: int | None, duration: int,
                raw: Path | None) -> dict:
        """One oha run against the started server: its parsed JSON, the steady window's CPU readings
        (1 s or a quarter in, to 0.5 s before the end) and the counter check."""
        argv = [str(self.oha), "--no-tui", "--output-format", "json", "-c", str(self.args.connections), "-z",
                f"{duration}s", "-w", "-t", "10s"] + (["-q", str(rate), "--latency-correction"] if rate else [])
        argv.append(f"http://127.0.0.1:{port}/")
        argv = ["taskset", "-c", self.args.cpus_load] + argv if self.args.cpus_load else argv
        server_pids = [service.pid] + procs.descendants(service.pid)

        def reading(proc) -> dict:
            # bench/compare's reading (CPU seconds, the machine's, Redis's calls and the counter),
            # plus each side's run-queue wait and the server's context switches.
            r = measure.window_reading({"oha": [proc.pid], "server": server_pids, "redis": [redis.pid] if redis else []},
                                       redis, COUNTER_KEY)
            switches = measure.switches_of(measure.tasks_of(server_pids))
            r.update(server_wait=measure.run_delay(server_pids), redis_wait=measure.run_delay([redis.pid] if redis else []),
                     oha_wait=measure.run_delay([proc.pid]), vol=sum(v for v, _ in switches.values()),
                     nonvol=sum(n for _, n in switches.values()))
            return r

        marks, sample = measure.steady_window(duration, min(1.0, duration * 0.25), 0.5, reading)
        before = redis.get_int(COUNTER_KEY) if redis else None
        result = procs.run(argv, timeout=duration + 60, label=f"oha {'-q ' + str(rate) if rate else 'closed loop'}",
                           while_running=sample if raw else None)
        if raw:
            raw.write_text(result.stdout)
        if result.timed_out or result.returncode != 0:
            raise RunError(f"oha failed (status {result.returncode}, within {duration + 60}s): {result.tail(2)}")
        try:
            out = {"oha": tail_stats.parse_oha(result.stdout), "argv": " ".join(argv)}
        except tail_stats.OhaError as error:
            raise RunError(str(error)) from None
        if len(marks) == 2:
            out["cpu"] = measure.window_figures(*marks, answered_rps=out["oha"]["ok_rps"])
        if redis:
            after = redis.get_int(COUNTER_KEY)
            delta = out["counter_delta"] = None if after is None or before is None else after - before
            out["counter"] = tail_stats.counter_check(delta, out["oha"]["ok"], out["oha"]["aborted"], self.args.connections)
        return out

    def measure(self, variant, filled: dict, rnd: int, redis, args, raw_dir: Path, log_dir: Path) -> dict:
        """One server, one round (compare.Tool's measure): started fresh, a warm-up at the lowest
        rate, then oha at each offered rate; the row's `measurements` are what tail_stats folds."""
        name = variant.name
        redis = redis if variant.uses_redis else None
        row = compare.new_row(variant, filled, measurements=[])
        out = row["measurements"]
        try:
            with compare.started(variant, filled, redis, log_dir / f"{name}-r{rnd}.log", row) as service:
                self.oha_run(service, redis, filled["port"], min(self.rates.values()), WARMUP_S, None)
                for fraction, rate in self.rates.items():
                    record = {"server": name, "round": rnd, "fraction": fraction, "rate": rate, "error": None,
                              "load1": round(os.getloadavg()[0], 2)}
                    try:
                        raw = raw_dir / f"{name}-{int(round(fraction * 1000)):04d}-r{rnd}.json"
                        record.update(self.oha_run(service, redis, filled["port"], rate, args.duration, raw))
                        o = record["oha"]
                        o["achieved_ratio"] = tail_stats.achieved_ratio(o["ok_rps"], rate)
                        log(f"round {rnd}, {name} at {rate:,}/s: p50 {o['p50_ms']} p99 {o['p99_ms']} p99.9 "
                            f"{o['p999_ms']} ms, {o['ok_rps']:,.0f} 2xx/s, counter {record.get('counter', '-')}")
                    except (RunError, OSError) as error:
                        log(f"round {rnd}, {name} at {rate}/s: {error}")
                        record["error"] = row["status"] = str(error)
                    out.append(record)
        except RunError as error:  # it did not start, or its warm-up failed: no rate measured
            row["status"] = str(error)
            out += [{"server": name, "round": rnd, "fraction": f, "rate": r, "error": str(error)}
                    for f, r in self.rates.items()]
        return row

    def fold(self, summary: dict, run_dir: Path) -> None:
        """The rounds' measurements folded into medians and the goal's verdicts."""
        measurements = [m for row in summary["rows"] for r in row["rounds"] for m in r.get("measurements", [])]
        summary.update(servers=self.settings["servers"], max_rps=self.maxima[0]["oha"]["ok_rps"], maxima=self.maxima,
                       rates={str(f): r for f, r in self.rates.items()}, measurements=measurements,
                       folded=tail_stats.fold(measurements))
        summary["verdicts"] = tail_stats.verdicts(summary["folded"])
        session.write_summary(run_dir, summary)
