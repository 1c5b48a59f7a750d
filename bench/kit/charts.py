"""Every PNG chart of the kit, drawn from a run's JSON with matplotlib, under bench/.venv's python
(the system python has no matplotlib; kit/session.py's chart() starts it):

    python charts.py run SUMMARY.json OUT_DIR NAME   # bench/run
    python charts.py redis-restart SUMMARY.json OUT.png   # bench/compare's plans/redis-restart.plan
    python charts.py tail SUMMARY.json OUT.png       # bench/tail

run: OUT_DIR/NAME-rps.png (requests/s per server: ab, ab -k, wrk; one panel each, values on the
bars) and, when the run had a scaling part, OUT_DIR/NAME-scaling.png (hitcore req/s per shard
count, with the linear ideal from one shard); prints the file names it wrote, one a line. With
--repeat N the rows hold medians over the rounds, with each field's "min" and "max": the bars and
points are the medians, with min–max whiskers.
redis-restart: the first variant and round with /metrics series (@scrape with @redis-restart), in
three panels over the run's seconds, the time Redis was stopped shaded: requests/s by status
(stacked), the coalescing factor (increments per Redis round trip), and the share of shards whose
Redis connection is up, all from hitcore's /metrics scraped once a second.
tail: p99 (solid, min–max whiskers over the rounds) and p99.9 (dashed) against the offered rate,
one colour per server, log y axis; the goal's rates (25 % and 50 % of the maximum) marked.
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
    ax.set_xlabel("shards (hitcore -w N)")
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


def run_charts(summary_path: str, out_dir: str, name: str) -> None:
    summary, out_dir = json.loads(Path(summary_path).read_text()), Path(out_dir)
    if any(r["tests"] for r in summary["rows"]):
        rps_chart(summary, out_dir / f"{name}-rps.png")
        print(f"{name}-rps.png")
    if summary["scaling"] and scaling_chart(summary, out_dir / f"{name}-scaling.png"):
        print(f"{name}-scaling.png")


STATUS_COLOURS = {"200": "#2ca02c", "503": "#d62728", "500": "#9467bd", "other": "#7f7f7f"}


def redis_restart_chart(json_path: str, png_path: str) -> None:
    summary = json.loads(Path(json_path).read_text())
    wrk = next(x["tests"]["wrk"] for row in summary["rows"] for x in row["rounds"]
               if "metrics_series" in x["tests"].get("wrk", {}))
    s, restart = wrk["metrics_series"], wrk["redis_restart"]
    t = s["t"]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 1]})
    stopped, restarted = restart.get("stopped_s"), restart.get("started_s")
    for ax in (ax1, ax2, ax3):
        if stopped is not None and restarted is not None:
            ax.axvspan(stopped, restarted, color="#d62728", alpha=0.08, lw=0)
        ax.grid(axis="y", alpha=0.3)
    codes = sorted(s["rps"], key=lambda c: (c != "200", c))
    ax1.stackplot(t, [s["rps"][c] for c in codes], labels=[f"{c}" for c in codes],
                  colors=[STATUS_COLOURS.get(c, "#1f77b4") for c in codes], step="pre", alpha=0.85)
    ax1.set_ylabel("requests/s")
    ax1.legend(title="status", loc="upper right", fontsize=8)
    ax1.set_title(f"hitcore under {wrk['argv'].split(' http')[0]}: Redis stopped (shaded), "
                  "from /metrics scraped every second", fontsize=10)
    ax2.plot(t, [v if v is not None else float("nan") for v in s["coalescing"]], color="#1f77b4",
             drawstyle="steps-pre")
    ax2.set_ylabel("increments per\nRedis round trip")
    ax2.set_ylim(bottom=0)
    ax3.plot(t, [v if v is not None else float("nan") for v in s["redis_up"]], color="#ff7f0e",
             drawstyle="steps-pre")
    ax3.set_ylim(-0.1, 1.1)
    ax3.set_yticks([0, 1], ["down", "up"])
    ax3.set_ylabel("Redis\n(share of shards)")
    ax3.set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)



TAIL_COLOURS = {"hitcore": "#d62728", "hitcore-1": "#9467bd", "hitcore-pin": "#2ca02c", "nginx": "#7f7f7f", "tokio": "#ff7f0e"}


def tail_chart(summary_path: str, png_path: str) -> None:
    summary = json.loads(Path(summary_path).read_text())
    out = Path(png_path)
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
        colour = TAIL_COLOURS.get(server, "#2ca02c")
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



if __name__ == "__main__":
    {"run": run_charts, "redis-restart": redis_restart_chart, "tail": tail_chart}[sys.argv[1]](*sys.argv[2:])
