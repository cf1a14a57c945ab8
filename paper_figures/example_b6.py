"""Appendix B.6's three-model example (placeholder until coupled.theory lands)."""

from __future__ import annotations

from pathlib import Path

CAPTION = "Appendix B.6 example."


def write_example(out_dir) -> list[Path]:
    return []
