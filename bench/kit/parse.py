"""Pure parsers for the load generators' text output: ApacheBench 2.3 (`ab`) and wrk 4.x.

Each returns a flat dict of numbers (None where the tool did not print the line), or raises
`ParseError` when the output holds no result at all (ab aborted, wrk failed to connect...).
Nothing here runs a process; bench/tests/test_parse.py checks both against real outputs kept in
bench/tests/fixtures/, so a change in a tool's format cannot silently turn into wrong numbers.
"""
from __future__ import annotations

import re


class ParseError(ValueError):
    pass


def _num(text: str) -> float | int:
    return float(text) if any(c in text for c in ".eE") else int(text)


# "Label:   value ..." lines of ab's summary that a report or check reads, and the key each is stored under.
_AB_FIELDS = {
    "Concurrency Level": "concurrency",
    "Time taken for tests": "time_taken_s",
    "Complete requests": "complete",
    "Failed requests": "failed",
    "Non-2xx responses": "non_2xx",
    "Keep-Alive requests": "keepalive_requests",
    "Requests per second": "rps",
}


def parse_ab(text: str) -> dict:
    """Parses ab's report. Keys (numbers): complete, failed, non_2xx, rps, time_taken_s,
    time_per_request_ms, time_per_request_all_ms, total_min/mean/sd/median/max_ms, the
    failure breakdown fail_connect/receive/length/exceptions, and ok_2xx (see below)."""
    result = {key: _num(m.group(1)) for label, key in _AB_FIELDS.items()
              if (m := re.search(rf"^{label}:\s+([0-9.]+)(?:\s|$)", text, re.M))}
    # printed twice: "(mean)" then "(mean, across all concurrent requests)"
    per_request = re.findall(r"^Time per request:\s+([0-9.]+)", text, re.M)
    result.update(zip(("time_per_request_ms", "time_per_request_all_ms"), map(float, per_request)))
    # Connection Times (ms): "Total:  min  mean  [+/-sd]  median  max"
    match = re.search(r"^Total:" + r"\s+([0-9.]+)" * 5 + r"\s*$", text, re.M)
    if match:
        result.update({f"total_{k}_ms": _num(v) for k, v in zip(("min", "mean", "sd", "median", "max"), match.groups())})
    match = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text)
    if match:
        result.update({f"fail_{k}": int(v) for k, v in zip(("connect", "receive", "length", "exceptions"), match.groups())})
    if "complete" not in result or "rps" not in result:
        raise ParseError("no ab summary in the output" + _last_error(text))
    result.setdefault("failed", 0)
    result.setdefault("non_2xx", 0)
    # ab counts failed requests in "Complete requests" too, and prints "Non-2xx responses" apart
    # from "Failed requests". A "Length" failure is a whole answer whose body length differed from
    # the first one's (a 2xx all the same); the other failures (connect, receive, exceptions) are not
    # answers. So the 2xx answers are the complete ones less the non-2xx and the non-length failures.
    not_answers = result["failed"] - result.get("fail_length", 0)
    result["ok_2xx"] = max(0, result["complete"] - result["non_2xx"] - not_answers)
    return result


_WRK_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def wrk_time_ms(text: str) -> float:
    """'512.00us' / '4.90ms' / '1.20s' / '1.00m' -> milliseconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ParseError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _WRK_UNITS_S[match.group(2)] * 1000.0


def parse_wrk(text: str) -> dict:
    """Parses wrk's report (run with --latency). Keys: requests, duration_s, rps, p50_ms, p75_ms,
    p90_ms, p99_ms, latency_avg_ms, latency_max_ms, non_2xx_3xx, errors_connect/read/write/timeout,
    ok_2xx (requests less the non-2xx/3xx ones)."""
    result: dict = {}
    match = re.search(r"^\s*(\d+) requests in ([0-9.]+(?:us|ms|s|m|h)), ([0-9.]+)([KMGT]?B) read", text, re.M)
    if not match:
        raise ParseError("no 'N requests in T' line in wrk's output" + _last_error(text))
    result["requests"] = int(match.group(1))
    result["duration_s"] = wrk_time_ms(match.group(2)) / 1000.0
    result["bytes_read"] = int(float(match.group(3)) * _SIZE_UNITS[match.group(4)])
    match = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not match:
        raise ParseError("no Requests/sec line in wrk's output")
    result["rps"] = float(match.group(1))
    match = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+", text, re.M)
    if match:
        result.update(zip(("latency_avg_ms", "latency_stdev_ms", "latency_max_ms"), map(wrk_time_ms, match.groups())))
    result.update({f"p{pct}_ms": wrk_time_ms(value)
                   for pct, value in re.findall(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", text, re.M)})
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    for key, value in zip(("connect", "read", "write", "timeout"), match.groups() if match else (0, 0, 0, 0)):
        result[f"errors_{key}"] = int(value)
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non_2xx_3xx"] = int(match.group(1)) if match else 0
    result["ok_2xx"] = result["requests"] - result["non_2xx_3xx"]
    return result


def _last_error(text: str) -> str:
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return f" (last line: {lines[-1]!r})" if lines else " (no output)"
