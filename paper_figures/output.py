"""Everything a command writes appears at once, or not at all.

Files are drawn into a hidden staging folder beside ``out_dir`` and moved into place only when
every figure and table succeeded; an error half-way leaves ``out_dir`` as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    """One file produced, with the sentence a reader needs to understand it."""

    path: Path
    caption: str


@contextmanager
def staged_output(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a staging folder; on success move its files into ``out_dir`` (replacing
    same-named files, leaving others alone); on error delete it."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def relocate(artifacts: list[Artifact], staging: Path, out_dir: str | os.PathLike
             ) -> list[Artifact]:
    """The same artifacts with paths under ``out_dir`` instead of the staging folder."""
    out = Path(out_dir)
    return [Artifact(out / a.path.relative_to(staging), a.caption) for a in artifacts]
