"""bench/compare's report: summary.md from summary.json's dict, and the console table.

The machine comes first, then how quiet it was (load averages, CPU used by other work during each
measurement), then the throughput table (median req/s over the rounds, the min–max spread, the ratio
to the plan's base, p50/p99, errors in every round), the goals met or not, Redis's side (CPU per
second, commands, requests per command: the batch size), and the correctness of every round.
Pure functions on plain dicts: bench/tests/test_compare.py renders a recorded summary.
"""
from __future__ import annotations

from . import md
from .md import fmt
from .rounds import median_of



def brief(result: dict) -> str:
    """One console line for one wrk run."""
    if result.get("error"):
        return result["error"]
    text = (f"{result['rps']:,.0f} req/s, p99 {fmt(result.get('p99_ms'), '.2f')} ms, "
            f"non-2xx {result.get('non_2xx_3xx', 0)}")
    if result.get("redis_cpu_pct") is not None:
        text += (f"; Redis {result['redis_cpu_pct']} % of a CPU, "
                 f"{fmt(result.get('requests_per_command'), '.1f')} requests per command")
    if result.get("other_cpu_pct") is not None:
        text += f"; other work {result['other_cpu_pct']} % of a CPU"
    return text


def _wrk(row: dict) -> dict:
    return row.get("tests", {}).get("wrk") or {}


def _derived(t: dict, key: str):
    """A field of one wrk result. server_cpu_us_per_request is derived where it is missing: from the
    counter's rate over the window for summaries older than the field, and from wrk's req/s for a
    server that counts nothing (nginx's `return 200`), so every server gets the figure."""
    if key == "server_cpu_us_per_request" and t.get(key) is None and t.get("server_cpu_pct") is not None:
        rate = t.get("window_rps") or t.get("rps")
        if rate:
            return round(t["server_cpu_pct"] * 1e4 / rate, 2)
    return t.get(key)


def per_round(row: dict, key: str, spec: str = "d") -> str:
    values = []
    for r in row.get("rounds", []):
        t = dict(r.get("tests", {}).get("wrk") or {})
        if t:
            t[key] = _derived(t, key)
        values.append("–" if not t or t.get("error") or t.get(key) is None else format(t[key], spec))
    return " · ".join(values)


def _errors(row: dict) -> str:
    out = []
    for r in row.get("rounds", []):
        t = r.get("tests", {}).get("wrk")
        if not t or t.get("error"):
            out.append("no result")
            continue
        socket = sum(t.get(f"errors_{k}", 0) for k in ("connect", "read", "write", "timeout"))
        out.append(f"{t.get('non_2xx_3xx', 0)}/{socket}")
    return " · ".join(out)


def _median_of(row: dict, key: str):
    return median_of([_derived(r["tests"]["wrk"], key) for r in row.get("rounds", [])
                      if r.get("tests", {}).get("wrk") and not r["tests"]["wrk"].get("error")])


