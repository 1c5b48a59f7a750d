"""bench/api: the counting API's routes under wrk, hitcore beside its peers, with Redis's cost per
request (bench/README.md, *The counting API*), a `compare.Tool` over bench/plans/api.plan: its
`API_LOAD=` specs, the Zipf draws kit/api.lua replays, the measure (Redis read around each wrk run)
and the report's own section.
"""
from __future__ import annotations

import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from . import compare, compare_plan, compare_report, loadgen, procs, provision, redisctl, session
from .procs import log

LUA = Path(__file__).resolve().parent / "api.lua"
PLAN = provision.BENCH / "plans" / "api.plan"
DRAWS, SEED = 65536, 20
# Commands bench/api itself sends between the two readings (not the server's).
OWN_COMMANDS = {"info"}


def parse_load(spec: str) -> dict:
    """`/PATH` or `zipf:N:NAMESPACE` -> {"kind": "path", "path"} or {"kind": "zipf", "keys", "namespace"}."""
    if spec.startswith("/"):
        return {"kind": "path", "path": spec}
    match = re.fullmatch(r"zipf:(\d+):([A-Za-z0-9_.-]{3,64})", spec)
    if not match or not 1 <= int(match.group(1)) <= 99999:
        raise compare_plan.PlanError(f"API_LOAD={spec!r}: expected /PATH or zipf:KEYS:NAMESPACE (1 ≤ KEYS ≤ 99999)")
    return {"kind": "zipf", "keys": int(match.group(1)), "namespace": match.group(2)}


def zipf_ranks(keys: int, draws: int, seed: int, s: float = 1.0) -> list[int]:
    """`draws` key ranks in 1..keys, rank k drawn with probability proportional to 1/k^s."""
    weights = [1.0 / k ** s for k in range(1, keys + 1)]
    return random.Random(seed).choices(range(1, keys + 1), weights=weights, k=draws)


def load_paths(load: dict, draws: int = DRAWS, seed: int = SEED) -> list[str]:
    if load["kind"] == "path":
        return [load["path"]]
    return [f"/hit/{load['namespace']}/k{rank:05d}" for rank in zipf_ranks(load["keys"], draws, seed)]


def redis_reading(client: redisctl.RedisClient, redis_pid: int, server_pids: list[int]) -> dict:
    info, wrk = client.command("INFO", "all"), resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's, once reaped
    stats = dict(re.findall(r"^(total_reads_processed|total_commands_processed):(\d+)", info, re.M))
    return {"calls": redisctl.parse_commandstats(info), "reads": int(stats.get("total_reads_processed", 0)),
            "redis_s": procs.cpu_seconds([redis_pid]), "server_s": procs.cpu_seconds(server_pids),
            "wrk_s": wrk.ru_utime + wrk.ru_stime}


def per_request(a: dict, b: dict, requests: int) -> dict:
    """Two readings around a wrk run and its request count -> Redis's, the server's and wrk's cost per request.
    The second INFO is one read and one `info` call of ours: neither is counted."""
    calls = {k: v - a["calls"].get(k, 0) for k, v in b["calls"].items() if k not in OWN_COMMANDS}
    calls = {k: v for k, v in sorted(calls.items()) if v}
    if not requests:
        return {"redis_calls": calls}
    reads = b["reads"] - a["reads"] - 1
    cpu = {f"{k}_cpu_us_per_request": round(1e6 * (b[f"{k}_s"] - a[f"{k}_s"]) / requests, 2) for k in ("redis", "server", "wrk")}
    return {"redis_calls": calls, "commands_per_request": round(sum(calls.values()) / requests, 3),
            "round_trips_per_request": round(reads / requests, 3), **cpu}


def counted(redis: redisctl.RedisServer) -> int:
    """Every increment Redis holds: `hit` (GET /) plus every `K:*` counter (bench/device/run16's too)."""
    with redis.client() as client:
        total, cursor = int(client.command("GET", "hit") or 0), "0"
        while True:
            cursor, keys = client.command("SCAN", cursor, "MATCH", "K:*", "COUNT", 1000)
            if keys:
                total += sum(int(v or 0) for v in client.command("MGET", *keys))
            if cursor == "0":
                return total


def table(summary: dict) -> str:
    cell = compare_report.median_cell
    return compare_report.columns_table(summary["rows"], [
        ("Variant", lambda row: row["id"]), ("load", lambda row: summary["loads"][row["id"]]),
        *compare_report.throughput_columns(summary),
        ("Redis commands / request", cell("commands_per_request", ".3f")),
        ("Redis round trips / request", cell("round_trips_per_request", ".3f")),
        *[(f"{who} CPU µs / request", cell(f"{who.lower()}_cpu_us_per_request", ".2f")) for who in ("Redis", "server", "wrk")]])


