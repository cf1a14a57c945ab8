"""Build the tiny example models offline: a byte-level BPE tokenizer and random Llama models.

    python -m coupled.runner.tiny [--out examples/tiny/models] [--vocab-size 512]

Writes ``tokenizer/`` plus ``tiny-A/``, ``tiny-B/`` (different random weights, same
tokenizer) and ``tiny-A-copy/`` (byte-identical to tiny-A: the coupling control). Nothing is
downloaded. The random models are nudged so that they answer multiple-choice prompts with a mix
of option letters and then stop (see :func:`_steer_towards_letters`), so scores vary.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

VARIANTS = {"tiny-A": 1, "tiny-B": 2}  # name -> weight seed
COPY_OF = {"tiny-A-copy": "tiny-A"}
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]
MODEL_NAMES = frozenset({"tokenizer", *VARIANTS, *COPY_OF})
_CORPUS_EXTRA = (
    "You will be given multiple choice questions. Please reply with a single character "
    "'A', 'B', 'C', 'D' or 'E' only. DO NOT explain your reply. Answer: A B C D E. "
    "The quick brown fox jumps over the lazy dog. What is the capital of the country? "
    "Which colour do you get by mixing them? 0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 40 50 60 70 80"
)


def build_tokenizer(out: Path, corpus: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on ``corpus``, saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>",
                                      bos_token="<s>", eos_token="</s>")
    wrapped.save_pretrained(out)
    return wrapped


def build_model(out: Path, tokenizer, seed: int, hidden: int = 64, layers: int = 2):
    """A random LlamaForCausalLM sized for ``tokenizer``, steered towards option letters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=2 * hidden, num_hidden_layers=layers,
                         # head_dim 32: vLLM's CPU attention refuses head_dim 16, and one
                         # example must run on both backends.
                         num_attention_heads=hidden // 32, num_key_value_heads=1,
                         head_dim=32,
                         max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False, initializer_range=0.1)
    # Weight init reads torch's global RNG: fork it so the caller's state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    _steer_towards_letters(model, tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    return model


@torch.no_grad()
def _steer_towards_letters(model, tokenizer, letter_bias: float = 3.0,
                           stop_bias: float = 6.0) -> None:
    # Two residual-stream coordinates carry constant "bias" features that no layer writes to
    # (their rows in every o_proj / down_proj are zeroed), so after the final norm they act as
    # biases of the output layer: coordinate 0 is on for every token and pushes logits towards
    # option letters; coordinate 1 is on only when the current token is a letter and pushes
    # towards the end token. The random remainder decides *which* letter, per prompt and model.
    embed = model.model.embed_tokens.weight
    head = model.lm_head.weight
    letters = [i for t, i in tokenizer.get_vocab().items()
               if t.lstrip("\u0120") in ("A", "B", "C", "D")]
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight[:2].zero_()
        layer.mlp.down_proj.weight[:2].zero_()
    embed[:, 0] = 4.0
    embed[:, 1] = 0.0
    embed[letters, 1] = 4.0
    head[:, :2] = 0.0
    head[letters, 0] = letter_bias
    head[letters, 1] = -stop_bias
    head[tokenizer.eos_token_id, 1] = stop_bias


def corpus_from_questions(path: Path) -> list[str]:
    from coupled.runner.tasks import load_multiple_choice, multiple_choice_user_turn

    questions = load_multiple_choice(path)
    texts = [multiple_choice_user_turn(q, c)
             for q, c in zip(questions["question"], questions["choices"], strict=True)]
    return texts + [_CORPUS_EXTRA]


def build_tiny_models(out: str | Path, questions: str | Path | None = None,
                      vocab_size: int = 512) -> Path:
    """Build tokenizer + tiny-A, tiny-B, tiny-A-copy under ``out``; returns ``out``.

    Never deletes or overwrites anything it did not create: the models are built in a new
    temporary folder beside ``out``, and each of them is then moved into ``out`` only if no file
    or folder of that name is there (so an existing ``out`` keeps everything it holds). The
    build is deterministic, so a model added next to earlier-built ones equals them.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot build the tiny models into {out}: it is a file")
    if questions is None:
        questions = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"
    corpus = corpus_from_questions(Path(questions)) if Path(questions).is_file() \
        else [_CORPUS_EXTRA]
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        tokenizer = build_tokenizer(staging / "tokenizer", corpus, vocab_size)
        for name, seed in VARIANTS.items():
            build_model(staging / name, tokenizer, seed)
        for name, source in COPY_OF.items():
            shutil.copytree(staging / source, staging / name)
        for name in sorted(MODEL_NAMES):
            target = out / name
            if not target.exists() and not target.is_symlink():
                # Each folder appears whole (a rename), never half-built.
                (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # ours: made by mkdtemp above
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coupled.runner.tiny",
                                     description="Build the tiny example models offline.")
    default = Path(__file__).resolve().parents[1] / "examples" / "tiny"
    parser.add_argument("--out", default=str(default / "models"))
    parser.add_argument("--questions", default=str(default / "questions.jsonl"))
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args(argv)
    print(build_tiny_models(args.out, args.questions, args.vocab_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
