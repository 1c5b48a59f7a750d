"""The PNG charts of a run, drawn from its summary.json with matplotlib.

Run by bench/run under bench/.venv's python (the system python has no matplotlib):
    python charts.py SUMMARY.json OUT_DIR NAME
Writes OUT_DIR/NAME-rps.png (requests/s per server: ab, ab -k, wrk; one panel each, values on the
bars) and, when the run had a scaling part, OUT_DIR/NAME-scaling.png (hitcore req/s per shard
count, with the linear ideal from one shard). Prints the file names it wrote, one a line.
With --repeat N (summary "repeat" > 1) the rows hold medians over the rounds, with each field's
"min" and "max": the bars and points are the medians, with min–max whiskers.
Standalone on purpose: it imports nothing from the kit.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

PANELS = [
    ("ab", "ab -c {c} -n {n}\nnew connection per request (the original test)"),
    ("ab_k", "ab -k -c {c} -n {n}\nkeep-alive, one client thread"),
    ("wrk", "wrk -t {t} -c {c} -d {d}s\nkeep-alive, multi-threaded"),
]


KINDS = [  # (row id prefix, colour, legend)
    ("gunicorn", "#1f77b4", "gunicorn + Flask (Python)"),
    ("tokio", "#ff7f0e", "tokio + hyper (Rust peer)"),
    ("hitcore", "#d62728", "hitcore"),
    ("nginx", "#7f7f7f", "nginx static (no Redis: the ceiling)"),
]


def colour(row_id: str) -> str:
    return next((c for prefix, c, _ in KINDS if row_id.startswith(prefix)), "#2ca02c")


def thousands(x, _pos=None) -> str:
    return f"{x / 1000:,.0f}k" if x >= 1000 else f"{x:,.0f}"


def spread(test: dict | None, field: str = "rps"):
    """(min, max) of a field over the rounds of a --repeat run, or None for a single run."""
    if not test or test.get("error") or "min" not in test:
        return None
    return test["min"].get(field), test["max"].get(field)


def rps_chart(summary: dict, path: Path) -> None:
    rows = [r for r in summary["rows"] if r["tests"]]
    st = summary["settings"]
    repeat = summary.get("repeat", 1)
    fig, axes = plt.subplots(1, 3, figsize=(16, 1.6 + 0.55 * max(len(rows), 1)), sharey=True)
    labels = [r["title"] for r in rows]
    for ax, (key, title) in zip(axes, PANELS):
        values = [r["tests"].get(key, {}).get("rps") or 0 for r in rows]
        y = range(len(rows))
        spreads = [spread(r["tests"].get(key)) for r in rows]
        highs = [s[1] if s and value else value for s, value in zip(spreads, values)]
        xerr = None
        if any(spreads):
            xerr = [[value - s[0] if s and value else 0 for s, value in zip(spreads, values)],
                    [s[1] - value if s and value else 0 for s, value in zip(spreads, values)]]
        bars = ax.barh(list(y), values, color=[colour(r["id"]) for r in rows], height=0.65,
                       xerr=xerr, error_kw={"ecolor": "#333333", "capsize": 3, "elinewidth": 1})
        top = max(highs) if any(highs) else 1
        for bar, value, high, row in zip(bars, values, highs, rows):
            test = row["tests"].get(key)
            text = f"{value:,.0f}" if value else ("error" if test and test.get("error") else "not run")
            failed = (test.get("max", {}).get("failed") if repeat > 1 else test.get("failed")) if test else None
            if test and not test.get("error") and failed:
                text += f"  ({failed:,} failed" + (" in a round)" if repeat > 1 else ")")
            ax.text(high + top * 0.015, bar.get_y() + bar.get_height() / 2, text,
                    va="center", ha="left", fontsize=8.5)
        ax.set_xlim(0, top * 1.45)
        ax.set_title(title.format(c=st["concurrency"], n=st["ab_requests"], t=st["wrk_threads"],
                                  d=st["wrk_duration"]), fontsize=10)
        ax.set_xlabel("requests per second (higher is better)")
        ax.xaxis.set_major_formatter(FuncFormatter(thousands))
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(labels, fontsize=9)
    axes[0].invert_yaxis()
    present = [Patch(color=c, label=label) for prefix, c, label in KINDS
               if any(r["id"].startswith(prefix) for r in rows)]
    fig.legend(handles=present, loc="lower center", ncol=len(present), fontsize=9, frameon=False)
    m = summary["machine"]
    fig.suptitle(f"GET / → Redis INCR: requests per second per server  ·  {m['hostname']}, "
                 f"{m['cpus_online']} CPUs ({m['cpu_model']}), {summary['started'][:10]}, {st['mode']} run"
                 + (f"\nmedian of {repeat} rounds; whiskers: min–max over the rounds" if repeat > 1 else ""),
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scaling_chart(summary: dict, path: Path) -> bool:
    points = []
    for row in summary["scaling"]:
        wrk = row["tests"].get("wrk")
        if wrk and not wrk.get("error"):
            points.append((int(row["id"].rsplit("-", 1)[1]), wrk["rps"], wrk.get("p99_ms"), spread(wrk)))
    if not points:
        return False
    st = summary["settings"]
    shards = [p[0] for p in points]
    rps = [p[1] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ideal = [rps[0] * s / shards[0] for s in shards]
    ax.plot(shards, ideal, "--", color="#999999", label="linear from one shard")
    repeat = summary.get("repeat", 1)
    label = f"hitcore -w N (median of {repeat} rounds, min–max)" if repeat > 1 else "hitcore -w N (measured)"
    if any(p[3] for p in points):
        yerr = [[r - sp[0] if sp else 0 for _, r, _, sp in points], [sp[1] - r if sp else 0 for _, r, _, sp in points]]
        ax.errorbar(shards, rps, yerr=yerr, fmt="o-", color="#d62728", linewidth=2, markersize=7, capsize=4,
                    label=label)
    else:
        ax.plot(shards, rps, "o-", color="#d62728", linewidth=2, markersize=7, label=label)
    highs = [sp[1] if sp else r for _, r, _, sp in points]
    for (s, r, p99, _), high in zip(points, highs):  # above the whisker's top, if any
        ax.annotate(f"{r:,.0f} req/s\np99 {p99:.1f} ms" if p99 is not None else f"{r:,.0f}",
                    (s, high), textcoords="offset points", xytext=(0, 10), ha="center", fontsize=9)
    ax.set_xticks(shards)
    ax.set_xlim(min(shards) - 0.5, max(shards) + 0.5)
    ax.set_ylim(0, max(ideal + rps + highs) * 1.3)
    ax.set_xlabel("shards (hitcore -w N, one process pinned per CPU)")
    ax.set_ylabel("requests per second")
    ax.yaxis.set_major_formatter(FuncFormatter(thousands))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    m = summary["machine"]
    ax.set_title(f"hitcore shard scaling, wrk -t {st['wrk_threads']} -c {st['concurrency']} "
                 f"-d {st['scaling_duration']}s\n{m['hostname']}, {m['cpus_online']} CPUs shared with wrk and "
                 f"Redis, {summary['started'][:10]}" if not st["cpus_load"] else
                 f"hitcore shard scaling, wrk -t {st['wrk_threads']} -c {st['concurrency']} "
                 f"-d {st['scaling_duration']}s\n{m['hostname']}, server CPUs {st['cpus_server']}, "
                 f"{summary['started'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv) -> int:
    summary_path, out_dir, name = Path(argv[1]), Path(argv[2]), argv[3]
    summary = json.loads(summary_path.read_text())
    if any(r["tests"] for r in summary["rows"]):
        rps_chart(summary, out_dir / f"{name}-rps.png")
        print(f"{name}-rps.png")
    if summary["scaling"] and scaling_chart(summary, out_dir / f"{name}-scaling.png"):
        print(f"{name}-scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
