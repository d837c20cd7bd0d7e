"""Figures rendered straight to PNG bytes with matplotlib's Agg canvas (no pyplot state: safe in threads)."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure(size: tuple[float, float]) -> Figure:
    """A new figure of `size` inches on its own Agg canvas."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()
