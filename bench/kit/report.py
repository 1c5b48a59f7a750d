"""bench/run's results file, bench/results/<name>.md, rendered from the run's summary (summary.json).

Order: the machine first, the original test's table for every server, the keep-alive tables, the
ratios (--repeat), shard scaling, correctness and memory, the charts, the commands. How to read each
table is bench/README.md's "Reading the results" (the report points there rather than repeat it).
Pure: every number comes from the summary, which holds only what the tools printed in the run.
"""
from __future__ import annotations

from . import rounds
from .md import each, esc, machine, ms, num, table

READ = "[bench/README.md](../README.md), *Reading the results*"


def _mib(value) -> str:
    return "–" if not value else f"{value / 1024:,.1f} MiB"


def _not_ok(row: dict, key: str | None = None) -> str | None:
    """Why a row (or one of its tests) has no numbers, or None when it has them."""
    if key and key in row["tests"] and row["tests"][key]["error"]:
        return row["tests"][key]["error"]
    if key and key not in row["tests"]:
        return row["status"] if row["status"] != "ok" else "not run"
    return None if row["status"] == "ok" or (key and key in row["tests"]) else row["status"]


def _each_round(row: dict, key: str, show) -> str:
    """A figure of one test for every round: `show(test)` per round, "error" where it gave none."""
    return each([(raw["tests"].get(key) or {}) for raw in row["rounds"]],
                lambda t: "–" if not t else ("error" if t["error"] else show(t)))


def _spread(t: dict, field: str, repeat: int) -> str:
    """min–max of a field over the rounds, and which rounds gave no numbers (and why)."""
    text = f"{num(t['min'][field])}–{num(t['max'][field])}"
    if len(t["rounds_ok"]) < repeat:
        text += f" ({len(t['rounds_ok'])} of {repeat} rounds; " + "; ".join(
            f"round {n}: *{esc(why).strip()}*" for n, why in t["round_errors"].items()) + ")"
    return text


def _table(head: list[str], rows: list[dict], key: str | None, cells) -> list[str]:
    """One line per row: `cells(row)`, or its title and why it has no numbers."""
    return table(head, [[row["title"], f"*{esc(_not_ok(row, key))}*"] + ["–"] * (len(head) - 2)
                        if _not_ok(row, key) else cells(row) for row in rows])


def _ab_failed(t: dict) -> str:
    return num(t["failed"]) + (f" (+{num(t['non_2xx'])} non-2xx)" if t.get("non_2xx") else "")


def ab_table(rows: list[dict], key: str, keepalive: bool, repeat: int = 1) -> list[str]:
    """ab's own columns for test `key` ("ab" or "ab_k") of rows folded by rounds.py (bench/run's, run16's)."""
    head = ["Server", "Time taken for tests", "Complete requests",
            "Failed requests (each round)" if repeat > 1 else "Failed requests"] + \
        (["Keep-Alive requests"] if keepalive else []) + ["Requests per second"] + \
        (["Requests per second min–max"] if repeat > 1 else []) + \
        ["Time per request (mean)", "Time per request (mean, across all concurrent requests)",
         "Total min", "Total mean", "Total median", "Total max"]

    def cells(row):
        t = row["tests"][key]
        return [row["title"], f"{t['time_taken_s']:.3f} s", num(t["complete"]),
                _each_round(row, key, _ab_failed) if repeat > 1 else _ab_failed(t)] + \
            ([num(t.get("keepalive_requests", 0))] if keepalive else []) + [f"**{num(t['rps'])}**"] + \
            ([_spread(t, "rps", repeat)] if repeat > 1 else []) + \
            [f"{t['time_per_request_ms']:.3f} ms", f"{t.get('time_per_request_all_ms', 0):.3f} ms"] + \
            [f"{num(t.get(f'total_{k}_ms', '–')) if repeat > 1 else t.get(f'total_{k}_ms', '–')} ms"
             for k in ("min", "mean", "median", "max")]
    return _table(head, rows, key, cells)


