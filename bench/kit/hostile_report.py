"""bench/hostile's report, bench/results/<date>-<host>-hostile.md, from its summary: the machine,
one section per measurement with its tables, the notes, what hitcore's logs said. How each was
measured is bench/README.md's "Hostile clients" (the report points there rather than repeat it).
Pure: nothing is computed here but ratios and formatting.
"""
from __future__ import annotations

from .md import each, esc, kib, machine, ms, notes, num, table

TARGET_KIB_PER_CONN = 8  # issue 6, target 5
HOW = "bench/README.md, *Hostile clients*"
TARGET = "**Target** (issue 14, target 5: hitcore's p99 under attack ≤ nginx's)"
WRK_HEAD = ["Requests/sec", "p50", "p99", "max", "Socket errors c/r/w/t", "Non-2xx",
            "New connections answered", "New-connection p50 / max"]
VS_TITLES = {"hitcore": "hitcore (default flags)",
             "hitcore-wc1000": "hitcore `--worker-connections 1000` (the default before issue 14)",
             "hitcore-ht60": "hitcore `--header-timeout 60`", "nginx": "nginx `return 200` (static)"}


def _avgmax(d: dict | None) -> str:
    return "–" if not d or d.get("avg") is None else f"{num(d['avg'])} / {num(d['max'])}"


def _wrk_cells(phase: dict | None) -> list[str]:
    """Requests/sec, p50, p99, max, socket errors, non-2xx, new connections, their p50/max."""
    if not phase:
        return ["*not run*"] + ["–"] * 7
    w, p = phase["wrk"], phase.get("probes")
    if w.get("error"):
        cells = [f"*{esc(w['error'])}*"] + ["–"] * 5
    else:
        errors = "/".join(str(w.get(f"errors_{k}", 0)) for k in ("connect", "read", "write", "timeout"))
        cells = [f"**{num(w['rps'])}**", ms(w.get("p50_ms")), f"**{ms(w.get('p99_ms'))}**",
                 ms(w.get("latency_max_ms")), errors, num(w.get("non_2xx_3xx"))]
    if not p:
        return cells + ["–", "–"]
    answered = f"{p['ok']}/{p['sent']}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(p["errors"].items())) + ")"
                                           if p.get("errors") else "")
    return cells + [answered, f"{ms(p.get('p50_ms'))} / {ms(p.get('max_ms'))}"]


def _other(load: dict | None) -> str:
    if not load:
        return "–"
    return f"{load['pct']:.0f} %" + (f" ({', '.join(load['top'])})" if load.get("top") and load["pct"] >= 5 else "")


def _failed(r: dict, label: str = "Did not complete") -> list[str]:
    return ["", f"**{label}**: {esc(r['error'])}"] if r.get("error") else []


def _machine(s: dict) -> list[str]:
    lim = s.get("limits", {})
    lines = machine(s, [
        ["hitcore binary", f"`{s.get('hitcore_binary')}`, built {s.get('hitcore_built', '?')}"],
        ["Open files (soft / hard)", f"{num(lim.get('nofile_soft'))} / {num(lim.get('nofile_hard'))}"],
        ["somaxconn / tcp_max_syn_backlog / syncookies",
         f"{lim.get('somaxconn')} / {lim.get('tcp_max_syn_backlog')} / {lim.get('tcp_syncookies')}"],
        ["Ephemeral ports", lim.get("ip_local_port_range")]])
    threshold, busy = s.get("busy_threshold", 20), []
    for r in _runs(s):
        for key in ("baseline", "slowloris", "flood", "pipeline", None):
            load = (r.get(key) or {}).get("other_load") if key else r.get("other_load")
            if load and load["pct"] > threshold:
                busy.append(f"{r['id']}{'/' + key if key and key != r['id'] else ''}: {_other(load)}")
    if busy:
        lines += ["", "**Other work ran during some measurements** (CPU of processes outside this run, 100 % = "
                      f"one core of the machine's {s['machine'].get('cpus_online')}): " + "; ".join(busy)
                  + ". Those numbers are worse and noisier than on a quiet machine."]
    return lines


