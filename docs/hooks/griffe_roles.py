"""A griffe extension for the API reference: Sphinx roles in docstrings become code spans.

The docstrings are written for readers of the source and use reStructuredText roles such as
``:func:`sample_tokens``` or ``:class:`~coupled.tables.TableError```. mkdocstrings renders
docstrings as Markdown, where a role would show as ``:func:sample_tokens``. This extension
rewrites each role to a Markdown code span (``~`` keeps only the last component, as in
Sphinx) in the documentation's copy of the docstring; the sources are not touched. Links are
not attempted: a role's target is often a relative name or a private helper that has no page,
and an unresolved link fails the strict build.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const|term):`([^`]+)`")


def strip_role(match: re.Match) -> str:
    target = match.group(1).strip()
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"`{target}`"


def rewrite(text: str) -> str:
    """``:func:`a.b``` -> ```a.b```; ``:class:`~a.B``` -> ```B```."""
    return ROLE.sub(strip_role, text)


class SphinxRolesToCode(Extension):
    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
