"""Schema of the three tables and their validation (DESIGN §2).

Validation returns a *normalised* copy (canonical dtypes and column order) or raises one
:class:`TableError` naming the source, the column and a few offending rows. Other columns are
kept after the required ones; the known optional ones (``response``, ``n_tokens``,
``subject``, ``parse_failed`` in scores; ``n_tokens``, ``subject`` in generations;
``shown_first``, ``parse_failed``, ``subject``, ``derived`` in comparisons) are normalised.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

MODES = ("coupled", "independent")
COUPLINGS = ("gumbel", "inverse_cdf")
OUTCOMES = ("a", "b", "tie")
KINDS = ("scores", "comparisons", "generations")

SCORE_KEY = ("task", "prompt_id", "seed", "mode", "coupling", "model")
GENERATION_KEY = SCORE_KEY
COMPARISON_KEY = ("task", "prompt_id", "seed", "mode", "coupling", "model_a", "model_b")

# Every table of a kind has these columns; validate puts them first, in this order.
REQUIRED_COLUMNS = {
    "scores": SCORE_KEY + ("score",),
    "generations": GENERATION_KEY + ("response",),
    "comparisons": COMPARISON_KEY + ("outcome",),
}
_KEYS = {"scores": SCORE_KEY, "generations": GENERATION_KEY, "comparisons": COMPARISON_KEY}
_STRING_COLUMNS = ("task", "prompt_id", "mode", "coupling", "model", "model_a", "model_b",
                   "outcome", "shown_first", "subject", "response")
_EXAMPLES = 3


class TableError(ValueError):
    """A table that breaks the contract. The message names the source, column and rows."""

    def __init__(self, source: str, column: str | None, problem: str,
                 rows: pd.DataFrame | None = None):
        self.source, self.column, self.problem = source, column, problem
        where = f"{source}" + (f", column {column!r}" if column else "")
        message = f"{where}: {problem}"
        if rows is not None and len(rows):
            shown = rows.head(_EXAMPLES).to_string(max_colwidth=40)
            message += f"\n  e.g. ({len(rows)} row(s) affected; first {min(len(rows), _EXAMPLES)}):\n"
            message += "\n".join("    " + line for line in shown.splitlines())
        super().__init__(message)


def validate(df: pd.DataFrame, kind: str, source: str = "<table>",
             models: Iterable[str] | None = None) -> pd.DataFrame:
    """Check ``df`` against the schema of ``kind`` and return a normalised copy."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(df, pd.DataFrame):
        raise TableError(source, None, f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise TableError(source, None, f"the {kind} table is empty")
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in df.columns]
    if missing:
        raise TableError(source, missing[0],
                         f"missing required column(s) {missing}; the {kind} table needs "
                         f"{list(REQUIRED_COLUMNS[kind])} (found {list(df.columns)})")
    out = df.copy()
    for column in REQUIRED_COLUMNS[kind]:
        nulls = out[column].isna()
        if nulls.any():
            raise TableError(source, column, "has missing values (NaN/empty)", df[nulls])
    for column in _STRING_COLUMNS:
        if column in out.columns:
            values = out[column].astype(object)
            present = values.notna()
            # Fast path: already all text (the common case for our own writers).
            if pd.api.types.infer_dtype(values[present], skipna=True) != "string":
                values[present] = values[present].map(_as_text)
            out[column] = values
    seeds = pd.to_numeric(out["seed"], errors="coerce")
    bad = seeds.isna() | (seeds != np.floor(seeds)) | (seeds < 0)
    if bad.any():
        raise TableError(source, "seed", "must be a non-negative integer", df[bad.to_numpy()])
    out["seed"] = seeds.astype("int64")
    _check_allowed(out, df, "mode", MODES, source)
    _check_allowed(out, df, "coupling", COUPLINGS, source)

    if kind == "scores":
        scores = pd.to_numeric(out["score"], errors="coerce")
        bad = ~np.isfinite(scores.to_numpy(dtype=float))
        if bad.any():
            raise TableError(source, "score", "must be a finite number (never NaN or inf)",
                             df[bad])
        out["score"] = scores.astype("float64")
    if kind == "comparisons":
        _check_allowed(out, df, "outcome", OUTCOMES, source)
        if "shown_first" in out.columns:
            known = out["shown_first"].notna()
            bad = known & ~out["shown_first"].isin(("a", "b"))
            if bad.any():
                raise TableError(source, "shown_first", "must be 'a' or 'b'", df[bad.to_numpy()])
        order = out["model_a"] >= out["model_b"]
        if order.any():
            raise TableError(source, "model_a",
                             "pairs must be in canonical order model_a < model_b (and distinct); "
                             "swap the names and the outcome ('a' <-> 'b')", df[order.to_numpy()])
        if models is not None:
            known_models = set(models)
            unknown = ~(out["model_a"].isin(known_models) & out["model_b"].isin(known_models))
            if unknown.any():
                raise TableError(source, "model_a/model_b",
                                 f"names a model not among {sorted(known_models)}",
                                 df[unknown.to_numpy()])
    for column in ("parse_failed", "derived"):
        if column in out.columns:
            out[column] = out[column].fillna(False).astype(bool)
    if "n_tokens" in out.columns:
        out["n_tokens"] = pd.to_numeric(out["n_tokens"], errors="coerce").astype("Int64")

    key = list(_KEYS[kind])
    duplicated = out.duplicated(key, keep=False)
    if duplicated.any():
        raise TableError(source, ",".join(key), "duplicated key(s): each key must appear once",
                         df[duplicated.to_numpy()].sort_values(key))
    required = list(REQUIRED_COLUMNS[kind])
    ordered = required + [c for c in out.columns if c not in required]
    return out[ordered].reset_index(drop=True)


def validate_scores(df: pd.DataFrame, source: str = "<scores>") -> pd.DataFrame:
    return validate(df, "scores", source)


def validate_generations(df: pd.DataFrame, source: str = "<generations>") -> pd.DataFrame:
    return validate(df, "generations", source)


def validate_comparisons(df: pd.DataFrame, source: str = "<comparisons>",
                         models: Iterable[str] | None = None) -> pd.DataFrame:
    return validate(df, "comparisons", source, models=models)


def _as_text(value: object) -> str:
    # CSV round-trips turn "007" into 7 and 3 into 3.0; prompt ids are identifiers, not numbers.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_allowed(out: pd.DataFrame, original: pd.DataFrame, column: str,
                   allowed: tuple[str, ...], source: str) -> None:
    bad = ~out[column].isin(allowed)
    if bad.any():
        values = sorted(set(out.loc[bad, column]))[:5]
        raise TableError(source, column, f"unknown value(s) {values}; allowed: {list(allowed)}",
                         original[bad.to_numpy()])
