"""The run configuration: one strict schema (pydantic v2) for a TOML file or a dict of its shape.

Every table rejects unknown keys (naming the key, its table and the nearest valid key) and every
value must have its declared type *strictly*: a boolean is ``true``/``false`` only (the string
``"false"`` is an error, never truthy), an integer is not a boolean, a list is not a scalar and a
string is not a number. The schema below is also the documentation of the config:
:func:`config_reference` renders it (``coupled run --show-config``, and the README's table is
that rendering, checked by a test).

Relative paths in a config file are relative to the file's folder. Example::

    output_dir = "../../runs/tiny"   # or pass --out DIR
    seeds = 5                        # 5 -> seeds 0..4; or an explicit list [0, 3, 7]
    modes = ["coupled", "independent"]
    temperature = 1.0
    max_new_tokens = 4

    [task]
    name = "tiny-mc"
    type = "multiple_choice"         # or "open" (needs [judge])
    path = "questions.jsonl"

    [[models]]
    name = "tiny-A"
    path = "models/tiny-A"           # local folder or hub id

Other issues add their keys here, in this one schema (backend, sampling masks, noise key, ...).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from coupled.tables import MODES

# The allowed values live in the field types (one place each); these two recur in three tables.
Dtype = Literal["auto", "float32", "float16", "bfloat16"]
Quantization = Literal["8bit", "4bit"]
# How a reply is scored (coupled.runner.scorers, which takes its list from here).
ScorerName = Literal["choice", "exact_match", "numeric", "regex"]
# cpu, cuda, cuda:N, mps or auto; anything else ("potato") is refused when the config is read.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

def _known_device(value: str) -> str:
    if not _DEVICE.match(value):
        raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


# A device name, checked the same way in every table that has one.
Device = Annotated[str, AfterValidator(_known_device)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1)]


class ConfigError(ValueError):
    """A config that does not fit the schema; the message is one line naming the setting."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _resolve(base: Path, path: str) -> str:
    return str((base / Path(path).expanduser()).resolve())


def _base(info: ValidationInfo) -> Path:
    return (info.context or {}).get("base") or Path.cwd()


def is_local_path(path: str, base: Path | None = None) -> bool:
    """A model ``path`` names a local folder, not a hub id ("org/name"): it looks like a path,
    or it exists relative to ``base`` (the config's folder; the working directory if None)."""
    return path.startswith((".", "/", "~")) or ((base or Path.cwd()) / path).exists()


def _model_path(path: str, base: Path, build: str | None = None) -> str:
    # A hub id stays as it is; a local path (or one a build will create) is made absolute.
    return _resolve(base, path) if is_local_path(path, base) or build is not None else path


class ModelSpec(_Strict):
    """One ``[[models]]`` entry."""

    name: Name = Field(description="the model's name in the tables (unique in the run)")
    path: Name = Field(description="a local folder (relative to the config) or a hub id")
    dtype: Dtype = Field(
        "float32", description="weights' dtype (default: the top-level `dtype`)")
    quantization: Quantization | None = Field(
        None, description="bitsandbytes 8-bit or 4-bit loading of the same weights")
    device: Device = Field("auto", description="auto | cpu | cuda | cuda:N | mps "
                                            "(default: the top-level `device`)")
    trust_remote_code: bool = Field(
        False, description="run code named by the checkpoint's config (default: the "
                           "top-level `trust_remote_code`, false)")
    build: Literal["tiny"] | None = Field(
        None, description="'tiny': build the tiny example models into a *new* folder at "
                          "`path`'s parent when `path` is missing")
    tensor_parallel_size: PositiveInt = Field(
        1, description="vLLM backend: GPUs the model is split over")
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="vLLM backend: fraction of each GPU's memory for this engine")
    chat_template: bool | None = Field(
        None, description="true: render prompts with the tokenizer's chat template (an error "
                          "if it has none); false: plain text prompts; unset: the template "
                          "when the tokenizer has one")

    @model_validator(mode="after")
    def _local_path_absolute(self, info: ValidationInfo) -> ModelSpec:
        object.__setattr__(self, "path", _model_path(self.path, _base(info), self.build))
        return self


