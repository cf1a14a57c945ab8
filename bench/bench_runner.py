"""Runner throughput: coupled decoding vs transformers' sampling and vs a batch-1 per-row loop.

    python bench/bench_runner.py [--device cuda] [--quick]

Three ways to produce the same rows (``prompts`` distinct prompts x ``seeds`` seeds, every row
generating exactly ``--new-tokens`` tokens, end tokens ignored so all do the same work), timed in
the same process, median of ``--repeats``:

* coupled   -- ``coupled.runner.decode.generate_rows``: one prefill per prompt, KV cache copied
               to its seeds, counter-based Gumbel noise (float64) on the device;
* generate  -- ``model.generate(do_sample=True)`` on the same rows (each row prefilled);
* per-row   -- ``generate_rows`` called once per row (batch 1), like the paper's code.

Models: the examples/tiny tokenizer + tiny-A (V ~ 500, built in a temp folder), and the same
architecture with V = 32,000 (random prompt ids). Prints tokens/s and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from coupled.runner import decode, noise_torch
from coupled.runner.tiny import build_model, build_tiny_models

QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeats: int) -> float:
    fn()  # warm-up (kernels, allocator)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(model, vocab: int, device, prompts: int, seeds: int, prompt_len: int,
                new_tokens: int, repeats: int, per_row: bool) -> dict:
    generator = torch.Generator().manual_seed(0)
    prompt_ids = [torch.randint(3, vocab, (prompt_len,), generator=generator).tolist()
                  for _ in range(prompts)]
    prompt_of_row = [p for p in range(prompts) for _ in range(seeds)]
    rows = len(prompt_of_row)
    keys = noise_torch.row_keys("bench", [str(p) for p in prompt_of_row],
                                [r % seeds for r in range(rows)]).to(device)
    common = {"temperature": 1.0, "max_new_tokens": new_tokens, "end_token_ids": [],
              "pad_token_id": 0}

    def coupled():
        decode.generate_rows(model, prompt_ids, prompt_of_row, keys, **common)

    batch = torch.tensor([prompt_ids[p] for p in prompt_of_row], device=device)

    def sampled():
        model.generate(batch, attention_mask=torch.ones_like(batch), do_sample=True,
                       temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, pad_token_id=0)

    def one_by_one():
        for r in range(rows):
            decode.generate_rows(model, [prompt_ids[prompt_of_row[r]]], [0], keys[r:r + 1],
                                 **common)

    tokens = rows * new_tokens
    result = {"vocab": vocab, "rows": rows, "prompts": prompts, "new_tokens": new_tokens,
              "coupled_tok_s": tokens / _timed(coupled, device, repeats),
              "generate_tok_s": tokens / _timed(sampled, device, repeats)}
    result["coupled_vs_generate"] = result["coupled_tok_s"] / result["generate_tok_s"]
    if per_row:
        result["per_row_tok_s"] = tokens / _timed(one_by_one, device, 1)
        result["coupled_vs_per_row"] = result["coupled_tok_s"] / result["per_row_tok_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    new_tokens, repeats = (16, 3) if args.quick else (32, 5)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = build_tiny_models(Path(tmp) / "models", QUESTIONS)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(models_dir / "tokenizer")
        tiny = AutoModelForCausalLM.from_pretrained(models_dir / "tiny-A").to(device).eval()
        tiny.generation_config.eos_token_id = None  # every row generates new_tokens tokens
        for prompts, seeds in ((4, 8), (8, 8)):
            results.append(bench_model(tiny, len(tokenizer), device, prompts, seeds, 96,
                                       new_tokens, repeats, per_row=(prompts, seeds) == (4, 8)))

        big = build_model(Path(tmp) / "big", _FakeTokenizer(32000), seed=3)
        big = big.to(device).eval()
        big.generation_config.eos_token_id = None
        results.append(bench_model(big, 32000, device, 4, 8, 96, new_tokens, repeats,
                                   per_row=False))
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}"
          f", torch threads {torch.get_num_threads()})")
    print(f"{'V':>6} {'rows':>5} {'coupled tok/s':>14} {'generate tok/s':>15} {'ratio':>6} "
          f"{'per-row tok/s':>14} {'ratio':>6}")
    for r in results:
        print(f"{r['vocab']:>6} {r['rows']:>5} {r['coupled_tok_s']:>14.0f} "
              f"{r['generate_tok_s']:>15.0f} {r['coupled_vs_generate']:>6.2f} "
              f"{r.get('per_row_tok_s', float('nan')):>14.0f} "
              f"{r.get('coupled_vs_per_row', float('nan')):>6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


class _FakeTokenizer:
    """Just what ``build_model`` reads from a tokenizer, for a vocabulary with no text."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def get_vocab(self) -> dict[str, int]:
        return {"A": 10, "B": 11, "C": 12, "D": 13}

    def save_pretrained(self, path) -> None:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
