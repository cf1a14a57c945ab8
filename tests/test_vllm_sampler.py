"""The sampler both backends share (decode.sample_next_tokens + mask_outside_sampling_set).

Runs in the main environment (no vLLM needed): the vLLM logits processor calls these very
functions, so what is checked here holds on both backends. Checked: the masks equal
transformers' TopK/TopP/MinP warpers applied in its order (generated logits, ties included for
top-k and min-p); the masked pruned argmax equals the dense argmax bit for bit and never picks a
masked token; coupled marginals under top-k are the renormalised softmax (chi-square); and the
Engine interface runs the HF loop with the masks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from coupled.runner import decode, noise_torch  # noqa: E402
from coupled.runner.engine import GREEDY, Sampling  # noqa: E402

pytestmark = pytest.mark.runner
QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"


def _logits(data, rows: int, vocab: int, ties: bool) -> torch.Tensor:
    if ties:  # a few distinct values: many exact ties
        values = data.draw(st.lists(st.integers(-4, 4), min_size=rows * vocab,
                                    max_size=rows * vocab))
        return torch.tensor(values, dtype=torch.float32).reshape(rows, vocab) / 2
    values = data.draw(st.lists(st.floats(-8, 8, width=32), min_size=rows * vocab,
                                max_size=rows * vocab))
    return torch.tensor(values, dtype=torch.float32).reshape(rows, vocab)


def _transformers_masks(scaled: torch.Tensor, top_p, top_k, min_p) -> torch.Tensor:
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    ids = torch.zeros((scaled.shape[0], 1), dtype=torch.long)
    out = scaled
    if top_k is not None:
        out = TopKLogitsWarper(top_k)(ids, out)
    if top_p is not None:
        out = TopPLogitsWarper(top_p)(ids, out)
    if min_p is not None:
        out = MinPLogitsWarper(min_p)(ids, out)
    return out


@given(st.data())
def test_top_k_and_min_p_masks_equal_transformers_warpers_ties_included(data):
    vocab = data.draw(st.integers(2, 24))
    scaled = _logits(data, data.draw(st.integers(1, 4)), vocab, ties=True)
    top_k = data.draw(st.none() | st.integers(1, vocab + 2))
    min_p = data.draw(st.none() | st.floats(0.01, 0.99))
    ours = decode.mask_outside_sampling_set(scaled, top_k=top_k, min_p=min_p)
    assert torch.equal(ours, _transformers_masks(scaled, None, top_k, min_p))


@given(st.data())
def test_all_three_masks_equal_transformers_warpers_in_its_order(data):
    vocab = data.draw(st.integers(2, 24))
    scaled = _logits(data, data.draw(st.integers(1, 4)), vocab, ties=False)
    top_k = data.draw(st.none() | st.integers(1, vocab))
    top_p = data.draw(st.none() | st.floats(0.05, 0.99))
    min_p = data.draw(st.none() | st.floats(0.01, 0.99))
    ours = decode.mask_outside_sampling_set(scaled, top_p=top_p, top_k=top_k, min_p=min_p)
    assert torch.equal(ours, _transformers_masks(scaled, top_p, top_k, min_p))
    assert torch.isfinite(ours).sum(-1).min() >= 1  # the top token always stays


@given(st.data())
def test_masked_pruned_argmax_equals_dense_and_never_picks_a_masked_token(data):
    rows, vocab = data.draw(st.integers(1, 6)), data.draw(st.integers(2, 300))
    logits = _logits(data, rows, vocab, ties=data.draw(st.booleans())) * data.draw(
        st.sampled_from([0.1, 1.0, 4.0]))
    sampling = Sampling(temperature=data.draw(st.sampled_from([0.5, 1.0, 1.7])),
                        top_p=data.draw(st.none() | st.floats(0.1, 0.99)),
                        top_k=data.draw(st.none() | st.integers(1, vocab)),
                        min_p=data.draw(st.none() | st.floats(0.01, 0.5)))
    keys = noise_torch.row_keys("mask", [str(i) for i in range(rows)], list(range(rows)))
    step = data.draw(st.integers(0, 50))
    tokens = decode.sample_next_tokens(logits, keys, step, sampling.temperature, sampling.top_p,
                                       top_k=sampling.top_k, min_p=sampling.min_p)
    scaled = decode.mask_outside_sampling_set(logits / sampling.temperature, top_p=sampling.top_p,
                                              top_k=sampling.top_k, min_p=sampling.min_p)
    dense = (scaled + noise_torch.gumbel_noise(keys, step, vocab)).argmax(-1)
    assert torch.equal(tokens, dense)
    assert torch.isfinite(scaled.gather(1, tokens[:, None])).all()


def test_coupled_marginals_under_top_k_are_the_renormalised_softmax():
    torch.manual_seed(0)
    logits = torch.randn(40, dtype=torch.float64) * 2
    n, k, temperature = 20000, 6, 0.8
    keys = noise_torch.row_keys("topk-marginal", ["q"] * n, list(range(n)))
    tokens = decode.sample_next_tokens(logits.float().expand(n, -1), keys, 0, temperature,
                                       top_k=k)
    scaled = logits / temperature
    keep = scaled >= scaled.topk(k).values[-1]
    probs = torch.where(keep, scaled, torch.tensor(float("-inf"))).softmax(-1).numpy()
    counts = np.bincount(tokens.numpy(), minlength=len(probs))
    assert counts[~keep.numpy()].sum() == 0
    kept = keep.numpy()
    # a calibrated test: under the null its p-value is uniform; 1e-3 fails 1 run in 1000
    assert stats.chisquare(counts[kept], probs[kept] * n).pvalue > 1e-3


def test_sampling_settings_are_checked():
    with pytest.raises(ValueError, match="top_k"):
        Sampling(1.0, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(1.0, top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        Sampling(-1.0)
    assert GREEDY.temperature == 0 and GREEDY.as_kwargs()["top_k"] is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from coupled.runner.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("sampler-tiny") / "models", QUESTIONS)


def _config(tiny: Path, out: Path, **over) -> dict:
    return {"output_dir": str(out), "seeds": 4, "max_new_tokens": 3,
            "task": {"name": "t", "type": "multiple_choice", "path": str(QUESTIONS), "limit": 6},
            "models": [{"name": "a", "path": str(tiny / "tiny-A")},
                       {"name": "b", "path": str(tiny / "tiny-B")}], **over}


def test_run_config_top_k_reaches_the_sampler(tiny, tmp_path):
    # top_k = 1 leaves only the argmax: every seed and mode of a prompt gives the greedy reply,
    # while without it the seeds differ.
    from coupled.runner import run
    from coupled.tables import read_scores

    masked = read_scores(run(_config(tiny, tmp_path / "k1", top_k=1), progress=False))
    assert (masked.groupby(["model", "prompt_id"])["response"].nunique() == 1).all()
    free = read_scores(run(_config(tiny, tmp_path / "free"), progress=False))
    assert (free.groupby(["model", "prompt_id"])["response"].nunique() > 1).any()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                    reason="vLLM is installed in this environment")
def test_vllm_backend_without_vllm_is_refused_before_anything_is_written(tiny, tmp_path):
    from coupled.runner import run

    with pytest.raises(ValueError, match="backend = 'vllm' needs vLLM"):
        run(_config(tiny, tmp_path / "out", backend="vllm"), progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("top_p", [0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("vocab", [2, 4, 8])
def test_top_p_on_exact_ties_equals_transformers(top_p, vocab):
    # All-equal logits: a tie at every position and a nucleus boundary at k / vocab exactly
    # (hypothesis found 2 x 4 zeros at top_p = 0.5 on a fresh clone).
    scaled = torch.zeros((3, vocab))
    scaled[2, ::2] = 1.0  # and a row with two tied levels
    ours = decode.mask_outside_sampling_set(scaled, top_p=top_p)
    assert torch.equal(ours, _transformers_masks(scaled, top_p, None, None))
