"""Loading models and tokenizers safely, checking vocabularies, hashing weights."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from coupled.runner.config import ModelSpec

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "auto": "auto"}


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    """sha256 of each safetensors file of a local model folder ({} for a hub id)."""
    folder = Path(path)
    if not folder.is_dir():
        return {}
    hashes = {}
    for file in sorted(folder.glob("*.safetensors")):
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        hashes[file.name] = digest.hexdigest()
    return hashes


def end_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end a generation: the tokenizer's eos plus the generation config's."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update(int(i) for i in (configured if isinstance(configured, list) else [configured]))
    return sorted(ids)
