"""bench/run's results file, bench/results/<name>.md, rendered from the run's summary (summary.json);
its scaling and correctness tables are bench/device/run16's too.

Order: the machine, the original test's table (ab's own columns) beside the 2014 numbers, ab -k,
wrk, shard scaling, correctness and memory, the commands. How to read each table is bench/README.md's
"Reading the results" (the report points there rather than repeat it). Every row is folded over the
rounds by kit/rounds.py (a single run is one round): a figure is the median over the rounds, *min–max*
the spread of req/s when there were several, and failures and counter checks are given for every
round (` · ` between rounds), since a median would hide them.
Pure: every number comes from the summary, which holds only what the tools printed in the run.
"""
from __future__ import annotations

from . import rounds
from .md import DASH, each, esc, machine, ms, num, table

READ = "[bench/README.md](../README.md), *Reading the results*"


def folded(rows: list[dict]) -> list[dict]:
    """Rows folded over the rounds; a summary written before every run was folded has plain rows."""
    return [row if "rounds" in row else rounds.aggregate_row([row]) for row in rows]


def _mib(value) -> str:
    return DASH if not value else f"{value / 1024:,.1f} MiB"


def _why_not(row: dict, key: str) -> str | None:
    """Why a row has no numbers for test `key`, or None when it has them."""
    if key in row["tests"]:
        return row["tests"][key]["error"]
    return row["status"] if row["status"] != "ok" else "not run"


def _each_round(row: dict, key: str, show) -> str:
    """A figure of test `key` for every round: `show(test)` per round, "error" where it gave none."""
    return each([raw["tests"].get(key) for raw in row["rounds"]],
                lambda t: "error" if t["error"] else show(t))


def _spread(t: dict, repeat: int) -> list[str]:
    """The min–max cell of req/s over the rounds (none for one round), with those of the rounds the row
    ran that gave no numbers."""
    if repeat == 1:
        return []
    text, ran = f"{num(t['min']['rps'])}–{num(t['max']['rps'])}", len(t["raw"])
    if len(t["rounds_ok"]) < ran:
        text += f" ({len(t['rounds_ok'])} of {ran} rounds; " + "; ".join(
            f"round {n}: *{esc(why).strip()}*" for n, why in t["round_errors"].items()) + ")"
    return [text]


def _table(head: list[str], rows: list[dict], key: str, cells) -> list[str]:
    """One line per row: `cells(row, its test)`, or its title and why it has no numbers."""
    return table(head, [[row["title"], f"*{esc(_why_not(row, key))}*"] + [DASH] * (len(head) - 2)
                        if _why_not(row, key) else cells(row, row["tests"][key]) for row in rows])


def _ab_failed(t: dict) -> str:
    return num(t["failed"]) + (f" (+{num(t['non_2xx'])} non-2xx)" if t.get("non_2xx") else "")


def ab_table(rows: list[dict], key: str, repeat: int) -> list[str]:
    """ab's own columns for test `key` ("ab" or "ab_k"; the latter adds its keep-alive count)."""
    keepalive = key == "ab_k"
    head = ["Server", "Time taken for tests", "Complete requests", "Failed requests (each round)"] + \
        (["Keep-Alive requests"] if keepalive else []) + ["Requests per second"] + \
        (["Requests per second min–max"] if repeat > 1 else []) + \
        ["Time per request (mean)", "Time per request (mean, across all concurrent requests)",
         "Total min", "Total mean", "Total median", "Total max"]

    def cells(row, t):
        return [row["title"], f"{t['time_taken_s']:.3f} s", num(t["complete"]), _each_round(row, key, _ab_failed)] + \
            ([num(t.get("keepalive_requests", 0))] if keepalive else []) + [f"**{num(t['rps'])}**"] + \
            _spread(t, repeat) + [f"{t['time_per_request_ms']:.3f} ms", f"{t.get('time_per_request_all_ms', 0):.3f} ms"] + \
            [f"{num(t.get(f'total_{k}_ms'))} ms" for k in ("min", "mean", "median", "max")]
    return _table(head, rows, key, cells)


def _wrk_errors(t: dict) -> str:
    return "/".join(str(t[f"errors_{k}"]) for k in ("connect", "read", "write", "timeout"))


