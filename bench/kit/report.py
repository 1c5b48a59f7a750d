"""bench/run's results file, bench/results/<name>.md, from the run's summary.json; its scaling and
correctness tables are bench/device/run16's too. How to read each table is bench/README.md's "Reading
the results". Rows are folded over the rounds (kit/rounds.py): a figure is the median, *min–max* the
spread of req/s, and failures and counter checks are given for every round, since a median would
hide them. Pure: every number comes from the summary.
"""
from __future__ import annotations

from . import rounds
from .md import DASH, each, esc, fmt, machine, ms, table

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


def _spread(repeat: int):
    """The req/s min–max column over the rounds (none for one round), naming the rounds the row ran
    that gave no numbers."""
    def cell(_row, t):
        text, ran = f"{fmt(t['min']['rps'])}–{fmt(t['max']['rps'])}", len(t["raw"])
        if len(t["rounds_ok"]) < ran:
            text += f" ({len(t['rounds_ok'])} of {ran} rounds; " + "; ".join(
                f"round {n}: *{esc(why).strip()}*" for n, why in t["round_errors"].items()) + ")"
        return text
    return ("req/s min–max", cell) if repeat > 1 else None


def table_of(rows: list[dict], key: str, columns: list) -> list[str]:
    """The one table builder: a line per row, a cell per (heading, cell(row, test `key`)) column (None
    columns left out); a row without numbers for `key` gets its first cell and why not."""
    columns = [c for c in columns if c]
    lines = []
    for row in rows:
        why = _why_not(row, key)
        lines.append([columns[0][1](row, None), f"*{esc(why)}*"] + [DASH] * (len(columns) - 2) if why else
                     [cell(row, row["tests"][key]) for _, cell in columns])
    return table([head for head, _ in columns], lines)


def _title(row, _t) -> str:
    return row["title"]


def _bold_rps(_row, t) -> str:
    return f"**{fmt(t['rps'])}**"


def _ab_failed(t: dict) -> str:
    return fmt(t["failed"]) + (f" (+{fmt(t['non_2xx'])} non-2xx)" if t.get("non_2xx") else "")


def ab_table(rows: list[dict], key: str, repeat: int) -> list[str]:
    """ab's own columns for test `key` ("ab" or "ab_k"; the latter adds its keep-alive count)."""
    return table_of(rows, key, [
        ("Server", _title), ("Time taken for tests", lambda r, t: f"{t['time_taken_s']:.3f} s"),
        ("Complete requests", lambda r, t: fmt(t["complete"])),
        ("Failed requests (each round)", lambda r, t: _each_round(r, key, _ab_failed)),
        ("Keep-Alive requests", lambda r, t: fmt(t.get("keepalive_requests", 0))) if key == "ab_k" else None,
        ("Requests per second", _bold_rps), _spread(repeat),
        ("Time per request (mean)", lambda r, t: f"{t['time_per_request_ms']:.3f} ms"),
        ("Time per request (mean, across all concurrent requests)",
         lambda r, t: f"{t.get('time_per_request_all_ms', 0):.3f} ms")] +
        [(f"Total {k}", lambda r, t, k=k: f"{fmt(t.get(f'total_{k}_ms'))} ms") for k in ("min", "mean", "median", "max")])


def _wrk_errors(t: dict) -> str:
    return "/".join(str(t[f"errors_{k}"]) for k in ("connect", "read", "write", "timeout"))


def wrk_table(rows: list[dict], repeat: int) -> list[str]:
    return table_of(rows, "wrk", [
        ("Server", _title), ("Requests", lambda r, t: fmt(t["requests"])), ("Requests/sec", _bold_rps),
        _spread(repeat)] + [(k, lambda r, t, k=k: ms(t.get(f"{k}_ms"))) for k in ("p50", "p75", "p90", "p99")] + [
        ("max", lambda r, t: ms(t.get("latency_max_ms"))),
        ("Socket errors (connect/read/write/timeout), each round", lambda r, t: _each_round(r, "wrk", _wrk_errors)),
        ("Non-2xx/3xx, each round", lambda r, t: _each_round(r, "wrk", lambda w: fmt(w["non_2xx_3xx"])))])