class ColumnMap(_Strict):
    """The ``[task.columns]`` table: which column of the file holds each field.

    A value is a column name, or a dotted path into a nested column (``"choices.text"``); a
    column whose own name contains the dot is taken first. Unset keys use the standard names
    (``prompt_id``, ``question``, ``choices``, ``answer``, ``subject``, ``prompt``) when present.
    """

    id: Name | None = Field(None, description="the prompt id column (default `prompt_id`, "
                                              "else the row number)")
    question: Name | None = Field(None, description="multiple_choice: the question text")
    choices: Name | tuple[Name, ...] | None = Field(
        None, description="multiple_choice: a column of option lists, or a list of columns "
                          "(one option each)")
    labels: Name | None = Field(
        None, description="multiple_choice: the row's own option labels (ARC `choices.label`); "
                          "the answer is looked up in them")
    answer: Name | None = Field(None, description="the gold answer (multiple_choice, generate)")
    subject: Name | None = Field(None, description="the subject column (optional)")
    prompt: Name | None = Field(None, description="open / generate: the prompt text")

    @field_validator("choices", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


class TaskSpec(_Strict):
    """The ``[task]`` table (or one ``[[tasks]]`` entry)."""

    name: Name = Field(description="the task's name in the tables (part of the noise key)")
    type: Literal["multiple_choice", "open", "generate"] = Field(
        description="multiple_choice (scored by letter), generate (a reply scored against a "
                    "gold answer by `scorer`) or open (needs [judge])")
    path: Name = Field(description="questions: a JSONL, JSON, CSV or parquet file, or a local "
                                   "Hugging Face dataset folder (save_to_disk, or data files); "
                                   "relative to the config; never a hub id")
    columns: ColumnMap | None = Field(None, description="[task.columns]: the file's column "
                                                        "for each field")
    split: Name | None = Field(None, description="dataset folder: the split to read (needed "
                                                 "when it has several)")
    dataset_name: Name | None = Field(None, description="dataset folder of data files: the "
                                                        "configuration (`name=` of datasets)")
    fewshot: NonNegativeInt = Field(0, description="k solved examples before each question, "
                                                   "fixed per question")
    fewshot_split: Name | None = Field(None, description="the examples' split (of `fewshot_path`, "
                                                         "else of the task's dataset); default: "
                                                         "the task's own rows, never the "
                                                         "question itself")
    fewshot_path: Name | None = Field(None, description="the examples' file or dataset folder "
                                                        "(read with the same column map)")
    scorer: ScorerName | None = Field(
        None, description="choice (multiple_choice), exact_match (default of generate), "
                          "numeric or regex")
    regex: Name | None = Field(None, description="scorer = 'regex': the pattern; its first "
                                                 "group (else the match) is compared")
    tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="scorer = 'numeric': largest |reply - gold| scored right (default 0)")
    system_prompt: str | None = Field(None, description="default: the paper's (Tables 3, 4)")
    limit: PositiveInt | None = Field(None, description="only the first `limit` prompts")
    answer_kind: Literal["text", "label", "index"] | None = Field(
        None, description="how `answer` names the gold option: its text, its letter label, or "
                          "a 0-based index; unset: matched by text, a letter, or an integer "
                          "index only when no option text is a number (else an error)")

    @field_validator("path", "fewshot_path")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(_base(info), value)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"is not a valid regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> TaskSpec:
        scorer = self.scorer or ("choice" if self.type == "multiple_choice" else
                                 "exact_match" if self.type == "generate" else None)
        if self.type == "multiple_choice" and scorer != "choice":
            raise ValueError(f"scorer: {scorer!r} scores generate tasks; a multiple_choice task "
                             f"is scored by 'choice'")
        if self.type == "generate" and scorer == "choice":
            raise ValueError("scorer: 'choice' scores multiple_choice tasks; a generate task "
                             "uses exact_match, numeric or regex")
        if self.type == "open" and scorer is not None:
            raise ValueError("scorer: open prompts are judged ([judge]), not scored")
        if (self.regex is None) == (scorer == "regex"):
            raise ValueError("regex: is required by scorer = 'regex'" if self.regex is None
                             else "regex: applies to scorer = 'regex' only")
        if self.tolerance is not None and scorer != "numeric":
            raise ValueError("tolerance: applies to scorer = 'numeric' only")
        if self.answer_kind is not None and self.type != "multiple_choice":
            raise ValueError("answer_kind: applies to multiple_choice tasks only")
        if self.type == "open" and self.fewshot:
            raise ValueError("fewshot: open prompts have no gold answer to show; use it with "
                             "multiple_choice or generate tasks")
        if not self.fewshot and (self.fewshot_split or self.fewshot_path):
            raise ValueError("fewshot: fewshot_split / fewshot_path need fewshot = k > 0")
        fields = {"multiple_choice": {"id", "question", "choices", "labels", "answer",
                                      "subject"},
                  "generate": {"id", "prompt", "answer", "subject"},
                  "open": {"id", "prompt", "subject"}}[self.type]
        if self.columns is not None:
            extra = sorted(k for k in self.columns.model_fields_set
                           if getattr(self.columns, k) is not None and k not in fields)
            if extra:
                raise ValueError(f"columns.{extra[0]}: does not apply to a {self.type} task "
                                 f"(its columns: {', '.join(sorted(fields))})")
            if self.columns.labels is not None and self.answer_kind not in (None, "label"):
                raise ValueError("columns.labels: the answer is looked up in the row's labels, "
                                 "so answer_kind must be 'label' (or unset)")
        object.__setattr__(self, "scorer", scorer)
        return self


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Keys of the API judge (base_url) and of the local judge model (path): each refused elsewhere.
_API_JUDGE_KEYS = ("model", "api_key_env", "max_tokens", "max_retries", "timeout_s",
                   "concurrency")
