"""bench/device/run16's report: results.md, rendered from a finished (or stopped) run.

Owns the Markdown only: the machine, versions, CPU layout, the Targets table (met / not met), the
peers (medians over the rounds, each round, CPU, requests per Redis command), ab, scaling, Redis
CPU with and without coalescing, correctness, and what was skipped or failed. It reads the run's
fields (layout, info, results, settings) and measures nothing; wrk and ab results carry
bench/kit/parse.py's keys (rps, p50_ms, p99_ms, errors_*, non_2xx_3xx, ok_2xx, complete, failed...).
Imported by run16, which puts bench/kit on sys.path first (from the repository or the bundle).
"""
from __future__ import annotations

import sys
import time

from kit.machine import cpu_list
from kit.rounds import median_of

WRK_ERRORS = ("connect", "read", "write", "timeout")


def fmt(value, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,.0f}{unit}"


def by_server(results: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(r["server"], []).append(r)
    return groups


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "rps" in r]
    rps = [r["rps"] for r in ok]
    return {"rps": median_of(rps), "min": min(rps) if rps else None, "max": max(rps) if rps else None,
            "rounds": len(ok), "per_round": rps, "p50": median_of([r.get("p50_ms") for r in ok]),
            "p99": median_of([r.get("p99_ms") for r in ok]), "redis_cpu": median_of([r.get("redis_cpu") for r in ok]),
            "server_cpu": median_of([r.get("server_cpu") for r in ok]), "wrk_cpu": median_of([r.get("wrk_cpu") for r in ok]),
            "per_command": median_of([r.get("requests_per_command") for r in ok]),
            "errors": " · ".join(f"{sum(r[f'errors_{k}'] for k in WRK_ERRORS)}+{r['non_2xx_3xx']}" for r in ok),
            "failed_rounds": [f"r{r['round']}: {r['error']}" for r in runs if r.get("error")]}


def verdict(ok: bool | None, small: bool) -> str:
    if ok is None:
        return "not measured"
    if small:
        return "(small mode: not a measurement)"
    return "**met**" if ok else "**not met**"


