"""Schema of the three tables and their validation (DESIGN §2).

Validation returns a *normalised* copy (canonical dtypes and column order) or raises one
:class:`TableError` naming the source, the column and a few offending rows. Other columns are
kept after the required ones; the known optional ones (``response``, ``n_tokens``,
``subject``, ``parse_failed`` in scores; ``n_tokens``, ``subject`` in generations;
``shown_first``, ``parse_failed``, ``subject``, ``derived``, ``prompt_tokens``,
``completion_tokens`` in comparisons) are normalised; ``prompt_text`` (the rendered prompt a
model was fed) and ``gold`` (the gold answer it was scored against) are text columns, as in
lm-eval's per-sample logs.

Text columns (:data:`TEXT_COLUMNS`) hold text exactly as written: ``"001"`` stays ``"001"``,
``"01"`` and ``"1"`` are different prompts, and ``"NA"``, ``"None"``, ``"null"`` are the words,
never a missing value. Identifier columns (:data:`IDENTIFIER_COLUMNS`) must also be non-empty.
Values that are not text (a parquet integer column, an in-memory frame of ints) are turned into
text by one deterministic rule, :func:`identifier_text`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np
import pandas as pd

MODES = ("coupled", "independent")
# The samplers a coupled (or independent) row was generated with: what ``coupled.simulate``
# can draw. Tables additionally accept ``"none"``: rows imported from a run that used no
# shared noise at all (issue 13); such rows can only be ``mode = "independent"``.
SAMPLERS = ("gumbel", "inverse_cdf")
NO_SHARED_NOISE = "none"
# The runner's cross-tokenizer keys (issue 14; docs/cross-tokenizer.md): Gumbel-max with the
# noise keyed by the reply's byte offset and the candidate's bytes (run config noise_key =
# "text"), or exact byte-level sampling keyed by (row, byte offset, byte) (noise_key = "bytes").
CROSS_TOKENIZER_COUPLINGS = ("gumbel_text", "gumbel_bytes")
COUPLING_OF_NOISE_KEY = {"token": "gumbel", "text": "gumbel_text", "bytes": "gumbel_bytes"}
COUPLINGS = SAMPLERS + CROSS_TOKENIZER_COUPLINGS + (NO_SHARED_NOISE,)
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

# Names: read as text, no NA guessing, and never empty.
IDENTIFIER_COLUMNS = ("task", "prompt_id", "model", "model_a", "model_b", "subject")
# Read as text with no NA guessing (the identifiers, the categorical columns and the replies).
TEXT_COLUMNS = IDENTIFIER_COLUMNS + ("mode", "coupling", "outcome", "shown_first", "response",
                                    "prompt_text", "gold")

# Largest |score| accepted. The analyses square score differences and sum the squares over all
# rows (variances, covariances, clustered SEs), and a variance squared again (Welch-type degrees
# of freedom, the standard error of a variance) is a fourth power: (2 x 1e50)**4 ~ 1.6e201, so
# even summed over 1e12 rows nothing overflows float64 (max ~1.8e308), while at 1e100 a squared
# variance (~1e400) already would. Real metrics (accuracy, reward, log-likelihood) are far below.
SCORE_LIMIT = 1e50
# Seeds are keys of the counter-based noise (uint64 arithmetic) stored as int64.
SEED_LIMIT = 2**63 - 1
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


# --- text and identifiers --------------------------------------------------------------------

def identifier_text(value: object) -> str | None:
    """The text of one identifier value; ``None`` when missing (None, NaN, pd.NA).

    The one rule for values that are not text already (a parquet integer column, an in-memory
    frame): ``str`` as is; ``bytes`` decoded as UTF-8; integers in decimal (``7`` -> ``"7"``);
    a float holding an integer as that integer (``3.0`` -> ``"3"``: pandas stores integer
    columns with a gap as floats) and any other float by its shortest round-trip repr
    (``0.1`` -> ``"0.1"``); booleans as ``"True"``/``"False"``; other scalars (dates,
    decimals) by ``str``. Lists, dicts and arrays are refused (``TypeError``): an identifier is
    one value. Text read from CSV or JSON never reaches this rule: it is kept as written.
    """
    if isinstance(value, str):
        return str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        if number.is_integer():
            return str(int(number))
        return repr(number)
    if isinstance(value, list | tuple | dict | set | np.ndarray):
        raise TypeError(f"an identifier is one value, not a {type(value).__name__}")
    return str(value)


def _text_or_texts(value: object) -> object:
    # a list cell (multiple-choice options) keeps its shape, with text inside
    if isinstance(value, list | tuple | np.ndarray):
        return [_text_or_texts(v) for v in value]
    return identifier_text(value)


def text_series(values: pd.Series, *, lists: bool = False) -> pd.Series:
    """``values`` as an object Series of ``str`` (missing values as ``None``), by
    :func:`identifier_text`; with ``lists=True`` a list cell becomes a list of ``str``. Raises
    ``TypeError``/``UnicodeDecodeError`` for values it refuses."""
    if isinstance(values.dtype, pd.StringDtype):  # parquet / CSV text: no conversion needed
        missing = values.isna().to_numpy()
        out = values.astype(object)
    else:
        out = values.astype(object)
        # Fast path: already all text (our own writers, CSV/JSON read by coupled.tables).
        if pd.api.types.infer_dtype(out, skipna=True) not in ("string", "empty"):
            out = out.map(_text_or_texts if lists else identifier_text, na_action="ignore")
        missing = out.isna().to_numpy()
    if missing.any():
        out = out.where(~missing, None)
    return out


def _missing_or_empty(original: pd.Series, text: pd.Series) -> np.ndarray:
    if isinstance(original.dtype, pd.StringDtype):  # vectorised on the string array
        return (original.isna() | (original == "")).to_numpy(dtype=bool)
    return (text.isna() | (text == "")).to_numpy(dtype=bool)


def identifier_frame(df: pd.DataFrame, text_columns: Iterable[str] = TEXT_COLUMNS,
                     identifiers: Iterable[str] = IDENTIFIER_COLUMNS, *,
                     source: str = "<DataFrame>",
                     list_columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A copy of ``df`` whose ``text_columns`` (those present) hold ``str`` (or ``None`` where
    missing) by :func:`identifier_text`, after checking that ``identifiers`` (those present;
    they are text columns too) are never missing nor empty. A list cell in a text column that
    is not an identifier (multiple-choice options) becomes a list of ``str``; pass
    ``list_columns`` to allow lists only there (``()``: nowhere).

    The string-identifier layer every reader goes through (:func:`coupled.tables.read_records`
    calls it after reading a file; pass in-memory frames to it directly). Raises
    :class:`TableError` naming the column and example rows.
    """
    identifiers = [c for c in dict.fromkeys(identifiers) if c in df.columns]
    text = [c for c in dict.fromkeys([*text_columns, *identifiers]) if c in df.columns]
    listed = set(text) - set(identifiers) if list_columns is None else set(list_columns)
    out = df.copy()
    for column in text:
        lists = column in listed and column not in identifiers
        try:
            out[column] = text_series(out[column], lists=lists)
        except (TypeError, UnicodeDecodeError) as error:
            bad = df[column].map(lambda v, lists=lists: _refused(v, lists))
            raise TableError(source, column, f"must hold text: {error}", df[bad.to_numpy()]) \
                from error
    for column in identifiers:
        empty = _missing_or_empty(df[column], out[column])
        if empty.any():
            raise TableError(source, column,
                             "has missing or empty identifier(s); identifiers are non-empty "
                             "text (the words 'NA', 'None', 'null' are kept as text)",
                             df[empty])
    return out


