"""Figures for the stages' reports: matplotlib's object API on an Agg canvas.

No pyplot state and no GUI backend, so plotting is safe in worker threads and
on servers without a display; every PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from emotion.core.atomic import write_atomic


def figure(width: float, height: float, *, dpi: int = 120):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | Path) -> Path:
    fig.tight_layout()
    return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi))
