"""The reports of bench/compare's run (summary.md from summary.json's dict) and its console table:
bench/compare's (bench/hostile's, and bench/api's with a section of its own), bench/tail's and
bench/syscalls'. Each table is a list of columns, a heading and a cell function each, drawn by
`columns_table`. Pure functions on plain dicts: the tests render recorded summaries.
"""
from __future__ import annotations

from . import md, perfstat
from .md import fmt
from .rounds import median_of
from .tail_stats import percent_label


def _wrk(row: dict) -> dict:
    return row.get("tests", {}).get("wrk") or {}


def _measured(row: dict) -> list[dict]:
    """The wrk results of the row's rounds, {} for a round without one."""
    results = (r.get("tests", {}).get("wrk") for r in row.get("rounds", []))
    return [t if t and not t.get("error") else {} for t in results]


def _per_round(row: dict, key: str, spec: str) -> str:
    return md.each([t.get(key) for t in _measured(row)], lambda value: format(value, spec))


def _errors(row: dict) -> str:
    """Each round's non-2xx answers / socket errors."""
    def socket(t: dict) -> int:
        return sum(t.get(f"errors_{k}", 0) for k in ("connect", "read", "write", "timeout"))
    return " · ".join(f"{t.get('non_2xx_3xx', 0)}/{socket(t)}" if t else "no result" for t in _measured(row))


def columns_table(rows: list, columns: list[tuple]) -> str:
    """One Markdown table: a line per item of `rows`, a column per (heading, cell function) of
    `columns`; each cell function takes the item. "" when there are no rows."""
    if not rows:
        return ""
    return "\n".join(md.table([head for head, _ in columns], [[cell(r) for _, cell in columns] for r in rows]))


def median_cell(key: str, spec: str):
    """A column's cell: the median wrk result's `key` in `spec`."""
    return lambda row: fmt(_wrk(row).get(key), spec)


def throughput_columns(summary: dict) -> list[tuple]:
    """The throughput table's columns after the variant's name (bench/api's table has them too): a
    variant that gave no figure shows why in the req/s column, and nothing else."""
    base = next((r for r in summary["rows"] if r["id"] == summary["base"]), None)
    base_rps = _wrk(base).get("rps") if base else None

    def unless_failed(cell):
        return lambda row: "" if row["status"] != "ok" and not _wrk(row).get("rps") else cell(_wrk(row), row)

    def rps(t: dict, row: dict) -> str:
        return fmt(t.get("rps")) if t.get("rps") else md.esc(row["status"])
    return [("req/s (median)", lambda row: rps(_wrk(row), row)),
            ("min–max", unless_failed(lambda t, _: f"{fmt(t['min'].get('rps'))}–{fmt(t['max'].get('rps'))}"
                                      if t.get("min") else md.DASH)),
            (f"× {summary['base']}", unless_failed(lambda t, _: fmt(t["rps"] / base_rps if base_rps else None, ".3f"))),
            ("p50 ms", median_cell("p50_ms", ".2f")), ("p99 ms", median_cell("p99_ms", ".2f")),
            ("non-2xx / socket errors, each round", unless_failed(lambda _, row: _errors(row)))]


def table(summary: dict) -> str:
    return columns_table(summary["rows"], [("Variant", lambda row: row["id"])] + throughput_columns(summary) + [
        ("Redis CPU %", median_cell("redis_cpu_pct", ".1f")),
        ("requests per Redis command", median_cell("requests_per_command", ".1f"))])


def goals(summary: dict) -> str:
    def figures(g: dict) -> str:
        unit, spec = (" ms", ".2f") if g.get("figures", "").endswith("ms") else ("", ",.0f")
        return f"{fmt(g['rps'], spec)}{unit} against {fmt(g['other_rps'], spec)}{unit}"
    return columns_table(summary.get("goals") or [], [
        ("Goal", lambda g: g["goal"]), ("Figures (medians: req/s, or p99)", figures),
        ("Ratio", lambda g: fmt(g["ratio"], ".3f")),
        ("Met?", lambda g: "not measured" if g["met"] is None else ("**yes**" if g["met"] else "**no**"))])


