"""The vLLM backend: vLLM runs the model, the runner's own sampler picks every token.

vLLM (v1) is driven with one request per row, its prompt as token ids from the runner's own
formatting (chat template, no second BOS) and its noise key in ``SamplingParams.extra_args``.
Every request is *greedy* for vLLM (``temperature=0``): vLLM's sampler then only takes the
argmax of what the logits processors leave (``vllm/v1/sample/sampler.py``: processors that are
not argmax-invariant act before the greedy argmax; vLLM's temperature, top-k/top-p and min-p act
only after it, on random requests). :class:`CoupledLogitsProcessor` computes the runner's token
for each row -- :func:`coupled.runner.decode.sample_next_tokens`, the very function the HF
backend calls: ``mask(logits / T) + g`` with the counter-based noise of the row's key at the
row's step, the exact pruned argmax, logit columns beyond the tokenizer's vocabulary masked --
and hands vLLM a one-hot row (0 at that token, -inf elsewhere), so vLLM's argmax returns it
whatever its tie-breaking. The step is the length of the request's live output list (vLLM keeps
it current for processors; 0 for the first sampled token).

Anything vLLM would apply *around* the noise changes the sampler and is refused with an error
naming the option (:func:`check_sampling_params`, run on the final parameters of every request
as vLLM admits it and again as the worker adds it to the batch): penalties (they act after the
processors), logit bias, min tokens, bad words, allowed tokens, structured outputs, vLLM's own
temperature/top-p/top-k/min-p (the run config's go inside the processor), ``n > 1``,
``ignore_eos``, and speculative decoding (a draft's tokens would break the step count).
A checkpoint's ``generation_config.json`` sampling defaults (vLLM fills them in only for
requests sent without parameters) are neutralised: every request carries explicit neutral
values, and the check above proves it on what reaches the model.

``quantization = "4bit"`` maps to vLLM's in-flight bitsandbytes loading (GPU only);
``"8bit"`` is refused (vLLM has no in-flight 8-bit bitsandbytes). AWQ/GPTQ/FP8 checkpoints need
no key: vLLM reads their quantization from the checkpoint.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")  # before vllm reads its environment
os.environ.setdefault("DO_NOT_TRACK", "1")

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.inputs import TokensPrompt  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor  # noqa: E402
from vllm.v1.sample.logits_processor.builtin import process_dict_updates  # noqa: E402

from coupled.runner.decode import Generation, sample_next_tokens  # noqa: E402
from coupled.runner.engine import Sampling  # noqa: E402

__all__ = ["EXTRA_ARGS_KEY", "CoupledLogitsProcessor", "VLLMEngine", "VLLMOptionError",
           "check_run_config", "check_sampling_params", "coupled_sampling_params",
           "engine_arguments"]

EXTRA_ARGS_KEY = "coupled"
_log = logging.getLogger(__name__)


class VLLMOptionError(ValueError):
    """An option the vLLM backend refuses, because vLLM would apply it around the noise."""


# (SamplingParams field, its neutral value, why a non-neutral value is refused)
_NEUTRAL = (
    ("repetition_penalty", 1.0, "penalties act after the noise and break the coupling"),
    ("presence_penalty", 0.0, "penalties act after the noise and break the coupling"),
    ("frequency_penalty", 0.0, "penalties act after the noise and break the coupling"),
    ("min_tokens", 0, "vLLM's min-tokens processor masks the end token outside the sampler"),
    ("top_p", 1.0, "vLLM's top-p acts after the greedy argmax and would be skipped; set top_p "
                   "in the run config (applied inside the processor)"),
    ("top_k", (0, -1), "vLLM's top-k acts after the greedy argmax and would be skipped; set "
                       "top_k in the run config (applied inside the processor)"),
    ("min_p", 0.0, "vLLM's min-p acts after the greedy argmax and would be skipped; set min_p "
                   "in the run config (applied inside the processor)"),
    ("temperature", 0.0, "requests are greedy for vLLM; the run config's temperature is "
                         "applied inside the coupled processor"),
    ("n", 1, "one request per row: seeds give the samples, and n copies would share one key"),
    ("ignore_eos", False, "the runner ends a row at its end token, as the HF backend does"),
)
_ABSENT = (
    ("logit_bias", "a logit bias changes the logits outside the sampler"),
    ("allowed_token_ids", "an allowed-token mask changes the logits outside the sampler"),
    ("bad_words", "a bad-words mask changes the logits outside the sampler"),
    ("structured_outputs", "structured outputs mask the logits outside the sampler"),
)


def check_sampling_params(params: SamplingParams) -> None:
    """Refuse a request whose *final* sampling parameters would act around the coupled noise.

    Raises :class:`VLLMOptionError` naming the first offending option.
    """
    for name, neutral, why in _NEUTRAL:
        value = getattr(params, name)
        allowed = neutral if isinstance(neutral, tuple) else (neutral,)
        if value not in allowed:
            raise VLLMOptionError(f"sampling option {name}={value!r} is refused on the vLLM "
                                  f"backend: {why} (needs {allowed[0]!r})")
    for name, why in _ABSENT:
        if getattr(params, name, None):
            raise VLLMOptionError(f"sampling option {name} is refused on the vLLM backend: {why}")
    extra = (params.extra_args or {}).get(EXTRA_ARGS_KEY)
    if not isinstance(extra, dict) or "key" not in extra:
        raise VLLMOptionError(
            f"extra_args[{EXTRA_ARGS_KEY!r}]: this request has no coupled noise key; an engine "
            f"with the coupled logits processor only takes requests built by "
            f"coupled.runner.vllm_engine.coupled_sampling_params (vLLM's own sampling, e.g. "
            f"llm.generate without sampling parameters, would bypass the coupled sampler)")
    Sampling(**{k: extra.get(k) for k in ("temperature", "top_p", "top_k", "min_p")})


def coupled_sampling_params(key: int, sampling: Sampling, *, max_new_tokens: int,
                            end_token_ids: Sequence[int], vocab_size: int) -> SamplingParams:
    """One row's request: greedy for vLLM, the runner's sampler and noise key in extra_args.

    Every sampling field is given its neutral value explicitly, so no default from the
    checkpoint's generation_config.json can reach the request.
    """
    return SamplingParams(
        n=1, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0,
        presence_penalty=0.0, frequency_penalty=0.0, min_tokens=0, max_tokens=max_new_tokens,
        stop_token_ids=list(end_token_ids), detokenize=False, skip_special_tokens=False,
        extra_args={EXTRA_ARGS_KEY: {"key": int(key), "vocab_size": int(vocab_size),
                                     **sampling.as_kwargs()}})


@dataclass(frozen=True)
class _Row:
    key: int
    sampling: Sampling
    vocab_size: int
    output_ids: list[int]  # vLLM's live list: its length is the generation step


class CoupledLogitsProcessor(LogitsProcessor):
    """vLLM v1 logits processor: the runner's coupled sampler, as a one-hot row per request."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        check_sampling_params(sampling_params)

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        if getattr(vllm_config, "speculative_config", None) is not None:
            raise VLLMOptionError(
                "speculative decoding (speculative_config) is refused on the vLLM backend: "
                "draft tokens are accepted outside the sampler and break the step count")
        self.rows: dict[int, _Row] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # it decides the argmax: must run before vLLM's greedy sampling

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, self._new_row)

    @staticmethod
    def _new_row(params: SamplingParams, prompt_ids: list[int] | None,
                 output_ids: list[int]) -> _Row:
        check_sampling_params(params)  # the parameters as the worker received them
        extra = params.extra_args[EXTRA_ARGS_KEY]
        sampling = Sampling(**{k: extra.get(k) for k in ("temperature", "top_p", "top_k",
                                                         "min_p")})
        return _Row(int(extra["key"]), sampling, int(extra["vocab_size"]), output_ids)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        # Rows of one batch may be at different steps (continuous batching): one sampler call
        # per (step, settings) group; the sampler is row-wise, so grouping changes no token.
        groups: dict[tuple[int, Sampling, int], list[int]] = {}
        for index, row in self.rows.items():
            groups.setdefault((len(row.output_ids), row.sampling, row.vocab_size),
                              []).append(index)
        indices, tokens = [], []
        for (step, sampling, vocab_size), members in groups.items():
            where = torch.tensor(members, dtype=torch.long, device=logits.device)
            keys = torch.tensor([self.rows[i].key for i in members], dtype=torch.int64,
                                device=logits.device)
            tokens.append(sample_next_tokens(
                logits.index_select(0, where), keys, step, sampling.temperature, sampling.top_p,
                vocab_size, top_k=sampling.top_k, min_p=sampling.min_p))
            indices.append(where)
        where, chosen = torch.cat(indices), torch.cat(tokens)
        logits[where] = float("-inf")
        logits[where, chosen] = 0.0
        return logits