def _slowloris(s: dict, runs: list[dict]) -> list[str]:
    lines = ["## 1. Normal-client latency with and without slowloris", "",
             f"`wrk -t 1 -c 50 -d {s['settings']['wrk_duration']}s --latency`, alone then beside "
             f"{num(runs[0]['conns'] if runs else None)} slowloris connections, hitcore with one shard per CPU "
             f"({runs[0].get('shards') if runs else '?'}); *new connections* are the prober's ({HOW}).", ""]
    rows, side = [], []
    for r in runs:
        label = f"`--worker-connections {r['cap']}`" + (" (default)" if r["cap_is_default"] else "")
        for key, what in (("baseline", "wrk alone"), ("slowloris", f"wrk + {num(r['conns'])} slowloris")):
            phase = r.get(key) or {}
            rows.append([label, what, *_wrk_cells(r.get(key)), num(phase.get("hitcore_cpu_pct")) + " %",
                         _other(phase.get("other_load"))])
        p = r.get("slowloris") or {}
        a = p.get("attacker") or {}
        side.append([f"`--worker-connections {r['cap']}` ({num(r['cap'] * r.get('shards', 1))} slots)",
                     f"{num(a.get('open_avg'))} (min {num(a.get('open_min'))})", _avgmax(p.get("held")),
                     _avgmax(p.get("accept_queue")), f"{num(a.get('closed_by_server'))} ({num(a.get('closed_per_s'))}/s)",
                     num(a.get("connect_failed")), num(a.get("answers")),
                     num((r.get("hitcore") or {}).get("evicted_at_cap")), num(p.get("attacker_cpu_pct")) + " %",
                     num(r.get("ramp_s"), 1) + " s"])
    lines += table(["hitcore", "Load", *WRK_HEAD, "hitcore CPU (100 % = one core)", "Other processes' CPU"], rows)
    lines += ["", "The slowloris side, during the wrk run (*open*: as the client sees them, the accept queue's "
                  "included; *held*: the shards' descriptors above their count at rest, wrk's 50 included):", ""]
    lines += table(["hitcore", "Slowloris connections open (avg)", "Held by hitcore's shards (avg / max)",
                    "In the accept queues (avg / max)", "Closed by the server and reopened", "Failed connects",
                    "Answers they got", "Closed at the cap (hitcore's log, whole run)", "Slowloris process CPU",
                    "Time to open them"], side)
    return lines + [x for r in runs for x in _failed(r, f"{r['id']} did not complete")]


def _idle(r: dict) -> list[str]:
    per, a, p = r.get("kib_per_conn"), r.get("attacker") or {}, r.get("probes")
    verdict = "–" if per is None else f"**{per:.2f} KiB** (target ≤ {TARGET_KIB_PER_CONN} KiB: " + \
        ("met)" if per <= TARGET_KIB_PER_CONN else "**not met**)")
    served = "–" if not p else f"{p['ok']}/{p['sent']}" + (
        " (" + ", ".join(f"{k} {v}" for k, v in p["errors"].items()) + ")" if p.get("errors") else "") + \
        f", p50 {ms(p.get('p50_ms'))}, max {ms(p.get('max_ms'))}"
    rows = [["Connections answered 200 / held idle at the end", f"{num(r.get('answered'))} / {num(r.get('idle_held'))}"
             + (f" ({num(a.get('closed_by_server'))} closed by the server, {num(a.get('connect_failed'))} failed "
                f"connects, {num(a.get('non_200'))} non-200)" if a else "")],
            ["Time to open and answer them", num(r.get("ramp_s"), 1) + " s"],
            ["Shard open file descriptors grew by", num(r.get("held_by_shard"))],
            ["Shard VmRSS before", kib(r.get("rss_before_kib"))],
            ["Shard VmRSS with them held", kib(r.get("rss_after_kib"))],
            ["**RSS per idle connection**", verdict],
            ["New connections served while they were held (200 / tried)", served],
            ["Shard VmRSS 2 s after they were closed", kib(r.get("rss_released_kib"))],
            ["Other processes' CPU during this measurement", _other(r.get("other_load"))],
            ["Supervisor VmRSS before / with them held",
             f"{kib(r.get('supervisor_rss_before_kib'))} / {kib(r.get('supervisor_rss_after_kib'))}"]]
    return ["## 2. RSS per idle keep-alive connection", "",
            f"`hitcore {' '.join(r['flags'])}`, {num(r['conns'])} connections that each completed one `GET /` "
            f"and stay idle; the shard's VmRSS, median of 5 readings; kernel socket memory is not in RSS ({HOW}).",
            ""] + table(["Measure", "Value"], rows) + _failed(r)


