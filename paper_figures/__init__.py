"""coupled.paper_figures: the paper's figures and tables, from a run or a simulation.

Public entry points:

* ``load_run(path) -> RunTables`` / ``tables_from_frames(scores, comparisons)`` — the tables a
  figure set is drawn from (comparisons derived from scores when none were judged);
* ``make_figures(tables, out_dir, pairs=None, model=None, alpha=0.05, unit="row",
  truth=None) -> FigureSet`` — Fig. 2 per pair, Fig. 3, Table 1 (md/tex/csv), the B.6 example
  and, with ``truth``, the calibration figure;
* ``figures_command(...)`` — ``coupled figures``: the same, written all at once or not at all;
* ``run_demo(out_dir="demo-output", quick=False) -> DemoResult`` — ``coupled demo``.

Every number comes from ``coupled.analysis`` or ``coupled.theory``; nothing is re-estimated
here. Importing this package selects matplotlib's Agg backend (figures are files).
"""