def render(run, wall: float) -> str:
    """results.md of `run` (run16's Run), which took `wall` seconds."""
    lay, res, info, small = run.lay, run.results, run.info, run.small
    m = info.get("machine", {})
    n = lay["shards"]
    lines = [f"# hitcore on the {m.get('cpus_online', '?')}-CPU machine: issue target 3"
             + (" (--small: a test of the script, not a measurement)" if small else ""), ""]
    lines += [f"Run by `{' '.join(sys.argv)}` "
              f"on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; it took {wall:.0f} s "
              f"(soft deadline {run.args.deadline:.0f} s, hard limit {run.args.deadline + 60:.0f} s). "
              f"Rounds completed: **{run.rounds_done} of {run.args.rounds}**"
              + (" (medians over them)" if run.rounds_done > 1 else " (single measurements, no medians)") + "."]
    if run.interrupted:
        lines += ["", f"**Stopped early: {run.interrupted}.** The tables hold what was measured before."]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lim = info.get("limits", {})
    rows = [("CPU", m.get("cpu_model")), ("CPUs", f"{m.get('cpus_online')} online, allowed {m.get('cpus_allowed')}"),
            ("Kernel, OS", f"Linux {m.get('kernel')} {m.get('arch')}, {m.get('os')}"), ("Memory", f"{m.get('memory_gib')} GiB"),
            ("glibc, Python", f"{m.get('glibc')}, {m.get('python')}"), ("Host", m.get("hostname")),
            ("CPU governor", m.get("governor")),
            ("Load before", f"loadavg {m.get('loadavg')}; CPUs {info.get('busy_before')} % busy over 1 s"),
            ("Limits", f"open files {lim.get('nofile_before')} -> {lim.get('nofile')}; somaxconn "
                       f"{lim.get('somaxconn')}; tcp_migrate_req {lim.get('tcp_migrate_req')}")]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.get("versions", {}).items()]
    lines += ["", "The bundle's manifest (sha256 of every binary, where each came from): "
              "[manifest.txt](manifest.txt)."]
    lines += ["", "## CPU layout", "", f"Mode: {lay['mode']}. Every process is started under `taskset -c`.", "",
              "| role | CPUs | how |", "|---|---|---|",
              f"| server | {cpu_list(lay['server'])} | tokio peer `-t {n}`; hitcore `-w N --cpus <first N>` (a shard pinned per CPU) |",
              f"| wrk | {cpu_list(lay['wrk'])} | `wrk -t {len(lay['wrk'])}` |",
              f"| ab | {cpu_list(lay['ab'])} | single-threaded |",
              f"| Redis | {cpu_list(lay['redis'])} | redis-server with a password, no persistence |"]

    peers = {k: summarize(v) for k, v in by_server(res["peers"]).items()}
    tokio, hit = peers.get(f"tokio-{n}"), peers.get(f"hitcore-{n}")
    scaling = {v[0]["shards"]: summarize(v) for v in by_server(res["scaling"]).values()}
    one = scaling.get(1, {}).get("rps")
    top = scaling.get(n, {}).get("rps") if n in scaling else None
    ratio = (hit["rps"] / tokio["rps"]) if hit and tokio and hit["rps"] and tokio["rps"] else None
    linear = (top / (n * one)) if top and one else None

    lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    lines.append(f"| hitcore -w {n}: >= 800k req/s (wrk -c {run.wrk_c}) | {fmt(hit and hit['rps'])} req/s | "
                 f"{verdict(hit['rps'] >= 800000 if hit and hit['rps'] else None, small)} |")
    lines.append(f"| >= 2.5x the tokio peer, same run | {fmt(ratio, 2, 'x')} | "
                 f"{verdict(ratio >= 2.5 if ratio else None, small)} |")
    lines.append(f"| 1 -> {n} shards >= 90 % of linear (wrk -c {run.scaling_c}) | "
                 f"{fmt(linear and 100 * linear, 1, ' %')} | {verdict(linear >= 0.9 if linear else None, small)} |")
    redis_cpu = hit and hit["redis_cpu"]
    lines.append(f"| Redis below 30 % of its CPU (during hitcore -w {n}'s wrk) | {fmt(redis_cpu, 1, ' %')} | "
                 f"{verdict(redis_cpu < 30 if redis_cpu is not None else None, small)} |")
    if lay.get("degraded"):
        lines += ["", f"The layout is not the 16-CPU one ({lay['mode']}): the targets are for 8 server CPUs."]

    lines += ["", f"## Peers: `wrk -t {len(lay['wrk'])} -c {run.wrk_c} -d {run.duration}s --latency`"
              + (f" (median of {max(p['rounds'] for p in peers.values())} rounds, interleaved)" if peers else ""), "",
              "CPU columns are % of one CPU over the steady part of the wrk run (from 20 % of its duration "
              "to 10 % before its end, at most 1 s / 0.5 s), from /proc/PID/stat utime+stime: Redis's "
              "process, the server's whole process tree, wrk's. *Req per Redis cmd*: 2xx answers / "
              "(INCR + INCRBY calls Redis served): 1 without coalescing. *Errors*: socket errors + non-2xx per round.", "",
              "| server | req/s | min–max | each round | p50 ms | p99 ms | Redis CPU | server CPU | wrk CPU | req per Redis cmd | errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in peers.items():
        lines.append(f"| {name} | **{fmt(s['rps'])}** | {fmt(s['min'])}–{fmt(s['max'])} | "
                     f"{' · '.join(fmt(x) for x in s['per_round'])} | {fmt(s['p50'], 2)} | {fmt(s['p99'], 2)} | "
                     f"{fmt(s['redis_cpu'], 1, ' %')} | {fmt(s['server_cpu'], 0, ' %')} | {fmt(s['wrk_cpu'], 0, ' %')} | "
                     f"{fmt(s['per_command'], 1)} | {s['errors']} |")
        for failure in s["failed_rounds"]:
            lines.append(f"| {name} | failed | {failure} | | | | | | | | |")
    if ratio:
        rounds = {}
        for r in res["peers"]:
            if "rps" in r:
                rounds.setdefault(r["round"], {})[r["server"]] = r["rps"]
        per_round = [f"r{k}: {v[f'hitcore-{n}'] / v[f'tokio-{n}']:.2f}x" for k, v in sorted(rounds.items())
                     if f"hitcore-{n}" in v and f"tokio-{n}" in v]
        lines += ["", f"**Ratio hitcore -w {n} / tokio peer (medians): {ratio:.2f}x**; per round: {', '.join(per_round)}."]

    if res["ab"]:
        lines += ["", f"## `ab -c {run.ab_c} -n {run.ab_n} -r -l` (round 1 only; bounded by -t {run.ab_limit})", "",
                  "ab is single-threaded and opens a connection per request: on one CPU it measures ab itself "
                  "(about 20k req/s on the device before).", "",
                  "| server | req/s | complete | failed | non-2xx | time taken s | Total mean ms | Total max ms |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in res["ab"]:
            if "rps" in r:
                lines.append(f"| {r['server']} | **{fmt(r['rps'])}** | {fmt(r['complete'])} | {r['failed']} | "
                             f"{r['non_2xx']} | {r['time_taken_s']} | {fmt(r.get('total_mean_ms'))} | "
                             f"{fmt(r.get('total_max_ms'))} |")
            else:
                lines.append(f"| {r['server']} | failed: {r['error']} | | | | | | |")

    lines += ["", f"## Scaling: `hitcore -w N` under `wrk -t {len(lay['wrk'])} -c {run.scaling_c} -d {run.duration}s`", "",
              "% of linear = req/s(N) / (N × req/s(1)), medians.", "",
              "| shards | CPUs | req/s | min–max | each round | % of linear | p99 ms | Redis CPU | server CPU | req per Redis cmd |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for k in sorted(scaling):
        s = scaling[k]
        lin = (s["rps"] / (k * one) * 100) if s["rps"] and one else None
        lines.append(f"| {k} | {cpu_list(lay['server'][:k])} | **{fmt(s['rps'])}** | {fmt(s['min'])}–{fmt(s['max'])} | "
                     f"{' · '.join(fmt(x) for x in s['per_round'])} | {fmt(lin, 1, ' %')} | {fmt(s['p99'], 2)} | "
                     f"{fmt(s['redis_cpu'], 1, ' %')} | {fmt(s['server_cpu'], 0, ' %')} | {fmt(s['per_command'], 1)} |")

    lines += ["", "## Redis CPU and coalescing", ""]
    extra = [r for r in res["extra"] if "rps" in r]
    lines += ["| run | req/s | Redis CPU | req per Redis cmd | INCR calls | INCRBY calls | p99 ms |", "|---|---|---|---|---|---|---|"]
    for r in [x for x in res["peers"] if "rps" in x and x["kind"] == "hitcore"] + extra:
        lines.append(f"| {r['tag']} | {fmt(r['rps'])} | {fmt(r['redis_cpu'], 1, ' %')} | {fmt(r['requests_per_command'], 1)} | "
                     f"{fmt(r['incr_calls'])} | {fmt(r['incrby_calls'])} | {fmt(r.get('p99_ms'), 2)} |")
    if not extra:
        lines += ["", "The `--no-coalesce` run did not happen (see *Skipped*)."]

    lines += ["", "## Correctness", "",
              "`SET hit 0` once each server answers (after its readiness probe), before its first load. Per load: the counter's growth from just before it to "
              "0.3 s after it, against the 2xx answers the client counted. Per server: the counter read after "
              "the server stopped, against all its loads' 2xx. It may exceed them by the requests in flight "
              "when wrk stops (up to -c each) and ab's failed requests (*slack*); below them is **LOST**.", "",
              "| run | counter | 2xx | counter − 2xx | verdict |", "|---|---|---|---|---|"]
    for c in res["correctness"]:
        if c["verdict"] is None:
            v = "(per load; the verdict is on the server's line)"
        else:
            v = f"**{c['verdict']}**" + (f" (slack {c['slack']})" if c["slack"] is not None else "")
        diff = "—" if c["diff"] is None else f"{c['diff']:+,}"
        lines.append(f"| {c['run']} | {fmt(c['counter_delta'])} | {fmt(c['ok_2xx'])} | {diff} | {v} |")

    if res["skipped"] or res["errors"]:
        lines += ["", "## Skipped and errors", ""]
        lines += [f"- skipped: {s}" for s in res["skipped"]]
        lines += [f"- error: {e}" for e in res["errors"]]
    lines += ["", "## Files", "",
              "- `raw/`: every wrk and ab output as printed, each headed by its command line "
              "(`<server>-<wrk|ab>-r<round>.txt`).",
              "- `logs/`: each server's and Redis's log (bench/.gitignore keeps `results/*/logs/` out of git).",
              "- `summary.json`: every number above; `code/`: the code that ran (run16.py, run16_report.py and "
              "the bench/kit modules it loaded); `stdout.txt` when run through bench/device/README.md's command.", ""]
    return "\n".join(lines)
