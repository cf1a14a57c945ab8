"""Everything a command writes appears at once, or not at all.

Files are drawn into a hidden staging folder beside ``out_dir`` and moved into place only when
every figure and table succeeded; an error half-way leaves ``out_dir`` as it was. Which
folders a command may write is decided in one place, ``coupled.cli.output_paths``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from coupled.tables import atomic_write, staged_folder


@dataclass(frozen=True)
class Artifact:
    """One file produced, with the sentence a reader needs to understand it."""

    path: Path
    caption: str


OutputStage = Callable[[str | os.PathLike], AbstractContextManager[Path]]
"""Stages an output folder: ``with output(out_dir) as staging: ...`` fills ``staging``; on
success it becomes ``out_dir``, on error nothing changes."""


@contextmanager
def staged_output(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder that becomes ``out_dir`` when the body succeeds (deleted on
    error). The library writes only into a new or empty folder; the ``coupled`` commands pass
    their own stage (``coupled.cli.output_paths``), which also replaces their earlier output.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: folder is not empty; write into a new or empty folder")
    with staged_folder(out, replace=True) as staging:
        yield staging


def relocate(artifacts: list[Artifact], staging: Path, out_dir: str | os.PathLike
             ) -> list[Artifact]:
    """The same artifacts with paths under ``out_dir`` instead of the staging folder."""
    out = Path(out_dir)
    return [Artifact(out / a.path.relative_to(staging), a.caption) for a in artifacts]


def write_texts(out_dir: str | os.PathLike, stem: str, texts: dict[str, str]) -> list[Path]:
    """``out_dir/stem.<suffix>`` for each ``suffix: text`` of ``texts``, each atomically."""
    written = []
    for suffix, text in texts.items():
        target = Path(out_dir) / f"{stem}.{suffix}"
        atomic_write(target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        written.append(target)
    return written
