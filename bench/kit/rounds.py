"""`bench/run --repeat N`: the rounds of one run folded into medians and spreads.

Each round's rows have a single run's shape. `aggregate()` folds them into one row per server whose
`tests` hold, per test, the **median** over the rounds that gave numbers of every numeric field, with
`min` and `max` beside it; every round's raw row stays in `rounds`, so nothing measured is lost.
`stats()` and `median_of()` are the one median every tool's folding uses (None-safe). Pure.
"""
from __future__ import annotations

from statistics import median

TEST_KEYS = ("ab", "ab_k", "wrk")


def stats(values: list) -> dict | None:
    """{"median", "min", "max", "values"} of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return {"median": median(values), "min": min(values), "max": max(values), "values": values} if values else None


def median_of(values: list):
    """The median of the values that are not None; None when there are none."""
    return (stats(values) or {}).get("median")


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def median_test(tests: list[dict | None]) -> dict:
    """One test over the rounds (None where a round did not run it): medians, min and max.

    Keys: every numeric field of the rounds' results, as its median; `min` and `max` ({field: value});
    `rounds_ok` (the rounds, from 1, that gave numbers); `round_errors` ({round: why not}, rounds as
    strings for JSON); `raw` (each round's raw output file); `argv`; `error` (None when at least one
    round gave numbers, else every round's reason)."""
    good = [(n, t) for n, t in enumerate(tests, 1) if t and not t.get("error")]
    problems = {str(n): (t["error"] if t else "not run") for n, t in enumerate(tests, 1)
                if not t or t.get("error")}
    first = next((t for t in tests if t), {})
    out: dict = {"argv": first.get("argv"), "raw": [t.get("raw") if t else None for t in tests],
                 "error": None, "rounds_ok": [n for n, _ in good], "round_errors": problems}
    if not good:
        out["error"] = "; ".join(f"round {n}: {why}" for n, why in problems.items())
        return out
    fields: list[str] = []
    for _, t in good:
        fields += [k for k, v in t.items() if _numeric(v) and k not in fields]
    lows, highs = {}, {}
    for field in fields:
        values = [t[field] for _, t in good if _numeric(t.get(field))]
        middle = median(values)
        # the median of two integer counts is a float: keep it an int when it is a whole number
        out[field] = int(middle) if isinstance(middle, float) and middle.is_integer() and all(
            isinstance(v, int) for v in values) else middle
        lows[field], highs[field] = min(values), max(values)
    out["min"], out["max"] = lows, highs
    return out


def aggregate_row(raws: list[dict]) -> dict:
    """One server's rows, one per round, folded into one row (see the module's docstring)."""
    first = raws[0]
    bad = [(n, r["status"]) for n, r in enumerate(raws, 1) if r["status"] != "ok"]
    if not bad:
        status = "ok"
    elif len(bad) == len(raws) and len({why for _, why in bad}) == 1:
        status = bad[0][1]  # the same reason every round (typically "not run: <provisioning problem>")
    else:
        status = "; ".join(f"round {n}: {why}" for n, why in bad)
    keys = [k for k in TEST_KEYS if any(k in r["tests"] for r in raws)]
    timeouts = [r.get("worker_timeouts") for r in raws]
    return {
        "id": first["id"], "title": first["title"], "argv": first["argv"], "uses_redis": first["uses_redis"],
        "status": status,
        "tests": {k: median_test([r["tests"].get(k) for r in raws]) for k in keys},
        "worker_timeouts": None if all(t is None for t in timeouts) else sum(t or 0 for t in timeouts),
        **{k: max((r[k] for r in raws if r.get(k) is not None), default=None)
           for k in ("peak_rss_kib", "peak_pss_kib", "peak_processes")},
        "rounds": raws,
    }


def aggregate(per_round: list[list[dict]]) -> list[dict]:
    """Rows per round (every round lists the same servers in the same order) -> one row per server."""
    if not per_round:
        return []
    ids = [r["id"] for r in per_round[0]]
    by_id = [{r["id"]: r for r in rows} for rows in per_round]
    return [aggregate_row([rows[i] for rows in by_id if i in rows]) for i in ids]
