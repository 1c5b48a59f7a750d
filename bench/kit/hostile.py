"""bench/hostile: hitcore against hostile clients, measured (see bench/README.md, "Hostile clients").

Four measurements, each against a fresh hitcore on a free 127.0.0.1 port and the kit's one
password-protected Redis (kit/redisctl.py), with the hostile clients in a separate process
(kit/attackers.py) and a normal client beside them:

1. slowloris: `wrk -t 1 -c 50 --latency` alone, then again while N slowloris connections are held
   (each one the server closes is reopened at once); with `--worker-connections 1000` (the default
   before issue 14: the attackers do not fit) and with the default, 10000.
2. idle: `-w 1 --worker-connections 12000 --keep-alive 120 --header-timeout 120`, N keep-alive
   connections that each complete one `GET /` and then stay idle: the shard's VmRSS before and
   after, per connection, and whether new connections are still served meanwhile.
3. flood: far more connections than `--worker-connections`, opened as fast as possible (half send
   a request and never read, half send nothing; reopened when closed), while wrk measures: the
   peak RSS of hitcore's whole process tree.
4. pipeline: one connection writes pipelined `GET /` for a while without ever reading, while wrk
   measures: shard RSS before and at its peak, and how many requests were answered into the unread
   buffers (the Redis counter less what the normal clients got).
5. vs-nginx (only when asked for, `--only vs-nginx`): measurement 1's two phases, in interleaved
   rounds, against hitcore with its default flags, with `--worker-connections 1000`, with
   `--header-timeout 60` (nginx's client_header_timeout), and nginx's static `return 200` (kit/servers.py's config: nginx's default timeouts, only
   worker_connections and its descriptor limit raised so the attackers and the client fit), so
   hitcore's p99 under attack stands beside nginx's from the same run (kit/versus.py folds them).

Throughout, a prober opens a new connection every 0.25 s for one `GET /` (Connection: close), so
the report can say whether *new* clients got in, not only wrk's already-open connections; and a
sampler reads the RSS of hitcore's processes at 10 Hz and, once a second, the shards' open file
descriptors (the connections they hold) and the listeners' accept queues (`ss`).

Every process started here is a procs.Service or a procs.run child: bounded in time and stopped by
PID at the end, on error, on Ctrl-C and on SIGTERM.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

from . import hostile_report, loadgen, machine, measure, procs, provision, redisctl, servers, session, versus
from .procs import log

ATTACKERS = Path(__file__).resolve().with_name("attackers.py")
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


# ---------------------------------------------------------------------------------------------
# /proc readings


# ---------------------------------------------------------------------------------------------
# Background observers: memory/fds/queue sampler, new-connection prober


# ---------------------------------------------------------------------------------------------
# The processes: hitcore, the attackers

LOG_LINE = re.compile(r"^\[[^\]]+\] \[(\d+)\] \[([A-Z]+)\] (.*)$")


def analyse_log(text: str, shards: int) -> dict:
    """What hitcore's log says: warnings and errors (grouped, numbers replaced by N, one example
    each), connections closed at the cap, shard boots beyond the first ones, WORKER TIMEOUTs, and
    lines that are not in the log format at all (a panic message, say)."""
    groups: dict = {}
    evicted = boots = timeouts = 0
    stray: list[str] = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            if line.strip():
                stray.append(line.strip())
            continue
        level, message = m.group(2), m.group(3)
        if "Booting worker with pid" in message:
            boots += 1
        if "WORKER TIMEOUT" in message:
            timeouts += 1
        e = re.search(r"closed (\d+) connections that were idle or slow", message)
        if e:
            evicted += int(e.group(1))
        if level in ("WARNING", "ERROR", "CRITICAL"):
            key = f"{level} " + re.sub(r"\d+", "N", message)
            group = groups.setdefault(key, {"level": level, "count": 0, "example": message})
            group["count"] += 1
    return {
        "evicted_at_cap": evicted, "shard_boots": boots, "shard_restarts": max(0, boots - shards),
        "worker_timeouts": timeouts, "notable": sorted(groups.values(), key=lambda g: -g["count"]),
        "stray_lines": stray[:20], "stray_count": len(stray),
    }


class Victim:
    """A server under attack, with the sampler of its process tree (hitcore's shards, or nginx's
    workers, are `shard_pids`); `stop()` returns what its log said. Subclasses give the spec."""

    kind = "server"

    def __init__(self, ctx: "Context", name: str, spec: servers.Spec, env: dict | None = None):
        self.ctx, self.name, self.spec = ctx, name, spec
        if not servers.wait_port_free(ctx.port):
            raise session.RunError(f"127.0.0.1:{ctx.port} still in use by the previous run")
        log(f"{name}: starting {spec.title}")
        self.service = procs.Service(self.log_name, spec.argv, ctx.log_dir / f"{self.log_name}.log", env=env)
        self.sampler: measure.Sampler | None = None
        self.shard_pids: list[int] = []
        self.base_fds: dict = {}

    def ready(self) -> None:
        problem = servers.wait_ready(self.service, self.spec, self.ctx.port)
        if problem:
            raise session.RunError(f"{self.kind} did not start: {problem}")
        self.shard_pids = self._workers()
        time.sleep(0.3)  # the readiness probe's connection is closed by now
        self.base_fds = {pid: measure.fd_count(pid) or 0 for pid in self.shard_pids}
        self.sampler = measure.Sampler(self.service.pid, self.ctx.port)
        self.sampler.start()

    def _workers(self) -> list[int]:
        return procs.descendants(self.service.pid)

    def tree(self) -> list[int]:
        return [self.service.pid] + procs.descendants(self.service.pid)

    def tree_rss(self) -> int:
        return sum(measure.rss_kib(p) for p in self.tree())

    def alive_check(self, what: str) -> None:
        if not self.service.alive():
            raise session.RunError(f"{self.kind} exited during {what} with status {self.service.proc.returncode}")
        gone = [p for p in self.shard_pids if not os.path.exists(f"/proc/{p}")]
        if gone:
            raise session.RunError(f"{self.kind} worker process(es) {gone} gone during {what}")

    def stop(self) -> dict:
        if self.sampler:
            self.sampler.stop()
        began = time.monotonic()
        status = self.service.stop(grace=15)
        info = self.read_log(self.service.log_text())
        info.update(exit_status=status, stop_s=round(time.monotonic() - began, 1), log=f"logs/{self.log_name}.log")
        log(f"{self.name}: {self.kind} stopped (exit {status}, {info['stop_s']}s)")
        return info


class Hitcore(Victim):
    kind = "hitcore"

    def __init__(self, ctx: "Context", name: str, flags: list[str], shards: int):
        self.flags, self.shards, self.log_name = flags, shards, f"hitcore-{name}"
        argv = [str(ctx.hitcore), "-b", f"127.0.0.1:{ctx.port}"] + flags
        spec = servers.Spec(name, f"hitcore {' '.join(flags) or '(default flags)'}", argv, processes=1 + shards)
        super().__init__(ctx, name, spec, env=dict(os.environ, REDIS_URL=ctx.redis.url))

    def _workers(self) -> list[int]:
        """Shard PIDs in shard order, from the "Booting worker" lines (else the children)."""
        found = {int(m.group(2)): int(m.group(1)) for m in
                 re.finditer(r"Booting worker with pid: (\d+) \(shard (\d+)", self.service.log_text())}
        pids = [found[i] for i in sorted(found) if os.path.exists(f"/proc/{found[i]}")]
        pids = pids if len(pids) == self.shards else procs.descendants(self.service.pid)
        if len(pids) != self.shards:
            raise session.RunError(f"expected {self.shards} shard processes, found {len(pids)}")
        return pids

    def read_log(self, text: str) -> dict:
        info = analyse_log(text, self.shards)
        info["argv"] = "hitcore " + " ".join(self.spec.argv[1:])
        log(f"{self.name}: {info['evicted_at_cap']} connections closed at the cap, "
            f"{len(info['notable'])} kinds of warning/error in the log")
        return info


class Nginx(Victim):
    """nginx's static `return 200` (kit/servers.py's config, one worker per CPU, limits sized for
    `connections` clients)."""
    kind = "nginx"

    def __init__(self, ctx: "Context", name: str, connections: int):
        self.log_name = name
        sctx = servers.Context(port=ctx.port, redis_url="", ncpu=ctx.ncpu, server_cpus=None, hitcore=None,
                               tmp=ctx.log_dir)
        spec = servers.nginx(sctx, connections=connections, folder=ctx.log_dir / f"{name}-prefix")
        self.config = (ctx.log_dir / f"{name}-prefix" / "nginx.conf").read_text()
        super().__init__(ctx, name, spec)

    def read_log(self, text: str) -> dict:
        groups: dict = {}
        for line in text.splitlines():
            m = re.search(r"\[(alert|crit|error|emerg|warn)\] \d+#\d+: (.*)$", line)
            if m:
                key = m.group(1) + " " + re.sub(r"\d+", "N", m.group(2))
                group = groups.setdefault(key, {"level": m.group(1), "count": 0, "example": m.group(2)})
                group["count"] += 1
        limits = {k: int(v) for k, v in re.findall(r"(worker_connections|worker_rlimit_nofile) (\d+);", self.config)}
        return {"argv": " ".join(self.spec.argv), "limits": limits,
                "notable": sorted(groups.values(), key=lambda g: -g["count"])}


class Attacker:
    """A kit/attackers.py process; its JSON counter lines are read from its log."""

    def __init__(self, ctx: "Context", name: str, mode: str, options: list[str]):
        self.name = name
        argv = [sys.executable, str(ATTACKERS), mode, "--port", str(ctx.port)] + options
        self.log_path = ctx.log_dir / f"{name}.log"
        self.service = procs.Service(name, argv, self.log_path)
        self.started = time.monotonic()
        self.final: list[dict] = []
        self.stopped = False

    def lines(self) -> list[dict]:
        out = []
        for line in self.service.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def last(self) -> dict:
        lines = self.lines()
        return lines[-1] if lines else {}

    def wait(self, predicate, timeout: float, what: str, quiet: bool = False) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in reversed(self.lines()):
                if predicate(line):
                    return line
            if not self.service.alive():
                raise session.RunError(f"{self.name} exited: {self.service.log_text()[-400:]}")
            time.sleep(0.2)
        if not quiet:
            log(f"{self.name}: {what} not reached within {timeout:.0f}s: {json.dumps(self.last())}")
        return None

    def cpu(self) -> float:
        return procs.cpu_seconds([self.service.pid]) if self.service.alive() else 0.0

    def stop(self) -> list[dict]:
        if self.stopped:
            return self.final
        self.stopped = True
        self.service.stop(grace=10)
        self.final = self.lines()
        tail = [l for l in self.service.log_text().splitlines() if l.strip() and not l.startswith("{")]
        if tail:
            log(f"{self.name}: said: {' | '.join(tail[-3:])}")
        return self.final


def window(lines: list[dict], t0: float, t1: float) -> dict:
    """An attacker's counters over [t0, t1]: averages of its levels, growth of its totals."""
    inside = [l for l in lines if t0 <= l["t"] <= t1]
    before = [l for l in lines if l["t"] <= t0]
    after = [l for l in lines if l["t"] >= t1]
    first = before[-1] if before else (inside[0] if inside else None)
    last = after[0] if after else (inside[-1] if inside else None)
    out: dict = {"samples": len(inside)}
    for key in ("open", "connecting", "idle"):
        values = [l[key] for l in inside if key in l]
        if values:
            out[f"{key}_avg"] = round(sum(values) / len(values), 1)
            out[f"{key}_min"] = min(values)
    if first and last:
        seconds = max(1e-9, last["t"] - first["t"])
        for key in ("opened", "closed_by_server", "connect_failed", "requests_sent", "answers"):
            if key in last:
                out[key] = last[key] - first.get(key, 0)
        if "closed_by_server" in out:
            out["closed_per_s"] = round(out["closed_by_server"] / seconds, 1)
        out["window_s"] = round(seconds, 2)
    return out


