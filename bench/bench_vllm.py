"""bench_vllm: the vLLM backend's speed, as ratios measured in one process (CPU, fp32).

    .venv-vllm/bin/python bench/bench_vllm.py [--quick] [--out bench/vllm.md]

Needs the vLLM environment (`make test` builds .venv-vllm). Four measurements:

1. **sampling step**: the coupled processor (``CoupledLogitsProcessor.apply`` -- noise, exact
   pruned argmax, one-hot rows -- plus vLLM's greedy argmax) against vLLM's own temperature-1
   sampling step on CPU (temperature + its fused Gumbel-argmax kernel) and against torch's
   ``softmax + exponential_ + argmax`` (vLLM's GPU path), on (64, V) logits at V = 512, 32k,
   262k (Gemma-3's vocabulary size) and several entropies: the pruned argmax computes noise
   only where a token can still win, so its cost falls as the logits get peaked;
2. **end to end, V = 512**: one vLLM engine, the same rows (prompts x seeds), coupled
   requests against vLLM's own temperature-1 sampling, alternating rounds;
3. **end to end, large V**: the same on random Llama models with a 131 072-token vocabulary
   whose output layer is scaled to real-model next-token entropies (the tiny builder cannot
   make such a vocabulary; the entropy is measured and reported);
4. **vLLM backend against the HF backend**: the same coupled rows through both engines.

Ratios are speed ratios (> 1: the first is faster); medians of alternating rounds, so load
from other processes hits both sides alike. The machine is shared: figures are indicative.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread for every side (torch, vLLM's OpenMP kernels, the HF loop): on a loaded shared
# machine, multi-threaded OpenMP ops mostly wait for each other and time the load, not the code.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")

import torch  # noqa: E402

torch.set_num_threads(1)  # before vLLM's CPU worker pins (and then forbids changing) threads

ROOT = Path(__file__).resolve().parents[1]


def _entropy(logits: torch.Tensor) -> float:
    logp = logits.double().log_softmax(-1)
    return float(-(logp.exp() * logp).sum(-1).mean())


def _logits_with_entropy(batch: int, vocab: int, scale: float, seed: int = 0) -> torch.Tensor:
    # Gaussian logits times a scale: 0 gives the flat distribution, larger scales peak it.
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=generator) * scale


def _median_time(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_sampling_step(quick: bool) -> list[dict]:
    import vllm._C  # noqa: F401  (registers vLLM's CPU kernels: greedy and Gumbel argmax)
    from vllm.v1.sample.logits_processor import BatchUpdate
    from vllm.v1.sample.ops.topk_topp_sampler import TopKTopPSampler

    from coupled.runner.engine import Sampling
    from coupled.runner.noise_torch import row_keys
    from coupled.runner.vllm_engine import CoupledLogitsProcessor, coupled_sampling_params

    class _Config:
        speculative_config = None

    batch = 64
    own = TopKTopPSampler()
    greedy = torch.ops._C.greedy_argmax
    results = []
    vocabs = (512, 32768) if quick else (512, 32768, 262144)
    for vocab in vocabs:
        processor = CoupledLogitsProcessor(_Config(), torch.device("cpu"), False)
        keys = row_keys("bench", [str(i) for i in range(batch)], list(range(batch)))
        outputs = [[0] * 3 for _ in range(batch)]  # every row at step 3
        added = [(i, coupled_sampling_params(int(k), Sampling(1.0), max_new_tokens=8,
                                             end_token_ids=[0], vocab_size=vocab),
                  None, outputs[i]) for i, k in enumerate(keys.tolist())]
        processor.update_state(BatchUpdate(batch_size=batch, removed=[], added=added, moved=[]))
        temperature = torch.ones(batch)
        repeats = 5 if vocab > 100_000 else 20
        for scale in (0.0, 2.0, 4.0, 8.0):
            logits = _logits_with_entropy(batch, vocab, scale)

            def coupled(logits=logits, processor=processor):
                return greedy(processor.apply(logits.clone()))

            def vllm_own(logits=logits, temperature=temperature):
                scaled = logits.clone().div_(temperature.unsqueeze(1))
                return own.forward_cpu(scaled, {}, None, None)[0]

            def torch_exponential(logits=logits):
                probs = logits.softmax(-1)
                return probs.div_(torch.empty_like(probs).exponential_()).argmax(-1)

            t_coupled = _median_time(coupled, repeats)
            t_own = _median_time(vllm_own, repeats)
            t_exp = _median_time(torch_exponential, repeats)
            results.append({"V": vocab, "entropy": _entropy(logits), "coupled_ms": 1e3 * t_coupled,
                            "vllm_ms": 1e3 * t_own, "torch_exp_ms": 1e3 * t_exp,
                            "vs_vllm": t_own / t_coupled, "vs_torch_exp": t_exp / t_coupled})
            print(f"step V={vocab:>6} H={results[-1]['entropy']:5.2f}: coupled "
                  f"{1e3 * t_coupled:7.2f} ms, vLLM own {1e3 * t_own:7.2f} ms, torch exp "
                  f"{1e3 * t_exp:7.2f} ms", flush=True)
    return results


def _free_model(folder: Path, vocab: int, scale: float | None, seed: int = 11) -> Path:
    """A random 2-layer Llama (head_dim 32) with a WordLevel tokenizer of ``vocab`` tokens.

    ``scale`` multiplies the output layer (None: as initialised), which sets how peaked the
    next-token distributions are.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab)}}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>",
                                      bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=32, max_position_embeddings=512, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                         initializer_range=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if scale is not None:
        with torch.no_grad():
            model.lm_head.weight.mul_(scale)
    model.save_pretrained(folder)
    wrapped.save_pretrained(folder)
    return folder