def _flood(r: dict) -> list[str]:
    p = r.get("flood") or {}
    a = p.get("attacker") or {}
    peaks = r.get("peak_shard_rss_kib") or {}
    rows = [["Flood: established / still connecting (avg during wrk)", f"{num(a.get('open_avg'))} / {num(a.get('connecting_avg'))}"],
            ["Flood: closed by the server and reopened during wrk",
             f"{num(a.get('closed_by_server'))} ({num(a.get('closed_per_s'))}/s); failed connects {num(a.get('connect_failed'))}"],
            ["Held by hitcore's shards (avg / max)", _avgmax(p.get("held"))],
            ["In the accept queues (avg / max)", _avgmax(p.get("accept_queue"))],
            ["Closed at the cap (hitcore's log)", num((r.get("hitcore") or {}).get("evicted_at_cap"))],
            ["hitcore tree RSS before", kib(r.get("tree_rss_before_kib"))],
            ["**hitcore tree RSS, peak during the flood**", f"**{kib(r.get('peak_tree_rss_kib'))}**"],
            ["Peak RSS per shard", ", ".join(f"pid {k}: {kib(v)}" for k, v in peaks.items()) or "–"],
            ["hitcore tree RSS 2 s after the flood", kib(r.get("tree_rss_after_kib"))],
            ["Flood process / hitcore CPU (100 % = one core)",
             f"{num(p.get('attacker_cpu_pct'))} % / {num(p.get('hitcore_cpu_pct'))} %"],
            ["Other processes' CPU during wrk", _other(p.get("other_load"))]]
    return ["## 3. Flood", "",
            f"`hitcore {' '.join(r['flags'])}` ({r.get('shards')} shards: {num(r['cap'] * r.get('shards', 1))} slots), "
            f"{num(r['conns'])} connections opened as fast as possible and reopened when closed, the same wrk as "
            f"in 1; peak RSS of hitcore's whole process tree at 10 Hz ({HOW}).", ""] + \
        table(["Measure", "Value"], rows) + ["", "The normal client during the flood:", ""] + \
        table(WRK_HEAD + ["Longest wait for a new-connection answer"],
              [_wrk_cells(p) + [ms((p.get("probes") or {}).get("longest_gap_ms"))]]) + _failed(r)


