"""Where a `coupled` command may write: the one rule every command's ``--out`` follows.

The rule (README, "Guarantees"):

- **No command writes over one of its inputs.** ``--out`` may not be an input file (compared by
  resolved path and ``os.path.samefile``, so symlinks, hard links, ``..`` and other spellings
  of the same file count), may not lie inside a table an input folder is read from
  (``scores/``, ``comparisons/``, ``generations/``, ``<kind>.parquet``/``.csv``,
  ``manifest.json``, or the input folder itself when it is a folder of shards), and a folder
  ``--out`` may not contain an input (replacing the folder would delete it).
- **One file** (``analyze``, ``rank``, ``plan``): ``--out FILE`` must not be an existing
  folder; an existing file is replaced only with ``--overwrite``.
- **One folder** (``simulate``, ``figures``, ``demo``): ``--out DIR`` is new, empty, or a
  folder the *same* command wrote before, recognised by the marker file :data:`MARKER` it
  leaves there (the list of files it wrote, with their SHA-256). Such a folder is replaced
  whole — ``figures`` and ``demo`` re-use theirs; ``simulate`` only with ``--force``. A folder
  holding any file the command did not write, or one changed since, is never touched.
- **The parent folder of --out must exist** and be a writable folder; nothing is created
  above ``--out``.

Checks run before any work, so a bad ``--out`` costs nothing; the writing itself is atomic
(a temporary file or a staging folder, renamed into place), so a failure leaves nothing
half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coupled.tables import KINDS as _TABLE_KINDS
from coupled.tables.io import _SUFFIXES as _TABLE_SUFFIXES  # every table file tables reads

MARKER = ".coupled-output.json"


class OutputPathError(ValueError):
    """A ``--out`` the rule refuses (the CLI turns it into exit status 2)."""


# ----------------------------------------------------------------------------- path identity
def _absolute(path: str | os.PathLike) -> Path:
    # resolve() follows symlinks and folds '..' after them, the way the kernel does.
    return Path(path).expanduser().resolve()


def _same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file or folder (hard links and case-folding included)."""
    if _absolute(a) == _absolute(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: only the spelling could have matched
        return False


def _within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or lies somewhere below it."""
    for candidate in (path, *path.parents):
        if _same(candidate, root):
            return True
    return False


def _protected(inputs: Iterable[str | os.PathLike | None]) -> list[Path]:
    """What the inputs are read from: a command writing there would change its own input."""
    protected = []
    for item in inputs:
        if item is None:
            continue
        path = Path(item)
        if not path.exists():  # the reader reports a missing input; nothing to protect
            continue
        if not path.is_dir():
            protected.append(path)
            continue
        holds_tables = False
        for kind in _TABLE_KINDS:
            for candidate in [path / kind, *(path / f"{kind}{s}" for s in _TABLE_SUFFIXES)]:
                protected.append(candidate)
                holds_tables = holds_tables or candidate.exists()
        protected.append(path / "manifest.json")
        if not holds_tables:  # a folder of shards: every file in it is read
            protected.append(path)
    return protected


def _refuse_inputs(out: Path, inputs: Iterable[str | os.PathLike | None], option: str,
                   *, folder: bool) -> None:
    inputs = [i for i in inputs if i is not None]
    for root in _protected(inputs):
        if _within(out, root):
            raise OutputPathError(f"{option} {out}: would write over the input {root}; "
                                  "choose a path outside the tables a command reads")
    if folder:
        for item in inputs:
            if Path(item).exists() and _within(Path(item), out):
                raise OutputPathError(f"{option} {out}: holds the input {item}, which "
                                      "replacing the folder would delete; choose another "
                                      "folder")


def _check_parent(out: Path, option: str) -> None:
    parent = out.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists() and not ancestor.is_dir():
            raise OutputPathError(f"{option} {out}: {ancestor} is a file, not a folder")
        if ancestor.exists():
            break
    if not parent.is_dir():
        raise OutputPathError(f"{option} {out}: folder {parent} does not exist (create it "
                              "first; no command creates the folders above --out)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {out}: folder {parent} is not writable")


def _probe_parent(out: Path, option: str) -> None:
    parent = out.parent
    # os.access says yes to root and knows nothing of read-only or special file systems:
    # create (and remove) a temporary file where the output will be staged.
    try:
        fd, probe = tempfile.mkstemp(prefix=".coupled-probe-", dir=parent)
    except OSError as error:
        raise OutputPathError(f"{option} {out}: cannot create files in {parent} "
                              f"({error.strerror or error})") from error
    os.close(fd)
    os.unlink(probe)


# ----------------------------------------------------------------------------- one file
def check_output_file(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                      overwrite: bool = False, suffixes: Iterable[str] | None = None,
                      option: str = "--out") -> Path:
    """The file ``out`` a one-file command may write, or :class:`OutputPathError` saying why
    not. ``overwrite``: an existing (non-input) file may be replaced (the ``--overwrite``
    flag); ``suffixes``: the file types the command writes."""
    text = os.fspath(out)
    if not text or text.endswith(("/", os.sep)):
        raise OutputPathError(f"{option} {text!r}: give a file name, not a folder")
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        raise OutputPathError(f"{option} {text}: is an existing folder; this command writes "
                              "one file — give a file name")
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if path.suffix.lower() not in suffixes:
            raise OutputPathError(f"{option} {text}: use a file name ending in "
                                  f"{', '.join(suffixes)}")
    _check_parent(path, option)
    _refuse_inputs(path, inputs, option, folder=False)
    if path.exists() or path.is_symlink():
        if path.exists() and not path.is_file():
            raise OutputPathError(f"{option} {text}: exists and is not a regular file")
        if not overwrite:
            raise OutputPathError(f"{option} {text}: file exists; pass --overwrite to replace "
                                  "it, or choose a new name")
    _probe_parent(path, option)  # last: it writes (and removes) a file, never in an input
    return path


# ----------------------------------------------------------------------------- one folder
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(folder: Path) -> list[str]:
    """Every file (and link) below ``folder``, relative, as POSIX strings; folders are not
    entries (an empty folder holds nothing to lose)."""
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        found += [(here / name).relative_to(folder).as_posix() for name in files]
        # A link to a folder is an entry of its own, never followed.
        found += [(here / name).relative_to(folder).as_posix() for name in dirs
                  if (here / name).is_symlink()]
    return sorted(found)


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker a command left in ``folder``, or None (absent, unreadable, or not ours)."""
    path = Path(folder) / MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(marker, dict) and isinstance(marker.get("producer"), str)
            and isinstance(marker.get("files"), dict)):
        return None
    return marker


