"""Exact theory vs simulation: one step (coupled.theory) and many steps (the pair-chain DP).

Monte-Carlo checks compare frequencies with exact probabilities within 5 standard errors of a
Bernoulli frequency (a correct implementation fails one such check with probability ~6e-7), all
seeded, so the file is deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from coupled.simulate import (
    SequenceTask,
    SyntheticModel,
    base_bigram_logits,
    benchmark_task,
    exact_output_pair_law,
    exact_points_law,
    exact_points_marginal,
    generate_sequences,
    model_family,
    pair_truth,
    pairwise_task,
    sample_tokens,
    sequence_comparisons,
    sequence_scores,
)
from coupled.simulate.models import quantized_logits, variant_logits
from coupled.theory import joint

K_SE = 5.0
# The two-sided tail probability of K_SE standard errors of a normal (about 5.7e-7).
TAIL = 2 * stats.norm.sf(K_SE)


def assert_frequencies(observed: np.ndarray, truth: np.ndarray, n: int) -> None:
    """Each observed frequency agrees with its exact probability at the K_SE-standard-error
    level, judged by the exact binomial tail (rare cells — expected counts of a few — make the
    normal approximation anti-conservative, so the tail probability is computed exactly)."""
    truth = np.clip(np.asarray(truth, dtype=float), 0.0, 1.0)
    counts = np.rint(np.asarray(observed) * n)
    tails = 2 * np.minimum(stats.binom.cdf(counts, n, truth), stats.binom.sf(counts - 1, n, truth))
    worst = np.unravel_index(np.argmin(tails), tails.shape)
    assert tails[worst] >= TAIL, (f"cell {worst}: {int(counts[worst])} of {n} for probability "
                                  f"{truth[worst]:.3g} (two-sided tail {tails[worst]:.2g})")


def bigram_instance(seed: int, n_prompts: int = 3, vocab: int = 4, max_length: int = 3,
                    kind: str = "pairwise"):
    rng = np.random.default_rng(seed)
    if kind == "pairwise":
        task = pairwise_task(n_prompts, vocab, max_length, rng)
    else:
        task = benchmark_task(n_prompts, vocab, max_length, rng)
    base = base_bigram_logits(task, rng)
    models = model_family(base, {"base": {"kind": "base"},
                                 "near": {"kind": "perturbed", "eps": 0.7},
                                 "other": {"kind": "unrelated", "scale": 1.2}}, rng)
    return task, models


# ---- one step against coupled.theory ---------------------------------------------------------

@pytest.mark.parametrize("instance", range(3))
@pytest.mark.parametrize("coupling", ["gumbel", "inverse_cdf", "independent"])
def test_one_step_joint_frequencies_match_theory(instance, coupling):
    rng = np.random.default_rng(100 + instance)
    vocab = 4
    p, q = rng.dirichlet(np.full(vocab, 0.8), size=2)
    n = 20_000
    tokens = sample_tokens(np.stack([p, q]), n, coupling, seed=instance)
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (tokens[:, 0], tokens[:, 1]), 1)
    assert_frequencies(counts / n, joint(p, q, coupling), n)


def test_one_step_bigram_dp_is_the_theory_joint():
    # With max_length 1 only the start context matters: the pair law of points is the
    # one-step joint of coupled.theory pushed through the points.
    task, models = bigram_instance(1, max_length=1)
    for coupling, mode in (("gumbel", "coupled"), ("inverse_cdf", "coupled"),
                           ("gumbel", "independent")):
        law = exact_points_law(models[0].probs, models[2].probs, task.points, 1,
                               coupling=coupling, mode=mode)
        start = models[0].probs[:, -1], models[2].probs[:, -1]
        token_law = joint(*start, coupling if mode == "coupled" else "independent")
        expected = np.zeros_like(law)
        for n in range(task.n_prompts):
            for a in range(task.vocab_size):
                for b in range(task.vocab_size):
                    expected[n, task.points[n, a], task.points[n, b]] += token_law[n, a, b]
        np.testing.assert_allclose(law, expected, atol=1e-14)


# ---- the pair chain: exact ----------------------------------------------------------------------

@pytest.mark.parametrize("coupling", ["gumbel", "inverse_cdf"])
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_points_dp_equals_the_enumerated_law_of_output_pairs(coupling, mode):
    task, models = bigram_instance(2, max_length=3)
    law = exact_points_law(models[0].probs, models[1].probs, task.points, 3, coupling=coupling,
                           mode=mode)
    for n in range(task.n_prompts):
        pairs = exact_output_pair_law(models[0].probs[n], models[1].probs[n], 3,
                                      coupling=coupling, mode=mode)
        assert abs(sum(pairs.values()) - 1) < 1e-12
        assert all(len(a) <= 3 and len(b) <= 3 for a, b in pairs)
        expected = np.zeros_like(law[n])
        for (seq_a, seq_b), mass in pairs.items():
            expected[task.points[n, list(seq_a)].sum(), task.points[n, list(seq_b)].sum()] += mass
        np.testing.assert_allclose(law[n], expected, atol=1e-13)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 5), max_length=st.integers(1, 4),
       coupling=st.sampled_from(["gumbel", "inverse_cdf"]))
def test_coupled_pair_law_keeps_each_models_marginal(seed, vocab, max_length, coupling):
    task, models = bigram_instance(seed, n_prompts=2, vocab=vocab, max_length=max_length)
    law = exact_points_law(models[0].probs, models[2].probs, task.points, max_length,
                           coupling=coupling)
    assert np.all(law >= -1e-15)
    np.testing.assert_allclose(law.sum(axis=(1, 2)), 1.0, atol=1e-12)
    np.testing.assert_allclose(law.sum(axis=2), exact_points_marginal(
        models[0].probs, task.points, max_length), atol=1e-12)
    np.testing.assert_allclose(law.sum(axis=1), exact_points_marginal(
        models[2].probs, task.points, max_length), atol=1e-12)


def test_identical_models_never_differ_when_coupled():
    task, models = bigram_instance(3)
    twin = SyntheticModel("twin", models[0].logits)
    for coupling in ("gumbel", "inverse_cdf"):
        law = exact_points_law(models[0].probs, twin.probs, task.points, task.max_length,
                               coupling=coupling)
        off_diagonal = law.sum(axis=(1, 2)) - np.trace(law, axis1=1, axis2=2)
        np.testing.assert_allclose(off_diagonal, 0.0, atol=1e-14)
        out = generate_sequences([models[0], twin], task, np.arange(200), "coupled", coupling)
        assert np.array_equal(out.tokens[:, :, 0], out.tokens[:, :, 1])
    independent = exact_points_law(models[0].probs, twin.probs, task.points, task.max_length,
                                   mode="independent")
    varies = task.points.max(axis=1) > 0          # prompts where outputs can score differently
    assert varies.any() and np.all(np.trace(independent, axis1=1, axis2=2)[varies] < 1 - 1e-3)
    out = generate_sequences([models[0], twin], task, np.arange(200), "independent")
    assert (out.tokens[:, :, 0] != out.tokens[:, :, 1]).any()


def test_pair_truth_of_a_known_law():
    # X, Y in {0, 1, 2}: P(0,0)=.2, P(1,0)=.3, P(2,2)=.1, P(0,2)=.4.
    law = np.zeros((1, 3, 3))
    law[0, 0, 0], law[0, 1, 0], law[0, 2, 2], law[0, 0, 2] = 0.2, 0.3, 0.1, 0.4
    truth = pair_truth(law, np.array([0.0, 1.0, 2.0]), tie_margin=0.5, judge_noise=0.2)
    assert truth.mean_a[0] == pytest.approx(0.5) and truth.mean_b[0] == pytest.approx(1.0)
    assert truth.both[0] == pytest.approx(0.4)
    assert truth.cov[0] == pytest.approx(0.4 - 0.5)
    diff_mean, diff_sq = 0.3 * 1 + 0.4 * -2, 0.3 * 1 + 0.4 * 4
    assert truth.var_diff[0] == pytest.approx(diff_sq - diff_mean**2)
    assert truth.win_a[0] == pytest.approx(0.8 * 0.3 + 0.1)
    assert truth.win_b[0] == pytest.approx(0.8 * 0.4 + 0.1)
    assert truth.tie[0] == pytest.approx(0.8 * 0.3)


# ---- the pair chain against Monte-Carlo generation --------------------------------------------

@pytest.mark.parametrize("coupling,mode", [("gumbel", "coupled"), ("inverse_cdf", "coupled"),
                                           ("gumbel", "independent")])
def test_generated_points_match_the_exact_pair_law(coupling, mode):
    task, models = bigram_instance(4, n_prompts=3, vocab=4, max_length=3)
    n_seeds = 6000
    out = generate_sequences(models[:2], task, np.arange(n_seeds), mode, coupling)
    law = exact_points_law(models[0].probs, models[1].probs, task.points, 3, coupling=coupling,
                           mode=mode)
    size = law.shape[1]
    for n in range(task.n_prompts):
        counts = np.zeros((size, size))
        np.add.at(counts, (out.points[n, :, 0], out.points[n, :, 1]), 1)
        assert_frequencies(counts / n_seeds, law[n], n_seeds)
    assert out.lengths.max() <= 3 and out.lengths.min() >= 1
    finished = out.tokens[..., :][out.lengths < 3]
    assert np.all((finished == task.end_token).any(axis=-1))


def test_comparison_and_score_tables_match_the_exact_truth():
    task, models = bigram_instance(5, n_prompts=2, vocab=4, max_length=3)
    n_seeds = 5000
    frame = sequence_comparisons(models, task, n_seeds, modes=["coupled"], judge_noise=0.2,
                                 tie_margin=0.5, seed=1)
    values = task.score_of_points(np.arange(3 * task.points.max() + 1))
    by_name = {m.name: m for m in models}
    for (a, b), rows in frame.groupby(["model_a", "model_b"]):
        law = exact_points_law(by_name[a].probs, by_name[b].probs, task.points, 3)
        truth = pair_truth(law, values, tie_margin=0.5, judge_noise=0.2)
        for n, prompt_rows in rows.groupby("prompt_id"):
            i = int(n)
            observed = [np.mean(prompt_rows["outcome"] == o) for o in ("a", "b", "tie")]
            assert_frequencies(np.array(observed),
                               np.array([truth.win_a[i], truth.win_b[i], truth.tie[i]]), n_seeds)

    bench, bench_models = bigram_instance(6, n_prompts=2, vocab=4, max_length=3,
                                          kind="benchmark")
    scores = sequence_scores(bench_models[:2], bench, n_seeds, modes=["coupled"])
    wide = scores.pivot(index=["prompt_id", "seed"], columns="model", values="score")
    law = exact_points_law(bench_models[0].probs, bench_models[1].probs, bench.points, 3)
    truth = pair_truth(law, bench.score_of_points(np.arange(law.shape[1])))
    for i in range(2):
        prompt = wide.loc[str(i)]
        assert_frequencies(np.array([prompt["base"].mean(), (prompt["base"] * prompt["near"])
                                     .mean()]), np.array([truth.mean_a[i], truth.both[i]]),
                           n_seeds)


def test_generation_rows_are_identical_across_batches_and_model_subsets():
    task, models = bigram_instance(7, n_prompts=4)
    full = sequence_scores([models[0], models[1], models[2]], SequenceTask(
        "bench", "benchmark", (task.points > 1).astype(int), 3), 5)
    subset_task = SequenceTask("bench", "benchmark", (task.points[[1, 3]] > 1).astype(int), 3,
                               prompt_ids=("1", "3"))
    subset_models = [SyntheticModel(m.name, m.logits[[1, 3]]) for m in (models[2], models[0])]
    part = sequence_scores(subset_models, subset_task, 5)
    key = ["task", "prompt_id", "seed", "mode", "coupling", "model"]
    merged = part.merge(full, on=key, suffixes=("", "_full"))
    assert len(merged) == len(part) == 2 * 5 * 2 * 2
    assert (merged["response"] == merged["response_full"]).all()
    assert (merged["score"] == merged["score_full"]).all()
    again = sequence_scores([models[0], models[1], models[2]], SequenceTask(
        "bench", "benchmark", (task.points > 1).astype(int), 3), 5)
    assert full.equals(again)


# ---- models and families -----------------------------------------------------------------------

def test_default_family_mirrors_the_papers_six_models():
    task = benchmark_task(50, 6, 4, 0)
    family = model_family(base_bigram_logits(task, 0), rng=0)
    names = [m.name for m in family]
    assert names == ["large", "large-8bit", "large-4bit", "large-awq-int4", "medium", "small"]
    large = family[0].probs

    def distance(model):  # mean total-variation distance to the large model
        return 0.5 * np.abs(model.probs - large).sum(axis=-1).mean()

    d = {m.name: distance(m) for m in family}
    assert d["large"] == 0
    assert 0 < d["large-8bit"] < d["large-4bit"] < d["medium"] < d["small"]
    assert d["large-awq-int4"] < d["medium"]
    again = model_family(base_bigram_logits(task, 0), rng=0)
    assert all(np.array_equal(a.logits, b.logits) for a, b in zip(family, again, strict=True))


def test_quantized_logits_sit_on_the_grid():
    logits = np.random.default_rng(0).normal(size=(5, 7))
    logits[0, 3] = -np.inf
    q = quantized_logits(logits, 3)
    assert q[0, 3] == -np.inf
    for row, original in zip(q, logits, strict=True):
        finite = np.isfinite(original)
        low, high = original[finite].min(), original[finite].max()
        levels = (row[finite] - low) / ((high - low) / 7)
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
        assert np.abs(row[finite] - original[finite]).max() <= (high - low) / 14 + 1e-12


def test_bad_models_and_recipes_are_refused():
    with pytest.raises(ValueError, match="unknown key"):
        variant_logits(np.zeros((2, 3)), {"kind": "perturbed", "epsilon": 1}, np.random.default_rng())
    with pytest.raises(ValueError, match="kind"):
        variant_logits(np.zeros((2, 3)), {"kind": "distilled"}, np.random.default_rng())
    with pytest.raises(ValueError, match="V \\+ 1"):
        SyntheticModel("m", np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="end token"):
        SequenceTask("t", "benchmark", np.ones((2, 3), dtype=int), 2)
    task, models = bigram_instance(8)
    with pytest.raises(ValueError, match="bigram tables"):
        generate_sequences([SyntheticModel("x", np.zeros((3, 4)))], task, np.arange(2))


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), vocab=st.integers(2, 7),
       coupling=st.sampled_from(["gumbel", "inverse_cdf"]),
       zeros=st.booleans())
def test_every_coupled_draw_lies_in_the_support_of_the_exact_joint(seed, vocab, coupling, zeros):
    # The exact joint's zeros (counterfactual stability for Gumbel-max, the interval structure
    # of inverse-CDF, zero-probability tokens) must never be hit by an actual draw.
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.full(vocab, 0.7), size=2)
    if zeros:
        p[rng.integers(vocab)] = 0.0
        p /= p.sum()
    tokens = sample_tokens(np.stack([p, q]), 300, coupling, seed=seed)
    law = joint(p, q, coupling)
    # (a threshold, not > 0: a rounding residue in a forbidden cell must not count as support)
    assert np.all(law[tokens[:, 0], tokens[:, 1]] > 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("coupling,mode", [("gumbel", "coupled"), ("inverse_cdf", "coupled"),
                                           ("gumbel", "independent")])
def test_full_size_generation_matches_the_pair_chain(coupling, mode):
    # The full-size version of test_generated_points_match_the_exact_pair_law: the default
    # vocabulary and length, every pair of a three-model family, 100 000 seeds per prompt.
    task, models = bigram_instance(11, n_prompts=4, vocab=6, max_length=4)
    n_seeds = 100_000
    out = generate_sequences(models, task, np.arange(n_seeds), mode, coupling)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        law = exact_points_law(models[a].probs, models[b].probs, task.points, 4,
                               coupling=coupling, mode=mode)
        size = law.shape[1]
        for n in range(task.n_prompts):
            counts = np.zeros((size, size))
            np.add.at(counts, (out.points[n, :, a], out.points[n, :, b]), 1)
            assert_frequencies(counts / n_seeds, law[n], n_seeds)
