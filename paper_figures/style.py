"""One look for every figure, and atomic saving to PNG and PDF.

Matplotlib runs on the Agg backend with ``text.usetex`` off, so no display and no LaTeX
installation are needed. Coupled generation is always blue, independent always orange.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: figures are files, never windows

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from coupled.tables import atomic_write  # noqa: E402

MODE_COLORS = {"coupled": "#1f77b4", "independent": "#ff7f0e"}
MODE_LABELS = {"coupled": "Coupled", "independent": "Independent"}
FORMATS = ("png", "pdf")
DPI = 120


def use_paper_style() -> None:
    """Seaborn's paper context on a white grid; mathtext instead of a LaTeX installation."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update({
        "text.usetex": False,
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "savefig.bbox": "standard",  # a fixed pixel size: tests check it, layouts stay stable
        "pdf.fonttype": 42,  # embed TrueType so the PDF text stays selectable
        "axes.titlesize": "medium",
    })


def figure_size_px(fig: matplotlib.figure.Figure) -> tuple[int, int]:
    """(width, height) in pixels the PNG of ``fig`` will have."""
    width, height = fig.get_size_inches()
    return round(width * DPI), round(height * DPI)


def save_figure(fig: matplotlib.figure.Figure, out_dir: str | os.PathLike, stem: str,
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``out_dir/stem.<format>`` for each format, each atomically, and close ``fig``.

    A figure interrupted half-way never leaves a truncated file behind: it is drawn into a
    temporary file in the same folder and renamed over the target.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt in formats:
            target = out / f"{stem}.{fmt}"
            atomic_write(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI))
            written.append(target)
    finally:
        plt.close(fig)
    return written