_LOCAL_JUDGE_KEYS = ("dtype", "quantization", "device", "trust_remote_code", "max_new_tokens")


class JudgeSpec(_Strict):
    """The ``[judge]`` table (open prompts only): a local judge model, an OpenAI-compatible
    API (``base_url`` + ``model``), or a comparisons file."""

    # The TOML key `model` (the API's model name) is stored as `api_model`: `JudgeSpec.model`
    # is the local judge's ModelSpec, which the rest of the runner reads.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, serialize_by_alias=True)

    path: Name | None = Field(None, description="a local judge model (run greedily)")
    comparisons: Name | None = Field(None, description="externally judged comparisons file")
    base_url: Name | None = Field(
        None, description="an OpenAI-compatible API judge, e.g. \"http://127.0.0.1:8000/v1\" "
                          "(temperature 0, the paper's judge prompt)")
    api_model: Name | None = Field(None, alias="model",
                                   description="API judge: the model name the API serves")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="API judge: the environment variable holding the API "
                                      "key (read at run time, never written anywhere)")
    max_tokens: PositiveInt = Field(16, description="API judge: the verdict's length limit")
    max_retries: NonNegativeInt = Field(
        6, description="API judge: retries of a request on 429 / 5xx / timeouts / connection "
                       "errors (exponential back-off from 0.5 s, at most 8 s, or Retry-After)")
    timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        60.0, description="API judge: seconds one request may take before it is retried")
    concurrency: PositiveInt = Field(4, description="API judge: requests in flight at once")
    max_new_tokens: PositiveInt = Field(8, description="the judge's reply length")
    dtype: Dtype = Field(
        "float32", description="judge model: as in [[models]]")
    quantization: Quantization | None = Field(
        None, description="judge model: as in [[models]]")
    device: Device = Field("auto", description="judge model: as in [[models]]")
    trust_remote_code: bool = Field(False, description="judge model: as in [[models]]")

    @field_validator("comparisons")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(_base(info), value)

    @field_validator("path")
    @classmethod
    def _local_path_absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _model_path(value, _base(info))

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        # Never echo the value: a user may have pasted the key itself here.
        if not _ENV_NAME.match(value):
            raise ValueError("must be the NAME of an environment variable (upper-case letters, "
                             "digits, _; e.g. OPENAI_API_KEY) that holds the key, never the "
                             "key itself")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        if parts.username or parts.password:  # the URL is recorded in the manifest
            raise ValueError("must not hold credentials (user:password@): the key goes in the "
                             "environment variable named by api_key_env")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JudgeSpec:
        sources = [self.path, self.comparisons, self.base_url]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("needs exactly one of path (a judge model), base_url (an "
                             "OpenAI-compatible API, with model) or comparisons (a file)")
        given = {("model" if k == "api_model" else k) for k in self.model_fields_set}
        what = "a judge model (path)" if self.path is not None else (
            "an API judge (base_url)" if self.base_url is not None else "a comparisons file")
        for keys, applies_to, active in ((_LOCAL_JUDGE_KEYS, "a judge model (path)",
                                          self.path is not None),
                                         (_API_JUDGE_KEYS, "an API judge (base_url)",
                                          self.base_url is not None)):
            extra = sorted(k for k in keys if k in given)
            if extra and not active:
                raise ValueError(f"{extra[0]!r} applies to {applies_to}, not to {what}")
        if self.base_url is not None and self.api_model is None:
            raise ValueError("base_url needs model (the model name the API serves, e.g. "
                             "\"gpt-4o\")")
        return self

    @property
    def model(self) -> ModelSpec | None:
        if self.path is None:
            return None
        return ModelSpec(name="judge", path=self.path, dtype=self.dtype,
                         quantization=self.quantization, device=self.device,
                         trust_remote_code=self.trust_remote_code)


