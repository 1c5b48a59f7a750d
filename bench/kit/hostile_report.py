"""The results file of bench/hostile: bench/results/<date>-<host>-hostile.md, from its summary.

The machine first, then one section per measurement with its table, then what hitcore's logs said
and where the raw outputs are. Every number comes from the summary (summary.json beside the raw
wrk outputs); nothing is computed here but ratios and formatting. `console()` is the terminal
digest printed at the end of a run.
"""
from __future__ import annotations

TARGET_KIB_PER_CONN = 8  # issue 6, target 5


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def _ms(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} ms" if value < 100 else f"{value:,.0f} ms"


def _kib(value) -> str:
    if value is None:
        return "–"
    return f"{value:,} KiB ({value / 1024:,.1f} MiB)" if value >= 10240 else f"{value:,} KiB"


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _avgmax(d: dict | None) -> str:
    if not d or d.get("avg") is None:
        return "–"
    return f"{_n(d['avg'])} / {_n(d['max'])}"


def _wrk_cells(phase: dict | None) -> list[str]:
    """Requests/sec, p50, p99, max, socket errors, non-2xx, new connections, their p50/max."""
    if not phase:
        return ["*not run*"] + ["–"] * 7
    w = phase["wrk"]
    if w.get("error"):
        cells = [f"*{_esc(w['error'])}*"] + ["–"] * 5
    else:
        errors = "/".join(str(w.get(f"errors_{k}", 0)) for k in ("connect", "read", "write", "timeout"))
        cells = [f"**{_n(w['rps'])}**", _ms(w.get("p50_ms")), f"**{_ms(w.get('p99_ms'))}**",
                 _ms(w.get("latency_max_ms")), errors, _n(w.get("non_2xx_3xx"))]
    return cells + _probe_cells(phase.get("probes"))


def _probe_cells(p: dict | None) -> list[str]:
    if not p:
        return ["–", "–"]
    answered = f"{p['ok']}/{p['sent']}"
    if p.get("errors"):
        answered += " (" + ", ".join(f"{k} {v}" for k, v in sorted(p["errors"].items())) + ")"
    return [answered, f"{_ms(p.get('p50_ms'))} / {_ms(p.get('max_ms'))}"]


WRK_HEAD = ["Requests/sec", "p50", "p99", "max", "Socket errors c/r/w/t", "Non-2xx",
            "New connections answered", "New-connection p50 / max"]


def _other(load: dict | None) -> str:
    if not load:
        return "–"
    text = f"{load['pct']:.0f} %"
    return text + (f" ({', '.join(load['top'])})" if load.get("top") and load["pct"] >= 5 else "")


def _busy_phases(s: dict) -> list[str]:
    """The measurements during which other processes used more than the threshold of CPU."""
    out = []
    threshold = s.get("busy_threshold", 20)
    for r in _runs(s):
        for key in ("baseline", "slowloris", "flood", "pipeline", None):
            load = (r.get(key) or {}).get("other_load") if key else r.get("other_load")
            if load and load["pct"] > threshold:
                out.append(f"{r['id']}{'/' + key if key and key != r['id'] else ''}: {_other(load)}")
    return out


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
           ["| " + " | ".join(r) + " |" for r in rows]