def _rows(n_prompts: int, n_seeds: int, vocab: int, length: int = 24):
    from coupled.runner.noise_torch import row_keys

    generator = torch.Generator().manual_seed(3)
    prompts = [[1] + torch.randint(3, min(vocab, 500), (length,), generator=generator).tolist()
               for _ in range(n_prompts)]
    of_row = [p for p in range(n_prompts) for _ in range(n_seeds)]
    keys = row_keys("bench", [str(p) for p in of_row], [s for _ in range(n_prompts)
                                                        for s in range(n_seeds)])
    return prompts, of_row, keys


def _mean_entropy(path: Path, prompts) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor(prompts[:8])).logits[:, -8:, :].reshape(-1,
                                                                           model.vocab_size)
    return _entropy(logits)


def _passthrough_processor():
    from coupled.runner.vllm_engine import EXTRA_ARGS_KEY, CoupledLogitsProcessor

    class PassThrough(CoupledLogitsProcessor):
        """Bench only: also admits plain requests (vLLM's own sampling), leaving them alone."""

        @classmethod
        def validate_params(cls, params):
            if (params.extra_args or {}).get(EXTRA_ARGS_KEY) is not None:
                super().validate_params(params)

        @staticmethod
        def _new_row(params, prompt_ids, output_ids):
            if (params.extra_args or {}).get(EXTRA_ARGS_KEY) is None:
                return None
            return CoupledLogitsProcessor._new_row(params, prompt_ids, output_ids)

    return PassThrough


