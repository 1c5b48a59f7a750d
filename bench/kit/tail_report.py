"""bench/tail's Markdown report, from its summary.json: the machine, the method in brief (bench/README.md,
"Open-loop tail", has it in full), the generator's closed-loop maximum, the goal's verdict, one table
per offered rate, the CPU split over each steady window, every round, correctness, the chart, and a
run folder's hand-written notes.md. Pure: no sockets, no processes (tested by bench/tests/test_tail.py).
"""
from __future__ import annotations

from .md import machine, table
from .tail_stats import percent_label


def _n(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if isinstance(value, (int, float)) and abs(value) >= 1000 else f"{value:.{digits}f}"


def _med(cell: dict | None, digits: int = 2) -> str:
    if not cell:
        return "–"
    spread = len(cell["values"]) > 1 and cell["min"] != cell["max"]
    return _n(cell["median"], digits) + (f" ({_n(cell['min'], digits)}–{_n(cell['max'], digits)})" if spread else "")


def _rounds(cell: dict | None, digits: int = 2) -> str:
    return " · ".join(_n(v, digits) for v in cell["values"]) if cell else "–"


def _title(summary: dict, server: str) -> str:
    return summary.get("titles", {}).get(server, server)


def _cpu(c: dict, *keys) -> list[str]:
    return [_n(c.get(k), 0) for k in keys]


def method_lines(summary: dict) -> list[str]:
    s, t = summary["settings"], summary["tail"]
    return ["## Method", "",
            f"The generator's closed-loop maximum, `oha -c {s['connections']} -z {t['max_duration']}s` against nginx, "
            f"sets the offered rates (fractions of it). Then {s['rounds']} interleaved round(s), each server started "
            f"fresh: `SET hit 0`, a 1 s warm-up, then for each rate `oha -q RATE --latency-correction -c "
            f"{s['connections']} -z {s['duration']}s -w -t 10s` (open loop: a request's latency runs from when it "
            f"was due), with {t['oha']} and its own worker threads (the physical cores)"
            + (f", pinned with `taskset -c {t['cpus_load']}`" if t.get("cpus_load") else "") + ". CPU of oha, the server, "
            "Redis and the rest of the machine over each steady window, from /proc. Medians of the rounds, "
            "(min–max) where they differ. How: bench/README.md, \"Open-loop tail\".", ""]


def maxima_lines(summary: dict) -> list[str]:
    rows = []
    for m in summary["maxima"]:
        o, c = m.get("oha", {}), m.get("cpu", {})
        rows.append([_title(summary, m["server"]), m["error"]] + [""] * 7 if m.get("error") else
                    [m["server"], f"{_n(o['ok_rps'])} (given with --max-rps, not measured)"] + [""] * 7 if m.get("given")
                    else [_title(summary, m["server"]), _n(o["ok_rps"]), _n(o["p50_ms"]), _n(o["p99_ms"]),
                          _n(o["p999_ms"]), *_cpu(c, "oha_pct", "server_pct", "redis_pct", "other_pct")])
    rates = ", ".join(f"{percent_label(float(f))} = {r:,}/s" for f, r in summary["rates"].items())
    return ["## The generator's closed-loop maximum", ""] + \
        table(["server", "2xx/s", "p50 ms", "p99 ms", "p99.9 ms", "oha % CPU", "server % CPU", "Redis % CPU",
               "other %"], rows) + ["", f"Offered rates (fractions of nginx's {summary['max_rps']:,.0f}/s): {rates}.", ""]


def goal_lines(summary: dict) -> list[str]:
    rows = []
    for v in summary["verdicts"]:
        rate = summary["rates"].get(str(v["fraction"]))
        label = percent_label(v["fraction"]) + (f" ({rate:,}/s)" if rate else "")
        if v["met"] is None:
            rows.append([label, "not measured", "", "", "", "–", "", ""])
            continue
        sat = "; ".join(f"{who} {', '.join(map(str, r))}" for who, r in (v.get("saturated") or {}).items() if r)
        rows.append([label, _n(v["hitcore_p99_ms"]), _n(v["nginx_p99_ms"]), _n(v["hitcore_p999_ms"]),
                     _n(v["nginx_p999_ms"]), "**met**" if v["met"] else "not met", v["rounds_met"], sat or "none"])
    return ["## The goal: hitcore's p99 and p99.9 ≤ nginx's at 25 % and 50 %", ""] + \
        table(["rate", "hitcore p99 ms", "nginx p99 ms", "hitcore p99.9 ms", "nginx p99.9 ms", "met (medians)",
               "rounds met", "saturated rounds"], rows) + \
        ["", "*rounds met*: rounds in which both hitcore's p99 and p99.9 were ≤ nginx's of the same round. "
             "*saturated rounds*: 2xx answers below 95 % of the offered rate or a median of 10 ms or more: the "
             "percentiles measure a queue, not the server, and a verdict resting on them says little.", ""]


def rate_lines(summary: dict) -> list[str]:
    lines = [f"## Latency at each offered rate (median of {summary['settings']['rounds']} round(s))", ""]
    for fraction, rate in summary["rates"].items():
        rows = []
        for server in summary["servers"]:
            cell = summary["folded"].get(server, {}).get(fraction)
            bad = " · ".join("failed" if m.get("error") else f"{m['oha']['error_count']}/{m['oha']['non_2xx']}"
                             for m in summary["measurements"] if m["server"] == server and str(m["fraction"]) == fraction)
            if not cell or not cell["rounds"]:
                rows.append([_title(summary, server), "not measured"] + [""] * 7 + [bad])
                continue
            ratio = cell["achieved_ratio"]["median"] if cell["achieved_ratio"] else None
            rows.append([_title(summary, server), f"{_n(cell['ok_rps']['median'])} ({_n(ratio * 100 if ratio else None, 0)} %)",
                         *(_med(cell[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")), _med(cell["max_ms"], 1),
                         _rounds(cell["p99_ms"]), _rounds(cell["p999_ms"]), bad])
        lines += [f"### {percent_label(float(fraction))} of the maximum: {rate:,} requests/s offered", ""] + \
            table(["server", "2xx/s (of offered)", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "p99 per round",
                   "p99.9 per round", "errors/non-2xx per round"], rows) + [""]
    return lines


def cpu_lines(summary: dict) -> list[str]:
    rows = []
    for fraction in summary["rates"]:
        for server in summary["servers"]:
            cell = summary["folded"].get(server, {}).get(fraction)
            if cell and cell["rounds"]:
                c = {k: v["median"] for k, v in cell["cpu"].items() if v}
                rows.append([percent_label(float(fraction)), _title(summary, server),
                             *(_n(c.get(k), 0) if k in c else "–" for k in ("oha_pct", "server_pct", "redis_pct",
                                                                           "other_pct", "machine_pct")),
                             _n(c["requests_per_command"], 1) if "requests_per_command" in c else "–",
                             _n(c["server_nonvoluntary_per_s"], 0) if "server_nonvoluntary_per_s" in c else "–"])
    return ["## CPU over each steady window (medians; % of one CPU)", ""] + \
        table(["rate", "server", "oha", "server", "Redis", "other", "whole machine", "requests per Redis command",
               "server preemptions / s"], rows) + [""]


def round_lines(summary: dict) -> list[str]:
    """Every run on its own, in the order of the rates: a slow round next to what else the machine
    was doing in it (other %), how often the server was preempted, and how far oha kept up."""
    order, rows = {s: i for i, s in enumerate(summary["servers"])}, []
    for m in sorted(summary["measurements"], key=lambda m: (float(m["fraction"]), order.get(m["server"], 99), m["round"])):
        head = [percent_label(float(m["fraction"])), _title(summary, m["server"]), m["round"], m.get("load1", "–")]
        if m.get("error") or not m.get("oha"):
            rows.append(head + [m.get("error")] + [""] * 10)
            continue
        o, c = m["oha"], m.get("cpu") or {}
        rows.append(head + [_n(o["p50_ms"]), _n(o["p99_ms"]), _n(o["p999_ms"]), _n(o["ok_rps"]),
                            *_cpu(c, "oha_pct", "server_pct", "redis_pct", "other_pct", "server_nonvoluntary_per_s"),
                            _n(c.get("requests_per_command"), 1),
                            " · ".join(_cpu(c, "server_runq_ms_per_s", "redis_runq_ms_per_s", "oha_runq_ms_per_s"))])
    return ["## Every round", ""] + \
        table(["rate", "server", "round", "load1", "p50 ms", "p99 ms", "p99.9 ms", "2xx/s", "oha %", "server %",
               "Redis %", "other %", "preemptions / s", "requests per Redis command",
               "run-queue wait ms/s: server · Redis · oha"], rows) + \
        ["", "*run-queue wait*: time the threads were runnable but waited for a CPU (/proc/TID/schedstat), per "
             "second of the window. *other %*: the machine's busy time less oha's, the server's and Redis's, good "
             "to about ±20 % of a CPU (two clocks read a few milliseconds apart).", ""]


def correctness_lines(summary: dict) -> list[str]:
    runs, lines = summary["measurements"], ["## Correctness", ""]
    counted = [m for m in runs if m.get("counter")]
    problems = [m for m in counted if m["counter"] != "ok"]
    where = lambda m: f"- {m['server']} at {m['rate']:,}/s, round {m['round']}: "  # noqa: E731
    if counted:
        lines.append(f"Redis counter against the 2xx answers oha counted, after each of the {len(counted)} open-loop "
                     "runs of a Redis-backed server: " + ("**every one grew by exactly the 2xx count** (or by up to "
                     "the requests in flight when oha stopped more)." if not problems else f"**{len(problems)} differ**:"))
        lines += [where(m) + f"grew by {m['counter_delta']}, {m['oha']['ok']} 2xx: {m['counter']}" for m in problems]
    errs = [m for m in runs if m.get("oha") and (m["oha"]["error_count"] or m["oha"]["non_2xx"])]
    errors = [m for m in runs if m.get("error") or m.get("warning")]
    if errs:
        lines += ["", "Client errors and non-2xx answers:"] + \
            [where(m) + f"{m['oha']['errors']}, status {m['oha']['status']}" for m in errs]
    if errors:
        lines += ["", "Problems:"] + [where(m) + f"{m.get('error') or m.get('warning')}" for m in errors]
    if not errs and not errors:
        lines += ["", "No connection errors, no non-2xx answers, no failed measurement."]
    return lines + [""]


def render(summary: dict) -> str:
    lines = [f"# Open-loop tail: hitcore, nginx and the tokio peer at fractions of oha's maximum "
             f"({summary['machine']['hostname']}, {summary['started_utc'][:10]}"
             + (", quick" if summary["tail"]["mode"] == "quick" else "") + ")", "",
             "Issue 14's target 3, measured by `bench/tail` (bench/README.md, \"Open-loop tail\"): hitcore's p99 "
             "and p99.9 against nginx's static answer under a constant-rate, latency-corrected load.", ""]
    lines += machine(summary, [["Run", f"{summary['duration_s']:.0f} s: `{summary['command']}`"]] +
                     [[f"{name} binary", ident] for name, ident in summary.get("binaries", {}).items()]) + [""]
    lines += method_lines(summary) + maxima_lines(summary) + goal_lines(summary)
    lines += [x for chart in summary.get("charts", []) for x in (f"![p99 against the offered rate]({chart})", "")]
    lines += rate_lines(summary) + cpu_lines(summary) + round_lines(summary) + correctness_lines(summary)
    lines += ["## Notes", ""] + list(summary["notes"]) + [""] if summary.get("notes") else []
    return "\n".join(lines + ["Raw outputs: `raw/` (oha's JSON of every run: "
                              "`SERVER-FRACTION-rROUND.json`, the fraction in thousandths; `SERVER-max.json` the closed "
                              "loop), every number in `summary.json`.", ""])