# ---------------------------------------------------------------------------------------------
# The run

class Context:
    def __init__(self, args, settings, hitcore: Path, redis, raw_dir: Path, log_dir: Path, ncpu: int):
        self.args, self.settings, self.hitcore, self.redis = args, settings, hitcore, redis
        self.raw_dir, self.log_dir, self.ncpu = raw_dir, log_dir, ncpu
        self.port = args.port or redisctl.free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wrk(self, h: Victim, label: str, duration: int | None = None, attacker: Attacker | None = None) -> dict:
        """wrk -t 1 -c 50 --latency, with the prober beside it; CPU of hitcore and the attacker."""
        duration = duration or self.settings["wrk_duration"]
        prober = measure.Prober(self.port)
        tree = h.tree()
        other = measure.OtherLoad()
        cpu0, acpu0 = procs.cpu_seconds(tree), attacker.cpu() if attacker else 0.0
        t0 = time.monotonic()
        prober.start()
        log(f"{label}: wrk -t {WRK_THREADS} -c {WRK_CONNECTIONS} -d {duration}s --latency")
        outcome = loadgen.wrk(self.url, WRK_THREADS, WRK_CONNECTIONS, duration,
                              self.raw_dir / f"{label}-wrk.txt", label)
        t1 = time.monotonic()
        prober.stop()
        seconds = t1 - t0
        phase = {"wrk": outcome, "t0": t0, "t1": t1, "probes": measure.probe_summary(prober.results, t0, t1),
                 "hitcore_cpu_pct": round(100 * (procs.cpu_seconds(tree) - cpu0) / seconds, 1),
                 "other_load": other.stop()}
        if phase["other_load"]["pct"] > session.BUSY_PERCENT:
            log(f"{label}: warning: other processes used {phase['other_load']['pct']} % of a core meanwhile "
                f"({', '.join(phase['other_load']['top'])})")
        if attacker:
            phase["attacker_cpu_pct"] = round(100 * (attacker.cpu() - acpu0) / seconds, 1)
        if h.sampler:
            phase["held"] = h.sampler.held(h.base_fds, t0, t1)
            phase["accept_queue"] = h.sampler.accept_queue(t0, t1)
            phase["peak_tree_rss_kib"] = h.sampler.peak_tree_rss(t0, t1)
        if outcome["error"]:
            log(f"{label}: {outcome['error']}")
        else:
            log(f"{label}: {_brief(outcome)}; new-connection probes {phase['probes']['ok']}/"
                f"{phase['probes']['sent']} answered")
        return phase


