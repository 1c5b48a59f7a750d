"""bench/device/run16's report: results.md, rendered from a finished (or stopped) run.

Owns what is run16's own: the Targets table (met / not met), the CPU layout, scaling as % of linear,
ab, the correctness rows and what was skipped or failed. Everything else is the shared report
library's: the machine (kit/md.py) and, for the rows that kit/rounds.py folds over the rounds,
bench/compare's throughput, Redis and CPU tables (kit/compare_report.py). It reads the run's fields
(layout, info, results, settings) and measures nothing. Imported by run16, which puts bench/kit on
sys.path first (from the repository or the bundle).
"""
from __future__ import annotations

import sys
import time

from kit import compare_report, report
from kit.machine import cpu_list
from kit.md import fmt, machine, table
from kit.rounds import aggregate_row


def fold(per_round: list[list[dict]]) -> list[dict]:
    """The rows of every round, one per server in the order first run, folded over the rounds."""
    ids = list(dict.fromkeys(row["id"] for rows in per_round for row in rows))
    folded = []
    for row_id in ids:
        row = aggregate_row([r for rows in per_round for r in rows if r["id"] == row_id])
        row.update(group=row["rounds"][0]["group"], shards=row["rounds"][0]["shards"])
        folded.append(row)
    return folded


def verdict(ok: bool | None, small: bool) -> str:
    if ok is None:
        return "not measured"
    if small:
        return "(small mode: not a measurement)"
    return "**met**" if ok else "**not met**"


def unit(value, spec: str, suffix: str) -> str:
    return fmt(value, spec) + (suffix if value is not None else "")


def rps(row: dict | None):
    wrk = (row or {}).get("tests", {}).get("wrk") or {}
    return None if wrk.get("error") else wrk.get("rps")


def targets(run, rows: list[dict]) -> list[str]:
    lay, n, small = run.lay, run.lay["shards"], run.small
    by_id = {r["id"]: r for r in rows}
    hit, tokio = by_id.get(f"hitcore-{n}"), by_id.get(f"tokio-{n}")
    scaling = {r["shards"]: rps(r) for r in rows if r["group"] == "scaling"}
    ratio = rps(hit) / rps(tokio) if rps(hit) and rps(tokio) else None
    linear = scaling[n] / (n * scaling[1]) if scaling.get(n) and scaling.get(1) else None
    redis_cpu = hit and hit["tests"].get("wrk", {}).get("redis_cpu_pct")
    out = ["## Targets", ""] + table(["target", "measured", "verdict"], [
        [f"hitcore -w {n}: >= 800k req/s (wrk -c {run.wrk_c})", f"{fmt(rps(hit))} req/s",
         verdict(rps(hit) >= 800000 if rps(hit) else None, small)],
        [">= 2.5x the tokio peer, same run", unit(ratio, ".2f", "x"),
         verdict(ratio >= 2.5 if ratio else None, small)],
        [f"1 -> {n} shards >= 90 % of linear (wrk -c {run.scaling_c})", unit(linear and 100 * linear, ".1f", " %"),
         verdict(linear >= 0.9 if linear else None, small)],
        [f"Redis below 30 % of its CPU (during hitcore -w {n}'s wrk)", unit(redis_cpu, ".1f", " %"),
         verdict(redis_cpu < 30 if redis_cpu is not None else None, small)]])
    if lay.get("degraded"):
        out += ["", f"The layout is not the 16-CPU one ({lay['mode']}): the targets are for 8 server CPUs."]
    if ratio:
        per_round = []
        theirs = {r["round"]: rps(r) for r in tokio["rounds"]}
        for r in hit["rounds"]:
            if rps(r) and theirs.get(r["round"]):
                per_round.append(f"r{r['round']}: {rps(r) / theirs[r['round']]:.2f}x")
        out += ["", f"**Ratio hitcore -w {n} / tokio peer (medians): {ratio:.2f}x**; per round: {', '.join(per_round)}."]
    return out


def scaling_table(run, rows: list[dict]) -> list[str]:
    points = [r for r in rows if r["group"] == "scaling"]
    one = next((rps(r) for r in points if r["shards"] == 1), None)
    lines = []
    for r in points:
        t, k = r["tests"].get("wrk", {}), r["shards"]
        lin = rps(r) / (k * one) * 100 if rps(r) and one else None
        lines.append([k, cpu_list(run.lay["server"][:k]), f"**{fmt(rps(r))}**",
                      compare_report.per_round(r, "rps", ",.0f"), fmt(lin, ".1f"), fmt(t.get("p99_ms"), ".2f"),
                      fmt(t.get("redis_cpu_pct"), ".1f"), fmt(t.get("requests_per_command"), ".1f")])
    return table(["shards", "CPUs", "req/s (median)", "each round", "% of linear", "p99 ms", "Redis CPU %",
                  "req per Redis cmd"], lines)


def correctness_table(rows: list[dict]) -> list[str]:
    lines = []
    for c in rows:
        if c["verdict"] is None:
            v = "(per load; the verdict is on the server's line)"
        else:
            v = f"**{c['verdict']}**" + (f" (slack {c['slack']})" if c["slack"] is not None else "")
        lines.append([c["run"], fmt(c["counter_delta"]), fmt(c["ok_2xx"]), fmt(c["diff"], "+,d"), v])
    return table(["run", "counter", "2xx", "counter − 2xx", "verdict"], lines)


