"""Time `coupled demo` and its stages (simulate, analyse, plan, figures, report).

Baseline, measured in the same process: saving one blank 12 x 3.8 in figure to PNG and PDF —
the fixed cost of any figure file pair — so the figures stage is reported as a multiple of
(number of figures x that cost). Run: .venv/bin/python bench/bench_demo.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def blank_figure_seconds(repeats: int = 3) -> float:
    import matplotlib.pyplot as plt

    from coupled.paper_figures.style import save_figure, use_paper_style

    use_paper_style()
    best = float("inf")
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            start = time.perf_counter()
            fig, _ = plt.subplots(1, 3, figsize=(12, 3.8))
            fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.8, wspace=0.3)
            save_figure(fig, folder, "blank")
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    start = time.perf_counter()
    from coupled.paper_figures.demo import run_demo

    import_seconds = time.perf_counter() - start
    baseline = blank_figure_seconds()
    # The machine is shared: CPU seconds (this process) are the steadier figure; the load
    # average says how much the wall-clock numbers are inflated by other work.
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for quick in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            start, cpu = time.perf_counter(), time.process_time()
            result = run_demo(Path(folder) / "demo-output", quick=quick, progress=False)
            total, cpu = time.perf_counter() - start, time.process_time() - cpu
        n_figures = sum(p.suffix == ".png" for p in result.files)
        label = "quick" if quick else "full"
        print(f"demo ({label}): {total:.2f} s wall, {cpu:.2f} s CPU in run_demo "
              f"(+ {import_seconds:.2f} s imports), {len(result.files)} files, "
              f"{n_figures} figures; load average now {os.getloadavg()[0]:.2f}")
        for name, seconds in result.stage_seconds.items():
            print(f"  {name:9s} {seconds:6.2f} s  ({seconds / total:5.1%})")
        figures = result.stage_seconds.get("figures", float("nan"))
        print(f"  figures stage / ({n_figures} x blank figure {baseline:.3f} s) = "
              f"{figures / (n_figures * baseline):.2f}x")


if __name__ == "__main__":
    main()