def _brief(w: dict) -> str:
    errors = "/".join(str(w.get(f"errors_{k}", 0)) for k in ("connect", "read", "write", "timeout"))
    return (f"{w['rps']:,.0f} req/s, p50 {w.get('p50_ms', 0):.2f} ms, p99 {w.get('p99_ms', 0):.2f} ms, "
            f"max {w.get('latency_max_ms', 0):.0f} ms, errors c/r/w/t {errors}, non-2xx {w['non_2xx_3xx']}")


def _failed(ctx: Context, result: dict, name: str, error: Exception) -> None:
    """Records why a measurement stopped; an unexpected error's traceback goes to its log folder."""
    if isinstance(error, session.RunError):
        result["error"] = str(error)
    else:
        result["error"] = f"{type(error).__name__}: {error} (traceback in logs/{name}-error.txt)"
        (ctx.log_dir / f"{name}-error.txt").write_text(traceback.format_exc())
    log(f"{name}: {result['error']}")


def test_slowloris(ctx: Context, cap: int | None) -> dict:
    n = ctx.settings["slowloris"]
    name = f"slowloris-cap{cap or DEFAULT_WORKER_CONNECTIONS}"
    flags = [] if cap is None else ["--worker-connections", str(cap)]
    result: dict = {"id": name, "cap": cap or DEFAULT_WORKER_CONNECTIONS, "cap_is_default": cap is None,
                    "flags": flags, "conns": n, "shards": ctx.ncpu}
    h = None
    try:
        h = Hitcore(ctx, name, flags, ctx.ncpu)
        _alone_then_attacked(ctx, h, name, result)
    except Exception as error:  # noqa: BLE001 - one failed measurement must not lose the others
        _failed(ctx, result, name, error)
    finally:
        if h:
            result["hitcore"] = h.stop()
    return result


