"""Loading models and tokenizers safely, checking vocabularies, hashing weights."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from coupled.runner.config import ModelSpec, is_local_path

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "auto": "auto"}


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; a device that is not there is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: this machine has no CUDA GPU (torch "
                             f"{torch.__version__}); use device = \"cpu\" or \"auto\"")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA GPU(s) "
                             f"(cuda:0..cuda:{count - 1})")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    return resolved


def check_model_source(spec: ModelSpec) -> None:
    """Refuse, before anything is written, a model that cannot load as configured.

    A local path must be a folder holding a ``config.json``; a checkpoint whose config names
    custom code (``auto_map``) needs ``trust_remote_code = true``; a hub id must be in the local
    cache when ``HF_HUB_OFFLINE`` is set; the device must exist.
    """
    where = f"model {spec.name!r}"
    resolve_device(spec.device)
    path = Path(spec.path)
    if is_local_path(spec.path):
        if not path.exists():
            raise ValueError(f"{where}: path {path} does not exist")
        if not path.is_dir():
            raise ValueError(f"{where}: path {path} is a file, not a model folder")
        config = path / "config.json"
        if not config.is_file():
            raise ValueError(f"{where}: folder {path} has no config.json (not a Hugging Face "
                             f"model folder{'; it is empty' if not any(path.iterdir()) else ''})")
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{where}: {config} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{where}: {config} is not a JSON object")
        if data.get("auto_map") and not spec.trust_remote_code:
            raise ValueError(f"{where}: {config} names custom code ({sorted(data['auto_map'])}) "
                             f"that would run on load; it is refused unless the model's "
                             f"trust_remote_code = true (only for code you have read)")
        return
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec.path, "config.json")
        if not isinstance(cached, str):
            raise ValueError(f"{where}: {spec.path!r} is neither a local folder nor a hub model "
                             f"in the local cache, and HF_HUB_OFFLINE=1 forbids downloading it")


def load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.path,
                                              trust_remote_code=spec.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec):
    """The model in eval mode on its device; bitsandbytes 8/4-bit when the spec asks for it.

    ``trust_remote_code`` stays off unless the config turns it on; safetensors are required when
    the folder has them (``use_safetensors``), so no pickled weights are ever unpickled then.
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    # bitsandbytes logs about optional GPU kernels on CPU; not actionable for users.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.getLogger("kernels").setLevel(logging.ERROR)
    device = resolve_device(spec.device)
    kwargs = {"trust_remote_code": spec.trust_remote_code, "dtype": _DTYPES[spec.dtype]}
    if _has_safetensors(spec.path):
        kwargs["use_safetensors"] = True
    if spec.quantization == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif spec.quantization == "4bit":
        compute = torch.float32 if spec.dtype in ("float32", "auto") else _DTYPES[spec.dtype]
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True,
                                                           bnb_4bit_compute_dtype=compute)
    if spec.quantization:
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(spec.path, **kwargs)
    if not spec.quantization:
        model = model.to(device)
    return model.eval()


def _has_safetensors(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and any(folder.glob("*.safetensors"))


def check_same_vocabulary(tokenizers: Mapping[str, object]) -> None:
    """Refuse to couple models whose tokenizers differ (noise is keyed by token id)."""
    names = list(tokenizers)
    reference_name = names[0]
    reference = tokenizers[reference_name].get_vocab()
    for name in names[1:]:
        vocab = tokenizers[name].get_vocab()
        if vocab == reference:
            continue
        only_here = sorted(set(vocab.items()) - set(reference.items()))[:3]
        only_there = sorted(set(reference.items()) - set(vocab.items()))[:3]
        raise ValueError(
            f"models {reference_name!r} and {name!r} have different tokenizer vocabularies "
            f"({len(reference)} vs {len(vocab)} tokens; e.g. (token, id) only in {name!r}: "
            f"{only_here}, only in {reference_name!r}: {only_there}). Coupled noise is keyed by "
            f"token id, so they cannot be coupled; use models that share a tokenizer.")


def model_file_hashes(path: str) -> dict[str, str]:
    """sha256 of every file of a local model folder ({} for a hub id), by relative path.

    Every file, not only ``*.safetensors``: pickled ``*.bin`` / ``*.pt`` checkpoints, GGUF files,
    the config and the tokenizer files all decide rows, and ``--resume`` compares these hashes.
    Hidden files (``.git``, ``.cache``) are skipped.
    """
    folder = Path(path)
    if not folder.is_dir():
        return {}
    hashes = {}
    files = (f for f in folder.rglob("*")
             if f.is_file() and not any(p.startswith(".") for p in f.relative_to(folder).parts))
    for file in sorted(files):
        hashes[file.relative_to(folder).as_posix()] = file_sha256(file)
    return hashes


def file_sha256(path: Path) -> str:
    """sha256 of one file, read in blocks (``hashlib.file_digest``)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def hub_revision(path: str) -> str | None:
    """The commit a hub id resolves to in the local cache (None for a local folder or when not
    cached): recorded in the manifest, so a hub model's rows name the weights they came from."""
    if is_local_path(path):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(path, "config.json")
    if not isinstance(cached, str):
        return None
    parts = Path(cached).parts  # .../models--org--name/snapshots/<commit>/config.json
    return parts[-2] if len(parts) > 2 and parts[-3] == "snapshots" else None


def end_token_ids(generation_config, tokenizer) -> list[int]:
    """Token ids that end a generation: the tokenizer's eos plus the generation config's
    (``generation_config`` may be None; both backends pass theirs: HF the loaded model's,
    vLLM one read from the checkpoint)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(generation_config, "eos_token_id", None)
    if configured is not None:
        ids.update(int(i) for i in (configured if isinstance(configured, list) else [configured]))
    return sorted(ids)