def redis_side(summary: dict) -> str:
    return columns_table([r for r in summary["rows"] if r.get("uses_redis") and _wrk(r).get("window_rps")], [
        ("Variant", lambda row: row["id"]), ("requests/s (window)", median_cell("window_rps", ",.0f")),
        ("Redis CPU, % of one CPU", median_cell("redis_cpu_pct", ".1f")),
        ("Redis commands/s (INCR + INCRBY)", median_cell("commands_per_s", ",.0f")),
        ("requests per command", median_cell("requests_per_command", ".1f")),
        ("Redis CPU µs per command", median_cell("redis_cpu_us_per_command", ".1f")),
        ("of which executing (commandstats)", median_cell("redis_exec_us_per_command", ".2f")),
        ("Redis CPU % per 100k req/s", median_cell("redis_cpu_pct_per_100k_rps", ".2f"))])


def cpu_side(summary: dict) -> str:
    def per_request(row: dict) -> str:
        median = median_of([t.get("server_cpu_us_per_request") for t in _measured(row) if t])
        return f"{_per_round(row, 'server_cpu_us_per_request', '.2f')} (median {fmt(median, '.2f')})"
    return columns_table([r for r in summary["rows"] if _wrk(r).get("window_s")], [
        ("Variant", lambda row: row["id"]), ("server CPU %", median_cell("server_cpu_pct", ".0f")),
        ("server CPU µs per request, each round", per_request), ("wrk CPU %", median_cell("wrk_cpu_pct", ".0f")),
        ("Redis CPU %", median_cell("redis_cpu_pct", ".1f")), ("machine busy %", median_cell("machine_cpu_pct", ".0f")),
        ("other work % (machine − ours), each round", lambda row: _per_round(row, "other_cpu_pct", ".0f"))])


def attack_side(summary: dict) -> str:
    """The slowloris clients beside wrk (@attack), medians over the rounds: how many connections they
    held, how often the server closed one (each reopened at once: the churn it causes), their CPU
    (taken from the same CPUs as the server and wrk), and the server's memory before them and at
    its peak beside them, per connection held."""
    return columns_table([r for r in summary["rows"] if _wrk(r).get("attack_ramp_s") is not None], [
        ("Variant", lambda row: row["id"]),
        ("attack", lambda row: (row.get("rounds") or [{}])[0].get("attack") or md.DASH),
        ("in place after s", median_cell("attack_ramp_s", ".1f")),
        ("connections open on average", median_cell("attack_open_avg", ",.0f")),
        ("closed by the server per s", median_cell("attack_closed_per_s", ",.0f")),
        ("attacker CPU %", median_cell("attacker_cpu_pct", ".0f")),
        ("server RSS before → peak KiB",
         lambda row: f"{fmt(_wrk(row).get('rss_before_attack_kib'))} → {fmt(_wrk(row).get('peak_rss_kib'))}"),
        ("KiB per connection held", median_cell("kib_per_attack_conn", ".2f"))])


def _each_round(summary: dict, wanted=lambda t: True) -> list[tuple]:
    """(row, round number, that round's record, its wrk result) of every round of every row."""
    return [(row, n, r, r.get("tests", {}).get("wrk") or {}) for row in summary["rows"]
            for n, r in enumerate(row.get("rounds", []), 1) if wanted(r.get("tests", {}).get("wrk") or {})]


def spread(summary: dict) -> str:
    """Open descriptors of each server process at the steady window's end, and `ss -s`'s TCP line,
    every round: how a many-connection load spread over the shards or workers."""
    return columns_table(_each_round(summary, lambda t: t.get("server_fds")), [
        ("Variant", lambda x: x[0]["id"]), ("round", lambda x: x[1]),
        ("open descriptors per process (supervisor or master first)",
         lambda x: " / ".join(fmt(n) for n in x[3]["server_fds"])),
        ("accept-queue overflows / drops during wrk",
         lambda x: f"{fmt(x[3].get('listen_overflows'))} / {fmt(x[3].get('listen_drops'))}"),
        ("`ss -s` TCP", lambda x: x[3].get("ss_tcp") or md.DASH)])


