"""The results file: bench/results/<name>.md, rendered from the run's summary (summary.json).

Order: the machine and every version first, then the original benchmark's table for every server,
the keep-alive tables, the shard-scaling table, correctness and memory, the charts, and the 2014
numbers quoted for reference. Every number comes from the summary, which holds only what the tools
printed in this run (raw outputs in <name>/raw/). Also `console_table()` for the terminal.
"""
from __future__ import annotations

from . import rounds


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
    return "–" if not value else f"{value / 1024:,.1f} MiB"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _not_ok(row: dict, key: str | None = None) -> str | None:
    """Why a row (or one of its tests) has no numbers, or None when it has them."""
    if key and key in row["tests"] and row["tests"][key]["error"]:
        return row["tests"][key]["error"]
    if key and key not in row["tests"]:
        return row["status"] if row["status"] != "ok" else "not run"
    return None if row["status"] == "ok" or (key and key in row["tests"]) else row["status"]


def _each_round(row: dict, key: str, show) -> str:
    """A correctness figure of one test, for every round: `show(test)` per round, joined by " · "."""
    cells = []
    for raw in row["rounds"]:
        test = raw["tests"].get(key)
        cells.append("–" if test is None else ("error" if test["error"] else show(test)))
    return " · ".join(cells)


def _spread(t: dict, field: str, repeat: int) -> str:
    """min–max of a field over the rounds, and which rounds gave no numbers (and why)."""
    text = f"{_n(t['min'][field])}–{_n(t['max'][field])}"
    if len(t["rounds_ok"]) < repeat:
        text += f" ({len(t['rounds_ok'])} of {repeat} rounds; " + "; ".join(
            f"round {n}: *{_escape(why).strip()}*" for n, why in t["round_errors"].items()) + ")"
    return text


def _ab_failed(t: dict) -> str:
    failed = _n(t["failed"])
    if t.get("non_2xx"):
        failed += f" (+{_n(t['non_2xx'])} non-2xx)"
    return failed


def _ab_table(rows: list[dict], key: str, keepalive: bool, repeat: int = 1) -> list[str]:
    head = ["Server", "Time taken for tests", "Complete requests", "Failed requests", "Requests per second",
            "Time per request (mean)", "Time per request (mean, across all concurrent requests)",
            "Total min", "Total mean", "Total median", "Total max"]
    if keepalive:
        head.insert(4, "Keep-Alive requests")
    rps_at = head.index("Requests per second")
    if repeat > 1:
        head[3] = "Failed requests (each round)"
        head.insert(rps_at + 1, "Requests per second min–max")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        problem = _not_ok(row, key)
        if problem:
            lines.append(f"| {row['title']} | *{_escape(problem)}* |" + " – |" * (len(head) - 2))
            continue
        t = row["tests"][key]
        failed = _each_round(row, key, _ab_failed) if repeat > 1 else _ab_failed(t)
        cells = [row["title"], f"{t['time_taken_s']:.3f} s", _n(t["complete"]), failed,
                 f"**{_n(t['rps'])}**", f"{t['time_per_request_ms']:.3f} ms",
                 f"{t.get('time_per_request_all_ms', 0):.3f} ms",
                 *(f"{_n(t.get(f'total_{k}_ms', '–'))} ms" if repeat > 1 else f"{t.get(f'total_{k}_ms', '–')} ms"
                   for k in ("min", "mean", "median", "max"))]
        if keepalive:
            cells.insert(4, _n(t.get("keepalive_requests", 0)))
        if repeat > 1:
            cells.insert(rps_at + 1, _spread(t, "rps", repeat))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _wrk_errors(t: dict) -> str:
    return "/".join(str(t[f"errors_{k}"]) for k in ("connect", "read", "write", "timeout"))