def _machine(s: dict) -> list[str]:
    m, v, lim = s["machine"], s["versions"], s.get("limits", {})
    rows = [
        ["CPU", f"{m.get('cpu_model')} ({m.get('cpus_online')} CPUs online, allowed {m.get('cpus_allowed')})"],
        ["Kernel / OS", f"Linux {m.get('kernel')} {m.get('arch')} / {m.get('os')}"],
        ["Memory", f"{m.get('memory_gib')} GiB"],
        ["hitcore", f"{v.get('hitcore', '?')} (`{s.get('hitcore_binary')}`, built {s.get('hitcore_built', '?')}), {v.get('rustc', '?')}"],
        ["redis-server", v.get("redis-server", "?")],
        ["wrk", v.get("wrk", "?")],
    ] + ([["nginx (vs-nginx)", v["nginx"]]] if v.get("nginx") else []) + [
        ["python (runs the script and the hostile clients)", v.get("python (system, runs the kit)", "?")],
        ["Open files (soft / hard)", f"{_n(lim.get('nofile_soft'))} / {_n(lim.get('nofile_hard'))}"],
        ["somaxconn / tcp_max_syn_backlog / syncookies",
         f"{lim.get('somaxconn')} / {lim.get('tcp_max_syn_backlog')} / {lim.get('tcp_syncookies')}"],
        ["Ephemeral ports", lim.get("ip_local_port_range")],
        ["Load average at start / end", f"{s.get('load_at_start')} / {s.get('load_at_end')}"],
        ["CPU busy before the run (1 s)", "–" if s.get("busy_at_start") is None else f"{s['busy_at_start']} %"],
    ]
    lines = ["## Machine", ""] + _table(["", ""], [[a, _esc(b)] for a, b in rows])
    busy = s.get("busy_at_start")
    if busy is not None and busy > s.get("busy_threshold", 20):
        lines += ["", f"**Busy machine**: the CPUs were {busy} % busy before the run started (other work); "
                      "every number below is worse and noisier than on a quiet machine."]
    phases = _busy_phases(s)
    if phases:
        lines += ["", "**Other work ran during some measurements** (CPU of processes outside this run, "
                      "100 % = one core of the machine's " + str(m.get("cpus_online")) + "): " + "; ".join(phases)
                  + ". Those numbers are worse and noisier than on a quiet machine."]
    return lines


def _slowloris(s: dict, runs: list[dict]) -> list[str]:
    st = s["settings"]
    n = runs[0]["conns"] if runs else st.get("slowloris")
    lines = ["## 1. Normal-client latency with and without slowloris", "",
             f"`wrk -t 1 -c 50 -d {st['wrk_duration']}s --latency` against hitcore with one shard per CPU "
             f"({runs[0].get('shards') if runs else '?'} here), first alone, then while {_n(n)} slowloris "
             "connections are held by a separate process: each sends `GET / HTTP/1.1`, `Host: x` and then "
             "one more header byte a second, and is reopened at once when the server closes it. "
             "*New connections*: a prober opening a fresh connection every 0.25 s for one `GET /` during "
             "the wrk run (wrk's own 50 connections are opened once, at its start).", ""]
    rows = []
    for r in runs:
        label = f"`--worker-connections {r['cap']}`" + (" (default)" if r["cap_is_default"] else "")
        for key, what in (("baseline", "wrk alone"), ("slowloris", f"wrk + {_n(r['conns'])} slowloris")):
            phase = r.get(key) or {}
            rows.append([label, what] + _wrk_cells(r.get(key)) +
                        [_n(phase.get("hitcore_cpu_pct")) + " %", _other(phase.get("other_load"))])
    lines += _table(["hitcore", "Load"] + WRK_HEAD + ["hitcore CPU (100 % = one core)", "Other processes' CPU"], rows)
    lines += ["", "The slowloris side, during the wrk run:", ""]
    rows = []
    for r in runs:
        p = r.get("slowloris") or {}
        a = p.get("attacker") or {}
        slots = r["cap"] * r.get("shards", 1)
        rows.append([
            f"`--worker-connections {r['cap']}` ({_n(slots)} slots)",
            f"{_n(a.get('open_avg'))} (min {_n(a.get('open_min'))})",
            _avgmax(p.get("held")), _avgmax(p.get("accept_queue")),
            f"{_n(a.get('closed_by_server'))} ({_n(a.get('closed_per_s'))}/s)",
            _n(a.get("connect_failed")), _n(a.get("answers")),
            _n((r.get("hitcore") or {}).get("evicted_at_cap")),
            _n(p.get("attacker_cpu_pct")) + " %", _n(r.get("ramp_s"), 1) + " s",
        ])
    lines += _table(["hitcore", "Slowloris connections open (avg)",
                     "Held by hitcore's shards (avg / max)", "In the accept queues (avg / max)",
                     "Closed by the server and reopened", "Failed connects", "Answers they got",
                     "Closed at the cap (hitcore's log, whole run)", "Slowloris process CPU",
                     "Time to open them"], rows)
    lines += ["", "*Open* counts connections the client sees as established, including those still waiting "
                  "in the kernel's accept queue; *held* counts the shards' open file descriptors above their "
                  "count at rest: the connections hitcore has accepted, wrk's 50 included. *Closed at the cap*: hitcore's "
                  "own count (its `at the --worker-connections cap` log lines) of the connections it closed to "
                  "make room, over the whole run (the baseline has none)."]
    for r in runs:
        if r.get("error"):
            lines += ["", f"**{r['id']} did not complete**: {_esc(r['error'])}"]
    return lines


