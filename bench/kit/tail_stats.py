"""bench/tail's arithmetic, without sockets or processes (tested by bench/tests/test_tail.py): the
offered rates as fractions of the generator's closed-loop maximum against nginx, oha's JSON, the
counter check, the rounds folded into medians, and issue 14's target 3 verdicts on them.
"""
from __future__ import annotations

import json

from .rounds import stats

DEADLINE_ERROR = "aborted due to deadline"
# oha's latencyPercentiles keys (seconds) -> ours (milliseconds)
PERCENTILES = {"p50": "p50_ms", "p90": "p90_ms", "p99": "p99_ms", "p99.9": "p999_ms", "p99.99": "p9999_ms"}
FOLDED = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "ok_rps", "achieved_ratio"]
# measure.window_figures' figures folded over the rounds (bench/tail's readings add the run-queue
# waits and the server's context switches)
CPU_FIELDS = ["oha_cpu_pct", "server_cpu_pct", "redis_cpu_pct", "other_cpu_pct", "machine_cpu_pct",
              "requests_per_command", "server_cpu_us_per_request", "server_nonvoluntary_per_s",
              "server_runq_ms_per_s", "redis_runq_ms_per_s", "oha_runq_ms_per_s"]
GOAL_FRACTIONS = (0.25, 0.50)
# A run counts as saturated (requests queued faster than they were served, so its percentiles
# measure the queue, not the server) when its 2xx answers fell short of this share of the offered
# rate, or its median latency reached SATURATED_P50_MS (an unsaturated server answers in ~1 ms).
RATE_MET = 0.95
SATURATED_P50_MS = 10.0


class OhaError(Exception):
    """oha's output could not be read."""


def parse_fractions(text: str) -> list[float]:
    """'0.10,0.25,50%' -> [0.1, 0.25, 0.5], sorted, each in (0, 1]; ValueError naming a bad item."""
    out = set()
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            value = float(item[:-1]) / 100 if item.endswith("%") else float(item)
        except ValueError:
            raise ValueError(f"not a fraction: {item!r} (write 0.25 or 25%)") from None
        if not 0 < value <= 1:
            raise ValueError(f"a fraction must be above 0 and at most 1: {item!r}")
        out.add(round(value, 4))
    if not out:
        raise ValueError("no fraction given")
    return sorted(out)


def rates(max_rps: float, fractions: list[float]) -> dict[float, int]:
    """{fraction: offered requests per second}, rounded to the nearest 100 (at least 100)."""
    return {f: max(100, int(round(max_rps * f / 100.0)) * 100) for f in fractions}


def percent_label(fraction: float) -> str:
    """0.25 -> '25 %', 0.125 -> '12.5 %'."""
    text = f"{fraction * 100:.1f}".rstrip("0").rstrip(".")
    return f"{text} %"


