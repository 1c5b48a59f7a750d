"""bench/tail's chart, drawn from its summary.json with matplotlib (run under bench/.venv's python):
    python tail_chart.py SUMMARY.json OUT.png
p99 (solid, with min–max whiskers over the rounds) and p99.9 (dashed) against the offered rate,
one colour per server, log y axis; the goal's rates (25 % and 50 % of the generator's maximum)
marked. Standalone on purpose: it imports nothing from the kit.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

COLOURS = {"hitcore": "#d62728", "hitcore-1": "#9467bd", "hitcore-pin": "#2ca02c", "nginx": "#7f7f7f", "tokio": "#ff7f0e"}


def thousands(x, _pos=None) -> str:
    return f"{x / 1000:,.0f}k" if x >= 1000 else f"{x:,.0f}"


def main(argv) -> int:
    summary = json.loads(Path(argv[1]).read_text())
    out = Path(argv[2])
    folded, rates = summary["folded"], summary["rates"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for server in summary["servers"]:
        points = [(rates[f], cell) for f, cell in sorted(folded.get(server, {}).items(), key=lambda kv: float(kv[0]))
                  if cell["rounds"] and cell["p99_ms"]]
        if not points:
            continue
        x = [r for r, _ in points]
        p99 = [c["p99_ms"]["median"] for _, c in points]
        err = [[v - c["p99_ms"]["min"] for v, (_, c) in zip(p99, points)],
               [c["p99_ms"]["max"] - v for v, (_, c) in zip(p99, points)]]
        colour = COLOURS.get(server, "#2ca02c")
        title = summary.get("titles", {}).get(server, server)
        ax.errorbar(x, p99, yerr=err, fmt="o-", color=colour, linewidth=2, markersize=6, capsize=4,
                    label=f"{title}: p99")
        p999 = [c["p999_ms"]["median"] if c["p999_ms"] else None for _, c in points]
        ax.plot(x, p999, "s--", color=colour, linewidth=1, markersize=4, alpha=0.7, label=f"{title}: p99.9")
    for fraction in ("0.25", "0.5"):
        if fraction in rates:
            ax.axvline(rates[fraction], color="#2ca02c", alpha=0.25, linewidth=6)
            ax.annotate(f"{float(fraction) * 100:.0f} % (goal)", (rates[fraction], 0), xycoords=("data", "axes fraction"),
                        xytext=(6, 4), textcoords="offset points", fontsize=8, color="#2ca02c")
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low / 1.5, high * 2.0)
    plain = FuncFormatter(lambda y, _pos=None: f"{y:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _pos=None: f"{y:g}" if str(f"{y:g}")[0] in "25" else ""))
    ax.set_xlabel("offered rate, requests per second (oha -q, latency-corrected)")
    ax.set_ylabel("latency, ms (log scale)")
    ax.xaxis.set_major_formatter(FuncFormatter(thousands))
    ax.set_xlim(0, max(rates.values()) * 1.08)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    m, s = summary["machine"], summary["settings"]
    ax.set_title(f"Open-loop latency against offered rate: oha -c {s['connections']} -z {s['duration']}s, "
                 f"median of {s['rounds']} round(s)\n{m['hostname']}, {m['cpus_online']} CPUs shared by oha, the "
                 f"server and Redis; rates as fractions of oha's {summary['max_rps']:,.0f}/s against nginx; "
                 f"{summary['started'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(out.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