def _pipeline(r: dict) -> list[str]:
    a, b = r.get("attacker") or {}, r.get("busiest_shard")
    before, peak, after = (r.get(k) or {} for k in ("shard_rss_before_kib", "peak_shard_rss_kib", "shard_rss_after_kib"))
    closed = f"yes, {r['closed_after_s']:.1f} s after it opened" if r.get("closed_after_s") is not None else \
        f"not within {r.get('hold_s')} s of its opening (when it was let go)"
    rows = [["Requests written (bytes)", f"{num(a.get('requests_written'))} ({num(a.get('bytes_sent'))} B)"],
            ["Last write the socket accepted, after", "never" if a.get("last_write_s") is None else
             f"{a['last_write_s']:.3f} s" + (" (then blocked: the buffers were full)" if a.get("blocked_since_s") is not None else "")],
            ["Closed by the server", closed],
            ["Where the bytes sat when writing ended (`ss`: Recv-Q / Send-Q of each end)",
             "; ".join(f"{q['side']} end: {num(q['recv_q'])} B unread, {num(q['send_q'])} B unsent"
                       for q in r.get("socket_queues") or []) or "–"],
            ["Answered into unread buffers (Redis counter)", f"≈ {num(r.get('pipelined_answered'))} "
             f"(counter +{num(r.get('counter_growth'))}, normal clients {num(r.get('normal_answers'))})"],
            ["Unread answer bytes in the client's receive buffer", num(a.get("unread_bytes"))],
            [f"Shard VmRSS before → peak → 1 s after (the shard that grew most, pid {b})",
             f"{kib(before.get(b))} → **{kib(peak.get(b))}** → {kib(after.get(b))}"],
            ["All shards before → peak", "; ".join(f"pid {k}: {kib(v)} → {kib(peak.get(k))}" for k, v in before.items()) or "–"],
            ["hitcore tree RSS before → peak", f"{kib(r.get('tree_rss_before_kib'))} → {kib(r.get('peak_tree_rss_kib'))}"],
            ["Other processes' CPU during wrk", _other((r.get("pipeline") or {}).get("other_load"))]]
    return ["## 4. A client that pipelines and never reads", "",
            f"`hitcore` (default flags); one connection writes pipelined `GET /` for {r['seconds']} s and never "
            "reads, beside the same wrk as in 1. *Answered into unread buffers*: the counter's growth less the "
            f"normal clients' answers, an upper bound by wrk's 50 in flight ({HOW}).", ""] + \
        table(["Measure", "Value"], rows) + ["", "The normal client meanwhile:", ""] + \
        table(WRK_HEAD, [_wrk_cells(r.get("pipeline"))]) + _failed(r)


def _vs_nginx(s: dict, r: dict) -> list[str]:
    runs, folded = r.get("runs") or [], r.get("folded") or {}
    limits = next(((x.get("nginx") or {}).get("limits") for x in runs if x.get("nginx")), None) or {}
    lines = ["## 5. Under attack, beside nginx", "",
             f"Measurement 1's two phases (`wrk -t 1 -c 50 -d {s['settings']['wrk_duration']}s`, alone then beside "
             f"{num(r['conns'])} slowloris connections) in {r['rounds']} interleaved round(s) against hitcore "
             f"({r.get('shards')} shards) as shipped, with `--worker-connections 1000` and with `--header-timeout 60`, "
             "and nginx's static `return 200` with its default timeouts, only `worker_connections` "
             f"({num(limits.get('worker_connections'))}) and `worker_rlimit_nofile` "
             f"({num(limits.get('worker_rlimit_nofile'))}) raised so every client fits ({HOW}). Medians, then "
             "each round's figure; server CPU: 100 % = one core.", ""]
    rows = []
    for victim, phases in folded.items():
        for phase, what in (("baseline", "wrk alone"), ("slowloris", f"wrk + {num(r['conns'])} slowloris")):
            f = phases.get(phase) or {}
            probes = each([None if a is None else f"{a}/{b}" for a, b in
                           zip(f.get("probes_ok_each", []), f.get("probes_sent_each", []))])
            attack = "–" if phase == "baseline" else (f"{num(f.get('open_avg'))} open, {num(f.get('closed_per_s'))}"
                                                      f"/s closed; attacker CPU {num(f.get('attacker_cpu_pct'))} %")
            rows.append([VS_TITLES.get(victim, victim), what, f"**{ms(f.get('p99_ms'))}**",
                         each(f.get("p99_ms_each", []), lambda v: f"{v:.2f}"), ms(f.get("p50_ms")),
                         ms(f.get("latency_max_ms")), f"**{num(f.get('rps'))}**",
                         each(f.get("rps_each", []), lambda v: f"{v:,.0f}"),
                         each(f.get("socket_errors_each", []), lambda v: f"{v:.0f}"), probes,
                         f"{num(f.get('server_cpu_pct'))} %", attack])
    lines += table(["Server", "Load", "p99 (median)", "p99 each round (ms)", "p50", "max", "Requests/sec (median)",
                    "req/s each round", "Socket errors each round", "New connections answered each round",
                    "Server CPU", "Slowloris during wrk (medians)"], rows) + [""]
    for n, v in enumerate([r.get("verdict")] + list(r.get("verdicts_other") or [])):
        if v:
            met = "not measured" if v["met"] is None else ("**met**" if v["met"] else "**not met**")
            lines.append(f"- {TARGET if n == 0 else 'For comparison'}: "
                         f"{VS_TITLES.get(v['ours'], v['ours'])} {ms(v.get('p99_ms'))} against nginx {ms(v.get('other_p99_ms'))} "
                         f"(ratio {num(v.get('ratio'), 2) if v.get('ratio') is not None else '–'}): {met}.")
    lines += [f"- {VS_TITLES.get(victim, victim)}, {phase}: {esc(failure)}" for victim, phases in folded.items()
              for phase in ("baseline", "slowloris") for failure in (phases.get(phase) or {}).get("failed", [])]
    for x in runs:
        lines += [f"- **{x['id']} did not complete**: {esc(x['error'])}"] if x.get("error") else []
        said = (x.get("nginx") or {}).get("notable")
        lines += [f"- {x['id']}: nginx said " + "; ".join(f"{g['count']}× `{esc(g['example'])}`" for g in said[:3])] if said else []
    return lines


