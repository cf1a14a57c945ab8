"""The runner's cross-tokenizer noise keys (issue 14): ``noise_key = "text"`` and ``"bytes"``.

* the torch keys equal the integer reference bit for bit (pinned values, random inputs);
* on the exact test bed (``coupled.theory.tokenized`` models wrapped as runner models through
  their ``next_token_law(ids)``): the runner's text-key sampler gives the reference's reply on
  every row, its bytes-key port equals ``simulate.crosstok.byte_level_reply`` row by row, the
  text law is the exact one (chi-square over whole texts), a deliberately broken key fails that
  test, and two tokenizations of one text model agree as the test bed says (100 % under bytes);
* two tiny Hugging Face models with *different* tokenizers (a byte-level BPE and a unigram /
  Metaspace one with byte fallback, trained on one corpus) run through ``coupled run`` under
  each key, and each model's whole-reply law is its exact law computed by enumeration.

Chi-square tests pool cells with expected count < 5 and pass at p > 1e-4 (a false alarm has
probability 1e-4 per test under a correct sampler); a broken key must give p < 1e-8.
"""

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from coupled import theory  # noqa: E402
from coupled.runner import crosstok_engine as ce  # noqa: E402
from coupled.runner import noise_text_torch as nt  # noqa: E402
from coupled.runner import run  # noqa: E402
from coupled.runner.engine import Sampling  # noqa: E402
from coupled.simulate import crosstok  # noqa: E402
from coupled.tables import noise_keys, read_scores  # noqa: E402

pytestmark = pytest.mark.runner
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MASK = (1 << 64) - 1
U64 = st.integers(min_value=0, max_value=MASK)
CHI2_PASS = 1e-4
CHI2_BROKEN = 1e-8
runner_run = importlib.import_module("coupled.runner.run")  # the module (run is the function)
QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"


def _u(t: torch.Tensor) -> list[int]:
    return [v & MASK for v in t.reshape(-1).tolist()]


# --- the torch keys -------------------------------------------------------------------------


def test_torch_keys_reproduce_the_pinned_values():
    row = nt.as_int64([noise_keys.row_key("t", "q1", 3)])
    text_pos = nt.text_position_keys(row, 5, 1)
    assert _u(text_pos) == [13581612996086736781]
    assert _u(nt.union_position_keys(row, 2)) == [10530502370423470134]
    byte_pos = nt.bytes_position_keys(row, 7)
    assert _u(byte_pos) == [11827475190141366875]
    h = nt.as_int64([noise_keys.token_bytes_hash(b" ab")])
    assert _u(nt.candidate_bits(text_pos, h)) == [18164096231076938917]
    assert _u(nt.candidate_bits(byte_pos, torch.tensor([noise_keys.END_BYTE]))) == [
        12781659095202657749]
    pick = nt.as_int64([noise_keys.duplicate_pick_hash(b" ab")])
    assert _u(nt.duplicate_bits(text_pos, pick, torch.tensor([17]))) == [7214205833996250591]


@given(st.lists(st.tuples(U64, st.integers(0, 2**20), st.integers(0, 50), U64,
                          st.integers(0, 2**31)), min_size=1, max_size=8))
