"""bench/hostile: hitcore against hostile clients, measured (bench/README.md, "Hostile clients",
says what each measurement does and why).

Owns the order of a run and the five measurements (slowloris, idle, flood, pipeline, vs-nginx):
each against a fresh server on a free 127.0.0.1 port and the kit's one password-protected Redis,
the attackers in processes of their own (kit/victims.py, kit/attackers.py), a normal client (wrk)
beside them, and kit/measure.py's prober and sampler. It must not format the report
(kit/hostile_report.py) nor fold the vs-nginx rounds (kit/versus.py). Every process it starts is
stopped by PID at the end, on error, on Ctrl-C and on SIGTERM.
"""
from __future__ import annotations

import datetime
import os
import shutil
import time
import traceback
from pathlib import Path

from . import hostile_report, loadgen, machine, measure, procs, provision, redisctl, servers, session, versus
from .procs import log
from .victims import Attacker, Hitcore, Nginx, Victim, window

TESTS = ["slowloris", "idle", "flood", "pipeline", "vs-nginx"]
DEFAULT_TESTS = TESTS[:4]  # vs-nginx runs when asked for: it takes about 6 minutes more
DEFAULT_WORKER_CONNECTIONS = 10000  # hitcore's default --worker-connections (1000 before issue 14)
WRK_THREADS, WRK_CONNECTIONS = 1, 50
MODES = {
    "full": {"wrk_duration": 10, "slowloris": 5000, "slowloris_caps": [1000, None], "idle": 10000,
             "flood": 8000, "flood_cap": 500, "pipeline_seconds": 10, "pipeline_hold": 40, "warmup": 2,
             "vs_rounds": 3},
    "quick": {"wrk_duration": 3, "slowloris": 2500, "slowloris_caps": [1000, None], "idle": 2000,
              "flood": 2000, "flood_cap": 100, "pipeline_seconds": 3, "pipeline_hold": 5, "warmup": 1,
              "vs_rounds": 1},
}
# hitcore as shipped (room for every attacker: only --header-timeout's 2 s closes them); with the cap
# of 1000 it had before issue 14 (attackers closed to make room, and reopened at once); and with
# nginx's own header timeout (60 s: no slowloris connection closed in a run), which separates the
# cost of the closes and reopens from that of holding the connections. None: nginx.
VS_VICTIMS = [("hitcore", []), ("hitcore-wc1000", ["--worker-connections", "1000"]),
              ("hitcore-ht60", ["--header-timeout", "60"]), ("nginx", None)]


