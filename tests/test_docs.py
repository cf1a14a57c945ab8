"""The documentation, license and citation files: cheap static checks.

The strict site build itself (every warning an error: broken links and anchors, pages missing
from the nav, API objects that do not resolve, bad docstrings) runs in ``make test`` as its
``docs`` step (``mkdocs build --strict``); these tests catch the common breakages in a second
and check the generators the build relies on (docs/hooks/).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the docs extra (mkdocs)")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Top-level keys of the Citation File Format 1.2.0 schema (schema.json, "properties").
CFF_KEYS = {
    "abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi",
    "identifiers", "keywords", "license", "license-url", "message", "preferred-citation",
    "references", "repository", "repository-artifact", "repository-code", "title", "type",
    "url", "version",
}
CFF_REQUIRED = {"authors", "cff-version", "message", "title"}
CFF_REFERENCE_REQUIRED = {"authors", "title", "type"}


@functools.cache
def _load_hook(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _check_authors(authors, where: str) -> None:
    assert isinstance(authors, list) and authors, f"{where}: authors must be a non-empty list"
    for author in authors:
        # A person has family-names (given-names optional); an entity has a name.
        assert isinstance(author, dict), f"{where}: each author is a mapping, got {author!r}"
        assert author.get("family-names") or author.get("name"), \
            f"{where}: an author needs family-names (a person) or name (an entity): {author}"


def test_citation_cff_is_valid_cff_1_2_0_for_this_toolkit_and_cites_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert isinstance(cff, dict)
    assert CFF_REQUIRED <= set(cff), f"missing required CFF keys {CFF_REQUIRED - set(cff)}"
    assert set(cff) <= CFF_KEYS, f"keys CFF 1.2.0 does not define: {set(cff) - CFF_KEYS}"
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software"
    assert isinstance(cff["message"], str) and cff["message"].strip()
    _check_authors(cff["authors"], "CITATION.cff")
    # The toolkit's own metadata agrees with the package's.
    assert cff["version"] == PYPROJECT["project"]["version"]
    assert cff["license"] == PYPROJECT["project"]["license"]["text"]
    references = cff["references"]
    assert isinstance(references, list) and references
    for reference in references:
        assert CFF_REFERENCE_REQUIRED <= set(reference), reference
        _check_authors(reference["authors"], f"reference {reference['title']!r}")
    paper = [r for r in references if "Coupled Token Generation" in r["title"]]
    assert len(paper) == 1, "the paper the toolkit implements must be among the references"
    assert isinstance(paper[0]["year"], int)
    assert paper[0]["authors"][0]["family-names"] == "Corvelo Benz"


def test_license_is_mit_like_the_package_metadata():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert PYPROJECT["project"]["license"]["text"] == "MIT"
    assert text.startswith("MIT License")
    assert "WITHOUT WARRANTY OF ANY KIND" in text


def test_changelog_follows_keep_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert versions[0] == ("Unreleased", ""), "the first section is [Unreleased]"
    released = [v for v, _ in versions[1:]]
    assert PYPROJECT["project"]["version"] in released
    assert all(date for _, date in versions[1:]), "every release has a date"
    headings = set(re.findall(r"^### (\w+)$", text, re.M))
    assert headings <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def _nav_pages(entry) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, list):
        return [page for item in entry for page in _nav_pages(item)]
    if isinstance(entry, dict):
        return [page for value in entry.values() for page in _nav_pages(value)]
    raise AssertionError(f"unexpected nav entry {entry!r}")


def _mkdocs_config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    config = _mkdocs_config()
    assert config["strict"] is True
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
             if "hooks" not in p.relative_to(DOCS).parts}
    assert pages - set(nav) == set(), "pages missing from the nav"
    assert set(nav) - pages == set(), "nav entries without a page"


def test_every_part_but_the_cli_has_an_api_page_and_its_identifiers_exist():
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    api = {p.stem: p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md")}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        part = package.split(".", 1)[1]
        if part == "cli":  # documented by the CLI reference page instead
            continue
        assert f"::: {package}\n" in api.get(part, ""), f"docs/api/{part}.md must render {package}"
    for page, text in api.items():
        for identifier in re.findall(r"^::: (\S+)$", text, re.M):
            package = next((p for p in mapping if identifier == p or
                            identifier.startswith(p + ".")), None)
            assert package, f"docs/api/{page}.md: {identifier} is in no coupled part"
            rest = identifier[len(package):].lstrip(".").split(".") if identifier != package \
                else []
            folder = ROOT / mapping[package]
            module = folder.joinpath(*rest)
            assert module.with_suffix(".py").is_file() or (module / "__init__.py").is_file(), \
                f"docs/api/{page}.md: {identifier} has no source file under {folder}"


def test_every_coupling_value_a_table_may_hold_is_documented():
    from coupled.tables import COUPLINGS

    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", page[page.index("### The `coupling`"):],
                                re.M))
    assert set(COUPLINGS) <= documented, f"undocumented coupling values {set(COUPLINGS) - documented}"


def test_snippets_included_by_the_docs_exist_and_have_no_relative_links():
    for page in DOCS.rglob("*.md"):
        for included in re.findall(r'^--8<-- "([^"]+)"$', page.read_text(encoding="utf-8"), re.M):
            assert (ROOT / included).is_file(), f"{page}: includes missing {included}"
            # Included text is rendered inside docs/, where a repository-relative link breaks.
            links = re.findall(r"\]\(([^)]+)\)", (ROOT / included).read_text(encoding="utf-8"))
            relative = [link for link in links if not link.startswith(("http://", "https://"))]
            assert not relative, f"{included} (included by {page.name}) links {relative}"


def test_readme_points_to_the_docs_not_to_files_outside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme
    for target in re.findall(r"\]\(([^)#]+)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to missing {target}"
    assert "docs/" in readme


def test_make_test_builds_the_docs_strictly():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_rule = re.search(r"^test:(.*)$", makefile, re.M).group(1).split()
    assert "docs" in test_rule
    docs_recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "mkdocs build --strict" in docs_recipe
    assert "docs" in PYPROJECT["project"]["optional-dependencies"]
    assert re.search(r"-e '\.\[[^\]]*\bdocs\b", makefile), "make test installs the docs extra"


# --- the generators behind the CLI and config pages ----------------------------------------

def test_cli_reference_has_every_subcommand_of_the_real_parser():
    hook = _load_hook("coupled_docs")
    from coupled.cli.main import build_parser

    def names(parser, prog):
        out = [prog]
        for name, sub in hook._subcommands(parser):
            out += names(sub, f"{prog} {name}")
        return out

    expected = names(build_parser(), "coupled")
    texts = dict(hook.cli_help_texts())
    assert list(texts) == expected
    assert len(expected) > 5
    for prog, text in texts.items():
        assert text.startswith(f"usage: {prog}"), prog
    page = hook.cli_reference()
    assert all(f"`{prog}`" in page for prog in expected)


def test_run_config_tables_list_every_setting_of_the_schema():
    hook = _load_hook("coupled_docs")
    from coupled.runner import config as schema

    tables = hook.run_config_tables()
    for cls in (schema.RunConfig, schema.TaskSpec, schema.ModelSpec, schema.JudgeSpec):
        for key, field in cls.model_fields.items():
            if not field.exclude:  # the TOML key is the alias where the field has one
                name = field.alias or key
                assert f"| `{name}` |" in tables, f"{cls.__name__}.{name} missing from the tables"
    assert "[task]" in tables and "[[models]]" in tables


def test_source_tree_maps_every_part_for_the_api_reference():
    hook = _load_hook("coupled_docs")
    tree = hook.build_source_tree()
    try:
        for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
            link = tree.joinpath(*package.split("."))
            assert link.is_symlink() and link.resolve() == (ROOT / folder).resolve()
            assert (link / "__init__.py").is_file()
    finally:
        shutil.rmtree(tree)


def test_sphinx_roles_become_code_spans():
    roles = _load_hook("griffe_roles")
    assert roles.rewrite(":func:`sample_tokens`") == "`sample_tokens`"
    assert roles.rewrite("see :class:`~coupled.tables.TableError`.") == "see `TableError`."
    assert roles.rewrite(":attr:`~a.B.df` and :mod:`coupled.simulate.exact`") == \
        "`df` and `coupled.simulate.exact`"


@given(st.text(alphabet=st.characters(blacklist_characters=":"), max_size=80))
def test_text_without_roles_is_unchanged(text):
    roles = _load_hook("griffe_roles")
    assert roles.rewrite(text) == text
