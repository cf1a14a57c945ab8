"""Every part but the runner works without torch (issue 2): `make demo` installs only the core."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "bitsandbytes", "accelerate"}:
                raise ImportError(f"{name} is blocked: the core must not need it")
            return None

    sys.meta_path.insert(0, BlockTorch())
""")


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def test_core_parts_and_cli_import_and_run_without_torch():
    result = _run_without_torch("""
        import json, sys
        import coupled.analysis, coupled.paper_figures, coupled.simulate, coupled.tables
        import coupled.theory
        from coupled.cli.main import main
        assert main(["theory", "example", "--json"]) == 0
        assert not any(m.split(".")[0] == "torch" for m in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert "0.1545" in result.stdout


def test_the_blocker_really_blocks():
    # Guards the test above against passing vacuously (e.g. a blocker that never fires).
    result = _run_without_torch("import torch")
    assert result.returncode != 0
    assert "blocked" in result.stderr
