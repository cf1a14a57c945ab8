"""The coupling check: identical replies and first divergence step, per pair and mode."""

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from coupled.analysis import coupling_check, coupling_check_lines


def _rows(mode, model, replies, tokens):
    return [{"task": "t", "prompt_id": str(i), "seed": 0, "mode": mode, "coupling": "gumbel",
             "model": model, "score": 0.0, "response": r, "token_ids": list(k)}
            for i, (r, k) in enumerate(zip(replies, tokens, strict=True))]


def test_rates_and_divergence_steps_on_a_hand_made_table():
    table = pd.DataFrame(
        _rows("coupled", "a", ["x", "xy", "q"], [[1], [1, 2], [5]])
        + _rows("coupled", "b", ["x", "xz", "r"], [[1], [1, 3], [6]])
        + _rows("independent", "a", ["x", "xy", "q"], [[1], [1, 2], [5]])
        + _rows("independent", "b", ["y", "xz", "r"], [[2], [1, 3], [6]]))
    check = coupling_check(table).set_index("mode")
    assert check.loc["coupled", "identical"] == 1 and check.loc["independent", "identical"] == 0
    assert check.loc["coupled", "first_divergence_median"] == 0.5  # steps 1 and 0
    assert check.loc["independent", "first_divergence_mean"] == 1 / 3
    lines = coupling_check_lines(coupling_check(table))
    assert lines == ["a vs b: 33.3 % identical replies coupled (differing rows diverge at step "
                     "0.5); 0.0 % identical replies independent (differing rows diverge at step "
                     "0)"]


@given(st.lists(st.tuples(st.lists(st.integers(0, 3), max_size=4),
                          st.lists(st.integers(0, 3), max_size=4)), min_size=1, max_size=20))
def test_divergence_is_the_common_prefix_length(pairs):
    table = pd.DataFrame(
        _rows("coupled", "a", [" ".join(map(str, a)) for a, _ in pairs], [a for a, _ in pairs])
        + _rows("coupled", "b", [" ".join(map(str, b)) for _, b in pairs], [b for _, b in pairs]))
    row = coupling_check(table).iloc[0]
    differing = [(a, b) for a, b in pairs if a != b]
    assert row["identical"] == len(pairs) - len(differing)
    if differing:
        prefixes = [next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                    for a, b in differing]
        assert row["first_divergence_mean"] == np.mean(prefixes)
    else:
        assert np.isnan(row["first_divergence_mean"])


def test_no_response_column_gives_an_empty_check():
    assert coupling_check(pd.DataFrame({"mode": ["coupled"], "model": ["a"]})).empty


def test_text_keyed_couplings_measure_divergence_in_bytes_of_the_reply():
    table = pd.DataFrame(
        _rows("coupled", "a", ["hello", "héllo"], [[1, 2], [3]])
        + _rows("coupled", "b", ["help", "hello"], [[9], [9, 9]]))
    table["coupling"] = "gumbel_text"
    row = coupling_check(table).iloc[0]
    # "hello"/"help" share 3 bytes; "héllo"/"hello" share 1 (é is two bytes in UTF-8)
    assert row["divergence_unit"] == "byte" and row["first_divergence_mean"] == 2.0