def test_torch_keys_equal_the_integer_and_numpy_references(parts):
    rows, offsets, counters, hashes, ids = (np.array(x, dtype=np.uint64)
                                            for x in zip(*parts, strict=True))
    t = {name: nt.as_int64(a) for name, a in (("rows", rows), ("offsets", offsets),
                                              ("counters", counters), ("hashes", hashes),
                                              ("ids", ids))}
    text = nt.text_position_keys(t["rows"], t["offsets"], t["counters"])
    cand = nt.candidate_bits(text, t["hashes"])
    dup = nt.duplicate_bits(text, t["hashes"], t["ids"])
    assert _u(text) == crosstok.text_position_keys(rows, offsets, counters).tolist()
    assert _u(nt.union_position_keys(t["rows"], t["offsets"])) == \
        crosstok.union_position_keys(rows, offsets).tolist()
    assert _u(nt.bytes_position_keys(t["rows"], t["offsets"])) == \
        crosstok.bytes_position_keys(rows, offsets).tolist()
    for i, (r, o, c, h, v) in enumerate(parts):
        tp = noise_keys.text_position_key(r, o, c)
        assert _u(text)[i] == tp
        assert _u(cand)[i] == noise_keys.candidate_bits(tp, h)
        assert _u(dup)[i] == noise_keys.duplicate_bits(tp, h, v)
    # the Gumbels: float64 from the same 24 bits as the reference
    ref = -np.log(-np.log(simulate_uniform(crosstok.candidate_bits(
        crosstok.text_position_keys(rows, offsets, counters), hashes))))
    np.testing.assert_array_equal(nt.gumbel_of_bits(cand).numpy(), ref)


def simulate_uniform(bits: np.ndarray) -> np.ndarray:
    from coupled.simulate import noise

    return noise.bits_to_uniform(bits)


# --- the exact test bed as runner models ----------------------------------------------------


@pytest.fixture(scope="module")
def bed():
    a, b = theory.standard_text_models(max_length=5)
    toks = theory.standard_tokenizers()
    models = {name: theory.tokenized_model(a, tok) for name, tok in toks.items()}
    return a, toks, models


def _table(tok) -> ce.TokenBytes:
    return ce.TokenBytes(tuple(None if i == tok.end_id else b
                               for i, b in enumerate(tok.token_bytes)), tok.dummy_prefix)


class BedStepper(ce.Stepper):
    """A test-bed model as a runner model: logits = log next_token_law(ids), read off the
    model's trie by node (``next_token_law(ids)`` is ``probs[node_of(ids)]``; vectorised)."""

    def __init__(self, model) -> None:
        self.model = model

    def _logits(self) -> torch.Tensor:
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(self.model.probs[self.nodes]))

    def prefill(self, prompt_ids, prompt_of_row):
        self.nodes = np.zeros(len(prompt_of_row), dtype=np.int64)
        self.first_ids = []  # the first live row's ids: next_token_law(ids) is checked on it
        return self._logits()

    def advance(self, tokens, keep):
        if keep is not None:
            if keep[0] != 0:
                self.first_ids = None
            self.nodes = self.nodes[keep.numpy()]
        self.nodes = self.model.child[self.nodes, tokens.numpy()]
        assert (self.nodes >= 0).all(), "the sampler chose an id of probability 0"
        if self.first_ids is not None:
            self.first_ids.append(int(tokens[0]))
            assert np.array_equal(self.model.probs[self.nodes[0]],
                                  self.model.next_token_law(self.first_ids))
        return self._logits()


def bed_text_rows(model, tok, rows: np.ndarray) -> np.ndarray:
    """Replies of a test-bed model under the runner's text-key sampler."""
    table = _table(tok)
    gens = ce.generate_text_rows(BedStepper(model), ce.TextKeyTables.of(table), [[0]],
                                 [0] * len(rows), nt.as_int64(rows),
                                 sampling=Sampling(1.0), max_new_tokens=64)
    assert all(g.finished for g in gens)
    out = np.empty(len(rows), dtype=object)
    out[:] = [tok.decode(g.token_ids) for g in gens]
    return out


def bed_byte_rows(model, tok, rows: np.ndarray) -> list[ce.ByteReply]:
    table = _table(tok)
    return [ce.byte_level_reply(model.next_token_law, tok.decode, table.end_ids, int(r))
            for r in rows]


