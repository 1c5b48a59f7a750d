"""The Markdown every report writes: numbers, tables and a run's machine section; and the
terminal's lines: a load's result, and the digest of a report every tool prints at the end of a run.

Pure: text from plain dicts, so every report is tested on recorded summaries. It must not read
files, start processes or compute a figure (the tools and their fold functions do that).
"""
from __future__ import annotations

DASH = "–"


def fmt(value, spec: str = ",.0f") -> str:
    """`value` in the format spec `spec` (thousands separators, no decimals by default), DASH for None."""
    return DASH if value is None else format(value, spec)


def ms(value) -> str:
    if value is None:
        return DASH
    return f"{value:.2f} ms" if value < 100 else f"{value:,.0f} ms"


def esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def each(values: list, fmt=str) -> str:
    """One value per round, joined by " · " (DASH where a round gave none)."""
    return " · ".join(DASH if v is None else fmt(v) for v in values)


def table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
           ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def brief(result: dict) -> str:
    """One console line for a load's result: ab's or wrk's, with the steady window's figures."""
    if result.get("error"):
        return result["error"]
    if "p99_ms" not in result:
        return f"{result['rps']:,.0f} req/s, {result['complete']} complete, {result['failed']} failed"
    text = (f"{result['rps']:,.0f} req/s, p50 {fmt(result.get('p50_ms'), '.2f')} ms, "
            f"p99 {fmt(result['p99_ms'], '.2f')} ms, non-2xx {result.get('non_2xx_3xx', 0)}")
    if result.get("redis_cpu_pct") is not None:
        text += (f"; Redis {result['redis_cpu_pct']} % of a CPU, "
                 f"{fmt(result.get('requests_per_command'), '.1f')} requests per command")
    if result.get("other_cpu_pct") is not None:
        text += f"; other work {result['other_cpu_pct']} % of a CPU"
    return text


def machine(s: dict, rows: list | tuple = ()) -> list[str]:
    """`## Machine`: the CPUs, kernel, memory, the versions in s["versions"], `rows` ([name, value]
    pairs the tool adds), the load averages and how busy the CPUs were before the run."""
    m, load0, load1 = s["machine"], s.get("load_at_start"), s.get("load_at_end")
    load = lambda v: ", ".join(map(str, v)) if isinstance(v, list) else str(v or DASH)  # noqa: E731
    out = [["CPU", f"{m.get('cpu_model')}, {m.get('cpus_online')} CPUs online, allowed {m.get('cpus_allowed')}"],
           ["Kernel, OS", f"Linux {m.get('kernel')} {m.get('arch')}, {m.get('os')}"],
           ["Memory", f"{m.get('memory_gib')} GiB"]]
    out += [[name, version] for name, version in (s.get("versions") or {}).items()] + list(rows)
    out.append(["Load average at start / end", f"{load(load0)} / {load(load1)}"])
    busy, threshold = s.get("busy_at_start"), s.get("busy_threshold", 20)
    out.append(["CPU busy before the run (1 s)", DASH if busy is None else f"{busy} %"])
    lines = ["## Machine", ""] + table(["", ""], [[a, esc(b)] for a, b in out])
    if busy is not None and busy > threshold:
        lines += ["", f"**Busy machine**: the CPUs were {busy} % busy before the run started (other work); "
                      "every number below is worse and noisier than on a quiet machine."]
    return lines


def digest(report: str) -> str:
    """What a tool prints when its run ends: the report's headings and tables, without the machine
    section, the prose and the separator rows (the whole report is in the file)."""
    out, in_machine = [], False
    for line in report.splitlines():
        if line.startswith("#"):
            in_machine = line == "## Machine"
        if not in_machine and line.startswith(("#", "|")) and not line.startswith("|-"):
            out.append(line)
    return "\n".join(out)