def checks(summary: dict) -> str:
    def diff(t: dict) -> str:
        ok, counter = t.get("ok_2xx"), t.get("counter_after")
        if ok is None or counter is None:
            return md.DASH
        return f"+{counter - ok}" if counter >= ok else f"**LOST {ok - counter}**"
    return columns_table(_each_round(summary), [
        ("Variant", lambda x: x[0]["id"]), ("round", lambda x: x[1]), ("2xx (wrk)", lambda x: fmt(x[3].get("ok_2xx"))),
        ("counter after", lambda x: fmt(x[3].get("counter_after"))), ("counter − 2xx", lambda x: diff(x[3])),
        ("WORKER TIMEOUT", lambda x: x[2].get("worker_timeouts", md.DASH)),
        ("exit", lambda x: x[2].get("exit_status", md.DASH)),
        ("load before", lambda x: x[2].get("load_before", md.DASH))])


def machine(summary: dict) -> list[str]:
    """`## Machine` of a bench/compare run (bench/api's too): the report library's machine table
    (md.machine) with the governor, the limits, each round's start, the binaries and Redis."""
    lim = summary.get("limits")
    rows = [["CPU governor", summary["machine"].get("governor")]]
    if lim:
        rows.append(["Open files soft / hard (wrk and the servers inherit them); somaxconn; tcp_max_syn_backlog",
                     f"{fmt(lim.get('nofile_soft'))} / {fmt(lim.get('nofile_hard'))}; {lim.get('somaxconn')}; "
                     f"{lim.get('tcp_max_syn_backlog')}"])
    rows.append(["Each round's start (UTC, 1-minute load)",
                 ", ".join(f"{r['utc']} {r['load1']}" for r in summary.get("rounds", []))])
    rows += [[f"`{{{k}}}`", v] for k, v in summary.get("binaries", {}).items()]
    return md.machine(summary, rows + [["Redis", line] for line in summary.get("redis", [])])


def _section(heading: str, intro: str, body: str) -> list[str]:
    """A report section, or nothing when its table is empty."""
    return [f"## {heading}", ""] + ([intro, ""] if intro else []) + [body, ""] if body else []


def render(summary: dict, extra: list[str] = ()) -> str:
    """The report of a run on bench/compare's run; `extra`: a tool's own sections, after the goals."""
    s = summary["settings"]
    out = [f"# {summary['title']}", "",
           f"`{summary.get('command', 'bench/compare')}`, plan `{summary['plan']}`, started {summary['started_utc']} "
           f"({summary.get('duration_s', 0):.0f} s).", ""] + machine(summary)
    out += ["", "The machine is shared: other engineers' builds and tests ran beside this measurement. "
            "The *other work* column below is the CPU time the whole machine used during each steady window "
            "less what this run's processes (server, Redis, wrk) used; where it is large, "
            "req/s falls with it, while the server's CPU time per request moves much less: compare that too.", ""]
    out += _section("Throughput", f"`wrk -t {s['threads']} -c {s['connections']} -d {s['duration']}s --latency`, "
                    f"{s['rounds']} interleaved rounds (each round runs every variant once, in the plan's order); median "
                    "over the rounds, min–max spread, the median's ratio to the base variant.", table(summary))
    out += _section("Goals", "", goals(summary)) + list(extra)
    # Written by whoever recorded the run (summary.json's "notes", Markdown lines): what was measured
    # beside it, e.g. what limits a goal not met. --render keeps them.
    out += _section("Notes", "", "\n".join(summary.get("notes") or []))
    out += _section("Redis's side", f"Over each wrk run's steady window (from {s.get('warm_s', 1):g} s after its start "
                    f"to {s.get('margin_s', 0.5):g} s before its end): Redis's CPU time (utime + stime from /proc) per second, the "
                    "increments it made (the counter's growth), and its INCR/INCRBY calls (INFO commandstats), so "
                    "*requests per command* is the batch size. Medians over the rounds.", redis_side(summary))
    out += _section("CPU during the steady window (medians, % of one CPU)", "", cpu_side(summary))
    out += _section("Hostile clients beside wrk", "kit/slowloris.py's process, started before wrk and in place "
                    "(every connection opened once) before wrk starts; its counters over wrk's run; the server's "
                    "process tree's RSS before the attackers and its peak during wrk (10 Hz). Medians over the rounds.",
                    attack_side(summary))
    out += _section("Connections per process", "At the steady window's end: each server process's open "
                    "descriptors (its connections plus a few of its own: listener, log, Redis), and the kernel's TCP "
                    "socket totals; over the whole wrk run, its connect burst included, the kernel's `ListenOverflows` "
                    "/ `ListenDrops` (/proc/net/netstat: connection attempts turned away at a full accept queue, "
                    "retried by the client a second later). With many connections, one shard or worker holding most "
                    "of them, or a queue too short for the burst, is the first thing to rule out.",
                    spread(summary) if s.get("connections", 0) >= 1000 else "")
    out += _section("Every round", "*counter − 2xx*: the counter's growth against the 2xx answers wrk counted; a "
                    "positive difference is requests still in flight when wrk stopped (served after it stopped "
                    "counting); LOST would be a bug.", checks(summary))
    out += ["## The plan", "", "```", summary.get("plan_text", "").rstrip(), "```", ""]
    return "\n".join(out)


