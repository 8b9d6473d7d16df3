"""PNG plots for the report (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from latency import LevelResult
    from matplotlib.axes import Axes

COLOURS = {"direct": "#1f77b4", "gateway": "#d62728"}
LABELS = {"direct": "sim direct", "gateway": "through llmgw"}


def cdf(axes: Axes, values: Sequence[float], name: str) -> None:
    ordered = sorted(value * 1000 for value in values)
    if not ordered:
        return
    shares = [(index + 1) / len(ordered) for index in range(len(ordered))]
    axes.step(ordered, shares, where="post", color=COLOURS[name], label=LABELS[name])


def latency_cdfs(result: LevelResult, path: Path) -> None:
    """First-byte and inter-event-gap CDFs, both paths, at one concurrency."""
    figure, (first, gaps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, samples in result.paths.items():
        cdf(first, samples.first_byte, name)
        cdf(gaps, samples.gaps, name)
    for axes, title in ((first, "time to first SSE byte"), (gaps, "gap between text deltas")):
        axes.set_xscale("log")
        axes.set_xlabel("ms (log scale)")
        axes.set_ylabel("share of samples")
        axes.set_title(f"{title}, {result.streams} concurrent stream(s)")
        axes.grid(visible=True, which="both", alpha=0.3)
        axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def soak_memory(series: dict[str, list[float]], path: Path) -> None:
    """The gateway's RSS and open TCP sockets over the soak."""
    figure, memory = plt.subplots(figsize=(9, 4))
    mib = [kib / 1024 for kib in series["rss_kib"]]
    memory.plot(series["seconds"], mib, color="#d62728")
    memory.set_xlabel("seconds into the soak (after a 5 s warm-up)")
    memory.set_ylabel("gateway RSS (MiB)", color="#d62728")
    memory.set_ylim(min(mib) - 5, max(mib) + 5)  # detail, without making noise look like a trend
    sockets = memory.twinx()
    sockets.plot(series["seconds"], series["connections"], color="#1f77b4", alpha=0.6)
    sockets.set_ylabel("open TCP sockets", color="#1f77b4")
    sockets.set_ylim(bottom=0)
    memory.set_title("llmgw during the soak: resident memory and sockets")
    memory.grid(visible=True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
