"""The results file: bench/results/<name>.md, rendered from the run's summary (summary.json).

Order: the machine and every version first, then the original benchmark's table for every server,
the keep-alive tables, the shard-scaling table, correctness and memory, the charts, and the 2014
numbers quoted for reference. Every number comes from the summary, which holds only what the tools
printed in this run (raw outputs in <name>/raw/). Also `console_table()` for the terminal.
"""
from __future__ import annotations


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


def _ab_table(rows: list[dict], key: str, keepalive: bool) -> list[str]:
    head = ["Server", "Time taken for tests", "Complete requests", "Failed requests", "Requests per second",
            "Time per request (mean)", "Time per request (mean, across all concurrent requests)",
            "Total min", "Total mean", "Total median", "Total max"]
    if keepalive:
        head.insert(4, "Keep-Alive requests")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        problem = _not_ok(row, key)
        if problem:
            lines.append(f"| {row['title']} | *{_escape(problem)}* |" + " – |" * (len(head) - 2))
            continue
        t = row["tests"][key]
        failed = _n(t["failed"])
        if t.get("non_2xx"):
            failed += f" (+{_n(t['non_2xx'])} non-2xx)"
        cells = [row["title"], f"{t['time_taken_s']:.3f} s", _n(t["complete"]), failed,
                 f"**{_n(t['rps'])}**", f"{t['time_per_request_ms']:.3f} ms",
                 f"{t.get('time_per_request_all_ms', 0):.3f} ms",
                 *(f"{t.get(f'total_{k}_ms', '–')} ms" for k in ("min", "mean", "median", "max"))]
        if keepalive:
            cells.insert(4, _n(t.get("keepalive_requests", 0)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _wrk_table(rows: list[dict], first_col: str = "Server") -> list[str]:
    head = [first_col, "Requests", "Requests/sec", "p50", "p75", "p90", "p99", "max",
            "Socket errors (connect/read/write/timeout)", "Non-2xx/3xx"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        problem = _not_ok(row, "wrk")
        if problem:
            lines.append(f"| {row['title']} | *{_escape(problem)}* |" + " – |" * (len(head) - 2))
            continue
        t = row["tests"]["wrk"]
        errors = "/".join(str(t[f"errors_{k}"]) for k in ("connect", "read", "write", "timeout"))
        lines.append("| " + " | ".join([
            row["title"], _n(t["requests"]), f"**{_n(t['rps'])}**", _ms(t.get("p50_ms")), _ms(t.get("p75_ms")),
            _ms(t.get("p90_ms")), _ms(t.get("p99_ms")), _ms(t.get("latency_max_ms")), errors,
            _n(t["non_2xx_3xx"])]) + " |")
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


def _scaling_table(points: list[dict]) -> list[str]:
    lines = ["| Shards | Requests/sec | × one shard | p50 | p99 | counter vs 2xx | Peak RSS |", "|---|---|---|---|---|---|---|"]
    base = None
    for point in points:
        shards = point["id"].rsplit("-", 1)[1]
        problem = _not_ok(point, "wrk")
        if problem:
            lines.append(f"| {shards} | *{_escape(problem)}* | – | – | – | – | – |")
            continue
        t = point["tests"]["wrk"]
        base = base or t["rps"]
        check = counter_checks(point).get("total", (None, None))
        lines.append(f"| {shards} | **{_n(t['rps'])}** | {t['rps'] / base:.2f} | {_ms(t.get('p50_ms'))} | "
                     f"{_ms(t.get('p99_ms'))} | {_verdict(*check)} | {_kib(point.get('peak_rss_kib'))} |")
    return lines


def render(s: dict, charts: list[str]) -> str:
    m, v, st = s["machine"], s["versions"], s["settings"]
    c, n = st["concurrency"], st["ab_requests"]
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
            f"(two round trips), the others return the `INCR` reply. Raw outputs: [`{s['name']}/raw/`]({s['name']}/raw/).",
            "", f"## The original test: `ab -c {c} -n {n} -r -l`, a new connection per request", "",
            f"Bounded with `-t {st['ab_time_limit']}`. The columns are ab's own: *Time per request (mean)* is the "
            f"time one client waits for an answer at concurrency {c}; *across all concurrent requests* is its "
            "inverse throughput; *Total* is connect + processing per request, in ms.", ""]
    rows = s["rows"]
    out += _ab_table(rows, "ab", keepalive=False)
    out += ["", "The 2014 original, for reference (gunicorn -w 4, Flask + flask-redis, `ab -c 500`, 50000 requests, "
            "on the original author's machine; quoted, not measured here):", ""]
    out += ["| Server (2014) | Requests per second | Notes |", "|---|---|---|"]
    out += [f"| {name} | {rps} | {note} |" for name, rps, note in s["original_2014"]]
    out += ["", f"## Keep-alive: `ab -k -c {c} -n {n} -r -l`", "",
            "ab is single-threaded: for the fast servers this measures ab itself. gunicorn's sync worker does "
            "not keep connections alive, so its *Keep-Alive requests* stays 0.", ""]
    out += _ab_table(rows, "ab_k", keepalive=True)
    out += ["", f"## Keep-alive, multi-threaded: `wrk -t {st['wrk_threads']} -c {c} -d {st['wrk_duration']}s --latency`",
            "", "The load that separates the fast servers. Latency percentiles are wrk's (per request, keep-alive).", ""]
    out += _wrk_table(rows)
    if s["scaling"]:
        out += ["", f"## Shard scaling: hitcore `-w N`, `wrk -t {st['wrk_threads']} -c {c} "
                f"-d {st['scaling_duration']}s --latency`", ""]
        if st["cpus_load"] is None:
            out += [f"On a machine where wrk and Redis share the server's {s['ncpu']} CPUs, adding a shard also takes "
                    "CPU from them: judge scaling on a machine with CPUs to spare, pinned (see bench/README.md).", ""]
        out += _scaling_table(s["scaling"])
    out += ["", "## Correctness and memory", "",
            "*counter vs 2xx*: how much the Redis counter grew during each test, against the 2xx answers the "
            "client counted. Equal is exact. **+N**: the server counted requests the client did not see succeed "
            "(failed or reset requests, and for wrk the up to -c requests still in flight when it stops). "
            "**LOST** would mean answers without increments. *WORKER TIMEOUT lines*: gunicorn's (and hitcore's) "
            "watchdog killing a stuck worker, counted in the server's log. Memory: the peak over the run of the "
            "summed RSS of the server's whole process tree, sampled at 10 Hz (RSS counts pages shared between "
            "forked workers once per process; PSS divides them).", ""]
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
    for row in s["rows"] + s["scaling"]:
        if row["status"] != "ok" and not row["tests"]:
            lines.append(f"{row['title'][:48]:48} {row['status'][:90]}")
            continue
        t = row["tests"]
        ab, abk, wrk = t.get("ab", {}), t.get("ab_k", {}), t.get("wrk", {})
        check = "n/a"
        if row["uses_redis"] and row["status"] == "ok":
            counted, seen = counter_checks(row)["total"]
            check = "?" if counted is None else ("exact" if counted == seen else f"{counted - seen:+d}")
        lines.append(
            f"{row['title'][:48]:48} {_n(ab.get('rps')):>9} {_n(ab.get('failed')):>7} {_n(abk.get('rps')):>9} "
            f"{_n(wrk.get('rps')):>10} {wrk.get('p50_ms', 0):>8.2f} {wrk.get('p99_ms', 0):>8.2f} {check:>9} "
            f"{_n(row.get('worker_timeouts')):>3} {(row.get('peak_rss_kib') or 0) / 1024:>8.1f}")
    return "\n".join(lines)