class Context:
    def __init__(self, args, settings, hitcore: Path, redis, raw_dir: Path, log_dir: Path, ncpu: int):
        self.args, self.settings, self.hitcore, self.redis = args, settings, hitcore, redis
        self.raw_dir, self.log_dir, self.ncpu = raw_dir, log_dir, ncpu
        self.port = args.port or redisctl.free_port()
        self.url = f"http://127.0.0.1:{self.port}/"

    def wrk(self, h: Victim, label: str, duration: int | None = None, attacker: Attacker | None = None) -> dict:
        """wrk -t 1 -c 50 --latency, with the prober beside it; CPU of the server and the attacker,
        and of everything else on the machine."""
        duration = duration or self.settings["wrk_duration"]
        prober, tree, other = measure.Prober(self.port), h.tree(), measure.OtherLoad()
        cpu0, acpu0 = procs.cpu_seconds(tree), attacker.cpu() if attacker else 0.0
        t0 = time.monotonic()
        prober.start()
        log(f"{label}: wrk -t {WRK_THREADS} -c {WRK_CONNECTIONS} -d {duration}s --latency")
        w = loadgen.wrk(self.url, WRK_THREADS, WRK_CONNECTIONS, duration, self.raw_dir / f"{label}-wrk.txt", label)
        t1 = time.monotonic()
        prober.stop()
        phase = {"wrk": w, "t0": t0, "t1": t1, "probes": measure.probe_summary(prober.results, t0, t1),
                 "hitcore_cpu_pct": round(100 * (procs.cpu_seconds(tree) - cpu0) / (t1 - t0), 1),
                 "other_load": other.stop()}
        if phase["other_load"]["pct"] > session.BUSY_PERCENT:
            log(f"{label}: warning: other processes used {phase['other_load']['pct']} % of a core meanwhile "
                f"({', '.join(phase['other_load']['top'])})")
        if attacker:
            phase["attacker_cpu_pct"] = round(100 * (attacker.cpu() - acpu0) / (t1 - t0), 1)
        if h.sampler:
            phase.update(held=h.sampler.held(h.base_fds, t0, t1), accept_queue=h.sampler.accept_queue(t0, t1),
                         peak_tree_rss_kib=h.sampler.peak_tree_rss(t0, t1))
        errors = "/".join(str(w.get(f"errors_{k}", 0)) for k in ("connect", "read", "write", "timeout"))
        log(f"{label}: " + (w["error"] if w["error"] else
                            f"{w['rps']:,.0f} req/s, p50 {w.get('p50_ms', 0):.2f} ms, p99 {w.get('p99_ms', 0):.2f} ms, "
                            f"max {w.get('latency_max_ms', 0):.0f} ms, errors c/r/w/t {errors}, non-2xx "
                            f"{w['non_2xx_3xx']}; new-connection probes {phase['probes']['ok']}/"
                            f"{phase['probes']['sent']} answered"))
        return phase

    def measure(self, result: dict, body) -> dict:
        """Runs body(result, keep): `keep(x)` registers a Victim or an Attacker, stopped at the end
        in reverse order, a victim's log reading going into result[its kind]. One failed
        measurement must not lose the others: its error (and an unexpected one's traceback, in
        logs/) goes into result."""
        started: list = []
        name = result["id"]
        try:
            body(result, lambda x: started.append(x) or x)
        except Exception as error:  # noqa: BLE001
            if isinstance(error, session.RunError):
                result["error"] = str(error)
            else:
                result["error"] = f"{type(error).__name__}: {error} (traceback in logs/{name}-error.txt)"
                (self.log_dir / f"{name}-error.txt").write_text(traceback.format_exc())
            log(f"{name}: {result['error']}")
        finally:
            for x in reversed(started):
                said = x.stop()
                if isinstance(x, Victim):
                    result[x.kind] = said
        return result


def _alone_then_attacked(ctx: Context, victim: Victim, keep, result: dict) -> None:
    """Measurement 1's two phases on a started victim: wrk alone ("baseline"), then wrk beside N
    slowloris connections ("slowloris"), each phase stored in `result`."""
    n, name = ctx.settings["slowloris"], result["id"]
    victim.ready()
    ctx.redis.set("hit", 0)
    result["baseline"] = ctx.wrk(victim, f"{name}-baseline")
    victim.alive_check("the baseline")
    log(f"{name}: opening {n} slowloris connections")
    attacker = keep(Attacker(ctx, f"{name}-attacker", "slowloris",
                             ["--conns", str(n), "--max-seconds", str(ctx.settings["wrk_duration"] + 120)]))
    # Under churn some are always between a close and their reopen: wait until each has connected
    # once, then let the closing and reopening settle into its steady state.
    ramp = attacker.wait(lambda line: line.get("opened", 0) >= n, 30, f"{n} connections opened")
    result["ramp_s"] = round(ramp["t"] - attacker.started, 1) if ramp else None
    time.sleep(2)
    phase = ctx.wrk(victim, f"{name}-slowloris", attacker=attacker)
    a = phase["attacker"] = window(attacker.stop(), phase["t0"], phase["t1"])
    log(f"{name}: slowloris during wrk: {a.get('open_avg')} open on average, {a.get('closed_by_server')} closed "
        f"by the server and reopened ({a.get('closed_per_s')}/s); the server held "
        f"{phase.get('held', {}).get('avg')} connections on average")
    result["slowloris"] = phase
    victim.alive_check("slowloris")


