"""coupled.runner: coupled and independent paired scores from Hugging Face models.

``run(config)`` turns a TOML config into the tables of DESIGN §2 (``scores`` for multiple
choice; ``generations`` + ``comparisons`` for open prompts with a judge). The noise function
lives in :mod:`coupled.runner.noise_torch`; decoding in :mod:`coupled.runner.decode`.
torch is imported only by the modules that need it, so ``load_config`` and the task helpers
work without it.
"""

from coupled.runner.config import JudgeSpec, ModelSpec, RunConfig, TaskSpec, load_config
from coupled.runner.run import plan_chunks, run

__all__ = ["JudgeSpec", "ModelSpec", "RunConfig", "TaskSpec", "load_config", "plan_chunks", "run"]