def _alone_then_attacked(ctx: Context, victim, name: str, result: dict) -> None:
    """Measurement 1's two phases on a started victim (Hitcore or Nginx): wrk alone ("baseline"),
    then wrk beside N slowloris connections ("slowloris"), each phase stored in `result`."""
    n, d = ctx.settings["slowloris"], ctx.settings["wrk_duration"]
    victim.ready()
    ctx.redis.set("hit", 0)
    result["baseline"] = ctx.wrk(victim, f"{name}-baseline")
    victim.alive_check("the baseline")
    log(f"{name}: opening {n} slowloris connections")
    attacker = Attacker(ctx, f"{name}-attacker", "slowloris", ["--conns", str(n), "--max-seconds", str(d + 120)])
    try:
        # Under churn some are always between a close and their reopen: wait until each has
        # connected once, then for the steady state.
        ramp = attacker.wait(lambda l: l.get("opened", 0) >= n, 30, f"{n} connections opened")
        result["ramp_s"] = round(ramp["t"] - attacker.started, 1) if ramp else None
        time.sleep(2)  # let the closing and reopening settle into its steady state
        phase = ctx.wrk(victim, f"{name}-slowloris", attacker=attacker)
        attacker.stop()
        phase["attacker"] = window(attacker.final, phase["t0"], phase["t1"])
        a = phase["attacker"]
        log(f"{name}: slowloris during wrk: {a.get('open_avg')} open on average, "
            f"{a.get('closed_by_server')} closed by the server and reopened ({a.get('closed_per_s')}/s); "
            f"the server held {phase.get('held', {}).get('avg')} connections on average")
        result["slowloris"] = phase
        victim.alive_check("slowloris")
    finally:
        attacker.stop()


# hitcore as shipped (room for every attacker: no closing at the cap, only --header-timeout's 2 s);
# with the cap of 1000 it had before issue 14 (the attacker's connections closed to make room, and
# reopened at once); and with nginx's own header timeout (60 s: it closes no slowloris connection in
# a run), which separates the cost of the closes and reopens from that of holding the connections.
VS_VICTIMS = [("hitcore", []), ("hitcore-wc1000", ["--worker-connections", "1000"]),
              ("hitcore-ht60", ["--header-timeout", "60"]),
              ("nginx", None)]


