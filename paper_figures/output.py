"""Everything a command writes appears at once, or not at all.

Files are drawn into a hidden staging folder beside ``out_dir`` and moved into place only when
every figure and table succeeded; an error half-way leaves ``out_dir`` as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coupled.tables import atomic_write, staged_folder


@dataclass(frozen=True)
class Artifact:
    """One file produced, with the sentence a reader needs to understand it."""

    path: Path
    caption: str


@contextmanager
def staged_output(out_dir: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success move its files into ``out_dir``; on error delete it.

    ``replace=False``: same-named files are replaced, other files in ``out_dir`` stay.
    ``replace=True``: ``out_dir`` becomes exactly the staging folder (the old one is removed
    after the swap), so no stale file of an earlier run survives; refused when ``out_dir``
    holds files but no ``REPORT.md`` (it does not look like an earlier demo output).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if replace and out.is_dir() and any(out.iterdir()) and not (out / "REPORT.md").is_file():
        raise ValueError(f"--out {out}: holds files but no REPORT.md; the demo replaces its "
                         "output folder whole, so choose an empty or new folder")
    with staged_folder(out, replace=replace) as staging:
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