def _wrk_errors(t: dict) -> str:
    return "/".join(str(t[f"errors_{k}"]) for k in ("connect", "read", "write", "timeout"))


def _wrk_table(rows: list[dict], repeat: int = 1) -> list[str]:
    each_round = ", each round" if repeat > 1 else ""
    head = ["Server", "Requests", "Requests/sec"] + (["Requests/sec min–max"] if repeat > 1 else []) + \
        ["p50", "p75", "p90", "p99", "max", f"Socket errors (connect/read/write/timeout){each_round}",
         f"Non-2xx/3xx{each_round}"]

    def cells(row):
        t = row["tests"]["wrk"]
        errors, non_2xx = (_each_round(row, "wrk", _wrk_errors), _each_round(row, "wrk", lambda w: num(w["non_2xx_3xx"]))) \
            if repeat > 1 else (_wrk_errors(t), num(t["non_2xx_3xx"]))
        return [row["title"], num(t["requests"]), f"**{num(t['rps'])}**"] + \
            ([_spread(t, "rps", repeat)] if repeat > 1 else []) + \
            [ms(t.get(k)) for k in ("p50_ms", "p75_ms", "p90_ms", "p99_ms", "latency_max_ms")] + [errors, non_2xx]
    return _table(head, rows, "wrk", cells)


def counter_checks(row: dict) -> dict:
    """Per test: (increments the counter gained, 2xx answers the client saw); and the totals."""
    after, checks, previous = row.get("counter_after", {}), {}, 0
    keys = [k for k in ("ab", "ab_k", "wrk") if k in row["tests"]]
    for i, key in enumerate(keys):
        value = after.get(key)
        if i == len(keys) - 1 and row.get("counter_final") is not None:
            value = row["counter_final"]  # read after the server stopped: nothing still in flight
        t = row["tests"][key]
        if value is not None:
            checks[key] = (value - previous, None if t["error"] else t["ok_2xx"])
            previous = value
    checks["total"] = (row.get("counter_final"), sum(s for _, s in checks.values() if s is not None))
    return checks


def _verdict(counted, seen, short: bool = False) -> str:
    """counter vs 2xx: "a = b", "a vs b (+N)", "a vs b (**N LOST**)"; short: "=", "+N", "**N LOST**"."""
    if counted is None or seen is None:
        return "–"
    if counted == seen:
        return "=" if short else f"{num(counted)} = {num(seen)}"
    diff = f"+{num(counted - seen)}" if counted > seen else f"**{num(seen - counted)} LOST**"
    return diff if short else f"{num(counted)} vs {num(seen)} ({diff})"


def _checks(row: dict) -> list[str]:
    """The four counter checks of one row (or one round of it)."""
    if row["status"] != "ok":
        return [f"*{esc(row['status'])}*", "–", "–", "–"]
    if not row["uses_redis"]:
        return ["no Redis"] * 4
    checks = counter_checks(row)
    return [_verdict(*checks[k]) if k in checks else "–" for k in ("ab", "ab_k", "wrk", "total")]


def _correctness_table(rows: list[dict], repeat: int) -> list[str]:
    tests = ["ab: counter vs 2xx", "ab -k: counter vs 2xx", "wrk: counter vs 2xx"]
    if repeat == 1:
        return table(["Server", *tests, "Whole run: counter vs 2xx", "WORKER TIMEOUT lines",
                      "Peak RSS (sum over the process tree)", "Peak PSS (sum)", "Processes"],
                     [[row["title"], f"*{esc(row['status'])}*"] + ["–"] * 7 if row["status"].startswith("not run") else
                      [row["title"], *_checks(row), num(row.get("worker_timeouts")), _mib(row.get("peak_rss_kib")),
                       _mib(row.get("peak_pss_kib")), num(row.get("peak_processes"))] for row in rows])
    lines = []  # --repeat N: the counter checks and WORKER TIMEOUT lines of every round, one line each
    for row in rows:
        if row["status"].startswith("not run"):
            lines.append([row["title"], "all", f"*{esc(row['status'])}*"] + ["–"] * 4)
            continue
        lines += [[row["title"] if n == 1 else "", str(n), *_checks(raw), num(raw.get("worker_timeouts"))]
                  for n, raw in enumerate(row["rounds"], 1)]
    memory = [[row["title"], f"*{esc(row['status'])}*", "–", "–"] if row["status"].startswith("not run") else
              [row["title"], _mib(row.get("peak_rss_kib")), _mib(row.get("peak_pss_kib")), num(row.get("peak_processes"))]
              for row in rows]
    return table(["Server", "Round", *tests, "Whole round: counter vs 2xx", "WORKER TIMEOUT lines"], lines) + [""] + \
        table(["Server", f"Peak RSS (sum over the process tree, max of {repeat} rounds)", "Peak PSS (sum, max)",
               "Processes (max)"], memory)