def test_slowloris(ctx: Context, cap: int | None) -> dict:
    flags = [] if cap is None else ["--worker-connections", str(cap)]
    result = {"id": f"slowloris-cap{cap or DEFAULT_WORKER_CONNECTIONS}", "cap": cap or DEFAULT_WORKER_CONNECTIONS,
              "cap_is_default": cap is None, "flags": flags, "conns": ctx.settings["slowloris"], "shards": ctx.ncpu}
    return ctx.measure(result, lambda r, keep: _alone_then_attacked(
        ctx, keep(Hitcore(ctx, r["id"], flags, ctx.ncpu)), keep, r))


def test_vs_nginx(ctx: Context) -> dict:
    """Measurement 1 against every VS_VICTIMS server, in interleaved rounds: each round runs every
    victim once, so a drift of the machine's load reaches them alike."""
    n = ctx.settings["slowloris"]
    out: dict = {"id": "vs-nginx", "conns": n, "rounds": ctx.settings["vs_rounds"], "shards": ctx.ncpu,
                 "victims": [{"victim": v, "flags": f} for v, f in VS_VICTIMS], "runs": []}
    for rnd in range(1, out["rounds"] + 1):
        for victim, flags in VS_VICTIMS:
            result = {"id": f"vs-nginx-r{rnd}-{victim}", "victim": victim, "round": rnd, "conns": n,
                      "flags": flags, "shards": ctx.ncpu}
            # nginx gets room for the attackers, wrk's 50 and the prober, as an operator expecting
            # them would give it; every timeout stays nginx's default.
            out["runs"].append(ctx.measure(result, lambda r, keep, flags=flags: _alone_then_attacked(
                ctx, keep(Nginx(ctx, r["id"], n + WRK_CONNECTIONS + 50) if flags is None
                          else Hitcore(ctx, r["id"], flags, ctx.ncpu)), keep, r)))
    out["folded"] = versus.fold(out["runs"])
    v = out["verdict"] = versus.verdict(out["folded"])
    out["verdicts_other"] = [versus.verdict(out["folded"], ours=v) for v, f in VS_VICTIMS[1:] if f is not None]
    log(f"vs-nginx: median p99 under attack: hitcore {v['p99_ms']} ms, nginx {v['other_p99_ms']} ms: target "
        f"(hitcore ≤ nginx) {'met' if v['met'] else 'not met' if v['met'] is False else 'not measured'}")
    return out