def _platform() -> str:
    from vllm.platforms import current_platform

    return current_platform.device_type


def engine_arguments(spec) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments for a ``[[models]]`` entry, or a refusal naming the key."""
    platform = _platform()
    where = f"model {spec.name!r}"
    kwargs: dict[str, Any] = {"model": spec.path, "tokenizer": spec.path, "dtype": spec.dtype,
                              "trust_remote_code": spec.trust_remote_code, "seed": 0,
                              "tensor_parallel_size": getattr(spec, "tensor_parallel_size", 1)}
    memory = getattr(spec, "gpu_memory_utilization", None)
    if memory is not None:
        kwargs["gpu_memory_utilization"] = memory
    if spec.device not in ("auto", platform):
        raise VLLMOptionError(
            f"{where}: device = {spec.device!r} is refused on the vLLM backend, which runs on "
            f"this machine's {platform!r} platform; use device = 'auto' (choose GPUs with "
            f"CUDA_VISIBLE_DEVICES and tensor_parallel_size)")
    if spec.quantization == "8bit":
        raise VLLMOptionError(
            f"{where}: quantization = '8bit' is refused on the vLLM backend: vLLM has no "
            f"in-flight 8-bit bitsandbytes loading (only pre-quantised checkpoints, which need "
            f"no key); use backend = 'hf' for it")
    if spec.quantization == "4bit":
        if platform != "cuda":
            raise VLLMOptionError(
                f"{where}: quantization = '4bit' (vLLM's bitsandbytes loading) needs a CUDA GPU; "
                f"this vLLM runs on {platform!r}. Use backend = 'hf' for bitsandbytes on CPU")
        kwargs["quantization"] = "bitsandbytes"
    if platform == "cpu":
        kwargs["enforce_eager"] = True  # no torch.compile / graph capture on CPU
    return kwargs


def check_run_config(config) -> None:
    """Refuse a run config's options that the vLLM backend cannot honour (before any write)."""
    specs = list(config.models)
    if config.judge is not None and config.judge.model is not None:
        specs.append(config.judge.model)
    for spec in specs:
        engine_arguments(spec)