def test_vs_nginx(ctx: Context) -> dict:
    """Measurement 1 against hitcore (default flags; and --worker-connections 10000) and nginx's
    static `return 200`, in interleaved rounds: each round runs every victim once, alone then beside
    the same N slowloris connections, so a drift of the machine's load reaches them alike."""
    n, rounds = ctx.settings["slowloris"], ctx.settings["vs_rounds"]
    out: dict = {"id": "vs-nginx", "conns": n, "rounds": rounds, "shards": ctx.ncpu,
                 "victims": [{"victim": v, "flags": f} for v, f in VS_VICTIMS], "runs": []}
    for rnd in range(1, rounds + 1):
        for victim_name, flags in VS_VICTIMS:
            name = f"vs-nginx-r{rnd}-{victim_name}"
            result: dict = {"id": name, "victim": victim_name, "round": rnd, "conns": n,
                            "flags": flags, "shards": ctx.ncpu}
            victim = None
            try:
                if flags is None:
                    # Room for the attackers, wrk's 50 and the prober, as an operator expecting
                    # them would give it; every timeout stays nginx's default.
                    victim = Nginx(ctx, name, n + WRK_CONNECTIONS + 50)
                else:
                    victim = Hitcore(ctx, name, flags, ctx.ncpu)
                _alone_then_attacked(ctx, victim, name, result)
            except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
                _failed(ctx, result, name, error)
            finally:
                if victim:
                    result["nginx" if flags is None else "hitcore"] = victim.stop()
            out["runs"].append(result)
    out["folded"] = versus.fold(out["runs"])
    out["verdict"] = versus.verdict(out["folded"])
    out["verdicts_other"] = [versus.verdict(out["folded"], ours=v) for v, f in VS_VICTIMS[1:] if f is not None]
    v = out["verdict"]
    log(f"vs-nginx: median p99 under attack: hitcore {v['p99_ms']} ms, nginx {v['other_p99_ms']} ms: "
        f"target (hitcore ≤ nginx) {'met' if v['met'] else 'not met' if v['met'] is False else 'not measured'}")
    return out


def test_idle(ctx: Context) -> dict:
    n = ctx.settings["idle"]
    name = "idle"
    flags = ["-w", "1", "--worker-connections", "12000", "--keep-alive", "120", "--header-timeout", "120"]
    result: dict = {"id": name, "flags": flags, "conns": n}
    h = attacker = None
    try:
        h = Hitcore(ctx, name, flags, 1)
        other = measure.OtherLoad()
        h.ready()
        shard = h.shard_pids[0]
        ctx.redis.set("hit", 0)
        warm = ctx.settings["warmup"]
        log(f"{name}: warming up with wrk -c {WRK_CONNECTIONS} for {warm}s")
        loadgen.wrk(ctx.url, WRK_THREADS, WRK_CONNECTIONS, warm, ctx.raw_dir / f"{name}-warmup-wrk.txt",
                    f"{name}-warmup")
        time.sleep(2.5)  # the warm-up's connections are closed (keep-alive is 120 s: wrk closes them)
        result["rss_before_kib"] = measure.median_rss(shard)
        result["supervisor_rss_before_kib"] = measure.rss_kib(h.service.pid)
        fds_before = measure.fd_count(shard)
        log(f"{name}: shard {shard} VmRSS {result['rss_before_kib']} KiB; opening {n} keep-alive connections")
        attacker = Attacker(ctx, f"{name}-attacker", "idle",
                            ["--conns", str(n), "--parallel", "500", "--max-seconds", "240"])
        ready = attacker.wait(lambda l: l.get("ready"), 120 if n > 5000 else 45, "all connections idle")
        if not ready:
            raise session.RunError(f"the {n} connections were not all answered and idle in time: {attacker.last()}")
        result["ramp_s"] = next((l["ramp_s"] for l in attacker.lines() if "ramp_s" in l), None)
        time.sleep(2)
        h.alive_check("the idle connections")
        result["rss_after_kib"] = measure.median_rss(shard)
        result["supervisor_rss_after_kib"] = measure.rss_kib(h.service.pid)
        fds_after = measure.fd_count(shard)
        result["held_by_shard"] = (fds_after or 0) - (fds_before or 0)
        log(f"{name}: {ready.get('idle')} idle; shard VmRSS {result['rss_after_kib']} KiB, "
            f"{result['held_by_shard']} more open fds; probing with new connections")
        probes = []
        for _ in range(20):
            began = time.monotonic()
            status, error = measure.probe_once(ctx.port)
            probes.append((began, status, time.monotonic() - began, error))
            time.sleep(0.05)
        result["probes"] = measure.probe_summary(probes)
        state = attacker.last()
        result["attacker"] = state
        result["idle_held"] = state.get("idle")
        result["answered"] = state.get("answered")
        if state.get("idle"):
            result["kib_per_conn"] = round((result["rss_after_kib"] - result["rss_before_kib"]) / state["idle"], 3)
        attacker.stop()
        time.sleep(2)
        result["rss_released_kib"] = measure.median_rss(shard)
        result["other_load"] = other.stop()
        log(f"{name}: {result.get('kib_per_conn')} KiB per idle connection; new connections "
            f"{result['probes']['ok']}/{result['probes']['sent']} served; after closing them: "
            f"{result['rss_released_kib']} KiB")
    except Exception as error:  # noqa: BLE001 - one failed measurement must not lose the others
        _failed(ctx, result, name, error)
    finally:
        if attacker:
            attacker.stop()
        if h:
            result["hitcore"] = h.stop()
    return result


