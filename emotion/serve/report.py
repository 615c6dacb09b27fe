"""Drawing an analysis: the timeline plot of predict.py --plot.

The top panel is the media's timeline (emotion probabilities over time); a video
with participants gets one row per participant below it (their emotion per
window, speaking stretches underlined, absence left blank) and a row for speech
that no face on screen was credited with.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from emotion.core.labels import EMOTIONS
from emotion.core.plots import figure, save_png

COLOURS = dict(zip(EMOTIONS, ("#d62728", "#8c564b", "#9467bd", "#ff7f0e", "#7f7f7f",
                              "#1f77b4"), strict=True))


def plot_timeline(result: dict, path: str | Path) -> Path:
    """Emotion probabilities over time, anomalous windows shaded, gaps marked; one row
    per participant when the result has them."""
    lanes = _lanes(result)
    fig = figure(10, 4.5 + 0.55 * len(lanes), dpi=120)
    grid = fig.add_gridspec(1 + len(lanes), 1, height_ratios=[4.5] + [0.55] * len(lanes))
    ax = fig.add_subplot(grid[0])
    _probabilities(ax, result)
    for k, (name, windows, thumb) in enumerate(lanes):
        _lane(fig.add_subplot(grid[k + 1], sharex=ax), name, windows, thumb)
    return save_png(fig, path)


def _probabilities(ax, result: dict) -> None:
    timeline = result["timeline"]
    mids = [(w["start"] + w["end"]) / 2 for w in timeline]
    for name in EMOTIONS:
        ys = [w["emotion_probs"][name] if w["emotion_probs"] else float("nan")
              for w in timeline]
        ax.plot(mids, ys, marker="o", markersize=3, label=name, color=COLOURS[name])
    first = True
    for w in timeline:
        if w["anomaly_flag"] == "anomaly":
            ax.axvspan(w["start"], w["end"], color="red", alpha=0.15,
                       label="anomaly" if first else None)
            first = False
        if w["emotion_probs"] is None:
            ax.axvspan(w["start"], w["end"], color="grey", alpha=0.2, hatch="//")
    ax.set_xlim(0, max(result.get("duration", 0.0), timeline[-1]["end"]))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(f"Emotion over time: overall {result['emotion']}, anomaly "
                 f"{result['anomaly_flag']} (grey: no face and no speech)")
    ax.legend(loc="upper right", ncol=4, fontsize=8)


def _lanes(result: dict) -> list[tuple[str, list[dict], str | None]]:
    lanes = [(f"{p['id']} ({p['talk_seconds']:.0f} s talk)", p["timeline"], p.get("thumbnail"))
             for p in result.get("participants", [])]
    unseen = result.get("unseen_speaker", {}).get("timeline", [])
    if lanes and unseen:
        lanes.append(("unseen speaker", unseen, None))
    return lanes


def _lane(ax, name: str, windows: list[dict], thumb: str | None) -> None:
    """A participant's windows as bars coloured by emotion (darker: surer), speaking
    stretches underlined in black."""
    for w in windows:
        if w.get("emotion"):
            p = w["emotion_probs"][w["emotion"]]
            ax.axvspan(w["start"], w["end"], ymin=0.25, ymax=1.0, color=COLOURS[w["emotion"]],
                       alpha=0.35 + 0.65 * float(p), lw=0)
        if w.get("speech_found") and w.get("present", True):
            ax.axvspan(w["start"], w["end"], ymin=0.0, ymax=0.18, color="black", lw=0)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8,
                  labelpad=40 if thumb else 4)
    ax.tick_params(axis="x", labelbottom=False)
    if thumb:
        _thumbnail(ax, thumb)


def _thumbnail(ax, uri: str) -> None:
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from PIL import Image

    try:
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    except (ValueError, OSError):
        return
    box = AnnotationBbox(OffsetImage(img, zoom=0.35), (0, 0.5), xycoords="axes fraction",
                         box_alignment=(1.05, 0.5), frameon=False)
    ax.add_artist(box)
