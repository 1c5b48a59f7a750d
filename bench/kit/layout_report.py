"""bench/layout's report: summary.json (kit/layout.py) as Markdown, machine first. Pure: text in, text out."""
from __future__ import annotations

from .layout import VARIANTS


def _f(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def render(summary: dict) -> str:
    m = summary["machine"]
    load = summary["load"]
    args = summary["args"]
    medians = summary["medians"]
    lines = [
        "# Where shards run, under the seed test: bench/layout",
        "",
        f"Machine: {m.get('cpu_model')}, {m.get('cpus_online')} CPUs (allowed {m.get('cpus_allowed')}), "
        f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}, {m.get('os')}. Load average at the start "
        f"{load['start'][0]:.2f}, at the end {load['end'][0]:.2f}.",
        "",
        f"`ab -c {args['concurrency']} -n {args['requests']} -r -l` (a connection per request), "
        f"{args['rounds']} interleaved round(s), medians. From /proc over each ab run: each CPU's busy "
        "share, and the time ab and the server's threads spent on a CPU and waiting in a run queue for one "
        "(schedstat), per request; migrations are the server threads' moves between CPUs.",
        "",
        "| Layout | req/s (each round) | × nginx | failed | CPUs busy | ab on CPU / waiting, µs per request "
        "| server on CPU / waiting, µs per request | server migrations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nginx = (medians.get("nginx") or {}).get("rps")
    for variant, med in medians.items():
        if not med.get("rps"):
            status = next((r.get("status") for r in summary["rows"].get(variant, []) if r.get("status")), "no result")
            lines.append(f"| {VARIANTS[variant][0]} | {status} | | | | | | |")
            continue
        ratio = f"{med['rps'] / nginx:.2f}" if nginx else "–"
        each = ", ".join(_f(r) for r in med["rps_all"])
        cpus = " / ".join(f"{v:.0f} %" for v in med["cpu_busy_pct"].values())
        lines.append(
            f"| {VARIANTS[variant][0]} | **{_f(med['rps'])}** ({each}) | {ratio} | {_f(med['failed'])} | {cpus} "
            f"| {_f(med['ab_cpu_us_per_request'], 1)} / {_f(med['ab_wait_us_per_request'], 1)} "
            f"| {_f(med['server_cpu_us_per_request'], 1)} / {_f(med['server_wait_us_per_request'], 1)} "
            f"| {_f(med['server_migrations'])} |")
    lines += ["", "Per process, each round (pid: on CPU / waiting ms, migrations):", ""]
    for variant, rows in summary["rows"].items():
        for i, row in enumerate(rows, 1):
            parts = [f"{p['pid']}: {p['run_ms']:.0f} / {p['wait_ms']:.0f} ms, {p['migrations']}"
                     for p in row.get("processes", [])]
            ab = row.get("ab", {})
            lines.append(f"- {variant}, round {i}: ab {ab.get('run_ms', 0):.0f} / {ab.get('wait_ms', 0):.0f} ms; "
                         + "; ".join(parts))
    return "\n".join(lines) + "\n"
