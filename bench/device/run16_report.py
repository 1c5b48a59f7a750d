"""bench/device/run16's report, results.md, from its summary. Owns run16's own parts: the Targets
table (issue 22's goal 4, issues 20 and 21: met or not) and the CPU layout row; the rest is the kit's
report library (kit/md.py, compare_report.py, report.py) on rows folded by kit/rounds.py. Measures nothing.
"""
from __future__ import annotations

from kit import compare_report, report, rounds
from kit.machine import cpu_list
from kit.md import fmt, machine, table


def rps(row: dict | None):
    wrk = (row or {}).get("tests", {}).get("wrk") or {}
    return None if wrk.get("error") else wrk.get("rps")


def failures(s: dict) -> list[str]:
    """What did not complete in any round: a server that did not run, a wrk without numbers, or 2xx
    answers the counter did not count (LOST)."""
    out = []
    for n, rows in enumerate(s["per_round"], 1):
        for row in rows:
            wrk = row["tests"].get("wrk") or {"error": "no wrk run"}
            if row["status"] != "ok" or wrk["error"]:
                out.append(f"{row['id']} round {n}: {wrk['error'] if row['status'] == 'ok' else row['status']}")
            elif report.lost(row):
                out.append(f"{row['id']} round {n}: {report.lost(row)} answers without an increment (LOST)")
    return out


def verdict(ok: bool | None, small: bool) -> str:
    if ok is None:
        return "not measured"
    if small:
        return "(small mode: not a measurement)"
    return "**met**" if ok else "**not met**"


def ratio_row(by_id: dict, load: str | int, goal: float, target: str, small: bool) -> list[str]:
    """A Targets row: hitcore's median req/s under `load` over the tokio peer's, and each round's ratio."""
    ours, theirs = by_id.get(f"hitcore-{load}"), by_id.get(f"tokio-{load}")
    ratio = rps(ours) / rps(theirs) if rps(ours) and rps(theirs) else None
    tokio = {r["round"]: rps(r) for r in (theirs or {}).get("rounds", [])}
    each = [f"r{r['round']}: {rps(r) / tokio[r['round']]:.2f}×" for r in (ours or {}).get("rounds", [])
            if rps(r) and tokio.get(r["round"])]
    return [target, f"{ratio:.2f}× ({', '.join(each)})" if ratio else fmt(None),
            verdict(ratio >= goal if ratio else None, small)]


def targets(s: dict, rows: list[dict]) -> list[str]:
    n, small = s["layout"]["shards"], s["small"]
    by_id = {r["id"]: r for r in rows}
    hit = by_id.get(f"hitcore-{n}")
    one, top = rps(by_id.get("hitcore-scaling-1")), rps(by_id.get(f"hitcore-scaling-{n}"))
    linear = top / (n * one) if top and one else None
    redis_cpu = (hit or {}).get("tests", {}).get("wrk", {}).get("redis_cpu_pct")
    out = ["## Targets", ""] + table(["target", "measured (median; each round)", "verdict"], [
        [f"hitcore -w {n}: ≥ 800k req/s (wrk -c 500)", f"{fmt(rps(hit))} req/s",
         verdict(rps(hit) >= 800_000 if rps(hit) else None, small)],
        ratio_row(by_id, n, 2.5, "≥ 2.5× the tokio peer, same run", small),
        [f"1 → {n} shards ≥ 90 % of linear (wrk -c 256)", f"{fmt(linear and 100 * linear, '.1f')} %",
         verdict(linear >= 0.9 if linear else None, small)],
        [f"Redis below 30 % of its CPU (during hitcore -w {n}'s wrk)", f"{fmt(redis_cpu, '.1f')} %",
         verdict(redis_cpu < 30 if redis_cpu is not None else None, small)],
        ratio_row(by_id, "hit", 2, "/hit over 10,000 keys ≥ 2× tokio (issue 20)", small),
        ratio_row(by_id, "https", 2, "HTTPS keep-alive ≥ 2× tokio (issue 21)", small)])
    if s["layout"]["degraded"]:
        out += ["", f"The layout is not the 16-CPU one ({s['layout']['mode']}): the targets are for 8 server CPUs."]
    return out