def _idle(r: dict) -> list[str]:
    lines = ["## 2. RSS per idle keep-alive connection", "",
             f"`hitcore {' '.join(r['flags'])}`; {_n(r['conns'])} connections (500 at a time) each send one "
             "complete `GET /`, read the answer and stay open and idle. VmRSS of the shard process from "
             "`/proc/PID/status`, the median of 5 readings, after a short wrk warm-up and again 2 s after "
             "the last connection went idle. Kernel socket memory is not in RSS.", ""]
    per = r.get("kib_per_conn")
    verdict = "–" if per is None else (f"**{per:.2f} KiB**" + (" (target ≤ 8 KiB: met)" if per <= TARGET_KIB_PER_CONN
                                                                else " (target ≤ 8 KiB: **not met**)"))
    a = r.get("attacker") or {}
    probes = r.get("probes")
    served = "–"
    if probes:
        served = f"{probes['ok']}/{probes['sent']}"
        if probes.get("errors"):
            served += " (" + ", ".join(f"{k} {v}" for k, v in probes["errors"].items()) + ")"
        served += f", p50 {_ms(probes.get('p50_ms'))}, max {_ms(probes.get('max_ms'))}"
    rows = [
        ["Connections answered 200 / held idle at the end", f"{_n(r.get('answered'))} / {_n(r.get('idle_held'))}"
         + (f" ({_n(a.get('closed_by_server'))} closed by the server, {_n(a.get('connect_failed'))} failed connects, "
            f"{_n(a.get('non_200'))} non-200)" if a else "")],
        ["Time to open and answer them", _n(r.get("ramp_s"), 1) + " s"],
        ["Shard open file descriptors grew by", _n(r.get("held_by_shard"))],
        ["Shard VmRSS before", _kib(r.get("rss_before_kib"))],
        ["Shard VmRSS with them held", _kib(r.get("rss_after_kib"))],
        ["**RSS per idle connection**", verdict],
        ["New connections served while they were held (200 / tried)", served],
        ["Shard VmRSS 2 s after they were closed", _kib(r.get("rss_released_kib"))],
        ["Other processes' CPU during this measurement", _other(r.get("other_load"))],
        ["Supervisor VmRSS before / with them held",
         f"{_kib(r.get('supervisor_rss_before_kib'))} / {_kib(r.get('supervisor_rss_after_kib'))}"],
    ]
    lines += _table(["Measure", "Value"], rows)
    if r.get("error"):
        lines += ["", f"**Did not complete**: {_esc(r['error'])}"]
    return lines