class RunConfig(_Strict):
    """The whole run: top-level settings, ``[task]`` (or ``[[tasks]]``), ``[[models]]`` and
    ``[judge]``. After validation ``tasks`` holds every task; ``task`` is the task of a
    one-task run (``None`` when there are several)."""

    task: TaskSpec | None = Field(None, description="[task] table: the run's one task")
    tasks: tuple[TaskSpec, ...] | None = Field(
        None, description="[[tasks]] tables: several tasks in one run (instead of [task])")
    models: tuple[ModelSpec, ...] = Field(min_length=1,
                                          description="one [[models]] table per model")
    output_dir: str | None = Field(None, description="where the tables go (or --out DIR)")
    seeds: tuple[NonNegativeInt, ...] = Field(
        (0, 1, 2, 3, 4), description="a count (5 -> 0..4) or a list of distinct seeds")
    modes: tuple[Literal["coupled", "independent"], ...] = Field(
        MODES, min_length=1, description="coupled and/or independent")
    temperature: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        1.0, description="sampling temperature (> 0)")
    top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="nucleus mask before the noisy argmax")
    top_k: PositiveInt | None = Field(None, description="top-k mask before the noisy argmax")
    min_p: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None, description="min-p mask before the noisy argmax")
    max_new_tokens: PositiveInt = Field(4, description="reply length limit in tokens")
    batch_size: PositiveInt = Field(64, description="rows decoded together (decides no row)")
    prompts_per_chunk: PositiveInt = Field(
        8, description="prompts per chunk: the unit of work and of resumption")
    backend: Literal["hf", "vllm"] = Field("hf", description="decode engine")
    noise_key: Literal["token", "text", "bytes"] = Field(
        "token", description="what the noise is keyed by: 'token' (token ids; one shared "
        "tokenizer), 'text' (byte offset of the reply and the candidate's bytes) or 'bytes' "
        "(exact byte-level sampling; needs top_k, top_p or min_p): 'text' and 'bytes' couple "
        "models whose tokenizers differ (hf backend; docs/cross-tokenizer.md)")
    device: Device = Field("auto", description="default device of every model")
    dtype: Dtype = Field(
        "float32", description="default dtype of every model")
    trust_remote_code: bool = Field(False, description="default for every model")
    judge: JudgeSpec | None = Field(None, description="[judge] table (open prompts only)")
    source: str | None = Field(None, exclude=True, description="the config file (set by "
                                                              "the loader)")

    @model_validator(mode="before")
    @classmethod
    def _inherit_model_defaults(cls, data: Any) -> Any:
        # Top-level device / dtype / trust_remote_code are the defaults of each model table.
        if not isinstance(data, dict):
            return data
        # A default of the wrong type is not copied: the error then names the top-level key.
        types = {"device": str, "dtype": str, "trust_remote_code": bool}
        defaults = {k: data[k] for k, kind in types.items() if type(data.get(k)) is kind}
        data = dict(data)
        for key in ("models",):
            if isinstance(data.get(key), list):
                data[key] = [{**defaults, **m} if isinstance(m, dict) else m
                             for m in data[key]]
        if isinstance(data.get("judge"), dict) and "path" in data["judge"]:
            data["judge"] = {**defaults, **data["judge"]}
        return data

    @field_validator("models", "modes", "tasks", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(value)
        return value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_count_or_list(cls, value: Any) -> Any:
        if type(value) is int:  # a count; bool is not int here
            if value < 1:
                raise ValueError(f"a seed count must be positive, got {value}")
            return tuple(range(value))
        if isinstance(value, list) and value:
            return tuple(value)
        raise ValueError(f"must be a positive count or a non-empty list of distinct "
                         f"non-negative integers, got {value!r}")

    @field_validator("seeds", "modes")
    @classmethod
    def _distinct(cls, value: tuple) -> tuple:
        repeated = sorted({v for v in value if value.count(v) > 1}, key=str)
        if repeated:
            raise ValueError(f"must be distinct, {repeated[0]!r} is repeated")
        return value

    @field_validator("output_dir")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(_base(info), value)

    @model_validator(mode="after")
    def _noise_key_runs_here(self) -> RunConfig:
        # The cross-tokenizer keys live in coupled.runner.crosstok_engine (HF models only).
        if self.noise_key != "token" and self.backend != "hf":
            raise ValueError(f"noise_key = {self.noise_key!r} runs on backend = 'hf' only "
                             f"(the vLLM sampler keys the noise by token id)")
        if self.noise_key == "bytes" and not (self.top_k or self.top_p or self.min_p):
            # With the full softmax every tokenization of the reply so far has positive
            # probability and the exact next-byte law sums over all of them: a number of model
            # calls exponential in the reply length. The masks keep it small and the law exact.
            raise ValueError("noise_key = 'bytes' needs top_k, top_p or min_p: the exact "
                             "byte-level law sums over every tokenization of the reply with "
                             "positive probability, exponentially many under the full softmax")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"models: names must be distinct, {repeated[0]!r} is repeated")
        if self.task is None and not self.tasks:
            raise ValueError("task: is missing: add a [task] table with name, type and path "
                             "(or one [[tasks]] table per task)")
        if self.task is not None and self.tasks and self.tasks != (self.task,):
            raise ValueError("tasks: give one [task] table or [[tasks]] tables, not both")
        every = self.tasks or (self.task,)
        object.__setattr__(self, "tasks", every)
        object.__setattr__(self, "task", every[0] if len(every) == 1 else None)
        task_names = [t.name for t in every]
        repeated = sorted({n for n in task_names if task_names.count(n) > 1})
        if repeated:
            raise ValueError(f"tasks: names must be distinct, {repeated[0]!r} is repeated")
        judged = [t.name for t in every if t.type == "open"]
        if judged and self.judge is None:
            raise ValueError("judge: is required for open prompts (a [judge] table with a judge "
                             "model path, an API base_url + model, or a comparisons file)")
        if not judged and self.judge is not None:
            raise ValueError(f"judge: a [judge] table applies to open prompts only; this run's "
                             f"task is {every[0].type} (scored without a judge): remove it")
        if len(judged) > 1 and self.judge is not None and self.judge.comparisons is not None:
            raise ValueError("judge: one comparisons file cannot serve several open tasks; "
                             "run them separately")
        return self

    def task_views(self) -> list[RunConfig]:
        """One config per task, each a one-task run (``task`` set): the per-task loop's unit."""
        return [self.model_copy(update={"task": t, "tasks": (t,)}) for t in self.tasks]

    def fingerprint(self) -> dict[str, Any]:
        """What decides the rows' values: all but where the output goes and how fast."""
        data = self.as_dict()
        for key in ("output_dir", "batch_size"):
            data.pop(key)
        return data


