"""The contract between producers (simulate, runner) and consumers (analysis, figures).

An output directory holds ``scores/``, ``comparisons/`` and ``generations/`` (each a folder of
parquet shards) plus ``manifest.json``. Every reader accepts a single file (parquet, CSV, JSONL
or JSON), a folder of shards, or an output directory, and reads every file through
:func:`read_records`, the one string-identifier layer (identifiers are text exactly as
written: no type or NA guessing). A shard that cannot be read is an error naming it, never
skipped. Validation errors name the file, the column and example rows; writers are atomic
(temporary file + rename) so an interrupted run never leaves a half-written shard behind.
:func:`design_status` says what a run lacks (still running, models missing cells).
"""

from coupled.tables.design import DesignStatus, MissingCells, design_status, manifest_models
from coupled.tables.io import (
    atomic_write,
    check_shard_name,
    completed_shards,
    read_comparisons,
    read_generations,
    read_manifest,
    read_records,
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
    IDENTIFIER_COLUMNS,
    KINDS,
    MODES,
    NO_SHARED_NOISE,
    OUTCOMES,
    REQUIRED_COLUMNS,
    SAMPLERS,
    SCORE_KEY,
    SCORE_LIMIT,
    TEXT_COLUMNS,
    TableError,
    identifier_frame,
    identifier_text,
    require_shared_noise,
    validate,
    validate_comparisons,
    validate_generations,
    validate_scores,
)

__all__ = [
    "COMPARISON_KEY",
    "COUPLINGS",
    "GENERATION_KEY",
    "IDENTIFIER_COLUMNS",
    "KINDS",
    "MODES",
    "NO_SHARED_NOISE",
    "OUTCOMES",
    "REQUIRED_COLUMNS",
    "SAMPLERS",
    "SCORE_KEY",
    "SCORE_LIMIT",
    "TEXT_COLUMNS",
    "DesignStatus",
    "MissingCells",
    "TableError",
    "atomic_write",
    "check_shard_name",
    "completed_shards",
    "design_status",
    "identifier_frame",
    "identifier_text",
    "manifest_models",
    "read_comparisons",
    "read_generations",
    "read_manifest",
    "read_records",
    "read_scores",
    "read_table",
    "require_shared_noise",
    "staged_folder",
    "validate",
    "validate_comparisons",
    "validate_generations",
    "validate_scores",
    "write_manifest",
    "write_shard",
    "write_table",
]
