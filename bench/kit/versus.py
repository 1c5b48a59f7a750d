"""bench/hostile's `vs-nginx` measurement folded: medians over interleaved rounds and the verdict.

Each run (kit/hostile.py, test_vs_nginx) is one victim in one round, {"victim", "round",
"baseline": phase, "slowloris": phase, "error"?}, a phase holding wrk's parsed result under "wrk".
Pure functions on plain dicts, standard library only: bench/tests/test_versus.py tests them.
"""
from __future__ import annotations

from .rounds import median_of

PHASES = ("baseline", "slowloris")
FIELDS = ("p99_ms", "p50_ms", "latency_max_ms", "rps", "socket_errors", "non_2xx_3xx", "server_cpu_pct",
          "attacker_cpu_pct", "open_avg", "closed_per_s", "probes_ok", "probes_sent")


def figures(phase: dict) -> dict | None:
    """One phase's numbers, or None when its wrk gave none: wrk's latency, rate and errors, the
    server's and the attacker's CPU (% of one core), the slowloris connections open on average and
    closed by the server per second, and the new-connection probes answered / sent."""
    wrk = phase.get("wrk") or {}
    if wrk.get("error") or wrk.get("rps") is None:
        return None
    attacker, probes = phase.get("attacker") or {}, phase.get("probes") or {}
    return {"p99_ms": wrk.get("p99_ms"), "p50_ms": wrk.get("p50_ms"), "latency_max_ms": wrk.get("latency_max_ms"),
            "rps": wrk.get("rps"), "non_2xx_3xx": wrk.get("non_2xx_3xx", 0),
            "socket_errors": sum(wrk.get(f"errors_{k}", 0) for k in ("connect", "read", "write", "timeout")),
            "server_cpu_pct": phase.get("hitcore_cpu_pct"), "attacker_cpu_pct": phase.get("attacker_cpu_pct"),
            "open_avg": attacker.get("open_avg"), "closed_per_s": attacker.get("closed_per_s"),
            "probes_ok": probes.get("ok"), "probes_sent": probes.get("sent")}


def fold(runs: list[dict]) -> dict:
    """{victim: {phase: {field: median, field + "_each": [per round], "rounds_ok": n, "failed": [...]}}},
    victims in the order they first appear, rounds in round order."""
    out: dict = {}
    for run in sorted(runs, key=lambda r: r.get("round", 0)):
        victim = out.setdefault(run["victim"], {p: {"each": []} for p in PHASES})
        for phase in PHASES:
            got = figures(run.get(phase) or {})
            wrk = (run.get(phase) or {}).get("wrk") or {}
            victim[phase]["each"].append(
                {"round": run.get("round"), **(got or {}),
                 "error": None if got else (wrk.get("error") or run.get("error") or "not run")})
    for victim in out.values():
        for phase in PHASES:
            each = victim[phase].pop("each")
            good = [e for e in each if not e["error"]]
            medians = {f: median_of([e[f] for e in good]) for f in FIELDS}
            entry = {f: None if m is None else round(m, 3) for f, m in medians.items()}
            entry.update({f"{f}_each": [e.get(f) for e in each] for f in FIELDS})
            entry["rounds_ok"] = len(good)
            entry["failed"] = [f"round {e['round']}: {e['error']}" for e in each if e["error"]]
            victim[phase] = entry
    return out


def verdict(folded: dict, ours: str = "hitcore", other: str = "nginx") -> dict:
    """Target 5: `ours`'s median p99 beside the slowloris connections ≤ `other`'s.
    {"ours", "other", "p99_ms", "other_p99_ms", "ratio", "met"}; met is None when a figure is missing."""
    mine = (folded.get(ours) or {}).get("slowloris", {}).get("p99_ms")
    theirs = (folded.get(other) or {}).get("slowloris", {}).get("p99_ms")
    if mine is None or theirs is None:
        return {"ours": ours, "other": other, "p99_ms": mine, "other_p99_ms": theirs, "ratio": None, "met": None}
    return {"ours": ours, "other": other, "p99_ms": mine, "other_p99_ms": theirs,
            "ratio": round(mine / theirs, 3) if theirs else None, "met": mine <= theirs}