def load_config(config: str | os.PathLike | dict[str, Any] | RunConfig,
                out: str | os.PathLike | None = None) -> RunConfig:
    """Parse and validate a TOML file (or a dict of its shape); ``out`` overrides ``output_dir``.

    Raises :class:`ConfigError` (a ``ValueError``) with one line naming the setting.
    """
    if isinstance(config, RunConfig):
        result = config
    elif isinstance(config, dict):
        result = _validate(config, Path.cwd(), None)
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"config {path}: invalid TOML: {error}") from error
        result = _validate(data, path.resolve().parent, str(path))
    if out is not None:
        result = result.model_copy(update={"output_dir": str(Path(out).resolve())})
    if result.output_dir is None:
        raise ConfigError(f"config {result.source or '<config>'}: 'output_dir' is missing "
                          f"(or pass --out DIR)")
    return result


def _validate(data: dict[str, Any], base: Path, source: str | None) -> RunConfig:
    where = source or "<config>"
    if "source" in data:
        raise ConfigError(_unknown_key_message(where, ("source",), RunConfig))
    try:
        config = RunConfig.model_validate(data, context={"base": base})
    except ValidationError as error:
        raise ConfigError(_one_line(where, error)) from None
    return config.model_copy(update={"source": source})


# --- one-line errors -------------------------------------------------------------------------

_TABLES: dict[str, type[BaseModel]] = {"task": TaskSpec, "tasks": TaskSpec, "models": ModelSpec,
                                       "judge": JudgeSpec, "columns": ColumnMap}
_KIND = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
         list: "a list", dict: "a table", type(None): "nothing"}