def render(run, wall: float) -> str:
    """results.md of `run` (run16's Run), which took `wall` seconds."""
    lay, res, info = run.lay, run.results, run.info
    m, lim = info.get("machine", {}), info.get("limits", {})
    n, threads = lay["shards"], len(lay["wrk"])
    rows = fold(res["rounds"])
    lines = [f"# hitcore on the {m.get('cpus_online', '?')}-CPU machine: issue target 3"
             + (" (--small: a test of the script, not a measurement)" if run.small else ""), "",
             f"Run by `{' '.join(sys.argv)}` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; it took {wall:.0f} s "
             f"(soft deadline {run.args.deadline:.0f} s, hard limit {run.args.deadline + 60:.0f} s). "
             f"Rounds completed: **{run.rounds_done} of {run.args.rounds}**"
             + (" (medians over them)" if run.rounds_done > 1 else " (single measurements, no medians)") + "."]
    if run.interrupted:
        lines += ["", f"**Stopped early: {run.interrupted}.** The tables hold what was measured before."]
    lines += [""] + machine({"machine": m, "versions": info.get("versions"), "load_at_start": m.get("loadavg"),
                             "busy_at_start": info.get("busy_before")}, [
        ["glibc, Python", f"{m.get('glibc')}, {m.get('python')}"], ["Host", m.get("hostname")],
        ["CPU governor", m.get("governor")],
        ["Limits", f"open files {lim.get('nofile_before')} -> {lim.get('nofile')}; somaxconn "
                   f"{lim.get('somaxconn')}; tcp_migrate_req {lim.get('tcp_migrate_req')}"]])
    lines += ["", "The bundle's manifest (sha256 of every binary, where each came from): [manifest.txt](manifest.txt).",
              "", "## CPU layout", "", f"Mode: {lay['mode']}. Every process is started under `taskset -c`.", ""]
    lines += table(["role", "CPUs", "how"], [
        ["server", cpu_list(lay["server"]), f"tokio peer `-t {n}`; hitcore `-w N --cpus <first N> --pin`"],
        ["wrk", cpu_list(lay["wrk"]), f"`wrk -t {threads}`"], ["ab", cpu_list(lay["ab"]), "single-threaded"],
        ["Redis", cpu_list(lay["redis"]), "redis-server with a password, no persistence"]])
    lines += [""] + targets(run, rows)
    peers = {"rows": [r for r in rows if r["group"] != "scaling"], "base": f"tokio-{n}"}
    lines += ["", f"## Peers: `wrk -t {threads} -c {run.wrk_c} -d {run.duration}s --latency`", "",
              "Median over the rounds, interleaved (the order flips each round), and its ratio to the tokio peer; "
              f"`hitcore-{n}-no-coalesce` (round 1 only) sends one INCR per request.", "",
              compare_report.table(peers)]
    if any("ab" in r["tests"] for r in rows):
        lines += ["", f"## `ab -c {run.ab_c} -n {run.ab_n} -r -l` (round 1 only; bounded by -t {run.ab_limit})", "",
                  "ab is single-threaded and opens a connection per request: on one CPU it measures ab itself "
                  "(about 20k req/s on the device before).", ""] + \
            report.ab_table([r for r in rows if "ab" in r["tests"]], "ab", keepalive=False)
    lines += ["", f"## Scaling: `hitcore -w N` under `wrk -t {threads} -c {run.scaling_c} -d {run.duration}s`", "",
              "% of linear = req/s(N) / (N × req/s(1)), medians.", ""] + scaling_table(run, rows)
    summary = {"rows": rows}
    lines += ["", "## Redis's side and CPU", "",
              "Over each wrk run's steady part (from 20 % of its duration to 10 % before its end, at most 1 s / "
              "0.5 s): CPU time from /proc/PID/stat (Redis's process, the server's whole tree, wrk), and Redis's "
              "INCR/INCRBY calls (INFO commandstats), so *requests per command* is the batch size: 1 without "
              "coalescing. Medians over the rounds.", "", compare_report.redis_side(summary), "",
              compare_report.cpu_side(summary)]
    lines += ["", "## Correctness", "",
              "`SET hit 0` once each server answers (after its readiness probe), before its first load. Per load: "
              "the counter's growth from just before it to 0.3 s after it, against the 2xx answers the client "
              "counted. Per server: the counter read after the server stopped, against all its loads' 2xx. It may "
              "exceed them by the requests in flight when wrk stops (up to -c each) and ab's failed requests "
              "(*slack*); below them is **LOST**.", ""] + correctness_table(res["correctness"])
    if res["skipped"] or res["errors"]:
        lines += ["", "## Skipped and errors", ""]
        lines += [f"- skipped: {s}" for s in res["skipped"]] + [f"- error: {e}" for e in res["errors"]]
    lines += ["", "## Files", "",
              "- `raw/`: every wrk and ab output as printed, each headed by its command line "
              "(`<server>-<wrk|ab>-r<round>.txt`).",
              "- `logs/`: each server's and Redis's log (bench/.gitignore keeps `results/*/logs/` out of git).",
              "- `summary.json`: every number above; `code/`: the code that ran (run16.py, run16_report.py and "
              "the bench/kit modules it loaded); `stdout.txt` when run through bench/device/README.md's command.", ""]
    return "\n".join(lines)
