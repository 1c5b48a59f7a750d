"""Running the load generators, each bounded in time, with their raw output kept on disk: `ab()`
(`ab [-k] -c C -t LIMIT -n N -r -l URL`: -t before -n bounds the time and keeps N the request count;
-l and -r: bench/README.md) and `wrk()` (`wrk -t T -c C -d Ds --latency URL`). Each returns {"argv",
"raw", "seconds", "error", ...parsed}; the raw file is the command line (`$ taskset -c 1 wrk ...`),
then what the tool printed. `binary` and `env` run another copy than PATH's (run16's bundle);
`while_running` is procs.run's.
"""
from __future__ import annotations

from pathlib import Path

from . import parse, procs


def _pin(cpus: str | None, argv: list[str]) -> list[str]:
    return (["taskset", "-c", cpus] + argv) if cpus else argv


def _run(name: str, argv: list[str], timeout: float, raw_path: Path | None, label: str | None, env: dict | None,
         read, while_running=None) -> dict:
    """Runs a load generator, keeps its raw output (unless a warm-up's, without `raw_path`) and reads
    its result with `read` (a kit/parse.py parser)."""
    result = procs.run(argv, timeout=timeout, label=label, env=env, while_running=while_running)
    if raw_path:
        text = f"$ {' '.join(result.argv)}\n" + result.stdout
        if result.stderr.strip():
            text += "\n---- stderr ----\n" + result.stderr
        if result.timed_out:
            text += f"\n---- bench/run: stopped after {result.seconds:.0f}s (outer timeout) ----\n"
        raw_path.write_text(text)
    outcome = {"argv": " ".join(argv), "raw": raw_path and raw_path.name, "seconds": round(result.seconds, 2),
               "error": None}
    try:
        outcome.update(read(result.stdout))
    except parse.ParseError as error:
        outcome["error"] = f"{name} gave no result ({'timed out' if result.timed_out else error}): {result.tail(1)}"
    if result.returncode != 0 and not outcome["error"]:
        outcome["warning"] = f"{name} exited with {result.returncode}: {result.tail(1)}"
    return outcome


def ab(url: str, requests: int, concurrency: int, time_limit: int, keepalive: bool,
       raw_path: Path | None, label: str | None, cpus: str | None = None, *, binary: str = "ab",
       env: dict | None = None) -> dict:
    argv = [binary] + (["-k"] if keepalive else []) + [
        "-c", str(concurrency), "-t", str(time_limit), "-n", str(requests), "-r", "-l", url]
    return _run("ab", _pin(cpus, argv), time_limit + 45, raw_path, label, env, parse.parse_ab)


def wrk(url: str, threads: int, connections: int, duration: int, raw_path: Path, label: str | None,
        cpus: str | None = None, *, binary: str = "wrk", env: dict | None = None,
        while_running=None, headers: tuple[str, ...] = (), script: tuple[str, ...] = ()) -> dict:
    """wrk's run and its parsed result; `script`: a Lua script and its arguments (`-s S URL -- ARGS`)."""
    argv = [binary, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    argv += [w for h in headers for w in ("-H", h)] + (["-s", script[0]] if script else []) + [url]
    argv += ["--", *script[1:]] if script[1:] else []
    return _run("wrk", _pin(cpus, argv), duration + 30, raw_path, label, env, parse.parse_wrk, while_running)