def _flood(r: dict) -> list[str]:
    p = r.get("flood") or {}
    a = p.get("attacker") or {}
    lines = ["## 3. Flood", "",
             f"`hitcore {' '.join(r['flags'])}` ({r.get('shards')} shards: {_n(r['cap'] * r.get('shards', 1))} "
             f"slots). {_n(r['conns'])} connections opened as fast as possible, half sending one complete "
             "`GET /` and never reading, half sending nothing; each one the server closes is reopened at "
             "once. The same wrk as in 1 starts 1 s later. Peak RSS: the summed VmRSS of hitcore's process "
             "tree (supervisor and shards), sampled at 10 Hz from the flood's start to wrk's end.", ""]
    peaks = r.get("peak_shard_rss_kib") or {}
    rows = [
        ["Flood: established / still connecting (avg during wrk)",
         f"{_n(a.get('open_avg'))} / {_n(a.get('connecting_avg'))}"],
        ["Flood: closed by the server and reopened during wrk",
         f"{_n(a.get('closed_by_server'))} ({_n(a.get('closed_per_s'))}/s); failed connects {_n(a.get('connect_failed'))}"],
        ["Held by hitcore's shards (avg / max)", _avgmax(p.get("held"))],
        ["In the accept queues (avg / max)", _avgmax(p.get("accept_queue"))],
        ["Closed at the cap (hitcore's log)", _n((r.get("hitcore") or {}).get("evicted_at_cap"))],
        ["hitcore tree RSS before", _kib(r.get("tree_rss_before_kib"))],
        ["**hitcore tree RSS, peak during the flood**", f"**{_kib(r.get('peak_tree_rss_kib'))}**"],
        ["Peak RSS per shard", ", ".join(f"pid {k}: {_kib(v)}" for k, v in peaks.items()) or "–"],
        ["hitcore tree RSS 2 s after the flood", _kib(r.get("tree_rss_after_kib"))],
        ["Flood process / hitcore CPU (100 % = one core)",
         f"{_n(p.get('attacker_cpu_pct'))} % / {_n(p.get('hitcore_cpu_pct'))} %"],
        ["Other processes' CPU during wrk", _other(p.get("other_load"))],
    ]
    lines += _table(["Measure", "Value"], rows)
    lines += ["", "The normal client during the flood:", ""]
    lines += _table(WRK_HEAD + ["Longest wait for a new-connection answer"],
                    [_wrk_cells(p) + [_ms((p.get("probes") or {}).get("longest_gap_ms"))]])
    if r.get("error"):
        lines += ["", f"**Did not complete**: {_esc(r['error'])}"]
    return lines


def _pipeline(r: dict) -> list[str]:
    p = r.get("pipeline") or {}
    a = r.get("attacker") or {}
    busiest = r.get("busiest_shard")
    before = (r.get("shard_rss_before_kib") or {}).get(busiest)
    peak = (r.get("peak_shard_rss_kib") or {}).get(busiest)
    after = (r.get("shard_rss_after_kib") or {}).get(busiest)
    lines = ["## 4. A client that pipelines and never reads", "",
             f"`hitcore` (default flags). One connection writes pipelined `GET / HTTP/1.1` requests as fast as "
             f"the socket takes them for {r['seconds']} s and never reads; the same wrk as in 1 runs meanwhile. "
             "*Answered into unread buffers*: how much the Redis counter grew, less the answers wrk and the "
             "prober received (wrk's requests still in flight when it stopped, at most 50, are counted as the "
             "pipeliner's, so this is an upper bound). *Closed by the server*: hitcore lets a connection go once "
             "a batch of answers has waited `--write-timeout` (10 s by default) for the kernel to take it; when the "
             "client's kernel opens its window a little anyway (it compacts its receive queue), the next batch "
             "starts a new wait, so the close can come a multiple of the timeout after the buffers filled.", ""]
    closed = f"not within {r.get('hold_s')} s of its opening (when it was let go)"
    if r.get("closed_after_s") is not None:
        closed = f"yes, {r['closed_after_s']:.1f} s after it opened"
    queues = "; ".join(f"{q['side']} end: {_n(q['recv_q'])} B unread, {_n(q['send_q'])} B unsent"
                       for q in r.get("socket_queues") or []) or "–"
    rows = [
        ["Requests written (bytes)", f"{_n(a.get('requests_written'))} ({_n(a.get('bytes_sent'))} B)"],
        ["Last write the socket accepted, after", "never" if a.get("last_write_s") is None
         else f"{a['last_write_s']:.3f} s" + (" (then blocked: the buffers were full)" if a.get("blocked_since_s") is not None else "")],
        ["Closed by the server", closed],
        ["Where the bytes sat when writing ended (`ss`: Recv-Q / Send-Q of each end)", queues],
        ["Answered into unread buffers (Redis counter)", f"≈ {_n(r.get('pipelined_answered'))} "
         f"(counter +{_n(r.get('counter_growth'))}, normal clients {_n(r.get('normal_answers'))})"],
        ["Unread answer bytes in the client's receive buffer", _n(a.get("unread_bytes"))],
        [f"Shard VmRSS before → peak → 1 s after (the shard that grew most, pid {busiest})",
         f"{_kib(before)} → **{_kib(peak)}** → {_kib(after)}"],
        ["All shards before → peak", "; ".join(
            f"pid {k}: {_kib(v)} → {_kib((r.get('peak_shard_rss_kib') or {}).get(k))}"
            for k, v in (r.get("shard_rss_before_kib") or {}).items()) or "–"],
        ["hitcore tree RSS before → peak", f"{_kib(r.get('tree_rss_before_kib'))} → {_kib(r.get('peak_tree_rss_kib'))}"],
        ["Other processes' CPU during wrk", _other(p.get("other_load"))],
    ]
    lines += _table(["Measure", "Value"], rows)
    lines += ["", "The normal client meanwhile:", ""]
    lines += _table(WRK_HEAD, [_wrk_cells(p)])
    if r.get("error"):
        lines += ["", f"**Did not complete**: {_esc(r['error'])}"]
    return lines