def test_idle(ctx: Context) -> dict:
    n = ctx.settings["idle"]
    flags = ["-w", "1", "--worker-connections", "12000", "--keep-alive", "120", "--header-timeout", "120"]

    def body(r: dict, keep) -> None:
        h = keep(Hitcore(ctx, "idle", flags, 1))
        other = measure.OtherLoad()
        h.ready()
        shard = h.shard_pids[0]
        ctx.redis.set("hit", 0)
        log(f"idle: warming up with wrk -c {WRK_CONNECTIONS} for {ctx.settings['warmup']}s")
        loadgen.wrk(ctx.url, WRK_THREADS, WRK_CONNECTIONS, ctx.settings["warmup"],
                    ctx.raw_dir / "idle-warmup-wrk.txt", "idle-warmup")
        time.sleep(2.5)  # the warm-up's connections are closed (keep-alive is 120 s: wrk closes them)
        r.update(rss_before_kib=measure.median_rss(shard), supervisor_rss_before_kib=measure.rss_kib(h.service.pid))
        fds_before = measure.fd_count(shard)
        log(f"idle: shard {shard} VmRSS {r['rss_before_kib']} KiB; opening {n} keep-alive connections")
        attacker = keep(Attacker(ctx, "idle-attacker", "idle", ["--conns", str(n), "--parallel", "500",
                                                                 "--max-seconds", "240"]))
        ready = attacker.wait(lambda line: line.get("ready"), 120 if n > 5000 else 45, "all connections idle")
        if not ready:
            raise session.RunError(f"the {n} connections were not all answered and idle in time: {attacker.last()}")
        r["ramp_s"] = next((line["ramp_s"] for line in attacker.lines() if "ramp_s" in line), None)
        time.sleep(2)
        h.alive_check("the idle connections")
        r.update(rss_after_kib=measure.median_rss(shard), supervisor_rss_after_kib=measure.rss_kib(h.service.pid),
                 held_by_shard=(measure.fd_count(shard) or 0) - (fds_before or 0))
        log(f"idle: {ready.get('idle')} idle; shard VmRSS {r['rss_after_kib']} KiB, {r['held_by_shard']} more "
            "open fds; probing with new connections")
        probes = []
        for _ in range(20):
            began = time.monotonic()
            status, error = measure.probe_once(ctx.port)
            probes.append((began, status, time.monotonic() - began, error))
            time.sleep(0.05)
        state = attacker.last()
        r.update(probes=measure.probe_summary(probes), attacker=state, idle_held=state.get("idle"),
                 answered=state.get("answered"))
        if state.get("idle"):
            r["kib_per_conn"] = round((r["rss_after_kib"] - r["rss_before_kib"]) / state["idle"], 3)
        attacker.stop()
        time.sleep(2)
        r.update(rss_released_kib=measure.median_rss(shard), other_load=other.stop())
        log(f"idle: {r.get('kib_per_conn')} KiB per idle connection; new connections {r['probes']['ok']}/"
            f"{r['probes']['sent']} served; after closing them: {r['rss_released_kib']} KiB")

    return ctx.measure({"id": "idle", "flags": flags, "conns": n}, body)


def test_flood(ctx: Context) -> dict:
    n, cap = ctx.settings["flood"], ctx.settings["flood_cap"]
    flags = ["--worker-connections", str(cap)]

    def body(r: dict, keep) -> None:
        h = keep(Hitcore(ctx, "flood", flags, ctx.ncpu))
        h.ready()
        ctx.redis.set("hit", 0)
        r["tree_rss_before_kib"] = h.tree_rss()
        log(f"flood: opening {n} connections as fast as possible (cap {cap} per shard)")
        attacker = keep(Attacker(ctx, "flood-attacker", "flood",
                                 ["--conns", str(n), "--max-seconds", str(ctx.settings["wrk_duration"] + 90)]))
        started = attacker.wait(lambda line: line.get("all_started"), 20, "every connect started")
        r["ramp_s"] = started.get("ramp_s") if started else None
        time.sleep(1)
        phase = r["flood"] = ctx.wrk(h, "flood", attacker=attacker)
        t_end = time.monotonic()
        phase["attacker"] = window(attacker.stop(), phase["t0"], phase["t1"])
        r["peak_tree_rss_kib"] = h.sampler.peak_tree_rss(attacker.started, t_end)
        r["peak_shard_rss_kib"] = {str(p): h.sampler.peak_rss(p, attacker.started, t_end) for p in h.shard_pids}
        h.alive_check("the flood")
        time.sleep(2)
        r["tree_rss_after_kib"] = h.tree_rss()
        a = phase["attacker"]
        log(f"flood: peak RSS of hitcore's tree {r['peak_tree_rss_kib']} KiB (before {r['tree_rss_before_kib']}); "
            f"flood {a.get('open_avg')} established + {a.get('connecting_avg')} connecting on average, "
            f"{a.get('closed_by_server')} closed by the server")

    return ctx.measure({"id": "flood", "flags": flags, "conns": n, "cap": cap, "shards": ctx.ncpu}, body)