TOKENIZERS = ["bpe", "spm", "eow", "marker"]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_text_key_sampler_gives_the_references_reply_on_every_row(bed, tokenizer):
    _, toks, models = bed
    rows = crosstok.crosstok_rows(3_000, seed=4)
    ref = crosstok.sample_replies(models[tokenizer], rows, "text").texts
    got = bed_text_rows(models[tokenizer], toks[tokenizer], rows)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_byte_key_port_equals_the_reference_row_by_row(bed, tokenizer):
    _, toks, models = bed
    tok, model = toks[tokenizer], models[tokenizer]
    rows = crosstok.crosstok_rows(120, seed=8)
    for row, got in zip(rows, bed_byte_rows(model, tok, rows), strict=True):
        ref = crosstok.byte_level_reply(model.next_token_law, tok.decode, tok.end_id, int(row))
        assert (got.text, got.calls, got.max_covers) == (ref.text, ref.calls, ref.max_covers)
        # the recorded tokenization is one the model can produce, and it spells the reply
        assert tok.decode(got.token_ids) == got.text
        model.node_of([*got.token_ids, tok.end_id])


def _chi2_pvalue(texts, law: dict) -> float:
    cells = list(law)
    index = {t: i for i, t in enumerate(cells)}
    assert set(texts) <= set(index), "a reply the exact law gives probability 0"
    counts = np.bincount([index[t] for t in texts], minlength=len(cells))
    expected = np.fromiter(law.values(), dtype=np.float64) * len(texts)
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


N_CHI2 = 20_000


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_text_key_sampler_has_the_exact_text_law(bed, tokenizer):
    a, toks, models = bed
    rows = crosstok.crosstok_rows(N_CHI2, seed=7)
    texts = bed_text_rows(models[tokenizer], toks[tokenizer], rows)
    assert _chi2_pvalue(texts, a.text_law) > CHI2_PASS


def test_a_key_without_the_counter_fails_the_text_law_test(bed, monkeypatch):
    # "marker" puts a zero-length token before the last token of every text: without the
    # counter the draw after it reuses its noise, and the text law is wrong
    a, toks, models = bed
    rows = crosstok.crosstok_rows(N_CHI2, seed=7)
    monkeypatch.setattr(ce, "position_keys",
                        lambda r, offset, counter: nt.text_position_keys(r, offset, 0))
    texts = bed_text_rows(models["marker"], toks["marker"], rows)
    assert _chi2_pvalue(texts, a.text_law) < CHI2_BROKEN


def _unmerged_race(log_probs, positions, first, tables):
    # deliberately wrong: ids with the same bytes race separately on the same noise
    groups = tables.group.index_select(0, first.long())
    bits = nt.candidate_bits(positions[:, None], tables.group_hash[groups])
    return (log_probs + nt.gumbel_of_bits(bits)).argmax(dim=-1)


def test_a_race_without_merging_equal_bytes_fails_the_text_law_test(bed, monkeypatch):
    # "eow" has two ids ("a" and "a</w>") adding the same bytes at one position
    a, toks, models = bed
    rows = crosstok.crosstok_rows(N_CHI2, seed=7)
    monkeypatch.setattr(ce, "merged_race", _unmerged_race)
    texts = bed_text_rows(models["eow"], toks["eow"], rows)
    assert _chi2_pvalue(texts, a.text_law) < CHI2_BROKEN


def test_two_tokenizations_of_one_text_model_agree_as_the_test_bed_predicts():
    # replies of at most 4 bytes, where the pair dynamic programme gives P(same text) exactly
    a, _ = theory.standard_text_models(max_length=4)
    toks = theory.standard_tokenizers()
    models = {n: theory.tokenized_model(a, toks[n]) for n in ("bpe", "spm", "marker")}
    n_rows = 4_000
    rows = crosstok.crosstok_rows(n_rows, seed=11)
    text = {n: bed_text_rows(models[n], toks[n], rows) for n in ("bpe", "spm")}
    got = float(np.mean(text["bpe"] == text["spm"]))
    exact = theory.token_coupled_moments(models["bpe"], models["spm"], "text",
                                         lambda t: t.count(b"a")).p_same
    assert abs(got - exact) < 4 * np.sqrt(exact * (1 - exact) / n_rows)  # 4 Monte-Carlo SE
    byte = {n: [r.text for r in bed_byte_rows(models[n], toks[n], rows[:200])]
            for n in ("bpe", "spm", "marker")}
    assert byte["bpe"] == byte["spm"] == byte["marker"]  # 100 % under the bytes key