def bench_end_to_end(path: Path, label: str, n_prompts: int, n_seeds: int, max_new_tokens: int,
                     rounds: int, with_hf: bool) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from coupled.runner.config import ModelSpec
    from coupled.runner.engine import HFEngine, Sampling
    from coupled.runner.models import load_tokenizer
    from coupled.runner.vllm_engine import VLLMEngine

    spec = ModelSpec(name=label, path=str(path))
    tokenizer = load_tokenizer(spec)
    vocab = len(tokenizer)
    prompts, of_row, keys = _rows(n_prompts, n_seeds, vocab)
    entropy = _mean_entropy(path, prompts)
    engine = VLLMEngine(spec, tokenizer, processor=_passthrough_processor())
    hf = HFEngine(spec, tokenizer) if with_hf else None
    # unseeded: vLLM 0.32's CPU runner fails on per-request seeds with chunked prefill
    plain = [SamplingParams(temperature=1.0, max_tokens=max_new_tokens, detokenize=False,
                            stop_token_ids=engine.end_token_ids) for _ in of_row]
    requests = [TokensPrompt(prompt_token_ids=prompts[p]) for p in of_row]
    times = {"coupled": [], "vllm_own": [], "hf": []}
    tokens = {}

    def coupled():
        out = engine.generate_rows(prompts, of_row, keys, sampling=Sampling(1.0),
                                   max_new_tokens=max_new_tokens)
        return sum(len(g.token_ids) + g.finished for g in out)

    def own():
        out = engine.llm.generate(requests, plain, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in out)

    def hf_side():
        out = hf.generate_rows(prompts, of_row, keys, sampling=Sampling(1.0),
                               max_new_tokens=max_new_tokens)
        return sum(len(g.token_ids) + g.finished for g in out)

    sides = {"coupled": coupled, "vllm_own": own, **({"hf": hf_side} if with_hf else {})}
    for side in sides.values():
        side()  # warm-up
    for _ in range(rounds):
        for name, side in sides.items():
            started = time.perf_counter()
            tokens[name] = side()
            times[name].append(time.perf_counter() - started)
    engine.close()
    rate = {name: tokens[name] / statistics.median(times[name]) for name in sides}
    result = {"model": label, "V": vocab, "entropy": entropy, "rows": len(of_row),
              "max_new_tokens": max_new_tokens, "tokens": tokens, "tok_s": rate,
              "coupled_vs_vllm": rate["coupled"] / rate["vllm_own"]}
    if with_hf:
        result["vllm_vs_hf"] = rate["coupled"] / rate["hf"]
    print(f"e2e {label}: V={vocab} H={entropy:.2f} tokens/s " +
          ", ".join(f"{k} {v:.0f}" for k, v in rate.items()), flush=True)
    return result