def parse_oha(text: str) -> dict:
    """oha's JSON (1.x, `--output-format json`) -> {total_s, responses, ok, non_2xx, status, errors,
    error_count, aborted, ok_rps, p50_ms .. p9999_ms, max_ms, mean_ms}, latencies in ms (oha's are
    in s). With `-z` oha aborts the requests in flight at its deadline and counts them as an error:
    the generator stopping, not the server failing, so they are kept apart (`aborted`)."""
    try:
        data = json.loads(text[text.index("{"):]) if "{" in text else None
    except ValueError as error:
        raise OhaError(f"oha's output is not JSON: {error}") from None
    if not isinstance(data, dict) or "summary" not in data:
        raise OhaError("oha's output has no 'summary' (was --output-format json given?)")
    summary = data["summary"]
    total = float(summary.get("total") or 0.0)
    status = {str(k): int(v) for k, v in (data.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in status.items() if k.startswith("2"))
    errors = {str(k): int(v) for k, v in (data.get("errorDistribution") or {}).items()}
    aborted = errors.pop(DEADLINE_ERROR, 0)
    pct = data.get("latencyPercentiles") or {}
    out = {"total_s": round(total, 3), "responses": sum(status.values()), "ok": ok,
           "non_2xx": sum(status.values()) - ok, "status": status, "errors": errors,
           "error_count": sum(errors.values()), "aborted": aborted,
           "ok_rps": round(ok / total, 1) if total > 0 else 0.0,
           "max_ms": _ms(summary.get("slowest")), "mean_ms": _ms(summary.get("average"))}
    return dict(out, **{name: _ms(pct.get(key)) for key, name in PERCENTILES.items()})


def _ms(seconds) -> float | None:
    return None if seconds is None else round(float(seconds) * 1000.0, 3)


def counter_check(delta: int | None, ok: int, aborted: int, connections: int) -> str:
    """'ok' when the counter grew by the 2xx answers, or by up to the requests oha abandoned in
    flight more (the server counted them after oha stopped listening: at most one per connection);
    '+N' beyond that; 'LOST N' when it grew by less than the 2xx answers (an answer not counted)."""
    if delta is None:
        return "not read"
    extra = delta - ok
    if extra < 0:
        return f"LOST {-extra}"
    if extra <= max(aborted, 0) + connections:
        return "ok"
    return f"+{extra}"


def fold(measurements: list[dict]) -> dict:
    """{server: {fraction (as str): {"rate", "rounds", "errors", <field>: {median, min, max, values},
    "cpu": {<cpu field>: stats}}}} over every round that gave numbers. `values` are in round order."""
    groups: dict = {}
    for m in sorted(measurements, key=lambda m: m["round"]):
        groups.setdefault(m["server"], {}).setdefault(str(m["fraction"]), []).append(m)
    out: dict = {}
    for server, by_fraction in groups.items():
        for fraction, runs in by_fraction.items():
            good = [m for m in runs if not m.get("error") and m.get("oha")]
            cell = {"rate": runs[0]["rate"], "rounds": len(good),
                    "errors": [f"round {m['round']}: {m['error']}" for m in runs if m.get("error")],
                    "by_round": {str(m["round"]): {"p99_ms": m["oha"].get("p99_ms"), "p999_ms": m["oha"].get("p999_ms"),
                                                   "saturated": saturated(m["oha"])}
                                 for m in good}}
            for field in FOLDED:
                cell[field] = stats([m["oha"].get(field) for m in good])
            cell["cpu"] = {f: stats([(m.get("cpu") or {}).get(f) for m in good]) for f in CPU_FIELDS}
            out.setdefault(server, {})[fraction] = cell
    return out


def saturated(oha: dict) -> bool:
    """Whether an open-loop run fell behind its offered rate (see RATE_MET, SATURATED_P50_MS)."""
    ratio = oha.get("achieved_ratio")
    return bool((ratio is not None and ratio < RATE_MET)
                or (oha.get("p50_ms") is not None and oha["p50_ms"] >= SATURATED_P50_MS))


def achieved_ratio(ok_rps: float, rate: float) -> float:
    return round(ok_rps / rate, 3) if rate else 0.0


def verdicts(folded: dict, fractions=GOAL_FRACTIONS, subject: str = "hitcore", peer: str = "nginx") -> list[dict]:
    """For each goal fraction measured: {fraction, subject/peer p99 and p99.9 medians, met (both <=,
    on the medians, or None when either side is missing), rounds_met ("k/n": of the n rounds both
    sides measured, the k in which both of hitcore's were <= nginx's of the same round), saturated
    ({subject: [rounds], peer: [rounds]}: the rounds that fell behind the offered rate, whose
    percentiles measure a queue)}."""
    out = []
    for fraction in fractions:
        key = str(fraction)
        mine, theirs = folded.get(subject, {}).get(key), folded.get(peer, {}).get(key)
        row = {"fraction": fraction, "subject": subject, "peer": peer, "met": None}
        if not all(cell and cell[name] for cell in (mine, theirs) for name in ("p99_ms", "p999_ms")):
            out.append(row)
            continue
        for name in ("p99_ms", "p999_ms"):
            row[f"{subject}_{name}"] = mine[name]["median"]
            row[f"{peer}_{name}"] = theirs[name]["median"]
        row["met"] = (mine["p99_ms"]["median"] <= theirs["p99_ms"]["median"]
                      and mine["p999_ms"]["median"] <= theirs["p999_ms"]["median"])
        common = [r for r in mine["by_round"] if r in theirs["by_round"]
                  and None not in (*mine["by_round"][r].values(), *theirs["by_round"][r].values())]
        met = [r for r in common if mine["by_round"][r]["p99_ms"] <= theirs["by_round"][r]["p99_ms"]
               and mine["by_round"][r]["p999_ms"] <= theirs["by_round"][r]["p999_ms"]]
        row["rounds_met"] = f"{len(met)}/{len(common)}"
        row["saturated"] = {who: sorted(int(r) for r, v in cell["by_round"].items() if v.get("saturated"))
                            for who, cell in ((subject, mine), (peer, theirs))}
        out.append(row)
    return out