def render(s: dict) -> str:
    lay, m = s["layout"], s.get("machine", {})
    rows = rounds.aggregate(s["per_round"])
    n, d, repeat = lay["shards"], s["duration_s"], max(1, s["rounds_done"])
    peers = [r for r in rows if "scaling" not in r["id"]]
    lines = [f"# hitcore on the {m.get('cpus_online', '?')}-CPU machine: issue 22's goal 4, issues 20 and 21"
             + (" (--small: a test of the script, not a measurement)" if s["small"] else ""), "",
             f"Run by `{s['command']}`; it took {s['wall_s']:.0f} s (soft deadline {s['deadline_s']:.0f} s, hard "
             f"limit {s['deadline_s'] + 60:.0f} s). Rounds completed: **{s['rounds_done']} of {s['rounds']}**, "
             "interleaved, the order flipping each round; figures are medians over them."]
    if s["interrupted"]:
        lines += ["", f"**Stopped early: {s['interrupted']}.** The tables hold what was measured before."]
    layout = (f"{lay['mode']}, each under `taskset -c`: servers on {cpu_list(lay['server'])} (tokio peer `-t {n}`, "
              f"hitcore `-w N --cpus <first N> --pin`), wrk on {cpu_list(lay['wrk'])} (`-t {len(lay['wrk'])}`), "
              f"Redis on {cpu_list(lay['redis'])}")
    lines += [""] + machine({"machine": m, "versions": s.get("versions"), "load_at_start": m.get("loadavg"),
                             "busy_at_start": s.get("busy_at_start")}, [
        ["glibc, Python", f"{m.get('glibc')}, {m.get('python')}"], ["Host", m.get("hostname")],
        ["CPU governor", m.get("governor")], ["Limits", f"open files {s.get('nofile')}; somaxconn {s.get('somaxconn')}"],
        ["CPU layout", layout]])
    lines += ["", "The binaries' versions, origins and sha256: the bundle's [manifest.txt](manifest.txt)."]
    lines += [""] + targets(s, rows)
    lines += ["", f"## Peers: `wrk -c 500 -d {d}s`", "", f"GET / (`-{n}`), GET /hit/bench/kNNNNN over 10,000 "
              "keys drawn Zipf s = 1 (`-hit`), GET / over HTTPS with one ECDSA P-256 certificate (`-https`); "
              f"× is to tokio-{n}'s GET /.", "", compare_report.table({"rows": peers, "base": f"tokio-{n}"}),
              "", f"## Scaling: `hitcore -w N` under `wrk -c 256 -d {d}s`", ""]
    lines += report.scaling_table([r for r in rows if "scaling" in r["id"]], repeat)
    lines += ["", "## Redis's side and CPU", "",
              "Over each wrk run's steady part: CPU time from /proc/PID/stat, and Redis's INCR/INCRBY calls, so "
              "*requests per command* is the batch size (1 without coalescing).", "",
              compare_report.redis_side({"rows": rows}), "", compare_report.cpu_side({"rows": rows})]
    lines += ["", "## Correctness", "",
              "The counter's growth during wrk and after the server stopped, against the 2xx answers wrk counted: more "
              "is requests in flight when wrk stopped; less is **LOST**.", ""] + report.correctness_table(rows)
    problems = [f"- skipped: {x}" for x in s["skipped"]] + [f"- did not complete: {x}" for x in failures(s)]
    if problems:
        lines += ["", "## Skipped and failed", ""] + problems
    lines += ["", "Files: `raw/` (every wrk output), `logs/`, `summary.json` (every number above), `code/` (the code "
              "that ran); what each holds: bench/device/README.md.", ""]
    return "\n".join(lines)
