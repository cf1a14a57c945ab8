"""Helpers shared by the CLI tests (imported as a plain module: tests/ is on sys.path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (links as their target's text) and its content hash, so a
    test can assert that a refused command created or changed nothing."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "<dir>"
    return out
