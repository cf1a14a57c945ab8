"""The contract between producers (simulate, runner) and consumers (analysis, figures).

An output directory holds ``scores/``, ``comparisons/`` and ``generations/`` (each a folder of
parquet shards) plus ``manifest.json``. Every reader accepts a single file (parquet or CSV), a
folder of shards, or an output directory. Validation errors name the file, the column and
example rows; writers are atomic (temporary file + rename) so an interrupted run never leaves a
half-written shard behind.
"""

from coupled.tables.io import (
    TableError,
    atomic_write,
    completed_shards,
    read_comparisons,
    read_generations,
    read_manifest,
    read_scores,
    read_table,
    staged_folder,
    write_manifest,
    write_shard,
    write_table,
)
from coupled.tables.schema import (
    COMPARISON_KEY,
    COUPLINGS,
    GENERATION_KEY,
    KINDS,
    MODES,
    OUTCOMES,
    REQUIRED_COLUMNS,
    SCORE_KEY,
    validate,
    validate_comparisons,
    validate_generations,
    validate_scores,
)

__all__ = [
    "COMPARISON_KEY",
    "COUPLINGS",
    "GENERATION_KEY",
    "KINDS",
    "MODES",
    "OUTCOMES",
    "REQUIRED_COLUMNS",
    "SCORE_KEY",
    "TableError",
    "atomic_write",
    "completed_shards",
    "read_comparisons",
    "read_generations",
    "read_manifest",
    "read_scores",
    "read_table",
    "staged_folder",
    "validate",
    "validate_comparisons",
    "validate_generations",
    "validate_scores",
    "write_manifest",
    "write_shard",
    "write_table",
]