def test_pipeline(ctx: Context) -> dict:
    seconds = ctx.settings["pipeline_seconds"]

    def body(r: dict, keep) -> None:
        h = keep(Hitcore(ctx, "pipeline", [], ctx.ncpu))
        h.ready()
        ctx.redis.set("hit", 0)
        r.update(shard_rss_before_kib={str(p): measure.median_rss(p, 3) for p in h.shard_pids},
                 tree_rss_before_kib=h.tree_rss())
        counter0 = ctx.redis.get_int("hit") or 0
        log(f"pipeline: one connection writes pipelined GET / for {seconds}s without reading")
        attacker = keep(Attacker(ctx, "pipeline-attacker", "pipeline",
                                 ["--seconds", str(seconds), "--max-seconds", str(seconds + 90)]))
        phase = r["pipeline"] = ctx.wrk(h, "pipeline", duration=seconds, attacker=attacker)
        attacker.wait(lambda line: "writing_s" in line or line.get("closed_by_server"), 10, "the end of writing")
        time.sleep(0.5)
        counter1, state = ctx.redis.get_int("hit") or 0, attacker.last()
        if state.get("local_port"):
            r["socket_queues"] = measure.socket_queues(ctx.port, state["local_port"])
        t_end = time.monotonic()
        r["peak_shard_rss_kib"] = {str(p): h.sampler.peak_rss(p, attacker.started, t_end) for p in h.shard_pids}
        r["peak_tree_rss_kib"] = h.sampler.peak_tree_rss(attacker.started, t_end)
        w = phase["wrk"]
        normal = (w.get("requests", 0) if not w["error"] else 0) + phase["probes"]["ok"]
        r.update(counter_growth=counter1 - counter0, normal_answers=normal,
                 pipelined_answered=counter1 - counter0 - normal)
        # hitcore closes a connection whose answers stay unread too long: hold it (unread) a while
        # longer and see whether, and when, the server closes it.
        hold = r["hold_s"] = ctx.settings["pipeline_hold"]
        left = attacker.started + hold - time.monotonic()
        closed = state if state.get("closed_by_server") else None
        if not closed and left > 0:
            log(f"pipeline: holding the unread connection up to {hold}s after it opened, to see if hitcore closes it")
            closed = attacker.wait(lambda line: line.get("closed_by_server"), left, "a close", quiet=True)
        r["attacker"] = attacker.last()
        r["closed_after_s"] = closed.get("closed_after_s") if closed else None
        attacker.stop()
        h.alive_check("pipelining")
        time.sleep(1)
        r["shard_rss_after_kib"] = {str(p): measure.rss_kib(p) for p in h.shard_pids}
        grown = max(h.shard_pids, key=lambda p: (r["peak_shard_rss_kib"][str(p)] or 0) - r["shard_rss_before_kib"][str(p)])
        r["busiest_shard"] = str(grown)
        log(f"pipeline: wrote {state.get('requests_written')} requests ({state.get('bytes_sent')} bytes), server "
            f"answered ~{r['pipelined_answered']} into unread buffers ({state.get('unread_bytes')} bytes unread "
            f"client-side); shard {grown} RSS {r['shard_rss_before_kib'][str(grown)]} -> peak "
            f"{r['peak_shard_rss_kib'][str(grown)]} KiB")

    return ctx.measure({"id": "pipeline", "flags": [], "seconds": seconds, "shards": ctx.ncpu}, body)


def parse_args(argv):
    p = session.arguments(
        "bench/hostile", hitcore="hitcore binary (default target/release/hitcore, built with cargo if missing)", description="Measures hitcore against hostile clients (slowloris, idle connections, a connection flood, "
                    "a client that pipelines and never reads) and writes bench/results/<date>-<host>-hostile.md.")
    p.add_argument("--quick", action="store_true", help="smaller N and 3 s runs, to check the script itself (under a minute)")
    p.add_argument("--only", metavar="LIST", type=session.choice(TESTS, "test(s)"), help="comma-separated subset of: " + ", ".join(TESTS)
                   + " (default: all but vs-nginx)")
    p.add_argument("--port", type=int, default=0, help="port for hitcore (default: a free one)")
    p.add_argument("--render", type=Path, metavar="DIR",
                   help="only write DIR.md again from DIR/summary.json (a recorded run's folder), its notes included")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        folder = args.render.resolve()
        summary = session.read_summary(folder)
        folder.with_name(folder.name + ".md").write_text(hostile_report.render(summary))
        print(folder.with_name(folder.name + ".md"))
        return 0
    return session.guard(run, args, args.only or DEFAULT_TESTS)


