"""MkDocs hooks for the ``coupled`` documentation (listed under ``hooks:`` in mkdocs.yml).

Three jobs, each done here so that the docs cannot drift from the code:

* **API reference sources.** The parts of ``coupled`` are top-level folders mapped into the
  ``coupled`` namespace by ``pyproject.toml`` (setuptools ``package-dir``). griffe, which
  mkdocstrings uses to read the sources *statically* (nothing is imported, so the runner's
  pages need no torch), finds packages by folder name and cannot follow that mapping or the
  editable-install finder setuptools writes for it. We therefore lay out a temporary tree
  ``<tmp>/coupled/<part> -> <repo>/<folder>`` from the mapping itself and hand it to the
  Python handler as its search path.
* **CLI reference.** ``<!-- coupled:cli-reference -->`` in a page is replaced by the
  ``--help`` of ``coupled`` and of every subcommand, taken from the real argparse parser
  (``coupled.cli.main.build_parser``), so new commands and options appear without edits.
* **Run-config table.** ``<!-- coupled:run-config-fields -->`` is replaced by one table per
  config section (top level, ``[task]``, ``[[models]]``, ``[judge]``) listing every key, its
  type, default and meaning, as the schema renders itself
  (``coupled.runner.config.config_reference``; that module imports no torch).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
CLI_MARKER = "<!-- coupled:cli-reference -->"
CONFIG_MARKER = "<!-- coupled:run-config-fields -->"
HELP_COLUMNS = "100"  # argparse wraps help to $COLUMNS; fixed so the page is reproducible

_tree: Path | None = None


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """``{"coupled.theory": <root>/theory, ...}`` from pyproject.toml's setuptools package-dir."""
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = data["tool"]["setuptools"]["package-dir"]
    return {name: (root / folder).resolve() for name, folder in mapping.items()}


def build_source_tree(root: Path = ROOT) -> Path:
    """A temporary folder holding ``coupled/<part>`` symlinks to the part folders."""
    tree = Path(tempfile.mkdtemp(prefix="coupled-docs-src-"))
    for name, folder in package_dirs(root).items():
        target = tree.joinpath(*name.split("."))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(folder, target_is_directory=True)
    return tree


# Before mkdocstrings' own on_config, which creates the Python handler (and reads its paths).
@event_priority(100)
def on_config(config):
    global _tree
    _tree = build_source_tree()
    handlers = config.plugins["mkdocstrings"].config["handlers"]
    python = handlers.setdefault("python", {})
    python["paths"] = [str(_tree)] + [p for p in python.get("paths", []) if p != str(_tree)]
    return config


def on_shutdown():
    global _tree
    if _tree is not None:
        shutil.rmtree(_tree, ignore_errors=True)
        _tree = None


def on_page_markdown(markdown, page, config, files):
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, run_config_tables())
    return markdown


# --- CLI reference ---------------------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            seen, out = set(), []
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases map to the same parser
                    seen.add(id(sub))
                    out.append((name, sub))
            return out
    return []


def cli_help_texts() -> list[tuple[str, str]]:
    """``[("coupled", help), ("coupled theory", help), ("coupled theory example", help), ...]``."""
    from coupled.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        out: list[tuple[str, str]] = []

        def walk(prog: str, parser: argparse.ArgumentParser) -> None:
            out.append((prog, parser.format_help().rstrip()))
            for name, sub in _subcommands(parser):
                walk(f"{prog} {name}", sub)

        walk("coupled", build_parser())
        return out
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous


def cli_reference() -> str:
    sections = []
    for prog, text in cli_help_texts():
        level = "##" if prog.count(" ") <= 1 else "###"
        sections.append(f"{level} `{prog}`\n\n```text\n{text}\n```\n")
    return "\n".join(sections)


# --- run-config schema -----------------------------------------------------------------------

def run_config_tables() -> str:
    """The schema's own rendering of every key, one table per TOML table
    (``coupled.runner.config.config_reference``, also behind ``coupled run --show-config``)."""
    from coupled.runner.config import config_reference

    return config_reference()