def _scaling_table(points: list[dict], repeat: int = 1) -> list[str]:
    head = ["Shards", "Requests/sec"] + (["min–max"] if repeat > 1 else []) + ["× one shard", "p50", "p99"] + \
        (["counter vs 2xx, each round", "Peak RSS (max)"] if repeat > 1 else ["counter vs 2xx", "Peak RSS"])
    lines, base = [], None
    for point in points:
        shards, problem = point["id"].rsplit("-", 1)[1], _not_ok(point, "wrk")
        if problem:
            lines.append([shards, f"*{esc(problem)}*"] + ["–"] * (len(head) - 2))
            continue
        t = point["tests"]["wrk"]
        base = base or t["rps"]
        check = " · ".join(_verdict(*counter_checks(raw)["total"], short=True) if raw["status"] == "ok" else "–"
                           for raw in point["rounds"]) if repeat > 1 else \
            _verdict(*counter_checks(point).get("total", (None, None)))
        lines.append([shards, f"**{num(t['rps'])}**"] + ([_spread(t, "rps", repeat)] if repeat > 1 else []) +
                     [f"{t['rps'] / base:.2f}", ms(t.get("p50_ms")), ms(t.get("p99_ms")), check,
                      _mib(point.get("peak_rss_kib"))])
    return table(head, lines)


def _ratios_table(ratios: dict) -> list[str]:
    peers = ratios["peers"]
    ratio = lambda v: "–" if v is None else f"{v:.2f}×"  # noqa: E731
    return table(["hitcore"] + [f"ab: × {name}" for _, name in peers] + [f"wrk: × {name}" for _, name in peers]
                 + ["wrk p99 (median)"],
                 [[e["title"]] + [ratio(e["ab"][pid]) for pid, _ in peers] + [ratio(e["wrk"][pid]) for pid, _ in peers]
                  + [ms(e["wrk_p99_ms"])] for e in ratios["rows"]])