def _logs(runs: list[dict]) -> list[str]:
    rows = []
    for r in runs:
        h = r.get("hitcore") or {}
        notable = "; ".join(f"{g['count']}× `{esc(g['example'])}`" for g in h.get("notable", [])[:6]) or "none"
        notable += f"; and {len(h['notable']) - 6} more kinds" if len(h.get("notable", [])) > 6 else ""
        if h.get("stray_count"):
            notable += f"; {h['stray_count']} lines outside the format, e.g. `{esc(h['stray_lines'][0])}`"
        rows.append([r["id"], f"`{esc(h.get('argv', ''))}`", num(h.get("exit_status")), f"{num(h.get('stop_s'), 1)} s",
                     num(h.get("shard_restarts")), num(h.get("worker_timeouts")), notable])
    return ["## What hitcore's logs said", "",
            "Per hitcore started: its exit status after SIGTERM, shard restarts, WORKER TIMEOUT lines, and every "
            "WARNING/ERROR/CRITICAL line grouped (numbers as N) with a count and one example.", ""] + \
        table(["Run", "Command", "Exit", "Stop took", "Shard restarts", "WORKER TIMEOUT", "Warnings and errors"], rows)


def _runs(s: dict) -> list[dict]:
    out = []
    for key in ("slowloris", "idle", "flood", "pipeline"):
        value = s["tests"].get(key)
        out += (value if isinstance(value, list) else [value]) if value else []
    # vs-nginx's hitcore runs (its nginx runs have no hitcore log to read)
    return out + [r for r in (s["tests"].get("vs-nginx") or {}).get("runs", []) if r.get("victim") != "nginx"]


def render(s: dict) -> str:
    t = s["tests"]
    lines = [f"# hitcore against hostile clients: {s['machine'].get('hostname')}, {s['started'][:10]}", "",
             f"Written by `{s.get('command', 'bench/hostile')}` ({s['settings']['mode']} run, "
             f"{s.get('duration_s', 0):.0f} s, started {s['started']}). How to read it: {HOW}. Raw wrk outputs in "
             f"[`{s['name']}/raw/`]({s['name']}/raw/), every number in `{s['name']}/summary.json`, the logs in "
             f"`{s['name']}/logs/` (kept local).", ""] + _machine(s)
    for key, section in (("slowloris", lambda v: _slowloris(s, v)), ("idle", _idle), ("flood", _flood),
                         ("pipeline", _pipeline), ("vs-nginx", lambda v: _vs_nginx(s, v))):
        lines += [""] + section(t[key]) if t.get(key) else []
    lines += notes(s)
    runs = _runs(s)
    return "\n".join(lines + ([""] + _logs(runs) if runs else [])) + "\n"