def write_marker(folder: Path, producer: str) -> Path:
    """List every file now in ``folder`` (SHA-256 and size) as written by ``producer``."""
    files = {name: {"sha256": _sha256(folder / name), "bytes": (folder / name).stat().st_size}
             for name in _entries(folder) if name != MARKER}
    text = json.dumps({"producer": producer, "files": files}, indent=1, sort_keys=True)
    (folder / MARKER).write_text(text + "\n", encoding="utf-8")
    return folder / MARKER


@dataclass(frozen=True)
class OutputFolder:
    """A folder ``--out`` the rule allows: ``path`` (absolute, links resolved), the command
    that will write it, and whether it holds that command's earlier output (replaced whole)."""

    path: Path
    producer: str
    earlier_output: bool


def check_output_folder(out: str | os.PathLike, *, producer: str,
                        inputs: Iterable[str | os.PathLike | None] = (),
                        reuse: bool = True, reuse_flag: str | None = None,
                        option: str = "--out") -> OutputFolder:
    """The folder ``out`` command ``producer`` may (re)write, or :class:`OutputPathError`.

    ``reuse``: an earlier output of the same command may be replaced (``figures``/``demo``:
    always; ``simulate``: only with ``--force``, named by ``reuse_flag`` in the message).
    """
    text = os.fspath(out)
    if not text:
        raise OutputPathError(f"{option}: give a folder name")
    path = _absolute(text)
    _check_parent(path, option)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {text}: exists and is not a folder")
    inputs = list(inputs)
    _refuse_inputs(path, inputs, option, folder=True)
    earlier = False
    if path.is_dir() and any(path.iterdir()):
        marker = read_marker(path)
        if marker is None or marker["producer"] != producer:
            by = (f" (it holds `coupled {marker['producer']}` output)" if marker else
                  f" (no {MARKER}: an output of an older `coupled` has none; remove it "
                  "yourself if it is one)")
            raise OutputPathError(
                f"{option} {text}: folder is not empty and was not written by "
                f"`coupled {producer}`{by}; choose a new or empty folder")
        listed = marker["files"]
        entries = _entries(path)
        foreign = [name for name in entries if name != MARKER and name not in listed]
        changed = [name for name in entries
                   if name in listed and not _unchanged(path / name, listed[name])]
        if foreign or changed:
            what = (f"{len(foreign)} file(s) `coupled {producer}` did not write "
                    f"(e.g. {', '.join(foreign[:3])})" if foreign else
                    f"{len(changed)} file(s) changed since `coupled {producer}` wrote them "
                    f"(e.g. {', '.join(changed[:3])})")
            raise OutputPathError(f"{option} {text}: holds {what}; it is replaced whole, so "
                                  "move them or choose another folder")
        if not reuse:
            raise OutputPathError(
                f"{option} {text}: holds an earlier `coupled {producer}` output; use a new "
                "folder" + (f" or {reuse_flag} to replace it" if reuse_flag else ""))
        earlier = True
    _probe_parent(path, option)  # last: it writes (and removes) a file, never in an input
    return OutputFolder(path, producer, earlier)


def _unchanged(path: Path, recorded: object) -> bool:
    if not isinstance(recorded, dict) or path.is_symlink() or not path.is_file():
        return False
    return (path.stat().st_size == recorded.get("bytes")
            and _sha256(path) == recorded.get("sha256"))


@contextmanager
def staged_output_folder(folder: OutputFolder) -> Iterator[Path]:
    """Yield an empty staging folder beside ``folder.path``; when the body succeeds, write the
    marker and swap the staging folder in (the earlier output, checked by
    :func:`check_output_folder`, is removed after the swap); on error remove the staging
    folder and leave ``folder.path`` as it was."""
    from coupled.tables import staged_folder

    with staged_folder(folder.path, replace=True) as staging:
        yield staging
        # Checked again just before the swap: the folder may have changed during the work.
        now = check_output_folder(folder.path, producer=folder.producer)
        if now.earlier_output and not folder.earlier_output:
            raise OutputPathError(f"--out {folder.path}: was filled while the command ran; "
                                  "nothing was replaced")
        write_marker(staging, folder.producer)