VS_TITLES = {"hitcore": "hitcore (default flags)", "hitcore-wc1000": "hitcore `--worker-connections 1000` (the default before issue 14)",
             "hitcore-ht60": "hitcore `--header-timeout 60`",
             "nginx": "nginx `return 200` (static)"}


def _each(values: list, fmt) -> str:
    return " · ".join("–" if v is None else fmt(v) for v in values)


def _vs_nginx(s: dict, r: dict) -> list[str]:
    st = s["settings"]
    runs = r.get("runs") or []
    nginx_limits = next(((x.get("nginx") or {}).get("limits") for x in runs if x.get("nginx")), None) or {}
    lines = ["## 5. Under attack, beside nginx", "",
             f"Measurement 1's two phases (`wrk -t 1 -c 50 -d {st['wrk_duration']}s --latency` alone, then beside "
             f"{_n(r['conns'])} slowloris connections, with the new-connection prober) against four servers in "
             f"{r['rounds']} interleaved round(s): each round runs hitcore with its default flags "
             f"({r.get('shards')} shards, `--worker-connections 10000`: every attacker fits, and only "
             "`--header-timeout`'s 2 s closes them), hitcore with `--worker-connections 1000` (the default before "
             f"issue 14: {_n(1000 * (r.get('shards') or 1))} slots, so attackers are closed to make room and reopen "
             "at once), hitcore with `--header-timeout 60` (nginx's timeout: none is closed "
             "within a run), and nginx's static `return 200` (the kit's config, one "
             "worker per CPU, no Redis) set up as an operator expecting these clients would: nginx's default "
             "timeouts (`client_header_timeout` 60 s, so within a run it closes no slowloris connection), only "
             f"`worker_connections` ({_n(nginx_limits.get('worker_connections'))}) and `worker_rlimit_nofile` "
             f"({_n(nginx_limits.get('worker_rlimit_nofile'))}) raised so the attackers, wrk and the prober fit. "
             "Medians over the rounds, each round's figure after it. Server CPU: 100 % = one core.", ""]
    folded = r.get("folded") or {}
    rows = []
    for victim, phases in folded.items():
        for phase, what in (("baseline", "wrk alone"), ("slowloris", f"wrk + {_n(r['conns'])} slowloris")):
            f = phases.get(phase) or {}
            errors = _each([None if e is None else e for e in f.get("socket_errors_each", [])], lambda v: f"{v:.0f}")
            probes = _each([None if a is None else f"{a}/{b}" for a, b in
                            zip(f.get("probes_ok_each", []), f.get("probes_sent_each", []))], str)
            attack = "–" if phase == "baseline" else (
                f"{_n(f.get('open_avg'))} open, {_n(f.get('closed_per_s'))}/s closed; "
                f"attacker CPU {_n(f.get('attacker_cpu_pct'))} %")
            rows.append([VS_TITLES.get(victim, victim), what, f"**{_ms(f.get('p99_ms'))}**",
                         _each(f.get("p99_ms_each", []), lambda v: f"{v:.2f}"), _ms(f.get("p50_ms")),
                         _ms(f.get("latency_max_ms")), f"**{_n(f.get('rps'))}**",
                         _each(f.get("rps_each", []), lambda v: f"{v:,.0f}"), errors, probes,
                         f"{_n(f.get('server_cpu_pct'))} %", attack])
    lines += _table(["Server", "Load", "p99 (median)", "p99 each round (ms)", "p50", "max", "Requests/sec (median)",
                     "req/s each round", "Socket errors each round", "New connections answered each round",
                     "Server CPU", "Slowloris during wrk (medians)"], rows)
    lines += [""]
    for n, v in enumerate([r.get("verdict")] + list(r.get("verdicts_other") or [])):
        if not v:
            continue
        met = "not measured" if v["met"] is None else ("**met**" if v["met"] else "**not met**")
        prefix = "**Target** (issue 14, target 5: hitcore's p99 under attack ≤ nginx's)" if n == 0 else "For comparison"
        lines.append(f"- {prefix}: {VS_TITLES.get(v['ours'], v['ours'])} {_ms(v.get('p99_ms'))} against nginx "
                     f"{_ms(v.get('other_p99_ms'))} (ratio {_n(v.get('ratio'), 2) if v.get('ratio') is not None else '–'}): "
                     f"{met}.")
    for victim, phases in folded.items():
        for phase in ("baseline", "slowloris"):
            for failure in (phases.get(phase) or {}).get("failed", []):
                lines.append(f"- {VS_TITLES.get(victim, victim)}, {phase}: {_esc(failure)}")
    for x in runs:
        if x.get("error"):
            lines.append(f"- **{x['id']} did not complete**: {_esc(x['error'])}")
        n = x.get("nginx") or {}
        if n.get("notable"):
            lines.append(f"- {x['id']}: nginx said " + "; ".join(
                f"{g['count']}× `{_esc(g['example'])}`" for g in n["notable"][:3]))
    return lines