def table(summary: dict) -> str:
    base = next((r for r in summary["rows"] if r["id"] == summary["base"]), None)
    base_rps = _wrk(base).get("rps") if base else None
    lines = [f"| Variant | req/s (median) | min–max | × {summary['base']} | p50 ms | p99 ms | "
             "non-2xx / socket errors, each round | Redis CPU % | requests per Redis command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        t = _wrk(row)
        if row["status"] != "ok" and not t.get("rps"):
            lines.append(f"| {row['id']} | {row['status']} | | | | | | | |")
            continue
        ratio = None if not base_rps or not t.get("rps") else t["rps"] / base_rps
        spread = f"{fmt(t['min'].get('rps'))}–{fmt(t['max'].get('rps'))}" if t.get("min") else "–"
        lines.append(
            f"| {row['id']} | {fmt(t.get('rps'))} | {spread} | {fmt(ratio, '.3f')} | {fmt(t.get('p50_ms'), '.2f')} | "
            f"{fmt(t.get('p99_ms'), '.2f')} | {_errors(row)} | {fmt(t.get('redis_cpu_pct'), '.1f')} | "
            f"{fmt(t.get('requests_per_command'), '.1f')} |")
    return "\n".join(lines)


def goals(summary: dict) -> str:
    if not summary.get("goals"):
        return ""
    lines = ["| Goal | Figures (medians: req/s, or p99) | Ratio | Met? |", "|---|---|---|---|"]
    for g in summary["goals"]:
        met = "not measured" if g["met"] is None else ("**yes**" if g["met"] else "**no**")
        mine, theirs = fmt(g["rps"]), fmt(g["other_rps"])
        if g.get("figures", "").endswith("ms"):
            mine, theirs = fmt(g["rps"], ".2f") + " ms", fmt(g["other_rps"], ".2f") + " ms"
        lines.append(f"| {g['goal']} | {mine} against {theirs} | {fmt(g['ratio'], '.3f')} | {met} |")
    return "\n".join(lines)


def redis_side(summary: dict) -> str:
    rows = [r for r in summary["rows"] if r.get("uses_redis") and _wrk(r).get("window_rps")]
    if not rows:
        return ""
    lines = ["| Variant | requests/s (window) | Redis CPU, % of one CPU | replica CPU % | Redis commands/s "
             "(INCR + INCRBY) | requests per command | Redis CPU µs per command | of which executing (commandstats) "
             "| Redis CPU % per 100k req/s | WAIT calls in window |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        t = _wrk(row)
        lines.append(
            f"| {row['id']} | {fmt(t.get('window_rps'))} | {fmt(t.get('redis_cpu_pct'), '.1f')} | "
            f"{fmt(t.get('replica_cpu_pct'), '.1f') if t.get('replica_cpu_pct') else '–'} | "
            f"{fmt(t.get('commands_per_s'))} | {fmt(t.get('requests_per_command'), '.1f')} | "
            f"{fmt(t.get('redis_cpu_us_per_command'), '.1f')} | {fmt(t.get('redis_exec_us_per_command'), '.2f')} | "
            f"{fmt(t.get('redis_cpu_pct_per_100k_rps'), '.2f')} | {fmt(t.get('wait_calls'), 'd')} |")
    return "\n".join(lines)


def cpu_side(summary: dict) -> str:
    lines = ["| Variant | server CPU % | server CPU µs per request, each round | wrk CPU % | "
             "Redis (+ replica, sentinels) CPU % | machine busy % | other work % (machine − ours), each round |",
             "|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        t = _wrk(row)
        if not t.get("window_s"):
            continue
        redis = sum(t.get(k) or 0 for k in ("redis_cpu_pct", "replica_cpu_pct", "sentinels_cpu_pct"))
        lines.append(f"| {row['id']} | {fmt(t.get('server_cpu_pct'), '.0f')} | "
                     f"{per_round(row, 'server_cpu_us_per_request', '.2f')} (median {fmt(_median_of(row, 'server_cpu_us_per_request'), '.2f')}) | "
                     f"{fmt(t.get('wrk_cpu_pct'), '.0f')} | "
                     f"{redis:.1f} | {fmt(t.get('machine_cpu_pct'), '.0f')} | {per_round(row, 'other_cpu_pct', '.0f')} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def attack_side(summary: dict) -> str:
    """The attackers beside wrk (@attack), medians over the rounds: how many connections they held,
    how often the server closed one (each reopened at once: the churn it causes), their CPU (taken
    from the same CPUs as the server and wrk), and the server's memory before them and at its peak
    beside them, per connection held."""
    lines = ["| Variant | attack | in place after s | connections open (idle) on average | closed by the server "
             "per s | attacker CPU % | server RSS before → peak KiB | KiB per connection held | requests written, "
             "closed after s (pipeline) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        t = _wrk(row)
        if t.get("attack_ramp_s") is None:
            continue
        attack = (row.get("rounds") or [{}])[0].get("attack")
        idle = f" ({fmt(t['attack_idle_avg'])})" if t.get("attack_idle_avg") is not None else ""
        pipeline = f"{fmt(t.get('attack_requests_written'))}, {fmt(t.get('attack_closed_after_s'), '.1f')}" \
            if t.get("attack_requests_written") is not None else "–"
        lines.append(f"| {row['id']} | {attack or '–'} | {fmt(t['attack_ramp_s'], '.1f')} | "
                     f"{fmt(t.get('attack_open_avg'))}{idle} | {fmt(t.get('attack_closed_per_s'))} | "
                     f"{fmt(t.get('attacker_cpu_pct'), '.0f')} | {fmt(t.get('rss_before_attack_kib'))} → "
                     f"{fmt(t.get('peak_rss_kib'))} | {fmt(t.get('kib_per_attack_conn'), '.2f')} | {pipeline} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def spread(summary: dict) -> str:
    """Open descriptors of each server process at the steady window's end, and `ss -s`'s TCP line,
    every round: how a many-connection load spread over the shards or workers."""
    lines = ["| Variant | round | open descriptors per process (supervisor or master first) | "
             "accept-queue overflows / drops during wrk | `ss -s` TCP |", "|---|---|---|---|---|"]
    for row in summary["rows"]:
        for n, r in enumerate(row.get("rounds", []), 1):
            t = r.get("tests", {}).get("wrk") or {}
            if not t.get("server_fds"):
                continue
            fds = " / ".join(fmt(x) for x in t["server_fds"])
            lines.append(f"| {row['id']} | {n} | {fds} | {fmt(t.get('listen_overflows'))} / {fmt(t.get('listen_drops'))} | "
                         f"{t.get('ss_tcp') or '–'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def checks(summary: dict) -> str:
    lines = ["| Variant | round | 2xx (wrk) | counter after | counter − 2xx | /metrics scrapes (failed) | "
             "lines in file | WORKER TIMEOUT | exit | load before |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        for n, r in enumerate(row.get("rounds", []), 1):
            t = r.get("tests", {}).get("wrk") or {}
            ok, counter = t.get("ok_2xx"), t.get("counter_after")
            diff = "–" if ok is None or counter is None else (
                f"+{counter - ok}" if counter >= ok else f"**LOST {ok - counter}**")
            if t.get("redis_restart"):  # the counter restarted empty with Redis (no persistence)
                restart = t["redis_restart"]
                diff = f"Redis down {restart.get('stopped_s')}–{restart.get('started_s')} s {restart.get('error', '')}"
            scrapes = "–" if t.get("scrapes") is None else f"{t['scrapes']} ({t.get('scrape_errors', 0)})"
            lines.append(f"| {row['id']} | {n} | {fmt(ok)} | {fmt(counter)} | {diff} | {scrapes} | "
                         f"{fmt(t.get('file_lines'))} | {r.get('worker_timeouts', '–')} | {r.get('exit_status', '–')} | "
                         f"{r.get('load_before', '–')} |")
    return "\n".join(lines)


def machine(summary: dict) -> list[str]:
    """`## Machine` of a bench/compare run (bench/api's too): the report library's machine table
    (md.machine) with the governor, the limits, the quiet wait, each round's start, the binaries and
    the Redis setups."""
    lim, quiet = summary.get("limits"), summary.get("quiet_wait")
    rows = [["CPU governor", summary["machine"].get("governor")]]
    if lim:
        rows.append(["Open files soft / hard (wrk and the servers inherit them); somaxconn; tcp_max_syn_backlog",
                     f"{fmt(lim.get('nofile_soft'))} / {fmt(lim.get('nofile_hard'))}; {lim.get('somaxconn')}; "
                     f"{lim.get('tcp_max_syn_backlog')}"])
    if quiet:
        rows.append(["Waited for a quiet machine (UTC, 1-minute load)", ", ".join(f"{q['utc']} {q['load1']}" for q in quiet)])
    rows.append(["Each round's start (UTC, 1-minute load)",
                 ", ".join(f"{r['utc']} {r['load1']}" for r in summary.get("rounds", []))])
    rows += [[f"`{{{k}}}`", v] for k, v in summary.get("binaries", {}).items()]
    return md.machine(summary, rows + [["Redis", line] for line in summary.get("redis", [])])


def render(summary: dict, extra: list[str] = ()) -> str:
    """The report of a run on bench/compare's run; `extra`: a tool's own sections, after the goals."""
    s = summary["settings"]
    out = [f"# {summary['title']}", "",
           f"`{summary.get('command', 'bench/compare')}`, plan `{summary['plan']}`, started {summary['started_utc']} "
           f"({summary.get('duration_s', 0):.0f} s).", ""] + machine(summary)
    out += ["", "The machine is shared: other engineers' builds and tests ran beside this measurement. "
            "The *other work* column below is the CPU time the whole machine used during each steady window "
            "less what this run's processes (server, Redis, replica, sentinels, wrk) used; where it is large, "
            "req/s falls with it, while the server's CPU time per request moves much less: compare that too.", "",
            "## Throughput", "",
            f"`wrk -t {s['threads']} -c {s['connections']} -d {s['duration']}s --latency`, {s['rounds']} interleaved "
            "rounds (each round runs every variant once, in the plan's order); median over the rounds, min–max "
            "spread, the median's ratio to the base variant.", "", table(summary), ""]
    g = goals(summary)
    if g:
        out += ["## Goals", "", g, ""]
    out += list(extra)
    if summary.get("notes"):
        # Written by whoever recorded the run (summary.json's "notes", Markdown lines): what was
        # measured beside it, e.g. what limits a goal not met. --render keeps them.
        out += ["## Notes", ""] + list(summary["notes"]) + [""]
    rs = redis_side(summary)
    if rs:
        out += ["## Redis's side", "",
                f"Over each wrk run's steady window (from {s['warm_s']:g} s after its start to {s['margin_s']:g} s "
                "before its end): Redis's CPU time (utime + stime from /proc) per second, the increments it made "
                "(the counter's growth), and its INCR/INCRBY calls (INFO commandstats), so *requests per command* "
                "is the batch size. Medians over the rounds.", "", rs, ""]
    cpu = cpu_side(summary)
    if cpu:
        out += ["## CPU during the steady window (medians, % of one CPU)", "", cpu, ""]
    attacks = attack_side(summary)
    if attacks:
        out += ["## Hostile clients beside wrk", "",
                "kit/attackers.py's process, started before wrk and in place (every connection opened once, "
                "or answered and idle) before wrk starts; its counters over wrk's run; the server's process "
                "tree's RSS before the attackers and its peak during wrk (10 Hz). Medians over the rounds.", "",
                attacks, ""]
    sp = spread(summary) if s.get("connections", 0) >= 1000 else ""
    if sp:
        out += ["## Connections per process", "",
                "At the steady window's end: each server process's open descriptors (its connections plus "
                "a few of its own: listener, log, Redis), and the kernel's TCP socket totals; over the whole "
                "wrk run, its connect burst included, the kernel's `ListenOverflows` / `ListenDrops` "
                "(/proc/net/netstat: connection attempts turned away at a full accept queue, retried by the "
                "client a second later). With many connections, one shard or worker holding most of them, or "
                "a queue too short for the burst, is the first thing to rule out.", "",
                sp, ""]
    out += ["## Every round", "",
            "*counter − 2xx*: the counter's growth against the 2xx answers wrk counted; a positive difference is "
            "requests still in flight when wrk stopped (served after it stopped counting); LOST would be a bug.",
            "", checks(summary), "", "## The plan", "", "```", summary.get("plan_text", "").rstrip(), "```", ""]
    return "\n".join(out)