def _refused(value: object, lists: bool = False) -> bool:
    try:
        _text_or_texts(value) if lists else identifier_text(value)
    except (TypeError, UnicodeDecodeError):
        return True
    return False


# --- validation ------------------------------------------------------------------------------

def validate(df: pd.DataFrame, kind: str, source: str = "<table>",
             models: Iterable[str] | None = None) -> pd.DataFrame:
    """Check ``df`` against the schema of ``kind`` and return a normalised copy."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(df, pd.DataFrame):
        raise TableError(source, None, f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise TableError(source, None, f"the {kind} table is empty")
    if df.columns.duplicated().any():
        raise TableError(source, None, f"duplicated column name(s) "
                                       f"{sorted(set(df.columns[df.columns.duplicated()]))}")
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in df.columns]
    if missing:
        raise TableError(source, missing[0],
                         f"missing required column(s) {missing}; the {kind} table needs "
                         f"{list(REQUIRED_COLUMNS[kind])} (found {list(df.columns)})")
    df = df.reset_index(drop=True)
    identifiers = [c for c in IDENTIFIER_COLUMNS if c in df.columns]
    for column in REQUIRED_COLUMNS[kind]:
        if column in identifiers:
            continue  # identifier_frame's own message
        nulls = df[column].isna()
        if nulls.any():
            raise TableError(source, column, "has missing values (NaN/empty)", df[nulls])
    out = identifier_frame(df, TEXT_COLUMNS, identifiers, source=source, list_columns=())
    if "shown_first" in out.columns:  # optional per row: an empty cell means "not recorded"
        out["shown_first"] = out["shown_first"].where(out["shown_first"] != "", None)

    out["seed"] = _seeds(df["seed"], df, source)
    _check_allowed(out, df, "mode", MODES, source)
    _check_allowed(out, df, "coupling", COUPLINGS, source)
    unshared = (out["coupling"] == NO_SHARED_NOISE) & (out["mode"] != "independent")
    if unshared.any():
        raise TableError(source, "coupling", f"coupling {NO_SHARED_NOISE!r} (no shared noise) "
                         f"is only valid with mode 'independent'", df[unshared.to_numpy()])

    if kind == "scores":
        out["score"] = _scores(df["score"], df, source)
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
            known_models = {identifier_text(m) for m in models}
            unknown = ~(out["model_a"].isin(known_models) & out["model_b"].isin(known_models))
            if unknown.any():
                raise TableError(source, "model_a/model_b",
                                 f"names a model not among {sorted(known_models)}",
                                 df[unknown.to_numpy()])
    for column in ("parse_failed", "derived"):
        if column in out.columns:
            out[column] = _flags(df[column], column, df, source)
    # token counts: a reply's length; an API judge's billed prompt / completion tokens
    for column in ("n_tokens", "prompt_tokens", "completion_tokens"):
        if column in out.columns:
            out[column] = _counts(df[column], column, df, source)

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


def require_shared_noise(frame: pd.DataFrame, what: str, source: str = "<table>") -> None:
    """Refuse rows generated without shared noise (``coupling == "none"``) in an analysis that
    needs it (variance reduction, coupled-vs-independent tests).

    ``what`` names the analysis for the message, e.g. ``"variance reduction"``. Raises
    :class:`TableError` naming the rows; does nothing when ``frame`` has no ``coupling`` column.
    """
    if "coupling" not in frame.columns:
        return
    unshared = (frame["coupling"] == NO_SHARED_NOISE).to_numpy()
    if unshared.any():
        models = sorted({str(m) for c in ("model", "model_a", "model_b") if c in frame.columns
                         for m in frame.loc[unshared, c]})[:5]
        raise TableError(source, "coupling",
                         f"{what} needs rows generated with shared noise (a coupled sampler and "
                         f"its independent counterpart), but {int(unshared.sum())} row(s) have "
                         f"coupling {NO_SHARED_NOISE!r} (a run that used no shared noise"
                         + (f"; models {models}" if models else "")
                         + "); leave them out or analyse them without this comparison",
                         frame[unshared])


def _seeds(seed: pd.Series, original: pd.DataFrame, source: str) -> pd.Series:
    flags = _booleans(seed)  # True is not seed 1
    numbers_ = pd.to_numeric(seed.where(~flags) if flags.any() else seed, errors="coerce")
    if pd.api.types.is_integer_dtype(numbers_.dtype) and not flags.any():
        ints = numbers_.to_numpy()
        bad = (ints < 0) | (ints > SEED_LIMIT)  # exact integer comparisons (uint64 too)
        whole = None
    else:
        as_float = numbers_.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = (np.isnan(as_float) | (as_float != np.floor(as_float)) | (as_float < 0)
                   | (as_float >= 2.0**63))
        whole = as_float
    if bad.any():
        raise TableError(source, "seed", "must be a non-negative integer below 2**63",
                         original[bad])
    if whole is None:
        return numbers_.astype("int64")
    return pd.Series(whole.astype(np.int64), index=seed.index)  # integral floats ("3.0")


def _booleans(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.ones(len(values), dtype=bool)
    if values.dtype != object:
        return np.zeros(len(values), dtype=bool)
    return values.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)


def _scores(score: pd.Series, original: pd.DataFrame, source: str) -> pd.Series:
    # booleans are accepted as 0/1 (correct / incorrect)
    values = pd.to_numeric(score, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise TableError(source, "score", "must be a finite number (never NaN, inf or text)",
                         original[bad])
    big = np.abs(values) > SCORE_LIMIT
    if big.any():
        raise TableError(source, "score", f"|score| must be at most {SCORE_LIMIT:g}: larger values "
                                          f"overflow float64 in the variances and their squares; "
                                          f"rescale the scores", original[big])
    return pd.Series(values, index=score.index, dtype="float64")


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def _flags(values: pd.Series, column: str, original: pd.DataFrame, source: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(bool)

    def flag(value: object) -> bool | None:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return False  # not recorded: no failure / not derived
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, numbers.Real) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return None

    out = values.map(flag)
    bad = out.isna().to_numpy()
    if bad.any():
        raise TableError(source, column, "must be true/false (or 1/0)", original[bad])
    return out.astype(bool)


def _counts(values: pd.Series, column: str, original: pd.DataFrame, source: str) -> pd.Series:
    blank = values.isna() | values.map(lambda v: isinstance(v, str) and v.strip() == "")
    numbers_ = pd.to_numeric(values.where(~blank), errors="coerce")
    as_float = numbers_.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~blank.to_numpy() & (np.isnan(as_float) | (as_float != np.floor(as_float))
                                   | (as_float < 0) | (as_float > SEED_LIMIT))
    if bad.any():
        raise TableError(source, column, "must be a non-negative integer (or empty)",
                         original[bad])
    return numbers_.astype("Int64")


def _check_allowed(out: pd.DataFrame, original: pd.DataFrame, column: str,
                   allowed: tuple[str, ...], source: str) -> None:
    bad = ~out[column].isin(allowed)
    if bad.any():
        values = sorted({str(v) for v in out.loc[bad, column]})[:5]
        raise TableError(source, column, f"unknown value(s) {values}; allowed: {list(allowed)}",
                         original[bad.to_numpy()])