def render(s: dict, charts: list[str]) -> str:
    m, st, rows, repeat = s["machine"], s["settings"], s["rows"], s.get("repeat", 1)
    c, n = st["concurrency"], st["ab_requests"]
    of_rounds = f" (median of {repeat} rounds)" if repeat > 1 else ""
    pinning = ("none: servers, Redis and the load generators share all CPUs"
               if not (st["cpus_server"] or st["cpus_load"] or st["cpus_redis"]) else
               f"taskset: servers on CPUs {st['cpus_server'] or 'any'}, ab/wrk on {st['cpus_load'] or 'any'}, "
               f"Redis on {st['cpus_redis'] or 'any'}")
    out = [f"# hitcore benchmark: {s['started'][:10]} on {m['hostname']} ({st['mode']} run)", ""]
    if st["mode"] == "quick":
        out += [f"> A `--quick` run (ab -n {n}, wrk {st['wrk_duration']} s): a smoke test of the kit, not a "
                "result to quote. The full run writes the file without `-quick`.", ""]
    out += machine(s, [["CPU pinning", pinning]] + ([["CPU clock", f"{m['cpu_mhz']} MHz"]] if m.get("cpu_mhz") else []))
    out += ["", "The load average at the end includes this run's own load.",
            "", f"Run started {s['started']} and took {s['duration_s']:.0f} s (of which provisioning "
            f"{s['provisioning_s']:.0f} s). One redis-server with a password, no persistence, for every server; each "
            f"server in turn on 127.0.0.1:{st['port']}; `SET hit 0` before each. How to read the tables: {READ}. "
            f"Raw outputs: [`{s['name']}/raw/`]({s['name']}/raw/)."]
    if repeat > 1:
        out += ["", f"**{repeat} rounds** (`--repeat {repeat}`), interleaved: every server and scaling point once per "
                "round. Each number is the **median over the rounds** of its column, *min–max* the spread of req/s; "
                "failures, socket errors and the counter checks are given for every round (` · ` between rounds). "
                "Raw outputs carry the round: `<server>-<test>-r<round>.txt`."]
    out += ["", f"## The original test: `ab -c {c} -n {n} -r -l`, a new connection per request{of_rounds}", "",
            f"Bounded with `-t {st['ab_time_limit']}`; the columns are ab's own.", ""]
    out += ab_table(rows, "ab", keepalive=False, repeat=repeat)
    out += ["", "The 2014 original, for reference (gunicorn -w 4, Flask + flask-redis, `ab -c 500`, 50000 requests, "
            "on the original author's machine; quoted, not measured here):", ""]
    out += table(["Server (2014)", "Requests per second", "Notes"], s["original_2014"])
    out += ["", f"## Keep-alive: `ab -k -c {c} -n {n} -r -l`{of_rounds}", "",
            "ab is single-threaded: for the fast servers this measures ab itself.", ""]
    out += ab_table(rows, "ab_k", keepalive=True, repeat=repeat)
    out += ["", f"## Keep-alive, multi-threaded: `wrk -t {st['wrk_threads']} -c {c} -d {st['wrk_duration']}s "
            f"--latency`{of_rounds}", "", "The load that separates the fast servers.", ""]
    out += _wrk_table(rows, repeat=repeat)
    ratios = (s.get("ratios") or rounds.ratios(s)) if repeat > 1 else {"rows": []}
    if ratios["rows"]:
        out += ["", f"## Ratios{of_rounds}", "",
                "Each hitcore row's req/s divided by each peer's, for `ab` and `wrk`, measured side by side in this "
                "run (above 1.00×: hitcore served more), and hitcore's `wrk` p99."
                + ("" if ratios["peers"] else " No peer (gunicorn gevent, tokio peer, nginx static) was in this "
                   "run, so only the p99 is given."), ""] + _ratios_table(ratios)
    if s["scaling"]:
        out += ["", f"## Shard scaling: hitcore `-w N`, `wrk -t {st['wrk_threads']} -c {c} "
                f"-d {st['scaling_duration']}s --latency`{of_rounds}", ""]
        if st["cpus_load"] is None:
            out += [f"wrk and Redis share the server's {s['ncpu']} CPUs here, so a shard takes CPU from them: judge "
                    "scaling on a machine with CPUs to spare, pinned.", ""]
        out += _scaling_table(s["scaling"], repeat=repeat)
    out += ["", "## Correctness and memory", "",
            "*counter vs 2xx*: the Redis counter's growth during each test against the 2xx answers the client "
            "counted; **LOST** would be answers without increments. Memory: the peak summed RSS (and PSS) of the "
            f"server's process tree, sampled at 10 Hz ({READ}).", ""]
    out += _correctness_table(rows + s["scaling"], repeat)
    if charts:
        out += ["", "## Charts", ""] + [f"![{chart}]({chart})" for chart in charts]
    out += ["", "## Commands", ""] + [f"- `{r['id']}`: `{esc(r['argv'])}`" for r in rows + s["scaling"]]
    return "\n".join(out + ["", "How to read and reproduce this: [bench/README.md](../README.md).", ""])