def bench_gemma(path: Path, questions: Path, n_questions: int, n_seeds: int) -> str:
    """Gemma-3-270M (examples/gemma): identical rows HF vs vLLM, and speed at V = 262 144.

    Coupled rows (the run's formatting and keys, 3 new tokens, T = 1) of the first
    ``n_questions`` questions x ``n_seeds`` seeds through the HF backend and the vLLM backend;
    then the same requests sampled by vLLM itself. Returns a markdown section.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from coupled.runner import tasks
    from coupled.runner.config import ModelSpec
    from coupled.runner.engine import HFEngine, Sampling
    from coupled.runner.models import load_tokenizer
    from coupled.runner.noise_torch import row_keys, stream_key
    from coupled.runner.vllm_engine import VLLMEngine

    spec = ModelSpec(name="gemma-3-270m-fp32", path=str(path))
    tokenizer = load_tokenizer(spec)
    frame = tasks.load_multiple_choice(questions).head(n_questions)
    add_special = not getattr(tokenizer, "chat_template", None)
    prompts = [tokenizer(tasks.render_prompt(tokenizer, tasks.multiple_choice_system_prompt(len(c)),
                                             tasks.multiple_choice_user_turn(q, c), "Answer:"),
                         add_special_tokens=add_special)["input_ids"]
               for q, c in zip(frame["question"], frame["choices"], strict=True)]
    of_row = [p for p in range(len(prompts)) for _ in range(n_seeds)]
    keys = row_keys("truthful_qa_mc", [frame["prompt_id"][p] for p in of_row],
                    [s for _ in prompts for s in range(n_seeds)],
                    stream_key("coupled", spec.name))
    sampling, length, batch = Sampling(1.0), 3, 40

    hf = HFEngine(spec, tokenizer)
    started = time.perf_counter()
    hf_rows = []
    for start in range(0, len(of_row), batch):
        part = of_row[start:start + batch]
        distinct = sorted(set(part))
        hf_rows += hf.generate_rows([prompts[p] for p in distinct],
                                    [distinct.index(p) for p in part], keys[start:start + batch],
                                    sampling=sampling, max_new_tokens=length)
    hf_s = time.perf_counter() - started
    hf.close()
    engine = VLLMEngine(spec, tokenizer, processor=_passthrough_processor(), max_model_len=1024)
    started = time.perf_counter()
    vllm_rows = engine.generate_rows(prompts, of_row, keys, sampling=sampling,
                                     max_new_tokens=length)
    vllm_s = time.perf_counter() - started
    # unseeded: vLLM 0.32's CPU runner fails on per-request seeds with chunked prefill
    plain = [SamplingParams(temperature=1.0, max_tokens=length, detokenize=False,
                            stop_token_ids=engine.end_token_ids) for _ in of_row]
    started = time.perf_counter()
    own = engine.llm.generate([TokensPrompt(prompt_token_ids=prompts[p]) for p in of_row], plain,
                              use_tqdm=False)
    own_s = time.perf_counter() - started
    engine.close()
    same = [a == b for a, b in zip(hf_rows, vllm_rows, strict=True)]
    differing = [i for i, ok in enumerate(same) if not ok]
    first_step = [next((k for k, (x, y) in enumerate(zip(hf_rows[i].token_ids,
                                                          vllm_rows[i].token_ids,
                                                          strict=False))
                        if x != y), min(len(hf_rows[i].token_ids), len(vllm_rows[i].token_ids)))
                  for i in differing]
    tokens = sum(len(g.token_ids) + g.finished for g in vllm_rows)
    own_tokens = sum(len(o.outputs[0].token_ids) for o in own)
    lines = [
        f"## Gemma-3-270M (examples/gemma, V = {len(tokenizer)}): HF vs vLLM rows", "",
        f"{n_questions} TruthfulQA questions x {n_seeds} seeds, coupled, T = 1, {length} new "
        f"tokens, fp32, the run's formatting and keys. **Identical rows: {sum(same)} / "
        f"{len(same)} ({100 * sum(same) / len(same):.1f} %)**"
        + (f"; the {len(differing)} others first differ at step(s) {sorted(set(first_step))} "
           f"(rows {differing[:10]})" if differing else "") + ".", "",
        "| side | seconds | tokens | tok/s |", "|---|---:|---:|---:|",
        f"| HF backend (batch {batch}) | {hf_s:.1f} | {tokens} | {tokens / hf_s:.1f} |",
        f"| vLLM backend (coupled) | {vllm_s:.1f} | {tokens} | {tokens / vllm_s:.1f} |",
        f"| vLLM's own sampling, same requests | {own_s:.1f} | {own_tokens} | "
        f"{own_tokens / own_s:.1f} |", "",
        f"coupled vs vLLM's own sampling: {(tokens / vllm_s) / (own_tokens / own_s):.2f}x; "
        f"vLLM backend vs HF backend: {hf_s / vllm_s:.2f}x (one run each, not alternated).", ""]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def _markdown(step: list[dict], e2e: list[dict], quick: bool) -> str:
    import vllm

    lines = [
        "# vLLM backend speed (bench/bench_vllm.py)", "",
        f"`.venv-vllm/bin/python bench/bench_vllm.py{' --quick' if quick else ''}` on"
        f" {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
        f"torch {torch.__version__}, vLLM {vllm.__version__}, fp32, one thread per side "
        f"(`OMP_NUM_THREADS=1`, `VLLM_CPU_OMP_THREADS_BIND=0`), load average "
        f"{os.getloadavg()[0]:.1f} at the end, in-process engine "
        f"(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), enforce_eager. Ratios are speed ratios "
        f"(> 1: the coupled side is faster), medians of alternating runs in one process.", "",
        "## 1. One sampling step, (64, V) logits, temperature 1", "",
        "coupled = `CoupledLogitsProcessor.apply` (noise keyed by row and step, exact pruned "
        "argmax, one-hot rows) + vLLM's greedy argmax; vLLM own = vLLM's CPU sampling step "
        "(temperature, fused Gumbel-argmax kernel); torch exp = softmax + `exponential_` + "
        "argmax (vLLM's GPU path). Entropy in nats (flat = ln V).", "",
        "| V | entropy | coupled ms | vLLM own ms | torch exp ms | coupled vs vLLM own | "
        "coupled vs torch exp |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in step:
        lines.append(f"| {r['V']} | {r['entropy']:.2f} | {r['coupled_ms']:.2f} | "
                     f"{r['vllm_ms']:.2f} | {r['torch_exp_ms']:.2f} | {r['vs_vllm']:.2f}x | "
                     f"{r['vs_torch_exp']:.2f}x |")
    lines += ["", "## 2-4. End to end: the same rows through one engine", "",
              "Tokens per second over all rows (prompts x seeds, 24-token random prompts); "
              "coupled = the vLLM backend (`VLLMEngine.generate_rows`), vLLM own = the same "
              "engine sampling the same requests itself at temperature 1, HF = the runner's "
              "HF loop (`HFEngine`) on the same coupled rows. Entropy: mean next-token entropy "
              "of the model's logits on these prompts.", "",
              "| model | V | entropy | rows x tokens | coupled tok/s | vLLM own tok/s | HF tok/s "
              "| coupled vs vLLM own | vLLM backend vs HF |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in e2e:
        hf = r["tok_s"].get("hf")
        hf_rate = "" if hf is None else f"{hf:.0f}"
        hf_ratio = "" if hf is None else f"{r['vllm_vs_hf']:.2f}x"
        lines.append(
            f"| {r['model']} | {r['V']} | {r['entropy']:.2f} | {r['rows']} x "
            f"{r['max_new_tokens']} | {r['tok_s']['coupled']:.0f} | {r['tok_s']['vllm_own']:.0f} "
            f"| {hf_rate} | {r['coupled_vs_vllm']:.2f}x | {hf_ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--out", default=None, help="write the markdown report here")
    parser.add_argument("--gemma", metavar="MODEL_DIR", default=None,
                        help="only the Gemma-3-270M check (examples/gemma/prepare.py makes the "
                             "folder): identical rows HF vs vLLM and speed at V = 262k")
    parser.add_argument("--gemma-questions", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("bench_vllm: vLLM is not installed here; run it with .venv-vllm/bin/python "
              "(make test builds .venv-vllm)", file=sys.stderr)
        return 0  # `make bench` runs every script with .venv: nothing to measure there
    if args.gemma:
        report = bench_gemma(Path(args.gemma), ROOT / "examples" / "gemma" / "truthful_qa_mc.jsonl",
                             args.gemma_questions, 5)
        if args.out:
            Path(args.out).write_text(report)
        return 0
    step = bench_sampling_step(args.quick)
    rounds = 2 if args.quick else 3
    e2e = []
    with tempfile.TemporaryDirectory() as tmp:
        free = _free_model(Path(tmp) / "free-512", 512, None)
        e2e.append(bench_end_to_end(free, "random, V=512", 16, 8, 32, rounds, with_hf=True))
        large = 131072
        for scale in ((6.0,) if args.quick else (1.0, 6.0, 12.0)):
            path = _free_model(Path(tmp) / f"free-{large}-{scale}", large, scale)
            e2e.append(bench_end_to_end(path, f"random, V={large}, head x{scale:g}", 16, 8, 16,
                                        rounds, with_hf=scale == 6.0))
    report = _markdown(step, e2e, args.quick)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