def _end_token_ids(path: str, tokenizer, trust_remote_code: bool) -> list[int]:
    # The HF backend's rule (models.end_token_ids): the tokenizer's eos plus the generation
    # config's, read here without loading the weights twice.
    from transformers import AutoConfig, GenerationConfig

    from coupled.runner.models import end_token_ids

    try:
        generation = GenerationConfig.from_pretrained(path)
    except OSError:
        generation = GenerationConfig.from_model_config(
            AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code))
    return end_token_ids(generation, tokenizer)


class VLLMEngine:
    """One model on vLLM, sampling with the runner's coupled sampler."""

    backend = "vllm"

    def __init__(self, spec, tokenizer, *, processor: type = CoupledLogitsProcessor,
                 **engine_kwargs: Any) -> None:
        # ``processor``: a subclass for benchmarks (bench/bench_vllm.py also admits plain
        # requests, to time vLLM's own sampling on the same engine); runs use the default.
        if not issubclass(processor, CoupledLogitsProcessor):
            raise TypeError(f"processor must subclass CoupledLogitsProcessor, got {processor}")
        kwargs = {**engine_arguments(spec), **engine_kwargs}
        for name in ("speculative_config", "logits_processors"):
            if kwargs.get(name):
                raise VLLMOptionError(f"engine option {name} is refused on the vLLM backend: "
                                      f"it would act around the coupled sampler")
        self.end_token_ids = _end_token_ids(spec.path, tokenizer, spec.trust_remote_code)
        self.vocab_size = len(tokenizer)
        self.llm = LLM(logits_processors=[processor], **kwargs)
        # vLLM would fill these in only for requests sent without parameters (ours never are):
        # say that the checkpoint asked for them and that they do not apply, as on the HF side.
        ignored = self.llm.llm_engine.model_config.get_diff_sampling_param()
        ignored = {k: v for k, v in ignored.items() if k != "max_tokens"}
        if ignored:
            _log.warning("model %r: generation_config.json sampling defaults %s are not used: "
                         "the run config decides the sampler (as on the HF backend)",
                         spec.name, ignored)
        self.ignored_generation_defaults = ignored

    def generate_rows(self, prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int],
                      row_keys: torch.Tensor, *, sampling: Sampling,
                      max_new_tokens: int) -> list[Generation]:
        if row_keys.shape != (len(prompt_of_row),):
            raise ValueError(f"row_keys must have shape ({len(prompt_of_row)},), got "
                             f"{tuple(row_keys.shape)}")
        prompts = [TokensPrompt(prompt_token_ids=list(prompt_ids[p])) for p in prompt_of_row]
        params = [coupled_sampling_params(key, sampling, max_new_tokens=max_new_tokens,
                                          end_token_ids=self.end_token_ids,
                                          vocab_size=self.vocab_size)
                  for key in row_keys.tolist()]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        ends = set(self.end_token_ids)
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            # vLLM keeps the end token in the output; the runner's rows exclude it.
            finished = completion.finish_reason == "stop"
            if finished and ids and ids[-1] in ends:
                ids = ids[:-1]
            generations.append(Generation(tuple(ids), finished))
        return generations

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
        gc.collect()