def _logs(runs: list[dict]) -> list[str]:
    lines = ["## What hitcore's logs said", "",
             "Per hitcore started: its exit status after SIGTERM, shard restarts (boots beyond one per shard), "
             "WORKER TIMEOUT lines, and every WARNING/ERROR/CRITICAL line grouped (numbers as N) with a count "
             "and one example. Lines outside the log format (a panic message) are quoted.", ""]
    rows = []
    for r in runs:
        h = r.get("hitcore") or {}
        notable = "; ".join(f"{g['count']}× `{_esc(g['example'])}`" for g in h.get("notable", [])[:6]) or "none"
        if len(h.get("notable", [])) > 6:
            notable += f"; and {len(h['notable']) - 6} more kinds"
        if h.get("stray_count"):
            notable += f"; {h['stray_count']} lines outside the format, e.g. `{_esc(h['stray_lines'][0])}`"
        rows.append([r["id"], f"`{_esc(h.get('argv', ''))}`", _n(h.get("exit_status")), f"{_n(h.get('stop_s'), 1)} s",
                     _n(h.get("shard_restarts")), _n(h.get("worker_timeouts")), notable])
    return lines + _table(["Run", "Command", "Exit", "Stop took", "Shard restarts", "WORKER TIMEOUT",
                           "Warnings and errors"], rows)