def test_flood(ctx: Context) -> dict:
    n, cap = ctx.settings["flood"], ctx.settings["flood_cap"]
    name = "flood"
    flags = ["--worker-connections", str(cap)]
    result: dict = {"id": name, "flags": flags, "conns": n, "cap": cap, "shards": ctx.ncpu}
    h = attacker = None
    try:
        h = Hitcore(ctx, name, flags, ctx.ncpu)
        h.ready()
        ctx.redis.set("hit", 0)
        result["tree_rss_before_kib"] = h.tree_rss()
        log(f"{name}: opening {n} connections as fast as possible (cap {cap} per shard)")
        attacker = Attacker(ctx, f"{name}-attacker", "flood",
                            ["--conns", str(n), "--max-seconds", str(ctx.settings["wrk_duration"] + 90)])
        started = attacker.wait(lambda l: l.get("all_started"), 20, "every connect started")
        result["ramp_s"] = started.get("ramp_s") if started else None
        time.sleep(1)
        phase = ctx.wrk(h, f"{name}", attacker=attacker)
        t_end = time.monotonic()
        attacker.stop()
        phase["attacker"] = window(attacker.final, phase["t0"], phase["t1"])
        result["flood"] = phase
        result["peak_tree_rss_kib"] = h.sampler.peak_tree_rss(attacker.started, t_end)
        result["peak_shard_rss_kib"] = {str(p): h.sampler.peak_rss(p, attacker.started, t_end) for p in h.shard_pids}
        h.alive_check("the flood")
        time.sleep(2)
        result["tree_rss_after_kib"] = h.tree_rss()
        a = phase["attacker"]
        log(f"{name}: peak RSS of hitcore's tree {result['peak_tree_rss_kib']} KiB (before "
            f"{result['tree_rss_before_kib']}); flood {a.get('open_avg')} established + "
            f"{a.get('connecting_avg')} connecting on average, {a.get('closed_by_server')} closed by the server")
    except Exception as error:  # noqa: BLE001 - one failed measurement must not lose the others
        _failed(ctx, result, name, error)
    finally:
        if attacker:
            attacker.stop()
        if h:
            result["hitcore"] = h.stop()
    return result


