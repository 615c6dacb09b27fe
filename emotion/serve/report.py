"""Drawing an analysis: the timeline plot of predict.py --plot."""

from __future__ import annotations

from pathlib import Path

from emotion.core.labels import EMOTIONS
from emotion.core.plots import figure, save_png


def plot_timeline(result: dict, path: str | Path) -> Path:
    """Emotion probabilities over time, anomalous windows shaded, gaps marked."""
    timeline = result["timeline"]
    fig = figure(10, 4.5, dpi=120)
    ax = fig.add_subplot()
    mids = [(w["start"] + w["end"]) / 2 for w in timeline]
    for name in EMOTIONS:
        ys = [w["emotion_probs"][name] if w["emotion_probs"] else float("nan")
              for w in timeline]
        ax.plot(mids, ys, marker="o", markersize=3, label=name)
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
    return save_png(fig, path)