def _dotted(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _table_of(loc: tuple) -> tuple[str, type[BaseModel]]:
    names = [p for p in loc[:-1] if isinstance(p, str)]
    if not names:
        return "the top level", RunConfig
    name = names[-1]
    if name in ("models", "tasks") and len(loc) > 2 and isinstance(loc[1], int):
        label = f"[[{name}]] #{loc[1] + 1}"
    elif name == "columns":
        label = "[task.columns]"
    else:
        label = f"[{name}]"
    return label, _TABLES.get(name, RunConfig)


def _unknown_key_message(where: str, loc: tuple, table: type[BaseModel] | None = None) -> str:
    label, model = _table_of(loc)
    model = table or model
    known = [f.alias or k for k, f in model.model_fields.items() if k != "source"]
    near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return (f"config {where}: {_dotted(loc)!r} is not a known setting of {label} "
            f"({hint}known: {', '.join(known)})")


def _one_line(where: str, error: ValidationError) -> str:
    # Top-level problems first: a bad default should be named where it was written.
    errors = error.errors(include_url=False)
    # pydantic also reports a too-short tuple when an item fails: keep only the item's error.
    item_failed = {e["loc"][0] for e in errors if len(e["loc"]) > 1}
    errors = [e for e in errors
              if not (e["type"] == "too_short" and e["loc"][:1] and e["loc"][0] in item_failed)]
    inherited = ("device", "dtype", "trust_remote_code")
    errors.sort(key=lambda e: len(e["loc"]) != 1 or e["loc"][0] not in inherited)
    first = errors[0]
    # union members tag their errors ('constrained-str', 'tuple[...]'): not a setting's name
    def tag(part: Any) -> bool:
        return isinstance(part, str) and ("[" in part or part.startswith("constrained-")
                                          or part in ("str", "int", "float", "bool"))

    loc = tuple(p for p in first["loc"][:-1] if not tag(p))
    if first["loc"] and not (tag(first["loc"][-1]) and first["type"] != "extra_forbidden"):
        loc += (first["loc"][-1],)
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" \
        if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        return _unknown_key_message(where, loc) + more
    value = first.get("input")
    got = f", got {value!r} ({_KIND.get(type(value), type(value).__name__)})" \
        if first["type"] not in ("missing", "value_error", "assertion_error") else ""
    message = first["msg"]
    if first["type"] in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        setting, _, rest = message.partition(": ")
        if rest and re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", setting):
            # a cross-field rule names its own setting, inside the table it was raised in
            return f"config {where}: {_dotted(loc + tuple(setting.split('.')))!r} {rest}{more}"
    elif first["type"] == "bool_type":
        message = "must be true or false (a TOML boolean, not a string or a number)"
    elif first["type"] in ("int_type", "int_from_float"):
        message = "must be an integer"
    elif first["type"] == "float_type":
        message = "must be a number"
    elif first["type"] == "too_short" and loc == ("models",):
        message = "is empty: add one [[models]] table per model (name, path)"
        got = ""
    elif first["type"] == "missing":
        message = "is missing"
        if loc == ("task",):
            message += ": add a [task] table with name, type and path"
        elif loc == ("models",):
            message += ": add one [[models]] table per model (name, path)"
    else:
        message = (message[:1].lower() + message[1:]).replace("tuple", "list")
    return f"config {where}: {_dotted(loc)!r} {message}{got}{more}"


# --- the schema as documentation ---------------------------------------------------------------

def _type_text(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0])
    if origin is Literal:
        return " / ".join(f'"{a}"' for a in args)
    if origin in (Union, UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is tuple:
        return f"list of {_type_text(args[0])}"
    if annotation is type(None):
        return "unset"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def config_reference() -> str:
    """The config schema as markdown tables (one per TOML table), generated from the models."""
    lines = []
    for title, model in (("top level", RunConfig), ("[task] (or each [[tasks]])", TaskSpec),
                         ("[task.columns]", ColumnMap), ("[[models]]", ModelSpec),
                         ("[judge]", JudgeSpec)):
        lines += [f"**{title}**", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if name == "source":
                continue
            default = "required" if field.is_required() else repr(field.default)
            if isinstance(field.default, tuple):
                default = repr(list(field.default))
            meaning = (field.description or "").replace("|", "\\|")
            annotation = _type_text(field.annotation).replace("|", "\\|")
            lines.append(f"| `{field.alias or name}` | {annotation} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"