def test_pipeline(ctx: Context) -> dict:
    seconds = ctx.settings["pipeline_seconds"]
    name = "pipeline"
    result: dict = {"id": name, "flags": [], "seconds": seconds, "shards": ctx.ncpu}
    h = attacker = None
    try:
        h = Hitcore(ctx, name, [], ctx.ncpu)
        h.ready()
        ctx.redis.set("hit", 0)
        result["shard_rss_before_kib"] = {str(p): measure.median_rss(p, 3) for p in h.shard_pids}
        result["tree_rss_before_kib"] = h.tree_rss()
        counter0 = ctx.redis.get_int("hit") or 0
        log(f"{name}: one connection writes pipelined GET / for {seconds}s without reading")
        attacker = Attacker(ctx, f"{name}-attacker", "pipeline",
                            ["--seconds", str(seconds), "--max-seconds", str(seconds + 90)])
        phase = ctx.wrk(h, name, duration=seconds, attacker=attacker)
        attacker.wait(lambda l: "writing_s" in l or l.get("closed_by_server"), 10, "the end of writing")
        time.sleep(0.5)
        counter1 = ctx.redis.get_int("hit") or 0
        state = attacker.last()
        if state.get("local_port"):
            result["socket_queues"] = measure.socket_queues(ctx.port, state["local_port"])
        t_end = time.monotonic()
        result["attacker"] = state
        result["peak_shard_rss_kib"] = {str(p): h.sampler.peak_rss(p, attacker.started, t_end) for p in h.shard_pids}
        result["peak_tree_rss_kib"] = h.sampler.peak_tree_rss(attacker.started, t_end)
        w = phase["wrk"]
        normal = (w.get("requests", 0) if not w["error"] else 0) + phase["probes"]["ok"]
        result["counter_growth"] = counter1 - counter0
        result["normal_answers"] = normal
        result["pipelined_answered"] = counter1 - counter0 - normal
        result["pipeline"] = phase
        # hitcore closes a connection whose answers stay unread too long: hold it (unread) a while
        # longer and see whether, and when, the server closes it.
        hold = ctx.settings["pipeline_hold"]
        left = attacker.started + hold - time.monotonic()
        closed = state if state.get("closed_by_server") else None
        if not closed and left > 0:
            log(f"{name}: holding the unread connection up to {hold}s after it opened, to see if hitcore closes it")
            closed = attacker.wait(lambda l: l.get("closed_by_server"), left, "a close", quiet=True)
        result["attacker"] = attacker.last()
        result["hold_s"] = hold
        result["closed_after_s"] = closed.get("closed_after_s") if closed else None
        attacker.stop()
        h.alive_check("pipelining")
        time.sleep(1)
        result["shard_rss_after_kib"] = {str(p): measure.rss_kib(p) for p in h.shard_pids}
        grown = max(h.shard_pids, key=lambda p: (result["peak_shard_rss_kib"][str(p)] or 0)
                    - result["shard_rss_before_kib"][str(p)])
        result["busiest_shard"] = str(grown)
        log(f"{name}: wrote {state.get('requests_written')} requests ({state.get('bytes_sent')} bytes), "
            f"server answered ~{result['pipelined_answered']} into unread buffers "
            f"({state.get('unread_bytes')} bytes unread client-side); shard {grown} RSS "
            f"{result['shard_rss_before_kib'][str(grown)]} -> peak {result['peak_shard_rss_kib'][str(grown)]} KiB")
    except Exception as error:  # noqa: BLE001 - one failed measurement must not lose the others
        _failed(ctx, result, name, error)
    finally:
        if attacker:
            attacker.stop()
        if h:
            result["hitcore"] = h.stop()
    return result


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/hostile",
        description="Measures hitcore against hostile clients (slowloris, idle connections, a "
                    "connection flood, a client that pipelines and never reads) and writes "
                    "bench/results/<date>-<host>-hostile.md.")
    p.add_argument("--quick", action="store_true",
                   help="smaller N and 3 s runs, to check the script itself (under a minute)")
    p.add_argument("--only", metavar="LIST", help="comma-separated subset of: " + ", ".join(TESTS)
                   + " (default: all but vs-nginx)")
    p.add_argument("--hitcore", type=Path, metavar="PATH",
                   help="hitcore binary (default target/release/hitcore, built with cargo if missing)")
    p.add_argument("--port", type=int, default=0, help="port for hitcore (default: a free one)")
    p.add_argument("--out", type=Path, default=session.RESULTS, help="results folder (default bench/results)")
    p.add_argument("--render", type=Path, metavar="DIR",
                   help="only write DIR.md again from DIR/summary.json (a recorded run's folder), its notes included")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        folder = args.render.resolve()
        summary = json.loads((folder / "summary.json").read_text())
        folder.with_name(folder.name + ".md").write_text(hostile_report.render(summary))
        print(folder.with_name(folder.name + ".md"))
        return 0
    tests = DEFAULT_TESTS
    if args.only:
        tests = [t.strip() for t in args.only.split(",") if t.strip()]
        unknown = [t for t in tests if t not in TESTS]
        if unknown:
            print(f"bench/hostile: unknown test(s) {', '.join(unknown)} (known: {', '.join(TESTS)})",
                  file=sys.stderr)
            return 2
    return session.guard(run, args, tests)