def _wrk_table(rows: list[dict], first_col: str = "Server", repeat: int = 1) -> list[str]:
    head = [first_col, "Requests", "Requests/sec", "p50", "p75", "p90", "p99", "max",
            "Socket errors (connect/read/write/timeout)", "Non-2xx/3xx"]
    if repeat > 1:
        head[-2:] = ["Socket errors (connect/read/write/timeout), each round", "Non-2xx/3xx, each round"]
        head.insert(3, "Requests/sec min–max")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        problem = _not_ok(row, "wrk")
        if problem:
            lines.append(f"| {row['title']} | *{_escape(problem)}* |" + " – |" * (len(head) - 2))
            continue
        t = row["tests"]["wrk"]
        if repeat > 1:
            errors = _each_round(row, "wrk", _wrk_errors)
            non_2xx = _each_round(row, "wrk", lambda w: _n(w["non_2xx_3xx"]))
        else:
            errors, non_2xx = _wrk_errors(t), _n(t["non_2xx_3xx"])
        cells = [row["title"], _n(t["requests"]), f"**{_n(t['rps'])}**", _ms(t.get("p50_ms")), _ms(t.get("p75_ms")),
                 _ms(t.get("p90_ms")), _ms(t.get("p99_ms")), _ms(t.get("latency_max_ms")), errors, non_2xx]
        if repeat > 1:
            cells.insert(3, _spread(t, "rps", repeat))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def counter_checks(row: dict) -> dict:
    """Per test: (increments the counter gained, 2xx answers the client saw); and the totals."""
    after = row.get("counter_after", {})
    checks, previous = {}, 0
    keys = [k for k in ("ab", "ab_k", "wrk") if k in row["tests"]]
    for i, key in enumerate(keys):
        value = after.get(key)
        if i == len(keys) - 1 and row.get("counter_final") is not None:
            value = row["counter_final"]  # read after the server stopped: nothing still in flight
        t = row["tests"][key]
        seen = None if t["error"] else t["ok_2xx"]
        if value is not None:
            checks[key] = (value - previous, seen)
            previous = value
    total_seen = sum(s for _, s in checks.values() if s is not None)
    checks["total"] = (row.get("counter_final"), total_seen)
    return checks


def _verdict(counted, seen) -> str:
    if counted is None or seen is None:
        return "–"
    if counted == seen:
        return f"{_n(counted)} = {_n(seen)}"
    if counted > seen:
        return f"{_n(counted)} vs {_n(seen)} (+{_n(counted - seen)})"
    return f"{_n(counted)} vs {_n(seen)} (**{_n(seen - counted)} LOST**)"


