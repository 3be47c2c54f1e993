"""Matplotlib for the experiment scripts: the headless backend and one way to save a figure."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str, *, dpi: int = 110, rect=None) -> None:
    """Lays ``fig`` out tightly (within ``rect``, if given), writes it to ``path`` (PNG) and closes it."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