def wrk_table(rows: list[dict], repeat: int) -> list[str]:
    head = ["Server", "Requests", "Requests/sec"] + (["Requests/sec min–max"] if repeat > 1 else []) + \
        ["p50", "p75", "p90", "p99", "max", "Socket errors (connect/read/write/timeout), each round",
         "Non-2xx/3xx, each round"]

    def cells(row, t):
        return [row["title"], num(t["requests"]), f"**{num(t['rps'])}**"] + _spread(t, repeat) + \
            [ms(t.get(k)) for k in ("p50_ms", "p75_ms", "p90_ms", "p99_ms", "latency_max_ms")] + \
            [_each_round(row, "wrk", _wrk_errors), _each_round(row, "wrk", lambda w: num(w["non_2xx_3xx"]))]
    return _table(head, rows, "wrk", cells)


def scaling_table(points: list[dict], repeat: int) -> list[str]:
    """hitcore -w N under wrk, N the last dash-separated part of each point's id; % of linear is
    req/s(N) / (N × req/s(1)), on medians."""
    head = ["Shards", "Requests/sec"] + (["min–max"] if repeat > 1 else []) + \
        ["× one shard", "% of linear", "p50", "p99", "Peak RSS"]
    one = next((p["tests"]["wrk"].get("rps") for p in points if p["id"].endswith("-1") and not _why_not(p, "wrk")), None)
    lines = []
    for point in points:
        shards, problem = int(point["id"].rsplit("-", 1)[1]), _why_not(point, "wrk")
        if problem:
            lines.append([shards, f"*{esc(problem)}*"] + [DASH] * (len(head) - 2))
            continue
        t = point["tests"]["wrk"]
        times = t["rps"] / one if one else None
        lines.append([shards, f"**{num(t['rps'])}**"] + _spread(t, repeat) +
                     [DASH if times is None else f"{times:.2f}", DASH if times is None else f"{100 * times / shards:.1f}",
                      ms(t.get("p50_ms")), ms(t.get("p99_ms")), _mib(point.get("peak_rss_kib"))])
    return table(head, lines)


def counter_checks(row: dict) -> dict:
    """Per test of one round's row: (increments the counter gained, 2xx answers the client saw); and the totals."""
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


def lost(row: dict) -> int:
    """The 2xx answers one round's row gave without an increment (0 when none, or not checked)."""
    counted, seen = counter_checks(row)["total"]
    return max(0, seen - counted) if counted is not None and row["status"] == "ok" else 0


def _verdict(counted, seen) -> str:
    """counter vs 2xx: "a = b", "a vs b (+N)" (requests in flight when a client stopped), "a vs b (**N LOST**)"."""
    if counted is None or seen is None:
        return DASH
    if counted == seen:
        return f"{num(counted)} = {num(seen)}"
    diff = f"+{num(counted - seen)}" if counted > seen else f"**{num(seen - counted)} LOST**"
    return f"{num(counted)} vs {num(seen)} ({diff})"


def _checks(row: dict) -> list[str]:
    """The four counter checks of one round's row."""
    if row["status"] != "ok":
        return [f"*{esc(row['status'])}*"] + [DASH] * 3
    if not row["uses_redis"]:
        return ["no Redis"] * 4
    checks = counter_checks(row)
    return [_verdict(*checks[k]) if k in checks else DASH for k in ("ab", "ab_k", "wrk", "total")]


def correctness_table(rows: list[dict]) -> list[str]:
    """Every round of every row: the counter's growth against the 2xx answers, and WORKER TIMEOUT lines."""
    lines = []
    for row in rows:
        if row["status"].startswith("not run"):
            lines.append([row["title"], "all", f"*{esc(row['status'])}*"] + [DASH] * 4)
            continue
        lines += [[row["title"] if n == 1 else "", n, *_checks(raw), num(raw.get("worker_timeouts"))]
                  for n, raw in enumerate(row["rounds"], 1)]
    return table(["Server", "Round", "ab: counter vs 2xx", "ab -k: counter vs 2xx", "wrk: counter vs 2xx",
                  "Whole round: counter vs 2xx", "WORKER TIMEOUT lines"], lines)


