"""Draws bench/throughput.png from bench/results.json (written by cas-bench).

Each operation with a `fraction` in the JSON is one bar: its median
throughput as a share of what bounds it (local rows: the combined ceiling
measured beside them, or with fsync on min(combined ceiling, fsynced write
rate); network put and get: local; open(): network get_file), with its
target, when it has one, as a red mark.

Usage: python bench/plot.py [results.json] [throughput.png]
"""

import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

COLORS = {"local": "#3b6ea8", "http": "#4a9a8a", "network": "#d08030"}


def group(operation):
    if operation.startswith("local"):
        return "local"
    if operation.startswith("HTTP"):
        return "http"
    return "network"


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "bench/results.json"
    dest = sys.argv[2] if len(sys.argv) > 2 else "bench/throughput.png"
    with open(source) as f:
        results = json.load(f)
    bars = [r for r in results["rows"] if r["fraction"] is not None]
    if not bars:
        sys.exit(f"{source}: no row with a fraction to plot")
    bars.reverse()  # the first row at the top

    labels = [
        "\n".join(textwrap.wrap(f"{r['operation']}  (of {r['fraction']['of']})", 58))
        for r in bars
    ]
    values = [r["fraction"]["value"] for r in bars]
    fig, ax = plt.subplots(figsize=(12, 0.75 * len(bars) + 2.2))
    y = range(len(bars))
    ax.barh(y, values, color=[COLORS[group(r["operation"])] for r in bars], height=0.6)
    for i, (r, v) in enumerate(zip(bars, values)):
        target = r["fraction"]["target"]
        # The figure right of the bar and of its target mark.
        x = max(v, target if target is not None else 0) + 0.015
        ax.text(x, i, f"{v:.2f}  ({r['mb_per_s']:.0f} MB/s)", va="center", fontsize=9)
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], color="red", linewidth=2.5)
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8.5)
    ax.set_xlim(0, max(1.25, max(values) + 0.45))
    ax.set_xlabel("throughput / its ceiling (median of each run's ratio; red mark: target of issue 10)")
    size = results["file_bytes"] / 2**20
    size = f"{size / 1024:g} GiB" if size >= 1024 else f"{size:g} MiB"
    ax.set_title(
        f"CAS throughput as a fraction of its ceiling: {size} file, median of {results['runs']} runs, "
        f"{results['cores']} cores\n"
        "local rows and HTTP: of the combined ceiling 1/(1/crypto + 1/I/O baseline) measured beside each run\n"
        "(fsync on: of min(that, the fsynced write rate)); network put and get: of local (fsync off); "
        "open(): of network get_file",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