# --- two tiny Hugging Face models with different tokenizers, through `coupled run` ---------

CORPUS = [line.strip() for line in QUESTIONS.read_text().splitlines() if line.strip()] + [
    "Answer: A B C D E. The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9"] * 3


def _unigram_metaspace_tokenizer(out: Path, corpus: list[str], vocab_size: int = 160):
    """A SentencePiece-style tokenizer: unigram, Metaspace (``▁``, dummy prefix), byte
    fallback (``<0xNN>``) and Llama's decoder (Replace ▁, ByteFallback, Fuse, Strip)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False))
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    vocab += [(f"<0x{b:02X}>", -30.0) for b in range(256)]
    tok.model = models.Unigram(vocab, unk_id=[p for p, _ in vocab].index("<unk>"),
                               byte_fallback=True)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                      eos_token="</s>", unk_token="<unk>")
    wrapped.save_pretrained(out)
    return wrapped


def _random_llama(out: Path, tokenizer, seed: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                         head_dim=32, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, initializer_range=0.2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


@pytest.fixture(scope="module")
def two_tokenizers(tmp_path_factory) -> Path:
    from coupled.runner.tiny import build_tokenizer

    root = tmp_path_factory.mktemp("crosstok")
    bpe = build_tokenizer(root / "tok-bpe", CORPUS, vocab_size=300)
    spm = _unigram_metaspace_tokenizer(root / "tok-spm", CORPUS)
    _random_llama(root / "bpe-model", bpe, seed=1)
    _random_llama(root / "spm-model", spm, seed=2)
    return root


def _cross_config(root: Path, out: Path, noise_key: str, **over) -> dict:
    config = {"output_dir": str(out), "seeds": 500, "max_new_tokens": 3, "batch_size": 300,
              "prompts_per_chunk": 1, "modes": ["coupled"], "top_k": 3,
              "noise_key": noise_key,
              "task": {"name": "tiny-mc", "type": "multiple_choice", "path": str(QUESTIONS),
                       "limit": 1},
              "models": [{"name": "bpe", "path": str(root / "bpe-model")},
                         {"name": "spm", "path": str(root / "spm-model")}]}
    config.update(over)
    return config


def _exact_reply_law(model_dir: Path, prompt_text: str, sampling: Sampling,
                     max_new_tokens: int) -> dict[str, float]:
    """The model's law over recorded replies, by enumerating every token sequence of positive
    probability (the same masked law the runner samples; ends or max_new_tokens)."""
    from coupled.runner.config import ModelSpec
    from coupled.runner.models import end_token_ids, load_model, load_tokenizer

    spec = ModelSpec(name="m", path=str(model_dir))
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    ends = set(end_token_ids(model.generation_config, tokenizer))
    law = ce._HFLaw(model, [runner_run._encode(tokenizer, [prompt_text])[0]], sampling,
                    len(tokenizer))
    out: dict[str, float] = {}
    stack = [((), 1.0)]
    while stack:
        ids, mass = stack.pop()
        if len(ids) == max_new_tokens:
            text = tokenizer.decode(list(ids), skip_special_tokens=True)
            out[text] = out.get(text, 0.0) + mass
            continue
        p = law(0, ids)
        for v in np.flatnonzero(p > 0).tolist():
            if v in ends:
                text = tokenizer.decode(list(ids), skip_special_tokens=True)
                out[text] = out.get(text, 0.0) + mass * p[v]
            else:
                stack.append(((*ids, v), mass * p[v]))
    return out


@pytest.fixture(scope="module")
def cross_runs(two_tokenizers, tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = {}
    for key in ("text", "bytes"):
        folder = tmp_path_factory.mktemp(key) / "out"
        # under text, independent rows too: each model's own stream, the same law
        modes = ["coupled", "independent"] if key == "text" else ["coupled"]
        run(_cross_config(two_tokenizers, folder, key, modes=modes), progress=False)
        out[key] = (read_scores(folder), json.loads((folder / "manifest.json").read_text()))
    return out


def test_tokenizers_differ_and_their_bytes_are_read_as_they_decode(two_tokenizers):
    from transformers import AutoTokenizer

    bpe = AutoTokenizer.from_pretrained(two_tokenizers / "tok-bpe")
    spm = AutoTokenizer.from_pretrained(two_tokenizers / "tok-spm")
    assert bpe.get_vocab() != spm.get_vocab()
    tb = ce.token_bytes_of(bpe, [bpe.eos_token_id])
    ts = ce.token_bytes_of(spm, [spm.eos_token_id])  # checked against decode on probes
    assert not tb.dummy_prefix and ts.dummy_prefix
    assert ts.token_bytes[spm.convert_tokens_to_ids("<0x41>")] == b"A"
    for text in ["Answer: A", "caf\u00e9", "7 x"]:
        assert tb.decode(bpe(text)["input_ids"]) == ts.decode(
            spm(text, add_special_tokens=False)["input_ids"]) == text.encode()


def test_a_decoder_the_pieces_cannot_reproduce_is_refused_before_anything_is_written(
        two_tokenizers, tmp_path):
    import shutil

    from tokenizers import decoders
    from transformers import AutoTokenizer

    bpe = AutoTokenizer.from_pretrained(two_tokenizers / "tok-bpe")
    bpe.backend_tokenizer.decoder = decoders.WordPiece()  # joins pieces with spaces
    with pytest.raises(ce.TokenBytesError, match="cannot be read"):
        ce.token_bytes_of(bpe, [bpe.eos_token_id])
    shutil.copytree(two_tokenizers / "bpe-model", tmp_path / "odd")
    bpe.save_pretrained(tmp_path / "odd")
    config = _cross_config(two_tokenizers, tmp_path / "out", "text")
    config["models"][0]["path"] = str(tmp_path / "odd")
    with pytest.raises(ValueError, match="model 'bpe': its tokens' bytes cannot be read"):
        run(config, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["text", "bytes"])
def test_different_tokenizers_couple_and_keep_their_exact_reply_laws(two_tokenizers,
                                                                      cross_runs, key):
    scores, manifest = cross_runs[key]
    coupling = {"text": "gumbel_text", "bytes": "gumbel_bytes"}[key]
    assert manifest["coupling"] == coupling and manifest["row_spec"]["noise_key"] == key
    modes = ["coupled", "independent"] if key == "text" else ["coupled"]
    assert (scores["coupling"] == coupling).all() and len(scores) == 2 * 500 * len(modes)
    sampling = Sampling(1.0, top_k=3)
    for name in ("bpe", "spm"):
        mine = scores[scores["model"] == name]
        law = _exact_reply_law(two_tokenizers / f"{name}-model", mine["prompt_text"].iloc[0],
                               sampling, 3)
        assert len(law) > 5
        for mode in modes:
            rows = mine[mine["mode"] == mode].sort_values("seed")
            assert _chi2_pvalue(list(rows["response"]), law) > CHI2_PASS, (name, mode)
        if key == "text":  # the independent stream is another noise, not a copy
            by_mode = mine.pivot_table(index="seed", columns="mode", values="response",
                                       aggfunc="first")
            assert (by_mode["coupled"] != by_mode["independent"]).mean() > 0.3


def test_text_and_bytes_keys_refuse_what_they_cannot_run(two_tokenizers, tmp_path):
    from coupled.runner.config import RunConfig

    with pytest.raises(ValueError, match="backend = 'hf' only"):
        RunConfig.model_validate(_cross_config(two_tokenizers, tmp_path, "text",
                                               backend="vllm"))
    with pytest.raises(ValueError, match="needs top_k, top_p or min_p"):
        RunConfig.model_validate(_cross_config(two_tokenizers, tmp_path, "bytes", top_k=None))
    with pytest.raises(ValueError, match="different tokenizer vocabularies"):
        run(_cross_config(two_tokenizers, tmp_path / "out", "token"), progress=False)
    assert not (tmp_path / "out").exists()


def test_a_broken_key_fails_the_exact_reply_law_test_on_a_real_model(two_tokenizers,
                                                                    monkeypatch):
    # a key that forgets the row: every row draws the same noise, so the replies are one
    # reply repeated (the subtle broken keys, without the counter or without merging, are
    # caught on the test bed above, where the vocabulary makes them matter by construction)
    from coupled.runner.config import ModelSpec
    from coupled.runner.models import load_tokenizer
    from coupled.runner.noise_torch import row_keys

    spec = ModelSpec(name="spm", path=str(two_tokenizers / "spm-model"))
    tokenizer = load_tokenizer(spec)
    engine = ce.TextKeyEngine(spec, tokenizer)
    prompt = runner_run._encode(tokenizer, ["Question: which letter? Answer:"])[0]
    n = 2_000
    keys = row_keys("t", ["q"] * n, list(range(n)))
    sampling = Sampling(1.0, top_k=3)
    law = _exact_reply_law(two_tokenizers / "spm-model", "Question: which letter? Answer:",
                           sampling, 3)

    def replies() -> list[str]:
        gens = engine.generate_rows([prompt], [0] * n, keys, sampling=sampling,
                                    max_new_tokens=3)
        return [tokenizer.decode(list(g.token_ids), skip_special_tokens=True) for g in gens]

    assert _chi2_pvalue(replies(), law) > CHI2_PASS
    monkeypatch.setattr(ce, "position_keys", lambda r, offset, counter: nt.text_position_keys(
        torch.zeros_like(r), offset, counter))
    assert _chi2_pvalue(replies(), law) < CHI2_BROKEN


@pytest.mark.parametrize(("key", "masks"), [("text", {"top_p": 0.4}),
                                            ("bytes", {"min_p": 0.3, "top_p": 0.95})])
def test_top_p_and_min_p_keep_the_reply_law_exact(two_tokenizers, key, masks):
    # the masks of the HF path define the law at each prefix; both keys sample it exactly
    from coupled.runner.config import ModelSpec
    from coupled.runner.models import load_tokenizer
    from coupled.runner.noise_torch import row_keys

    spec = ModelSpec(name="bpe", path=str(two_tokenizers / "bpe-model"))
    tokenizer = load_tokenizer(spec)
    engine = (ce.TextKeyEngine if key == "text" else ce.ByteKeyEngine)(spec, tokenizer)
    text = "Question: which letter? Answer:"
    n, sampling = 1_500, Sampling(1.0, **masks)
    gens = engine.generate_rows([runner_run._encode(tokenizer, [text])[0]], [0] * n,
                                row_keys("t", ["q"] * n, list(range(n))), sampling=sampling,
                                max_new_tokens=2)
    replies = [tokenizer.decode(list(g.token_ids), skip_special_tokens=True) for g in gens]
    law = _exact_reply_law(two_tokenizers / "bpe-model", text, sampling, 2)
    assert len(law) > 5
    assert _chi2_pvalue(replies, law) > CHI2_PASS


def test_resume_refuses_another_noise_key(two_tokenizers, tmp_path):
    out = tmp_path / "out"
    run(_cross_config(two_tokenizers, out, "text", seeds=2), progress=False)
    with pytest.raises(ValueError, match="'gumbel_text' -> 'gumbel_bytes'"):
        run(_cross_config(two_tokenizers, out, "bytes", seeds=2), resume=True, progress=False)
    assert set(read_scores(out)["coupling"]) == {"gumbel_text"}


def test_the_byte_paths_cached_laws_are_the_models_laws(two_tokenizers):
    # a prompt's KV cache reused for every reply prefix gives the law of a full forward pass
    from coupled.runner.config import ModelSpec
    from coupled.runner.models import load_model, load_tokenizer

    spec = ModelSpec(name="spm", path=str(two_tokenizers / "spm-model"))
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    prompt = runner_run._encode(tokenizer, ["Question: which letter? Answer:"])[0]
    sampling = Sampling(0.7)
    law = ce._HFLaw(model, [prompt], sampling, len(tokenizer))
    for ids in [(), (5,), (5, 9, 30), (), (5, 9)]:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt + list(ids)])).logits[:, -1, :]
        full = ce.sampling_log_probs(logits, sampling, len(tokenizer)).exp()[0].numpy()
        np.testing.assert_allclose(law(0, ids), full, rtol=1e-5, atol=1e-9)
    assert law.calls == 4  # one pass per distinct prefix (the prompt's is its prefill)


@pytest.mark.parametrize("key", ["text", "bytes"])
def test_batching_and_row_order_do_not_change_rows(two_tokenizers, key):
    # two prompts of different lengths (left padding), decoded together or in reversed chunks
    from coupled.runner.config import ModelSpec
    from coupled.runner.models import load_tokenizer
    from coupled.runner.noise_torch import row_keys

    spec = ModelSpec(name="spm", path=str(two_tokenizers / "spm-model"))
    tokenizer = load_tokenizer(spec)
    engine = (ce.TextKeyEngine if key == "text" else ce.ByteKeyEngine)(spec, tokenizer)
    prompts = runner_run._encode(tokenizer, ["Answer:", "Question: which letter is it? Answer:"])
    n, sampling = 120, Sampling(1.0, top_k=5)
    of_row = [r % 2 for r in range(n)]
    keys = row_keys("t", [f"q{p}" for p in of_row], list(range(n)))
    together = engine.generate_rows(prompts, of_row, keys, sampling=sampling, max_new_tokens=4)
    parts = {}
    for start in reversed(range(0, n, 25)):
        rows = list(range(start, min(start + 25, n)))[::-1]
        used = sorted({of_row[r] for r in rows})
        gens = engine.generate_rows([prompts[p] for p in used],
                                    [used.index(of_row[r]) for r in rows], keys[rows],
                                    sampling=sampling, max_new_tokens=4)
        parts.update(zip(rows, gens, strict=True))
    assert [parts[r] for r in range(n)] == together


# --- full-size versions (pytest -m slow) ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_full_size_text_key_text_law(bed, tokenizer):
    a, toks, models = bed
    rows = crosstok.crosstok_rows(200_000, seed=17)
    assert _chi2_pvalue(bed_text_rows(models[tokenizer], toks[tokenizer], rows),
                        a.text_law) > CHI2_PASS


@pytest.mark.slow
@pytest.mark.parametrize("key", ["text", "bytes"])
@pytest.mark.parametrize("name", ["bpe", "spm"])
def test_full_size_reply_law_on_real_models(two_tokenizers, key, name):
    from coupled.runner.config import ModelSpec
    from coupled.runner.models import load_tokenizer
    from coupled.runner.noise_torch import row_keys

    spec = ModelSpec(name=name, path=str(two_tokenizers / f"{name}-model"))
    tokenizer = load_tokenizer(spec)
    engine = (ce.TextKeyEngine if key == "text" else ce.ByteKeyEngine)(spec, tokenizer)
    text, n, sampling = "Question: which letter? Answer:", 6_000, Sampling(1.0, top_k=4)
    gens = engine.generate_rows([runner_run._encode(tokenizer, [text])[0]], [0] * n,
                                row_keys("t", ["q"] * n, list(range(n))), sampling=sampling,
                                max_new_tokens=3)
    replies = [tokenizer.decode(list(g.token_ids), skip_special_tokens=True) for g in gens]
    law = _exact_reply_law(two_tokenizers / f"{name}-model", text, sampling, 3)
    assert _chi2_pvalue(replies, law) > CHI2_PASS