def render(summary: dict) -> str:
    s = summary["settings"]
    return compare_report.render(summary, [
        "## Redis's cost per request", "",
        f"`wrk -t {s['threads']} -c {s['connections']} -d {s['duration']}s --latency -s bench/kit/api.lua`; Redis "
        "flushed before each variant. Redis's figures are over each whole wrk run: INFO commandstats (every command "
        "but bench/api's own INFO), `total_reads_processed` (reads of a client socket: a pipelined batch is one round "
        "trip) and redis-server's CPU time from /proc, each divided by the requests served (what Redis counted, as wrk "
        "stops counting with requests in flight that the server still serves; wrk's completed requests where a route "
        "counts nothing), and wrk's CPU once it has exited. Every round's commands are in summary.json.", "", table(summary), ""])


def measure(variant, filled: dict, round_no: int, redis, args, raw_dir: Path, log_dir: Path) -> dict:
    """One variant, one round, in bench/compare's run (kit/compare.py's Tool): FLUSHALL, the two
    readings around one wrk run with the variant's load, and what Redis counted."""
    tag, port = f"{variant.name}-r{round_no}", filled["port"]
    load, paths_file = args.api_loads[variant.name], args.api_paths.get(variant.name)
    row = compare.new_row(variant, filled, uses_redis=True)
    try:
        with (compare.started(variant, filled, redis, log_dir / f"{tag}.log", row, timeout=60, cwd=provision.REPO)
              as service, redis.client() as client):
            server_pids = [service.pid] + procs.descendants(service.pid)
            client.command("FLUSHALL")
            before = redis_reading(client, redis.pid, server_pids)
            url = f"http://127.0.0.1:{port}" + ("" if paths_file else load["path"])
            wrk = loadgen.wrk(url, args.threads, args.connections, args.duration, raw_dir / f"{tag}.txt", None,
                              script=(str(LUA), str(paths_file)) if paths_file else ())
            time.sleep(0.3)  # requests in flight when wrk stopped finish in the server
            after = redis_reading(client, redis.pid, server_pids)
            if wrk["error"]:
                row["status"] = f"wrk: {wrk['error']}"
                return row
            # Requests served: what Redis counted (wrk stops counting with up to -c still in flight,
            # which the server still answers and counts), or wrk's own count where nothing counts.
            wrk["counted"] = wrk["counter_after"] = counted(redis)
            wrk.update(per_request(before, after, max(wrk["requests"], wrk["counted"])))
    except procs.RunError as error:
        row["status"] = str(error)
        return row
    row["tests"]["wrk"] = wrk
    log(f"{tag}: {wrk['rps']:,.0f} req/s, {wrk.get('commands_per_request')} commands and "
        f"{wrk.get('round_trips_per_request')} round trips per request")
    return row


def main(argv=None) -> int:
    parser = compare.arguments("bench/api", "The counting API's routes (bench/plans/api.plan) under wrk, hitcore "
                               "beside its peers, with Redis's cost per request; writes "
                               "bench/results/<date>-api/summary.md.", plan=PLAN)
    try:
        args, plan, sets = compare.start(parser, list(sys.argv[1:] if argv is None else argv))
        loads = {v.name: parse_load(v.env.pop("API_LOAD", "/")) for v in plan.variants}
        if args.only:
            plan.only(args.only)
    except compare_plan.PlanError as error:
        print(f"bench/api: {PLAN}: {error}", file=sys.stderr)
        return 2
    if args.quick:
        args.name = (args.name or "api") + "-quick"
    args.api_loads, args.api_paths = loads, {}
    loads_shown = {v.name: (loads[v.name]["path"] if loads[v.name]["kind"] == "path"
                            else f"/hit, Zipf over {loads[v.name]['keys']:,} keys") for v in plan.variants}
    with tempfile.TemporaryDirectory(prefix="hitcore-api-") as tmp:
        for v in plan.variants:
            if loads[v.name]["kind"] == "zipf":
                args.api_paths[v.name] = Path(tmp) / f"{v.name}.paths"
                args.api_paths[v.name].write_text("\n".join(load_paths(loads[v.name])) + "\n")
        tool = compare.Tool(measure, render, table, {"loads": loads_shown}, "bench/api")
        return session.guard(compare.run, args, plan, sets, tool)
