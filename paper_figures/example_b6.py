"""Appendix B.6's three-model example as a table (Markdown, LaTeX, CSV), from
``coupled.theory.three_model_example`` (exact fractions; nothing is recomputed here).

Average accuracy ranks m1 > m3 > m2 and so does the average win-rate under coupled generation;
under independent generation the average win-rate ranks them the other way round.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from coupled.paper_figures.output import write_texts

CAPTION = ("Appendix B.6 example (exact, from coupled.theory): three models, two equally likely "
           "prompts q and q'; probability of the correct answer on each, average accuracy, and "
           "average win-rate (mean over the two opponents) under independent and coupled "
           "generation with the rank each implies. Coupled generation ranks the models as "
           "accuracy does; independent generation reverses the order.")


def example_table() -> pd.DataFrame:
    """One row per model; values as exact decimal strings (rounded to 15 significant digits)."""
    from coupled.theory.examples import decimal_string, three_model_example

    example = three_model_example()

    def rank(order: tuple[str, ...], model: str) -> int:
        return order.index(model) + 1

    rows = []
    for k, model in enumerate(example.models):
        rows.append({
            "model": model,
            "p(q)": decimal_string(example.probabilities[0][k]),
            "p(q')": decimal_string(example.probabilities[1][k]),
            "average accuracy": decimal_string(example.average_accuracy[k]),
            "accuracy rank": rank(example.ranking_accuracy, model),
            "avg win-rate independent": decimal_string(
                example.average_win_rate_independent[k]),
            "independent rank": rank(example.ranking_independent, model),
            "avg win-rate coupled": decimal_string(example.average_win_rate_coupled[k]),
            "coupled rank": rank(example.ranking_coupled, model),
        })
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True)


def example_text() -> str:
    """The table as plain text for the screen."""
    return _markdown(example_table())


def write_example(out_dir: str | os.PathLike, stem: str = "example_b6") -> list[Path]:
    table = example_table()
    return write_texts(out_dir, stem, {
        "md": f"{_markdown(table)}\n\n{CAPTION}\n",
        "tex": table.to_latex(index=False, caption=CAPTION, label="tab:b6"),
        "csv": table.to_csv(index=False),
    })