def memory_table(rows: list[dict]) -> list[str]:
    return table(["Server", "Peak RSS (sum over the process tree, max over the rounds)", "Peak PSS (sum)", "Processes"],
                 [[row["title"], _mib(row.get("peak_rss_kib")), _mib(row.get("peak_pss_kib")),
                   num(row.get("peak_processes"))] for row in rows])


def render(s: dict) -> str:
    m, st, repeat = s["machine"], s["settings"], s.get("repeat", 1)
    rows, scaling = folded(s["rows"]), folded(s["scaling"])
    c, n, d = st["concurrency"], st["ab_requests"], st["wrk_duration"]
    of_rounds = f" (median of {repeat} rounds)" if repeat > 1 else ""
    pinning = ("none: servers, Redis and the load generators share all CPUs"
               if not (st["cpus_server"] or st["cpus_load"] or st["cpus_redis"]) else
               f"taskset: servers on CPUs {st['cpus_server'] or 'any'}, ab/wrk on {st['cpus_load'] or 'any'}, "
               f"Redis on {st['cpus_redis'] or 'any'}")
    out = [f"# hitcore benchmark: {s['started'][:10]} on {m['hostname']} ({st['mode']} run)", ""]
    if st["mode"] == "quick":
        out += [f"> A `--quick` run (ab -n {n}, wrk {d} s): a smoke test of the kit, not a result to quote. "
                "The full run writes the file without `-quick`.", ""]
    out += machine(s, [["CPU pinning", pinning]])
    out += ["", f"Run started {s['started']} and took {s['duration_s']:.0f} s (of which provisioning "
            f"{s['provisioning_s']:.0f} s). One redis-server with a password, no persistence, for every server; each "
            f"server in turn on 127.0.0.1:{st['port']}; `SET hit 0` before each. How to read the tables: {READ}. "
            f"Raw outputs: [`{s['name']}/raw/`]({s['name']}/raw/)."]
    if repeat > 1:
        out += ["", f"**{repeat} rounds** (`--repeat {repeat}`), interleaved: every server and scaling point once per "
                "round. Each number is the **median over the rounds**, *min–max* the spread of req/s; failures, "
                "socket errors and the counter checks are given for every round (` · ` between rounds). Raw outputs "
                "carry the round: `<server>-<test>-r<round>.txt`."]
    out += ["", f"## The original test: `ab -c {c} -n {n} -r -l`, a new connection per request{of_rounds}", "",
            f"Bounded with `-t {st['ab_time_limit']}`; the columns are ab's own.", ""]
    out += ab_table(rows, "ab", repeat)
    out += ["", "The 2014 original, for reference (gunicorn -w 4, Flask + flask-redis, `ab -c 500`, 50000 requests, "
            "on the original author's machine; quoted, not measured here):", ""]
    out += table(["Server (2014)", "Requests per second", "Notes"], s["original_2014"])
    out += ["", f"## Keep-alive: `ab -k -c {c} -n {n} -r -l`{of_rounds}", "",
            "ab is single-threaded: for the fast servers this measures ab itself.", ""] + ab_table(rows, "ab_k", repeat)
    out += ["", f"## Keep-alive, multi-threaded: `wrk -t {st['wrk_threads']} -c {c} -d {d}s --latency`{of_rounds}", "",
            "The load that separates the fast servers.", ""] + wrk_table(rows, repeat)
    if scaling:
        out += ["", f"## Shard scaling: hitcore `-w N` under the same wrk{of_rounds}", ""]
        if st["cpus_load"] is None:
            out += [f"wrk and Redis share the server's {s['ncpu']} CPUs here, so a shard takes CPU from them: judge "
                    "scaling on a machine with CPUs to spare, pinned.", ""]
        out += scaling_table(scaling, repeat)
    out += ["", "## Correctness and memory", "",
            "*counter vs 2xx*: the Redis counter's growth during each test against the 2xx answers the client "
            "counted; **LOST** would be answers without increments. Memory: the peak summed RSS (and PSS) of the "
            f"server's process tree, sampled at 10 Hz ({READ}).", ""]
    out += correctness_table(rows + scaling) + [""] + memory_table(rows + scaling)
    out += ["", "## Commands", ""] + [f"- `{r['id']}`: `{esc(r['argv'])}`" for r in rows + scaling]
    return "\n".join(out + ["", "How to read and reproduce this: [bench/README.md](../README.md).", ""])