def run(args, tests: list[str]) -> int:
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode], mode=mode)
    nofile = machine.raise_open_files_limit()
    started = datetime.datetime.now().astimezone()
    # A vs-nginx run alone gets its own name, so it neither overwrites nor is overwritten by a partial run.
    name = session.results_name(started, "-hostile" + ("-quick" if args.quick else "")
                                + ("-vs-nginx" if tests == ["vs-nginx"] else "-partial" if args.only else ""))
    run_dir = args.out.resolve() / name
    raw_dir, log_dir = session.fresh_run_dir(run_dir)
    log(f"bench/hostile {mode} run: {', '.join(tests)}; results -> {run_dir}.md")
    # One process (hitcore's shard, or the client holding the connections) needs a descriptor per
    # connection: the idle test's 10,000 in each, and the flood's and slowloris's a little less.
    need = max(settings["idle"], settings["slowloris"], settings["flood"]) + 200
    if nofile[0] < need:
        log(f"warning: the open-files limit is {nofile[0]} (hard {nofile[1]}) but one process here needs "
            f"about {need}: raise the hard limit (`ulimit -Hn`) or some connections will fail")
    busy = session.busy_check()
    problem = provision.apt_packages(["redis-server", "wrk"] + (["nginx"] if "vs-nginx" in tests else []), log_dir)
    if args.port and servers.port_in_use(args.port):
        problem = problem or f"something already listens on 127.0.0.1:{args.port}"
    try:
        hitcore = None if problem else session.hitcore_binary(args.hitcore, log_dir)
    except session.RunError as error:
        problem = str(error)
    if problem:
        log(f"cannot run: {problem}")
        return 1
    if not shutil.which("ss"):
        log("warning: no `ss` (iproute2): accept-queue lengths will not be reported")
    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    log(f"redis-server {redis.version()} on 127.0.0.1:{redis.port} (password set, no persistence)")
    ctx = Context(args, settings, hitcore, redis, raw_dir, log_dir, len(os.sched_getaffinity(0)))
    summary = session.header(name, started, settings, "bench/hostile", busy)
    keep = ("hitcore", "rustc", "redis-server", "wrk", "python (system, runs the kit)") + \
        (("nginx",) if "vs-nginx" in tests else ())
    summary.update(
        versions={k: v for k, v in machine.versions(hitcore, redis.version()).items() if k in keep},
        limits=machine.limits(nofile),
        hitcore_binary=str(hitcore), port=ctx.port, tests={},
        hitcore_built=datetime.datetime.fromtimestamp(hitcore.stat().st_mtime).astimezone().isoformat(timespec="seconds"))
    measurements = {"slowloris": lambda: [test_slowloris(ctx, cap) for cap in settings["slowloris_caps"]],
                    "idle": lambda: test_idle(ctx), "flood": lambda: test_flood(ctx),
                    "pipeline": lambda: test_pipeline(ctx), "vs-nginx": lambda: test_vs_nginx(ctx)}
    try:
        for test in tests:
            summary["tests"][test] = measurements[test]()
    finally:
        redis.stop()
    summary.update(duration_s=round(procs.elapsed(), 1), load_at_end=[round(x, 2) for x in os.getloadavg()])
    session.write_summary(run_dir, summary)
    failed = [r["id"] for v in summary["tests"].values() for r in (v if isinstance(v, list) else v.get("runs", [v]))
              if r.get("error")]
    return session.finish(run_dir.with_name(name + ".md"), hostile_report.render(summary), failed)