def _correctness_table(rows: list[dict]) -> list[str]:
    head = ["Server", "ab: counter vs 2xx", "ab -k: counter vs 2xx", "wrk: counter vs 2xx",
            "Whole run: counter vs 2xx", "WORKER TIMEOUT lines", "Peak RSS (sum over the process tree)",
            "Peak PSS (sum)", "Processes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row["status"].startswith("not run"):
            lines.append(f"| {row['title']} | *{_escape(row['status'])}* |" + " – |" * (len(head) - 2))
            continue
        if row["uses_redis"] and row["status"] == "ok":
            checks = counter_checks(row)
            cells = [_verdict(*checks[k]) if k in checks else "–" for k in ("ab", "ab_k", "wrk", "total")]
        elif row["uses_redis"]:
            cells = [f"*{_escape(row['status'])}*", "–", "–", "–"]
        else:
            cells = ["no Redis"] * 4
        lines.append("| " + " | ".join([row["title"], *cells, _n(row.get("worker_timeouts")),
                                         _kib(row.get("peak_rss_kib")), _kib(row.get("peak_pss_kib")),
                                         _n(row.get("peak_processes"))]) + " |")
    return lines


def _short_verdict(counted, seen) -> str:
    """counter vs 2xx in a few characters: "=", "+N", "**N LOST**", or "–"."""
    if counted is None or seen is None:
        return "–"
    if counted == seen:
        return "="
    return f"+{_n(counted - seen)}" if counted > seen else f"**{_n(seen - counted)} LOST**"


def _scaling_table(points: list[dict], repeat: int = 1) -> list[str]:
    if repeat > 1:
        lines = ["| Shards | Requests/sec | min–max | × one shard | p50 | p99 | counter vs 2xx, each round | "
                 "Peak RSS (max) |", "|---|---|---|---|---|---|---|---|"]
    else:
        lines = ["| Shards | Requests/sec | × one shard | p50 | p99 | counter vs 2xx | Peak RSS |",
                 "|---|---|---|---|---|---|---|"]
    base = None
    for point in points:
        shards = point["id"].rsplit("-", 1)[1]
        problem = _not_ok(point, "wrk")
        if problem:
            lines.append(f"| {shards} | *{_escape(problem)}* |" + " – |" * (6 if repeat > 1 else 5))
            continue
        t = point["tests"]["wrk"]
        base = base or t["rps"]
        if repeat > 1:
            checks = " · ".join(
                _short_verdict(*counter_checks(raw)["total"]) if raw["status"] == "ok" else "–"
                for raw in point["rounds"])
            lines.append(f"| {shards} | **{_n(t['rps'])}** | {_spread(t, 'rps', repeat)} | {t['rps'] / base:.2f} | "
                         f"{_ms(t.get('p50_ms'))} | {_ms(t.get('p99_ms'))} | {checks} | "
                         f"{_kib(point.get('peak_rss_kib'))} |")
            continue
        check = counter_checks(point).get("total", (None, None))
        lines.append(f"| {shards} | **{_n(t['rps'])}** | {t['rps'] / base:.2f} | {_ms(t.get('p50_ms'))} | "
                     f"{_ms(t.get('p99_ms'))} | {_verdict(*check)} | {_kib(point.get('peak_rss_kib'))} |")
    return lines


def _correctness_rounds_table(rows: list[dict]) -> list[str]:
    """--repeat N: the counter checks and WORKER TIMEOUT lines of every round, one line each."""
    head = ["Server", "Round", "ab: counter vs 2xx", "ab -k: counter vs 2xx", "wrk: counter vs 2xx",
            "Whole round: counter vs 2xx", "WORKER TIMEOUT lines"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row["status"].startswith("not run"):
            lines.append(f"| {row['title']} | all | *{_escape(row['status'])}* |" + " – |" * (len(head) - 3))
            continue
        for n, raw in enumerate(row["rounds"], 1):
            title = row["title"] if n == 1 else ""
            if raw["uses_redis"] and raw["status"] == "ok":
                checks = counter_checks(raw)
                cells = [_verdict(*checks[k]) if k in checks else "–" for k in ("ab", "ab_k", "wrk", "total")]
            elif raw["status"] != "ok":
                cells = [f"*{_escape(raw['status'])}*", "–", "–", "–"]
            else:
                cells = ["no Redis"] * 4
            lines.append("| " + " | ".join([title, str(n), *cells, _n(raw.get("worker_timeouts"))]) + " |")
    return lines


def _memory_table(rows: list[dict], repeat: int) -> list[str]:
    head = ["Server", f"Peak RSS (sum over the process tree, max of {repeat} rounds)", "Peak PSS (sum, max)",
            "Processes (max)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row["status"].startswith("not run"):
            lines.append(f"| {row['title']} | *{_escape(row['status'])}* | – | – |")
            continue
        lines.append("| " + " | ".join([row["title"], _kib(row.get("peak_rss_kib")), _kib(row.get("peak_pss_kib")),
                                         _n(row.get("peak_processes"))]) + " |")
    return lines


def _ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _ratios_table(ratios: dict) -> list[str]:
    peers = ratios["peers"]
    head = ["hitcore"] + [f"ab: × {name}" for _, name in peers] + [f"wrk: × {name}" for _, name in peers] \
        + ["wrk p99 (median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in ratios["rows"]:
        lines.append("| " + " | ".join([entry["title"]] + [_ratio(entry["ab"][pid]) for pid, _ in peers]
                                       + [_ratio(entry["wrk"][pid]) for pid, _ in peers]
                                       + [_ms(entry["wrk_p99_ms"])]) + " |")
    return lines


def render(s: dict, charts: list[str]) -> str:
    m, v, st = s["machine"], s["versions"], s["settings"]
    c, n = st["concurrency"], st["ab_requests"]
    repeat = s.get("repeat", 1)
    of_rounds = f" (median of {repeat} rounds)" if repeat > 1 else ""
    pinning = ("none: servers, Redis and the load generators share all CPUs"
               if not (st["cpus_server"] or st["cpus_load"] or st["cpus_redis"]) else
               f"taskset: servers on CPUs {st['cpus_server'] or 'any'}, ab/wrk on {st['cpus_load'] or 'any'}, "
               f"Redis on {st['cpus_redis'] or 'any'}")
    out = [f"# hitcore benchmark: {s['started'][:10]} on {m['hostname']} ({st['mode']} run)", ""]
    if st["mode"] == "quick":
        out += [f"> A `--quick` run (ab -n {n}, wrk {st['wrk_duration']} s): a smoke test of the kit, not a "
                "result to quote. The full run writes the file without `-quick`.", ""]
    out += ["## Machine", "", "| | |", "|---|---|",
            f"| CPU | {m['cpu_model']}, {m['cpus_online']} CPUs online, this run allowed {m['cpus_allowed']}"
            + (f" ({m['cpu_mhz']} MHz)" if m.get("cpu_mhz") else "") + " |",
            f"| Memory | {m['memory_gib']} GiB |",
            f"| Kernel, OS | Linux {m['kernel']} {m['arch']}, {m['os']} |",
            f"| CPU pinning | {pinning} |"]
    out += [f"| {k} | {_escape(str(val))} |" for k, val in v.items()]
    busy = s.get("busy_at_start")
    out += ["", ("CPU use by other work just before the run: "
                 + ("unknown" if busy is None else f"{busy:.0f} %")
                 + f"; load average (1 min) {s['load_at_start']:.2f} at the start, {s['load_at_end']:.2f} at the end "
                 "(the end includes this run's own load)."
                 + (" **The machine was busy with other work: these numbers are lower and noisier than a quiet "
                    "machine's.**" if busy is not None and busy > s.get("busy_threshold", 20) else ""))]
    out += ["", f"Run started {s['started']} and took {s['duration_s']:.0f} s "
            f"(of which provisioning {s['provisioning_s']:.0f} s). One redis-server with a password, no persistence, "
            f"for every server; each server in turn on 127.0.0.1:{st['port']}; `SET hit 0` before each. "
            f"Servers that count: `GET /` increments the Redis key `hit`; the Flask app does `INCR` then `GET` "
            f"(two round trips), the others return the `INCR` reply. Raw outputs: [`{s['name']}/raw/`]({s['name']}/raw/)."]
    if repeat > 1:
        out += ["", f"**{repeat} rounds** (`--repeat {repeat}`), interleaved: round 1 ran every server and the "
                "scaling points in turn, then round 2 did the same, and so on, so a slow drift of the machine's load "
                "reaches every server alike; one Redis for the whole run, `SET hit 0` before each server in every "
                "round. Each number in the tables is the **median over the rounds** of that column; *min–max* is the "
                "spread of req/s over the rounds; failures, socket errors and the counter checks are given for "
                "every round (` · ` between rounds), so a failure in any round shows. Raw outputs carry the round: "
                "`<server>-<test>-r<round>.txt`."]
    out += ["", f"## The original test: `ab -c {c} -n {n} -r -l`, a new connection per request{of_rounds}", "",
            f"Bounded with `-t {st['ab_time_limit']}`. The columns are ab's own: *Time per request (mean)* is the "
            f"time one client waits for an answer at concurrency {c}; *across all concurrent requests* is its "
            "inverse throughput; *Total* is connect + processing per request, in ms.", ""]
    rows = s["rows"]
    out += _ab_table(rows, "ab", keepalive=False, repeat=repeat)
    out += ["", "The 2014 original, for reference (gunicorn -w 4, Flask + flask-redis, `ab -c 500`, 50000 requests, "
            "on the original author's machine; quoted, not measured here):", ""]
    out += ["| Server (2014) | Requests per second | Notes |", "|---|---|---|"]
    out += [f"| {name} | {rps} | {note} |" for name, rps, note in s["original_2014"]]
    out += ["", f"## Keep-alive: `ab -k -c {c} -n {n} -r -l`{of_rounds}", "",
            "ab is single-threaded: for the fast servers this measures ab itself. gunicorn's sync worker does "
            "not keep connections alive, so its *Keep-Alive requests* stays 0.", ""]
    out += _ab_table(rows, "ab_k", keepalive=True, repeat=repeat)
    out += ["", f"## Keep-alive, multi-threaded: `wrk -t {st['wrk_threads']} -c {c} -d {st['wrk_duration']}s "
            f"--latency`{of_rounds}",
            "", "The load that separates the fast servers. Latency percentiles are wrk's (per request, keep-alive).", ""]
    out += _wrk_table(rows, repeat=repeat)
    if repeat > 1:
        ratios = s.get("ratios") or rounds.ratios(s)
        if ratios["rows"]:
            out += ["", f"## Ratios{of_rounds}", "",
                    "Each hitcore row's requests per second divided by each peer's, for `ab` (a new connection per "
                    "request) and for `wrk` (keep-alive, multi-threaded): the medians above, measured side by side in "
                    "this run. Above 1.00× hitcore served more. And hitcore's `wrk` p99 (median of the rounds)."
                    + ("" if ratios["peers"] else " No peer (gunicorn gevent, tokio peer, nginx static) was in this "
                       "run, so only the p99 is given."), ""]
            out += _ratios_table(ratios)
    if s["scaling"]:
        out += ["", f"## Shard scaling: hitcore `-w N`, `wrk -t {st['wrk_threads']} -c {c} "
                f"-d {st['scaling_duration']}s --latency`{of_rounds}", ""]
        if st["cpus_load"] is None:
            out += [f"On a machine where wrk and Redis share the server's {s['ncpu']} CPUs, adding a shard also takes "
                    "CPU from them: judge scaling on a machine with CPUs to spare, pinned (see bench/README.md).", ""]
        out += _scaling_table(s["scaling"], repeat=repeat)
    out += ["", "## Correctness and memory", "",
            "*counter vs 2xx*: how much the Redis counter grew during each test, against the 2xx answers the "
            "client counted. Equal is exact. **+N**: the server counted requests the client did not see succeed "
            "(failed or reset requests, and for wrk the up to -c requests still in flight when it stops). "
            "**LOST** would mean answers without increments. *WORKER TIMEOUT lines*: gunicorn's (and hitcore's) "
            "watchdog killing a stuck worker, counted in the server's log. Memory: the peak over the run of the "
            "summed RSS of the server's whole process tree, sampled at 10 Hz (RSS counts pages shared between "
            "forked workers once per process; PSS divides them)."
            + (f" With {repeat} rounds: the counter checks and WORKER TIMEOUT lines of every round, then the memory "
               f"peak of each server, the highest of the {repeat} rounds." if repeat > 1 else ""), ""]
    if repeat > 1:
        out += _correctness_rounds_table(rows + s["scaling"])
        out += [""] + _memory_table(rows + s["scaling"], repeat)
    else:
        out += _correctness_table(rows + s["scaling"])
    if charts:
        out += ["", "## Charts", ""] + [f"![{chart}]({chart})" for chart in charts]
    out += ["", "## Commands", ""] + [f"- `{r['id']}`: `{_escape(r['argv'])}`" for r in rows + s["scaling"]]
    out += ["", "How to read and reproduce this: [bench/README.md](../README.md).", ""]
    return "\n".join(out)


def console_table(s: dict) -> str:
    """A compact plain-text summary for the terminal."""
    head = f"{'server':48} {'ab req/s':>9} {'failed':>7} {'ab -k':>9} {'wrk req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'counter':>9} {'WT':>3} {'RSS MiB':>8}"
    lines = [head, "-" * len(head)]
    repeat = s.get("repeat", 1)
    if repeat > 1:
        lines.insert(0, f"medians of {repeat} rounds; failed: the most in any round; counter: each round's "
                        "whole check; WT: the sum; RSS: the peak")
    for row in s["rows"] + s["scaling"]:
        if row["status"] != "ok" and not row["tests"]:
            lines.append(f"{row['title'][:48]:48} {row['status'][:90]}")
            continue
        t = row["tests"]
        ab, abk, wrk = t.get("ab", {}), t.get("ab_k", {}), t.get("wrk", {})
        check = "n/a"
        failed = ab.get("max", {}).get("failed") if repeat > 1 else ab.get("failed")
        if row["uses_redis"] and repeat > 1:
            verdicts = {_console_check(raw) for raw in row["rounds"]}
            check = verdicts.pop() if len(verdicts) == 1 else "/".join(_console_check(raw) for raw in row["rounds"])
        elif row["uses_redis"] and row["status"] == "ok":
            check = _console_check(row)
        lines.append(
            f"{row['title'][:48]:48} {_n(ab.get('rps')):>9} {_n(failed):>7} {_n(abk.get('rps')):>9} "
            f"{_n(wrk.get('rps')):>10} {wrk.get('p50_ms', 0):>8.2f} {wrk.get('p99_ms', 0):>8.2f} {check:>9} "
            f"{_n(row.get('worker_timeouts')):>3} {(row.get('peak_rss_kib') or 0) / 1024:>8.1f}")
    return "\n".join(lines)


def _console_check(row: dict) -> str:
    if row["status"] != "ok":
        return "–"
    counted, seen = counter_checks(row)["total"]
    return "?" if counted is None else ("exact" if counted == seen else f"{counted - seen:+d}")
