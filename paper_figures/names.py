"""File names from model names: the one map every figure and table writer uses.

A model name is any string (``org/model``, ``my model``, ``Llama-3.2-1B``, ``..``, unicode);
a file name must be safe on every common file system and *distinct for distinct names*, or
one model's figure silently replaces another's. :func:`file_stem` keeps a name that is already
plainly safe (lower-case ASCII letters, digits, ``.`` and ``-``, not starting with ``.`` or
``-``, at most 48 characters) and otherwise writes a readable slug followed by a short hash of
the exact name. The two forms cannot meet: a hashed stem ends in ``-`` and 10 hex digits, a
kept name never does. Stems never contain ``_``, so ``fig2_<a>_vs_<b>`` splits one way only;
they never differ by case alone from another stem (case-insensitive file systems), and are
never a Windows device name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_PLAIN = re.compile(r"[a-z0-9][a-z0-9.-]{0,47}")
_HASHED_TAIL = re.compile(r"-[0-9a-f]{10}$")
_SLUG_LENGTH = 40
_HASH_LENGTH = 10  # 40 bits: a collision needs ~1e6 distinct names of one run
# Device names Windows refuses as file names, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}


def _is_plain(name: str) -> bool:
    return (_PLAIN.fullmatch(name) is not None and not _HASHED_TAIL.search(name)
            and not name.endswith(".") and name.split(".")[0] not in _RESERVED)


def _slug(name: str) -> str:
    # Accents folded to ASCII (é -> e); every other character, '_' included, becomes '-'.
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", ascii_text)
    slug = re.sub(r"\.{2,}", ".", slug)  # never '..'
    return slug.strip(".-")[:_SLUG_LENGTH].strip(".-") or "model"


def file_stem(name: str) -> str:
    """A safe file-name stem for model ``name``; distinct names give distinct stems."""
    if not isinstance(name, str):
        raise TypeError(f"model names are strings, got {type(name).__name__}")
    if _is_plain(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LENGTH]
    return f"{_slug(name)}-{digest}"
