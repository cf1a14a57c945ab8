"""Runner throughput: coupled decoding vs transformers' sampling and vs a batch-1 per-row loop.

    python bench/bench_runner.py [--device cuda] [--quick] [--threads N] [--json FILE]

Three ways to produce the same rows (``prompts`` distinct prompts x ``seeds`` seeds, every row
generating exactly ``--new-tokens`` tokens, end tokens ignored so all do the same work), timed in
the same process in alternation (so load from elsewhere hits both alike); tokens/s are medians
of ``--repeats`` calls and the ratios the medians of the per-round ratios:

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
import os
import platform
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


def _interleaved(fns: dict, device, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in alternation (round-robin), ``repeats`` each.

    Alternating makes the ratios robust on a shared machine: a burst of load from elsewhere
    slows the calls of one round alike instead of one method's whole series.
    """
    for fn in fns.values():
        fn()  # warm-up (kernels, allocator)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


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
    times = _interleaved({"coupled": coupled, "generate": sampled}, device, repeats)
    result = {"vocab": vocab, "rows": rows, "prompts": prompts, "new_tokens": new_tokens,
              "coupled_tok_s": tokens / statistics.median(times["coupled"]),
              "generate_tok_s": tokens / statistics.median(times["generate"]),
              # the median of the per-round ratios (each round ran both back to back)
              "coupled_vs_generate": statistics.median(
                  g / c for c, g in zip(times["coupled"], times["generate"], strict=True))}
    if per_row:
        times = _interleaved({"per_row": one_by_one, "coupled": coupled}, device, repeats)
        result["per_row_tok_s"] = tokens / statistics.median(times["per_row"])
        result["coupled_vs_per_row"] = statistics.median(
            p / c for p, c in zip(times["per_row"], times["coupled"], strict=True))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    parser.add_argument("--new-tokens", type=int, help="tokens per row (default 32; quick 16)")
    parser.add_argument("--repeats", type=int, help="timed calls per method (default 5; quick 3)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's); 1 is steadier on a busy machine")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    new_tokens, repeats = (16, 3) if args.quick else (32, 5)
    new_tokens, repeats = args.new_tokens or new_tokens, args.repeats or repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
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
    machine = (torch.cuda.get_device_name() if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    load = (load_before, os.getloadavg()[0])
    print(f"device: {device} ({machine}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}); load average {load[0]:.2f} before, {load[1]:.2f} after")
    print(f"{'V':>6} {'rows':>5} {'coupled tok/s':>14} {'generate tok/s':>15} {'ratio':>6} "
          f"{'per-row tok/s':>14} {'ratio':>6}")
    for r in results:
        print(f"{r['vocab']:>6} {r['rows']:>5} {r['coupled_tok_s']:>14.0f} "
              f"{r['generate_tok_s']:>15.0f} {r['coupled_vs_generate']:>6.2f} "
              f"{r.get('per_row_tok_s', float('nan')):>14.0f} "
              f"{r.get('coupled_vs_per_row', float('nan')):>6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": str(device), "machine": machine, "torch": torch.__version__,
             "threads": torch.get_num_threads(), "load_average": load, "results": results},
            indent=2))
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
