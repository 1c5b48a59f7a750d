"""The chart of a bench/observe run, drawn from its JSON with matplotlib.

Run by bench/observe under bench/.venv's python (the system python has no matplotlib):
    python observe_chart.py RUN.json OUT.png
Three panels over the run's seconds, with the time Redis was stopped shaded: requests/s by status
(stacked), the coalescing factor (increments per Redis round trip), and the share of shards whose
Redis connection is up. Every value comes from hitcore's /metrics, scraped once a second.
Standalone on purpose: it imports nothing from the kit.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"200": "#2ca02c", "503": "#d62728", "500": "#9467bd", "other": "#7f7f7f"}


def main(json_path: str, png_path: str) -> None:
    run = json.loads(Path(json_path).read_text())
    s, st = run["series"], run["settings"]
    t = s["t"]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 8), sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 1]})
    stopped = next((e["t"] for e in run["events"] if e["event"] == "redis stopped"), None)
    restarted = next((e["t"] for e in run["events"] if e["event"] == "redis started"), None)
    for ax in (ax1, ax2, ax3):
        if stopped is not None and restarted is not None:
            ax.axvspan(stopped, restarted, color="#d62728", alpha=0.08, lw=0)
        ax.grid(axis="y", alpha=0.3)
    codes = sorted(s["rps"], key=lambda c: (c != "200", c))
    ax1.stackplot(t, [s["rps"][c] for c in codes], labels=[f"{c}" for c in codes],
                  colors=[COLOURS.get(c, "#1f77b4") for c in codes], step="pre", alpha=0.85)
    ax1.set_ylabel("requests/s")
    ax1.legend(title="status", loc="upper right", fontsize=8)
    ax1.set_title(f"hitcore -w {st['workers']} under wrk -c {st['concurrency']}: Redis stopped for "
                  f"{st['down']:g} s (shaded), from /metrics scraped every second", fontsize=10)
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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