def _runs(s: dict) -> list[dict]:
    out = []
    for key in ("slowloris", "idle", "flood", "pipeline"):
        value = s["tests"].get(key)
        if value:
            out += value if isinstance(value, list) else [value]
    # vs-nginx's hitcore runs (its nginx runs have no hitcore log to read)
    out += [r for r in (s["tests"].get("vs-nginx") or {}).get("runs", []) if r.get("victim") != "nginx"]
    return out


def render(s: dict) -> str:
    t = s["tests"]
    lines = [f"# hitcore against hostile clients: {s['machine'].get('hostname')}, {s['started'][:10]}", "",
             f"Written by `{s.get('command', 'bench/hostile')}` ({s['settings']['mode']} run, "
             f"{s.get('duration_s', 0):.0f} s, started {s['started']}). How to read it: bench/README.md, "
             "section *Hostile clients*. Raw wrk outputs in "
             f"[`{s['name']}/raw/`]({s['name']}/raw/), every number in `{s['name']}/summary.json`, hitcore's and "
             f"the clients' logs in `{s['name']}/logs/` (kept local).", ""]
    lines += _machine(s)
    if t.get("slowloris"):
        lines += [""] + _slowloris(s, t["slowloris"])
    if t.get("idle"):
        lines += [""] + _idle(t["idle"])
    if t.get("flood"):
        lines += [""] + _flood(t["flood"])
    if t.get("pipeline"):
        lines += [""] + _pipeline(t["pipeline"])
    if t.get("vs-nginx"):
        lines += [""] + _vs_nginx(s, t["vs-nginx"])
    if s.get("notes"):
        # Written by whoever recorded the run (summary.json's "notes", Markdown lines): what was
        # measured beside it, e.g. what limits a target not met.
        lines += ["", "## Notes", ""] + list(s["notes"])
    runs = _runs(s)
    if runs:
        lines += [""] + _logs(runs)
    return "\n".join(lines) + "\n"


def console(s: dict) -> str:
    """A few lines for the terminal."""
    t = s["tests"]
    out = []
    for r in t.get("slowloris") or []:
        for key, what in (("baseline", "alone"), ("slowloris", f"+{r['conns']} slowloris")):
            w = (r.get(key) or {}).get("wrk") or {}
            if w and not w.get("error"):
                out.append(f"cap {r['cap']:>5} {what:>16}: {w['rps']:>9,.0f} req/s  p50 {_ms(w.get('p50_ms')):>9}  "
                           f"p99 {_ms(w.get('p99_ms')):>9}  max {_ms(w.get('latency_max_ms')):>9}")
            else:
                out.append(f"cap {r['cap']:>5} {what:>16}: {r.get('error') or (w or {}).get('error') or 'not run'}")
    r = t.get("idle")
    if r:
        p = r.get("probes") or {}
        out.append(f"idle: {r.get('kib_per_conn')} KiB per idle connection ({r.get('idle_held')} held); new "
                   f"connections served {p.get('ok')}/{p.get('sent')}" + (f"; {r['error']}" if r.get("error") else ""))
    r = t.get("flood")
    if r:
        out.append(f"flood: peak hitcore tree RSS {_kib(r.get('peak_tree_rss_kib'))}"
                   + (f"; {r['error']}" if r.get("error") else ""))
    r = t.get("vs-nginx")
    for victim, phases in ((r or {}).get("folded") or {}).items():
        a, b = phases.get("baseline") or {}, phases.get("slowloris") or {}
        out.append(f"vs-nginx {victim:>16}: median p99 alone {_ms(a.get('p99_ms'))}, beside {r['conns']} "
                   f"slowloris {_ms(b.get('p99_ms'))} ({_n(a.get('rps'))} -> {_n(b.get('rps'))} req/s)")
    r = t.get("pipeline")
    if r:
        b = r.get("busiest_shard")
        out.append(f"pipeline: shard RSS {_kib((r.get('shard_rss_before_kib') or {}).get(b))} -> peak "
                   f"{_kib((r.get('peak_shard_rss_kib') or {}).get(b))}; ~{r.get('pipelined_answered')} answered unread"
                   + (f"; {r['error']}" if r.get("error") else ""))
    return "\n".join(out)
