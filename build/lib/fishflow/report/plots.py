"""The report's plots, as PNG data URIs (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402 - the backend must be chosen first
from matplotlib.figure import Figure  # noqa: E402


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def latency_distribution(items: list[dict]) -> str:
    figure, axes = pyplot.subplots(figsize=(7, 3.5))
    for lang in sorted({item["lang"] for item in items}):
        latencies = [i["generation_s"] for i in items if i["lang"] == lang and i["status"] == "ok"]
        axes.hist(latencies, bins=30, histtype="step", linewidth=1.5, label=lang)
    axes.set(xlabel="generation time per item (s)", ylabel="items", title="Latency distribution")
    axes.legend()
    return _data_uri(figure)


def duration_vs_text_length(items: list[dict]) -> str:
    languages = sorted({item["lang"] for item in items})
    figure, axes = pyplot.subplots(
        1, len(languages), figsize=(3.5 * len(languages) + 1, 3.5), squeeze=False
    )
    for ax, lang in zip(axes[0], languages, strict=True):
        ok = [item for item in items if item["lang"] == lang and item["status"] == "ok"]
        ax.scatter([i["text_chars"] for i in ok], [i["duration_s"] for i in ok], s=8)
        ax.set(xlabel="text length (characters)", ylabel="audio (s)", title=lang)
    figure.suptitle("Audio duration vs text length")
    return _data_uri(figure)


def throughput_per_voice(rows: list[dict]) -> str:
    figure, axes = pyplot.subplots(figsize=(7, 3.5))
    labels = [f"{row['lang']}/{row['voice']}" for row in rows]
    axes.bar(labels, [row["timing"]["items_per_min"] or 0 for row in rows])
    axes.set(ylabel="items per minute of generation", title="Throughput per voice")
    axes.tick_params(axis="x", labelrotation=45)
    return _data_uri(figure)
