"""bench/tail's Markdown report, from its summary.json (no sockets, no processes; tested by
bench/tests/test_tail.py). The machine and the load averages first, then the generator's
closed-loop maximum, the goal's verdict, one table per offered rate (medians and every round's
p99 and p99.9), the CPU split over each steady window, correctness, the chart, and a hand-written
notes.md from the run's folder when there is one (the investigation of a run)."""
from __future__ import annotations

from .tail_stats import percent_label


def _n(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _med(cell: dict | None, digits: int = 2) -> str:
    if not cell:
        return "–"
    text = _n(cell["median"], digits)
    if len(cell["values"]) > 1 and cell["min"] != cell["max"]:
        text += f" ({_n(cell['min'], digits)}–{_n(cell['max'], digits)})"
    return text


def _rounds(cell: dict | None, digits: int = 2) -> str:
    return " · ".join(_n(v, digits) for v in cell["values"]) if cell else "–"


def _title(summary: dict, server: str) -> str:
    return summary.get("titles", {}).get(server, server)


def machine_lines(summary: dict) -> list[str]:
    m = summary["machine"]
    lines = ["## Machine", "",
             f"- {m['hostname']}: {m['cpus_online']} CPUs (allowed {m['cpus_allowed']}), {m.get('cpu_model')}, "
             f"{m.get('memory_gib')} GiB, {m.get('os')}, kernel {m['kernel']}, governor {m.get('governor')}",
             f"- load average at start {' / '.join(map(str, summary['load_at_start']))}, at end "
             f"{' / '.join(map(str, summary['load_at_end']))} (1, 5, 15 min); CPUs busy in the second before "
             f"the start: {summary.get('busy_at_start')} %",
             f"- run took {summary['duration_s']:.0f} s: `{summary['command']}`"]
    for name, version in summary["versions"].items():
        lines.append(f"- {name}: {version}")
    for name, ident in summary.get("binaries", {}).items():
        lines.append(f"- {name} binary: {ident}")
    return lines + [""]


def method_lines(summary: dict) -> list[str]:
    s = summary["settings"]
    threads = s.get("oha_threads") or "oha's default (the physical cores)"
    return ["## Method", "",
            f"One password-protected redis-server for the whole run; each server started fresh on a free "
            f"127.0.0.1 port (hitcore and the tokio peer count in that Redis; nginx answers `return 200` with a "
            f"fixed body, no Redis). First the generator's own **closed-loop maximum**: `oha -c "
            f"{s['connections']} -z {s['max_duration']}s` against nginx (and, for context, against the others). "
            f"The offered rates are fractions of nginx's figure. Then {s['rounds']} interleaved round(s), the "
            f"server order rotated each round: each server started, `SET hit 0`, a 1 s warm-up, then for each "
            f"rate `oha -q RATE --latency-correction -c {s['connections']} -z {s['duration']}s -w -t 10s "
            f"--output-format json` (open loop: a request's latency runs from the moment it was due, so a "
            f"stall delays every request queued behind it, as real clients would see). oha worker threads: "
            f"{threads}" + (f"; oha pinned with `taskset -c {s['cpus_load']}`" if s.get("cpus_load") else "")
            + ". Over each run's steady window (from 1 s after its start to 0.5 s before its end) the CPU "
            "time of oha, of the server's processes, of Redis and of the whole machine is read from /proc "
            "(*other* is the rest: someone else's work), with Redis's INCR/INCRBY calls (requests per "
            "command: hitcore's batch size) and the server's involuntary context switches (preemptions: "
            "another process on its CPU). Medians of the rounds, (min–max) where they differ.", ""]


def maxima_lines(summary: dict) -> list[str]:
    lines = ["## The generator's closed-loop maximum", "",
             "| server | 2xx/s | p50 ms | p99 ms | p99.9 ms | oha % CPU | server % CPU | Redis % CPU | other % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in summary["maxima"]:
        if m.get("error"):
            lines.append(f"| {_title(summary, m['server'])} | {m['error']} | | | | | | | |")
            continue
        o, c = m["oha"], m.get("cpu", {})
        if m.get("given"):
            lines.append(f"| {m['server']} | {_n(o['ok_rps'])} (given with --max-rps, not measured) | | | | | | | |")
            continue
        lines.append(f"| {_title(summary, m['server'])} | {_n(o['ok_rps'])} | {_n(o['p50_ms'])} | {_n(o['p99_ms'])} | "
                     f"{_n(o['p999_ms'])} | {_n(c.get('oha_pct'), 0)} | {_n(c.get('server_pct'), 0)} | "
                     f"{_n(c.get('redis_pct'), 0)} | {_n(c.get('other_pct'), 0)} |")
    rates = ", ".join(f"{percent_label(float(f))} = {r:,}/s" for f, r in summary["rates"].items())
    return lines + ["", f"Offered rates (fractions of nginx's {summary['max_rps']:,.0f}/s): {rates}.", ""]


def goal_lines(summary: dict) -> list[str]:
    lines = ["## The goal: hitcore's p99 and p99.9 ≤ nginx's at 25 % and 50 %", "",
             "| rate | hitcore p99 ms | nginx p99 ms | hitcore p99.9 ms | nginx p99.9 ms | met (medians) | rounds met | "
             "saturated rounds |",
             "|---|---|---|---|---|---|---|---|"]
    for v in summary["verdicts"]:
        rate = summary["rates"].get(str(v["fraction"]))
        label = percent_label(v["fraction"]) + (f" ({rate:,}/s)" if rate else "")
        if v["met"] is None:
            lines.append(f"| {label} | not measured | | | | – | | |")
            continue
        sat = v.get("saturated") or {}
        sat_text = "; ".join(f"{who} {', '.join(map(str, rounds))}" for who, rounds in sat.items() if rounds) or "none"
        lines.append(f"| {label} | {_n(v['hitcore_p99_ms'])} | {_n(v['nginx_p99_ms'])} | {_n(v['hitcore_p999_ms'])} "
                     f"| {_n(v['nginx_p999_ms'])} | {'**met**' if v['met'] else 'not met'} | {v['rounds_met']} | "
                     f"{sat_text} |")
    return lines + ["", "*rounds met*: rounds in which both hitcore's p99 and p99.9 were ≤ nginx's of the same "
                        "round. *saturated rounds*: rounds whose 2xx answers fell below 95 % of the offered rate or "
                        "whose median reached 10 ms: requests queued faster than they were served, so the "
                        "percentiles measure that queue (the machine's other work, or the rate beyond what the "
                        "shared CPUs can serve), not the server; a verdict that rests on them says little.", ""]


def rate_lines(summary: dict) -> list[str]:
    folded = summary["folded"]
    lines = [f"## Latency at each offered rate (median of {summary['settings']['rounds']} round(s))", ""]
    for fraction, rate in summary["rates"].items():
        lines += [f"### {percent_label(float(fraction))} of the maximum: {rate:,} requests/s offered", "",
                  "| server | 2xx/s (of offered) | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 per round | "
                  "p99.9 per round | errors/non-2xx per round |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for server in summary["servers"]:
            cell = folded.get(server, {}).get(fraction)
            runs = [m for m in summary["measurements"] if m["server"] == server and str(m["fraction"]) == fraction]
            bad = " · ".join("failed" if m.get("error") else
                             f"{m['oha']['error_count']}/{m['oha']['non_2xx']}" for m in runs)
            if not cell or not cell["rounds"]:
                lines.append(f"| {_title(summary, server)} | not measured | | | | | | | | {bad} |")
                continue
            ratio = cell["achieved_ratio"]["median"] if cell["achieved_ratio"] else None
            lines.append(
                f"| {_title(summary, server)} | {_n(cell['ok_rps']['median'])} ({_n(ratio * 100 if ratio else None, 0)} %) | "
                f"{_med(cell['p50_ms'])} | {_med(cell['p90_ms'])} | {_med(cell['p99_ms'])} | {_med(cell['p999_ms'])} | "
                f"{_med(cell['max_ms'], 1)} | {_rounds(cell['p99_ms'])} | {_rounds(cell['p999_ms'])} | {bad} |")
        lines.append("")
    return lines


def cpu_lines(summary: dict) -> list[str]:
    folded = summary["folded"]
    lines = ["## CPU over each steady window (medians; % of one CPU)", "",
             "| rate | server | oha | server | Redis | other | whole machine | requests per Redis command | "
             "server preemptions / s |", "|---|---|---|---|---|---|---|---|---|"]
    for fraction, rate in summary["rates"].items():
        for server in summary["servers"]:
            cell = folded.get(server, {}).get(fraction)
            if not cell or not cell["rounds"]:
                continue
            c = cell["cpu"]

            def med(key, digits=0):
                return _n(c[key]["median"], digits) if c.get(key) else "–"
            lines.append(f"| {percent_label(float(fraction))} | {_title(summary, server)} | {med('oha_pct')} | "
                         f"{med('server_pct')} | {med('redis_pct')} | {med('other_pct')} | {med('machine_pct')} | "
                         f"{med('requests_per_command', 1)} | {med('server_nonvoluntary_per_s')} |")
    return lines + [""]


def round_lines(summary: dict) -> list[str]:
    """Every run on its own, in the order of the rates: a slow round next to what else the machine
    was doing in it (other %), how often the server was preempted, and how far oha kept up."""
    lines = ["## Every round", "",
             "| rate | server | round | load1 | p50 ms | p99 ms | p99.9 ms | 2xx/s | oha % | server % | Redis % | "
             "other % | preemptions / s | requests per Redis command | run-queue wait ms/s: server · Redis · oha |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {s: i for i, s in enumerate(summary["servers"])}
    for m in sorted(summary["measurements"], key=lambda m: (float(m["fraction"]), order.get(m["server"], 99), m["round"])):
        head = f"| {percent_label(float(m['fraction']))} | {_title(summary, m['server'])} | {m['round']} | {m.get('load1', '–')} |"
        if m.get("error") or not m.get("oha"):
            lines.append(head + f" {m.get('error')} | | | | | | | | | | |")
            continue
        o, c = m["oha"], m.get("cpu") or {}
        lines.append(head + f" {_n(o['p50_ms'])} | {_n(o['p99_ms'])} | {_n(o['p999_ms'])} | {_n(o['ok_rps'])} | "
                     f"{_n(c.get('oha_pct'), 0)} | {_n(c.get('server_pct'), 0)} | {_n(c.get('redis_pct'), 0)} | "
                     f"{_n(c.get('other_pct'), 0)} | {_n(c.get('server_nonvoluntary_per_s'), 0)} | "
                     f"{_n(c.get('requests_per_command'), 1)} | {_n(c.get('server_runq_ms_per_s'), 0)} · "
                     f"{_n(c.get('redis_runq_ms_per_s'), 0)} · {_n(c.get('oha_runq_ms_per_s'), 0)} |")
    return lines + ["", "*run-queue wait*: time the threads were runnable but waited for a CPU (/proc/TID/schedstat), "
                        "summed over each one's threads, per second of the window: 100 ms/s is one thread waiting a "
                        "tenth of the time.", "", "*other %*: the whole machine's busy time (/proc/stat) less oha's, the server's and "
                        "Redis's (/proc/PID/stat): another engineer's build or test. The two clocks are read a few "
                        "milliseconds apart and count differently, so it is good to about ±20 % of a CPU (it can "
                        "come out below zero).", ""]


def correctness_lines(summary: dict) -> list[str]:
    runs = summary["measurements"]
    counted = [m for m in runs if m.get("counter")]
    problems = [m for m in counted if m["counter"] != "ok"]
    lines = ["## Correctness", ""]
    if counted:
        lines.append(f"Redis counter against the 2xx answers oha counted, after each of the {len(counted)} "
                     f"open-loop runs of a Redis-backed server: "
                     + ("**every one grew by exactly the 2xx count** (or by up to the requests in flight when oha "
                        "stopped more)." if not problems else f"**{len(problems)} differ**:"))
        for m in problems:
            lines.append(f"- {m['server']} at {m['rate']:,}/s, round {m['round']}: grew by {m['counter_delta']}, "
                         f"{m['oha']['ok']} 2xx: {m['counter']}")
    errors = [m for m in runs if m.get("error") or m.get("warning")]
    errs = [m for m in runs if m.get("oha") and (m["oha"]["error_count"] or m["oha"]["non_2xx"])]
    if errs:
        lines.append("")
        lines.append("Client errors and non-2xx answers:")
        for m in errs:
            lines.append(f"- {m['server']} at {m['rate']:,}/s, round {m['round']}: {m['oha']['errors']}, "
                         f"status {m['oha']['status']}")
    if errors:
        lines += ["", "Problems:"] + [f"- {m['server']} at {m['rate']:,}/s, round {m['round']}: "
                                      f"{m.get('error') or m.get('warning')}" for m in errors]
    if not errs and not errors:
        lines.append("")
        lines.append("No connection errors, no non-2xx answers, no failed measurement.")
    return lines + [""]


def render(summary: dict, charts: list[str] | None = None, notes: str | None = None) -> str:
    s = summary["settings"]
    lines = [f"# Open-loop tail: hitcore, nginx and the tokio peer at fractions of oha's maximum "
             f"({summary['machine']['hostname']}, {summary['started'][:10]}"
             + (", quick" if s["mode"] == "quick" else "") + ")", "",
             "Issue 14's target 3, measured by `bench/tail` (bench/README.md, \"Open-loop tail\"): hitcore's p99 "
             "and p99.9 against nginx's static answer under a constant-rate, latency-corrected load.", ""]
    lines += machine_lines(summary) + method_lines(summary) + maxima_lines(summary) + goal_lines(summary)
    for chart in charts or []:
        lines += [f"![p99 against the offered rate]({chart})", ""]
    lines += rate_lines(summary) + cpu_lines(summary) + round_lines(summary) + correctness_lines(summary)
    if notes:
        lines += [notes.rstrip(), ""]
    lines += [f"Raw outputs: `{summary['name']}/raw/` (oha's JSON of every run: `SERVER-FRACTION-rROUND.json`, "
              "the fraction in thousandths; `SERVER-max.json` the closed loop), every number in `summary.json`.", ""]
    return "\n".join(lines)