def scaling_table(points: list[dict], repeat: int) -> list[str]:
    """hitcore -w N under wrk, N the last dash-separated part of each point's id; % of linear is
    req/s(N) / (N × req/s(1)), on medians."""
    one = next((p["tests"]["wrk"]["rps"] for p in points if p["id"].endswith("-1") and not _why_not(p, "wrk")), None)

    def shards(row, _t=None) -> int:
        return int(row["id"].rsplit("-", 1)[1])

    return table_of(points, "wrk", [
        ("Shards", shards), ("Requests/sec", _bold_rps), _spread(repeat),
        ("× one shard", lambda r, t: fmt(one and t["rps"] / one, ".2f")),
        ("% of linear", lambda r, t: fmt(one and 100 * t["rps"] / one / shards(r), ".1f")),
        ("p50", lambda r, t: ms(t.get("p50_ms"))), ("p99", lambda r, t: ms(t.get("p99_ms"))),
        ("Peak RSS", lambda r, t: _mib(r.get("peak_rss_kib")))])


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
        return f"{fmt(counted)} = {fmt(seen)}"
    diff = f"+{fmt(counted - seen)}" if counted > seen else f"**{fmt(seen - counted)} LOST**"
    return f"{fmt(counted)} vs {fmt(seen)} ({diff})"


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
        lines += [[row["title"] if n == 1 else "", n, *_checks(raw), fmt(raw.get("worker_timeouts"))]
                  for n, raw in enumerate(row["rounds"], 1)]
    return table(["Server", "Round", "ab: counter vs 2xx", "ab -k: counter vs 2xx", "wrk: counter vs 2xx",
                  "Whole round: counter vs 2xx", "WORKER TIMEOUT lines"], lines)


def render(s: dict) -> str:
    m, st, repeat = s["machine"], s["settings"], s.get("repeat", 1)
    rows, scaling = folded(s["rows"]), folded(s["scaling"])
    c, n, d = st["concurrency"], st["ab_requests"], st["wrk_duration"]
    of_rounds = f" (median of {repeat} rounds)" if repeat > 1 else ""
    out = [f"# hitcore benchmark: {s['started'][:10]} on {m['hostname']} ({st['mode']} run)", ""]
    if st["mode"] == "quick":
        out += [f"> A `--quick` run (ab -n {n}, wrk {d} s): a smoke test of the kit, not a result to quote.", ""]
    out += machine(s) + ["", f"Run started {s['started']} and took {s['duration_s']:.0f} s (provisioning "
                         f"{s['provisioning_s']:.0f} s). One redis-server with a password, no persistence; each server "
                         f"in turn on 127.0.0.1:{st['port']}, sharing every CPU with ab, wrk and Redis; `SET hit 0` "
                         f"before each. How to read the tables: {READ}. Raw outputs: [`{s['name']}/raw/`]({s['name']}/raw/)."]
    if repeat > 1:
        out += ["", f"**{repeat} rounds** (`--repeat {repeat}`), interleaved. Each number is the **median over the "
                "rounds**, *min–max* the spread of req/s; failures, socket errors and the counter checks are given for "
                "every round (` · ` between rounds). Raw outputs carry the round: `<server>-<test>-r<round>.txt`."]
    out += ["", f"## The original test: `ab -c {c} -n {n} -r -l`, a new connection per request{of_rounds}", "",
            f"Bounded with `-t {st['ab_time_limit']}`; the columns are ab's own.", ""] + ab_table(rows, "ab", repeat)
    out += ["", "The 2014 original, for reference (gunicorn -w 4, Flask + flask-redis, `ab -c 500`, 50000 requests, "
            "on the original author's machine; quoted, not measured here):", ""]
    out += table(["Server (2014)", "Requests per second", "Notes"], s["original_2014"])
    out += ["", f"## Keep-alive: `ab -k -c {c} -n {n} -r -l`{of_rounds}", "",
            "ab is single-threaded: for the fast servers this measures ab itself.", ""] + ab_table(rows, "ab_k", repeat)
    out += ["", f"## Keep-alive, multi-threaded: `wrk -t {st['wrk_threads']} -c {c} -d {d}s --latency`{of_rounds}", "",
            "The load that separates the fast servers.", ""] + wrk_table(rows, repeat)
    if scaling:
        out += ["", f"## Shard scaling: hitcore `-w N` under the same wrk{of_rounds}", "",
                f"wrk and Redis share the server's {s['ncpu']} CPUs here, so a shard takes CPU from them: judge "
                "scaling pinned, on a machine with CPUs to spare (bench/device/run16).", ""] + scaling_table(scaling, repeat)
    out += ["", "## Correctness and memory", "",
            "*counter vs 2xx*: the Redis counter's growth during each test against the 2xx answers the client "
            "counted; **LOST** would be answers without increments. Memory: the peak summed RSS (and PSS) of the "
            f"server's process tree, sampled at 10 Hz ({READ}).", ""]
    out += correctness_table(rows + scaling) + [""] + table(
        ["Server", "Peak RSS (sum over the process tree, max over the rounds)", "Peak PSS (sum)", "Processes"],
        [[r["title"], _mib(r.get("peak_rss_kib")), _mib(r.get("peak_pss_kib")), fmt(r.get("peak_processes"))]
         for r in rows + scaling])
    out += ["", "## Commands", ""] + [f"- `{r['id']}`: `{esc(r['argv'])}`" for r in rows + scaling]
    return "\n".join(out + ["", "How to read and reproduce this: [bench/README.md](../README.md).", ""])