# bench/tail's report

def _n(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if isinstance(value, (int, float)) and abs(value) >= 1000 else f"{value:.{digits}f}"


def _med(cell: dict | None, digits: int = 2, spread: bool = True, missing: str = "–") -> str:
    """A folded figure (rounds.stats): its median, and with `spread` the (min–max) where they differ."""
    if not cell:
        return missing
    spread = spread and _n(cell["min"], digits) != _n(cell["max"], digits)
    return _n(cell["median"], digits) + (f" ({_n(cell['min'], digits)}–{_n(cell['max'], digits)})" if spread else "")


def _rounds(cell: dict | None, digits: int = 2) -> str:
    return " · ".join(_n(v, digits) for v in cell["values"]) if cell else "–"


def _cpu(c: dict, *keys) -> list[str]:
    return [_n(c.get(k), 0) for k in keys]


def tail_method(summary: dict) -> list[str]:
    s, t = summary["settings"], summary["tail"]
    pinned = f", pinned with `taskset -c {t['cpus_load']}`" if t.get("cpus_load") else ""
    return ["## Method", "",
            f"Offered rates are fractions of oha's closed-loop maximum (`oha -c {s['connections']} -z "
            f"{t['max_duration']}s`) against nginx; {s['rounds']} interleaved round(s) of `oha -q RATE "
            f"--latency-correction -c {s['connections']} -z {s['duration']}s -w -t 10s` per rate ({t['oha']}{pinned}), "
            "each server started fresh with a 1 s warm-up. How: bench/README.md, \"Open-loop tail\".", ""]


def tail_maxima(summary: dict) -> list[str]:
    rows = []
    for m in summary["maxima"]:
        o, c = m.get("oha", {}), m.get("cpu", {})
        if m.get("error") or m.get("given"):
            rows.append([m["server"], m.get("error") or f"{_n(o['ok_rps'])} (given with --max-rps, not measured)"])
        else:
            rows.append([m["server"], *(_n(o[k]) for k in ("ok_rps", "p50_ms", "p99_ms", "p999_ms")),
                         *_cpu(c, "oha_cpu_pct", "server_cpu_pct", "redis_cpu_pct", "other_cpu_pct")])
    rates = ", ".join(f"{percent_label(float(f))} = {r:,}/s" for f, r in summary["rates"].items())
    return ["## The generator's closed-loop maximum", ""] + \
        md.table(["server", "2xx/s", "p50 ms", "p99 ms", "p99.9 ms", "oha % CPU", "server % CPU", "Redis % CPU",
               "other %"], rows) + ["", f"Offered rates (fractions of nginx's {summary['max_rps']:,.0f}/s): {rates}.", ""]


def tail_goal(summary: dict) -> list[str]:
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
        md.table(["rate", "hitcore p99 ms", "nginx p99 ms", "hitcore p99.9 ms", "nginx p99.9 ms", "met (medians)",
               "rounds met", "saturated rounds"], rows) + \
        ["", "*rounds met*: rounds in which both hitcore's p99 and p99.9 were ≤ nginx's of the same round. "
             "*saturated rounds*: 2xx answers below 95 % of the offered rate or a median of 10 ms or more: the "
             "percentiles measure a queue, not the server, and a verdict resting on them says little.", ""]


def tail_rates(summary: dict) -> list[str]:
    lines = [f"## Latency at each offered rate (median of {summary['settings']['rounds']} round(s))", ""]
    for fraction, rate in summary["rates"].items():
        rows = []
        for server in summary["servers"]:
            cell = summary["folded"].get(server, {}).get(fraction)
            bad = " · ".join("failed" if m.get("error") else f"{m['oha']['error_count']}/{m['oha']['non_2xx']}"
                             for m in summary["measurements"] if m["server"] == server and str(m["fraction"]) == fraction)
            if not cell or not cell["rounds"]:
                rows.append([server, "not measured"] + [""] * 7 + [bad])
                continue
            ratio = cell["achieved_ratio"]["median"] if cell["achieved_ratio"] else None
            rows.append([server, f"{_n(cell['ok_rps']['median'])} ({_n(ratio * 100 if ratio else None, 0)} %)",
                         *(_med(cell[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")), _med(cell["max_ms"], 1),
                         _rounds(cell["p99_ms"]), _rounds(cell["p999_ms"]), bad])
        lines += [f"### {percent_label(float(fraction))} of the maximum: {rate:,} requests/s offered", ""] + \
            md.table(["server", "2xx/s (of offered)", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "p99 per round",
                   "p99.9 per round", "errors/non-2xx per round"], rows) + [""]
    return lines


def tail_cpu(summary: dict) -> list[str]:
    rows = []
    for fraction in summary["rates"]:
        for server in summary["servers"]:
            cell = summary["folded"].get(server, {}).get(fraction)
            if cell and cell["rounds"]:
                c = {k: v["median"] for k, v in cell["cpu"].items() if v}
                rows.append([percent_label(float(fraction)), server,
                             *_cpu(c, "oha_cpu_pct", "server_cpu_pct", "redis_cpu_pct", "other_cpu_pct", "machine_cpu_pct"),
                             _n(c.get("server_cpu_us_per_request")), _n(c.get("requests_per_command"), 1),
                             _n(c.get("server_nonvoluntary_per_s"), 0)])
    return ["## CPU over each steady window (medians; % of one CPU)", ""] + \
        md.table(["rate", "server", "oha", "server", "Redis", "other", "whole machine", "server CPU µs / request",
                  "requests per Redis command", "server preemptions / s"], rows) + [""]


def tail_rounds(summary: dict) -> list[str]:
    """Every run on its own, in the order of the rates: a slow round next to what else the machine
    was doing in it (other %), how often the server was preempted, and how far oha kept up."""
    order, rows = {s: i for i, s in enumerate(summary["servers"])}, []
    for m in sorted(summary["measurements"], key=lambda m: (float(m["fraction"]), order.get(m["server"], 99), m["round"])):
        head = [percent_label(float(m["fraction"])), m["server"], m["round"], m.get("load1", "–")]
        if m.get("error") or not m.get("oha"):
            rows.append(head + [m.get("error")] + [""] * 10)
            continue
        o, c = m["oha"], m.get("cpu") or {}
        rows.append(head + [_n(o["p50_ms"]), _n(o["p99_ms"]), _n(o["p999_ms"]), _n(o["ok_rps"]),
                            *_cpu(c, "oha_cpu_pct", "server_cpu_pct", "redis_cpu_pct", "other_cpu_pct", "server_nonvoluntary_per_s"),
                            _n(c.get("requests_per_command"), 1),
                            " · ".join(_cpu(c, "server_runq_ms_per_s", "redis_runq_ms_per_s", "oha_runq_ms_per_s"))])
    return ["## Every round", ""] + \
        md.table(["rate", "server", "round", "load1", "p50 ms", "p99 ms", "p99.9 ms", "2xx/s", "oha %", "server %",
               "Redis %", "other %", "preemptions / s", "requests per Redis command",
               "run-queue wait ms/s: server · Redis · oha"], rows) + \
        ["", "*run-queue wait*: time the threads were runnable but waited for a CPU (/proc/TID/schedstat), per "
             "second of the window. *other %*: the machine's busy time less oha's, the server's and Redis's, good "
             "to about ±20 % of a CPU (two clocks read a few milliseconds apart).", ""]


def tail_correctness(summary: dict) -> list[str]:
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


def tail_render(summary: dict) -> str:
    """bench/tail's report (its summary's `tail`, `maxima`, `rates`, `folded`, `verdicts`, `measurements`)."""
    lines = [f"# Open-loop tail: hitcore, nginx and the tokio peer at fractions of oha's maximum "
             f"({summary['machine']['hostname']}, {summary['started_utc'][:10]}"
             + (", quick" if summary["tail"]["mode"] == "quick" else "") + ")", ""]
    lines += md.machine(summary, [["Run", f"{summary['duration_s']:.0f} s: `{summary['command']}`"]] +
                        [[f"{name} binary", ident] for name, ident in summary.get("binaries", {}).items()]) + [""]
    lines += tail_method(summary) + tail_maxima(summary) + tail_goal(summary)
    lines += tail_rates(summary) + tail_cpu(summary) + tail_rounds(summary) + tail_correctness(summary)
    lines += _section("Notes", "", "\n".join(summary.get("notes") or []))
    return "\n".join(lines + ["Raw outputs: `raw/` (oha's JSON of every run: `SERVER-FRACTION-rROUND.json`, the "
                              "fraction in thousandths; `SERVER-max.json` the closed loop), every number in "
                              "`summary.json`.", ""])


# bench/syscalls' report

# "pipelined" for the runs recorded before bench/syscalls lost that shape (bench/README.md).
SYSCALL_SHAPES = {"keepalive": "keep-alive (`ab -k -c 50`)", "close": "a connection per request (`ab -c 50`)",
                  "pipelined": "pipelined keep-alive (50 connections × 16 requests per write)",
                  "idle": "idle (no load)"}


def _count(stat: dict | None, spread: bool = True) -> str:
    """A count per request (or per second): a missing one is none."""
    return _med(stat, spread=spread, missing="0")


def _largest(counts: dict, n: int, digits: int) -> str:
    tops = sorted(((k, st) for k, st in counts.items() if perfstat.is_syscall(k)), key=lambda kv: -kv[1]["median"])[:n]
    return ", ".join(f"{k} {st['median']:.{digits}f}" for k, st in tops if st["median"] >= 0.005)


def syscalls_render(summary: dict) -> str:
    """bench/syscalls' report (its summary's `syscalls`, `folded`, `instructions_folded`)."""
    folded, s, measured = summary["folded"], summary["syscalls"], bool(summary["measurements"])
    titles = {row["id"]: row["title"] for row in summary["rows"]}
    shapes = [sh for sh in summary["shapes"] if sh != "idle"]
    lines = [f"# Syscalls per request: {summary['name']}", "",
             f"`{summary['command']}`, started {summary['started_utc']}, {summary['duration_s']:.0f} s. Counts, not "
             "times: a busy machine changes them only where the batching itself changes.", ""]
    lines += md.machine(summary, [["perf", s["perf"]]] if s.get("perf") else []) + [""]
    if measured:
        lines += ["## Method", "",
                  f"Each server on its own, started fresh each round ({s['rounds']} rounds), against one Redis; for "
                  f"each shape a warm-up of {s['warmup']} requests, then `perf stat` (syscall tracepoints, context "
                  f"switches, failed `recvfrom`/`read`/`accept4`) on every thread of the server and of redis-server, "
                  f"enabled around exactly {s['requests']} requests ({summary['settings']['connections']} connections), every count divided "
                  "by the requests. Medians of the rounds, (min–max) where they differ. `total` is every syscall "
                  "once; `X:err` the calls of X that failed (part of X's count); *vol.* the voluntary context "
                  "switches (bench/README.md, \"Syscalls per request\").", ""]
        for shape in shapes:
            rows = []
            for server in summary["servers"]:
                cell = folded.get(server, {}).get(shape)
                if not cell:
                    rows.append([titles[server], "not measured"] + [""] * 5)
                    continue
                srv, red, uses = cell["roles"].get("server", {}), cell["roles"].get("redis", {}), server != "nginx"
                rows.append([titles[server], _count(srv.get("total")),
                             f"{_count(srv.get(perfstat.SWITCHES))}; vol. {_count(srv.get('cs-voluntary'), False)}",
                             _largest(srv, 6, 2), _count(red.get("total")) if uses else "–",
                             f"{_count(red.get(perfstat.SWITCHES))}; vol. {_count(red.get('cs-voluntary'), False)}" if uses else "–",
                             _count(cell.get("redis_commands_per_request")) if uses else "–"])
            lines += [f"## {SYSCALL_SHAPES[shape]}", ""] + md.table(
                ["server", "syscalls / req", "context switches / req; voluntary", "largest syscalls / req",
                 "Redis syscalls / req", "Redis ctx sw / req; voluntary", "Redis commands / req"], rows) + [""]
        # Every count of the server processes, one column per server and shape, the largest first.
        cols = [folded[sv][sh]["roles"].get("server", {}) for sh in shapes for sv in summary["servers"]
                if folded.get(sv, {}).get(sh)]
        names = sorted({n for col in cols for n, st in col.items() if st["median"] >= 0.01},
                       key=lambda n: -max(col[n]["median"] for col in cols if n in col))
        if cols:
            lines += ["## Every syscall of the server processes, per request (medians)", ""] + md.table(
                ["syscall"] + [f"{sv} {sh}" for sh in shapes for sv in summary["servers"] if folded.get(sv, {}).get(sh)],
                [[n] + [f"{col[n]['median']:.3f}" if n in col else "0" for col in cols] for n in names]) + [""]
    ins = summary.get("instructions_folded")
    if ins:
        lines += ["## User-space instructions per request (callgrind)", "",
                  "The server under `valgrind --tool=callgrind --trace-children=yes`, counters zeroed after a warm-up "
                  f"and dumped after exactly {s['callgrind_requests']} requests; Ir of all its processes, libc "
                  "included, kernel excluded. Under callgrind a server runs ~50× slower, so it finds more requests "
                  "waiting per wake-up than at full speed; nginx runs with `master_process off` (callgrind_control "
                  "cannot reach a forked worker).", ""] + md.table(
            ["server"] + [SYSCALL_SHAPES[sh] for sh in shapes],
            [[titles[sv]] + [_med(ins[sv].get(sh), 0) for sh in shapes] for sv in summary["servers"] if sv in ins]) + [""]
    if "idle" in summary["shapes"] and measured:
        rows = [[titles[sv], _count(srv.get("total")), _count(srv.get(perfstat.SWITCHES)), _largest(srv, 5, 1)]
                for sv in summary["servers"] if folded.get(sv, {}).get("idle")
                for srv in [folded[sv]["idle"]["roles"].get("server", {})]]
        lines += ["## Idle: per second, no load", ""] + \
            md.table(["server", "syscalls / s", "context switches / s", "largest"], rows) + [""]
    errors = [m for m in summary["measurements"] + summary.get("instructions", [])
              if m.get("error") or m.get("warning")]
    if errors:
        lines += ["## Problems", ""] + [f"- {m['server']} {m['shape']} round {m['round']}: "
                                        f"{m.get('error') or m.get('warning')}" for m in errors] + [""]
    return "\n".join(lines + ["Raw outputs: `raw/` (`*.perf.csv.gz`: perf's per-thread counts, "
                              "gzipped; `*.load.txt`: the load generator's), every number in `summary.json`.", ""])