def run(args, tests: list[str]) -> int:
    mode = "quick" if args.quick else "full"
    settings = dict(MODES[mode], mode=mode)
    nofile = machine.raise_open_files_limit()
    started = datetime.datetime.now().astimezone()
    # A vs-nginx run alone gets its own name, so it neither overwrites nor is overwritten by a partial run.
    name = session.results_name(started, "-hostile") + ("-quick" if args.quick else "") + \
        ("-vs-nginx" if tests == ["vs-nginx"] else "-partial" if args.only else "")
    out_dir = args.out.resolve()
    run_dir = out_dir / name
    raw_dir, log_dir = session.fresh_run_dir(run_dir)
    log(f"bench/hostile {mode} run: {', '.join(tests)}; results -> {out_dir / name}.md")
    # One process (hitcore's shard, or the client holding the connections) needs a descriptor per
    # connection: the idle test's 10,000 in each, and the flood's and slowloris's a little less.
    need = max(settings["idle"], settings["slowloris"], settings["flood"]) + 200
    if nofile[0] < need:
        log(f"warning: the open-files limit is {nofile[0]} (hard {nofile[1]}) but one process here needs "
            f"about {need}: raise the hard limit (`ulimit -Hn`) or some connections will fail")
    load_at_start = os.getloadavg()
    busy = session.busy_check()

    problem = provision.apt_packages(["redis-server", "wrk"] + (["nginx"] if "vs-nginx" in tests else []), log_dir)
    if problem:
        log(f"cannot run: {problem}")
        return 1
    if not shutil.which("ss"):
        log("warning: no `ss` (iproute2): accept-queue lengths will not be reported")
    if args.hitcore:
        hitcore = args.hitcore.resolve()
        if not os.access(hitcore, os.X_OK):
            log(f"cannot run: --hitcore {args.hitcore}: not an executable file")
            return 1
    else:
        hitcore = provision.HITCORE_BINARY
        if not hitcore.exists():
            problem = provision.hitcore(log_dir)
            if problem:
                log(f"cannot run: {problem}")
                return 1
        else:
            log(f"using {hitcore} (built {datetime.datetime.fromtimestamp(hitcore.stat().st_mtime):%Y-%m-%d %H:%M}; "
                "delete it or pass --hitcore to test another build)")

    ncpu = len(os.sched_getaffinity(0))
    redis = redisctl.RedisServer(log_dir)
    redis.wait_ready()
    redis_version = redis.version()
    log(f"redis-server {redis_version} on 127.0.0.1:{redis.port} (password set, no persistence)")
    versions = machine.versions(hitcore, redis_version)
    ctx = Context(args, settings, hitcore, redis, raw_dir, log_dir, ncpu)
    if args.port and servers.port_in_use(args.port):
        log(f"cannot run: something already listens on 127.0.0.1:{args.port}")
        return 1
    summary = {
        "name": name, "started": started.isoformat(timespec="seconds"), "settings": settings,
        "command": "bench/hostile" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "machine": machine.describe(),
        "versions": {k: v for k, v in versions.items()
                     if k in ("hitcore", "rustc", "redis-server", "wrk", "python (system, runs the kit)")
                     or (k == "nginx" and "vs-nginx" in tests)},
        "limits": {"nofile_soft": nofile[0], "nofile_hard": nofile[1],
                   "somaxconn": machine.sysctl("net.core.somaxconn"),
                   "tcp_max_syn_backlog": machine.sysctl("net.ipv4.tcp_max_syn_backlog"),
                   "tcp_syncookies": machine.sysctl("net.ipv4.tcp_syncookies"),
                   "ip_local_port_range": machine.sysctl("net.ipv4.ip_local_port_range")},
        "hitcore_binary": str(hitcore), "port": ctx.port,
        "hitcore_built": datetime.datetime.fromtimestamp(hitcore.stat().st_mtime).astimezone().isoformat(timespec="seconds"),
        "load_at_start": [round(x, 2) for x in load_at_start], "busy_at_start": busy,
        "busy_threshold": session.BUSY_PERCENT, "tests": {},
    }
    summary["versions"]["redis-server"] = redis_version
    try:
        if "slowloris" in tests:
            summary["tests"]["slowloris"] = [test_slowloris(ctx, cap) for cap in settings["slowloris_caps"]]
        if "idle" in tests:
            summary["tests"]["idle"] = test_idle(ctx)
        if "flood" in tests:
            summary["tests"]["flood"] = test_flood(ctx)
        if "pipeline" in tests:
            summary["tests"]["pipeline"] = test_pipeline(ctx)
        if "vs-nginx" in tests:
            summary["tests"]["vs-nginx"] = test_vs_nginx(ctx)
    finally:
        redis.stop()
    summary["duration_s"] = round(procs.elapsed(), 1)
    summary["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    session.write_summary(run_dir, summary)
    report_path = out_dir / f"{name}.md"
    report_path.write_text(hostile_report.render(summary))
    print()
    print(hostile_report.console(summary))
    log(f"done in {procs.elapsed():.0f}s: {report_path}")
    failed = [r["id"] for r in _results(summary) if r.get("error")]
    failed += [r["id"] for r in (summary["tests"].get("vs-nginx") or {}).get("runs", []) if r.get("error")]
    if failed:
        log(f"measurements that did not complete: {', '.join(failed)} (see the report)")
        return 3
    return 0


def _results(summary: dict) -> list[dict]:
    out = []
    for value in summary["tests"].values():
        out += value if isinstance(value, list) else [value]
    return out
