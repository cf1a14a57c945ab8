"""The runner's torch noise function against the numpy reference, bit for bit (DESIGN §2)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from coupled.runner import noise_torch  # noqa: E402
from coupled.simulate import noise as reference  # noqa: E402
from coupled.tables import noise_keys as keys  # noqa: E402

pytestmark = pytest.mark.runner

texts = st.text(min_size=0, max_size=12)
seeds = st.integers(min_value=0, max_value=2**63 - 1)
steps = st.integers(min_value=0, max_value=2**40)


def _as_uint64(tensor) -> np.ndarray:
    return tensor.cpu().numpy().view(np.uint64)


@given(task=texts, prompt_ids=st.lists(texts, min_size=1, max_size=5), seed=seeds,
       model=texts, mode=st.sampled_from(["coupled", "independent"]))
def test_row_keys_match_reference(task, prompt_ids, seed, model, mode):
    stream = noise_torch.stream_key(mode, model)
    assert stream == reference.stream_key(mode, model)
    assert keys.text_hash(task) == reference.text_hash(task)
    rows = noise_torch.row_keys(task, prompt_ids, [seed] * len(prompt_ids), stream)
    expected = reference.row_keys(task, prompt_ids, [seed] * len(prompt_ids), stream)
    np.testing.assert_array_equal(_as_uint64(rows), expected)


@given(prompt_ids=st.lists(texts, min_size=1, max_size=4), seed=seeds, step=steps,
       token_ids=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50))
def test_bits_and_uniforms_are_bit_identical(prompt_ids, seed, step, token_ids):
    rows = noise_torch.row_keys("t", prompt_ids, [seed] * len(prompt_ids))
    rows_np = reference.row_keys("t", prompt_ids, [seed] * len(prompt_ids))
    tokens = torch.tensor(token_ids, dtype=torch.int64)
    bits = noise_torch.noise_bits(rows, step, tokens)
    bits_np = reference.noise_bits(rows_np[:, None], step, np.array(token_ids, dtype=np.uint64))
    np.testing.assert_array_equal(_as_uint64(bits), bits_np)
    u = noise_torch.bits_to_uniform(bits).numpy()
    np.testing.assert_array_equal(u, reference.bits_to_uniform(bits_np))
    # the fused in-place path (which skips splitmix64's last step) gives the same uniforms
    np.testing.assert_array_equal(noise_torch.uniforms(rows, step, tokens).numpy(), u)
    assert u.dtype == np.float64 and (u > 0).all() and (u < 1).all()
    np.testing.assert_array_equal(noise_torch.shared_uniform(rows, step).numpy(),
                                  reference.shared_uniform(rows_np, step))


def test_gumbel_noise_matches_reference_to_rounding():
    # torch's and numpy's float64 log may differ in the last bit; u is identical (above), so
    # g agrees to a few ulps in float64 and exactly after the cast to float32 on these keys.
    rows = noise_torch.row_keys("t", [str(i) for i in range(16)], list(range(16)))
    rows_np = reference.row_keys("t", [str(i) for i in range(16)], list(range(16)))
    for step in (0, 1, 9):
        g64 = noise_torch.gumbel_noise(rows, step, 4096, torch.float64).numpy()
        expected = reference.gumbel_noise(rows_np, step, 4096)
        np.testing.assert_allclose(g64, expected, rtol=4e-16 * 8, atol=4e-16 * 8)
        g32 = noise_torch.gumbel_noise(rows, step, 4096).numpy()
        assert g32.dtype == np.float32
        np.testing.assert_array_equal(g32, expected.astype(np.float32))


def test_noise_is_invariant_to_batch_composition_and_order():
    prompt_ids = [f"q{i}" for i in range(12)]
    seeds_ = [i % 3 for i in range(12)]
    rows = noise_torch.row_keys("t", prompt_ids, seeds_, noise_torch.stream_key("coupled", "m"))
    together = noise_torch.gumbel_noise(rows, 3, 500)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = noise_torch.gumbel_noise(rows[order], 3, 500)
    assert torch.equal(shuffled, together[order])
    alone = torch.cat([noise_torch.gumbel_noise(rows[i:i + 1], 3, 500) for i in range(12)])
    assert torch.equal(alone, together)
    # independent mode: different streams per model, the same noise for the same model
    a = noise_torch.row_keys("t", prompt_ids, seeds_, noise_torch.stream_key("independent", "A"))
    b = noise_torch.row_keys("t", prompt_ids, seeds_, noise_torch.stream_key("independent", "B"))
    assert not torch.equal(noise_torch.gumbel_noise(a, 3, 500), noise_torch.gumbel_noise(b, 3, 500))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noise_on_cuda_is_bit_identical_to_cpu():
    rows = noise_torch.row_keys("t", [str(i) for i in range(32)], list(range(32)))
    for step in (0, 5):
        cpu_bits = noise_torch.noise_bits(rows, step, torch.arange(32000))
        cuda_bits = noise_torch.noise_bits(rows.cuda(), step, torch.arange(32000, device="cuda"))
        assert torch.equal(cpu_bits, cuda_bits.cpu())
        g_cpu = noise_torch.gumbel_noise(rows, step, 32000)
        g_cuda = noise_torch.gumbel_noise(rows.cuda(), step, 32000).cpu()
        # u is exact on both; log may differ by an ulp in float64, rarely visible in float32
        assert (g_cpu != g_cuda).float().mean() < 1e-4
        torch.testing.assert_close(g_cpu, g_cuda, rtol=1e-6, atol=1e-6)


def test_splitmix64_rejects_other_dtypes():
    with pytest.raises(ValueError, match="int64"):
        noise_torch.splitmix64(torch.zeros(3, dtype=torch.int32))


def test_sparse_noise_equals_the_dense_noise_at_the_same_pairs():
    rows = noise_torch.row_keys("t", [str(i) for i in range(8)], list(range(8)))
    dense = noise_torch.gumbel_noise(rows, 4, 300)
    row_index = torch.tensor([0, 3, 3, 7])
    token_ids = torch.tensor([0, 5, 299, 17])
    assert torch.equal(noise_torch.gumbel_noise_at(rows, 4, row_index, token_ids),
                       dense[row_index, token_ids])
    u_max = (2**24 - 0.5) / 2**24
    assert noise_torch.GUMBEL_MAX == -np.log(-np.log(u_max))
    assert dense.max() <= noise_torch.GUMBEL_MAX


@pytest.mark.parametrize("scale, peak", [(1.0, 0.0), (3.0, 20.0), (8.0, 40.0)])
def test_pruned_gumbel_argmax_equals_the_dense_argmax(scale, peak):
    # Flat logits take the dense path, peaked ones the pruned path: both must agree exactly.
    from coupled.runner.decode import gumbel_argmax

    generator = torch.Generator().manual_seed(int(scale))
    logits = torch.randn(64, 5000, generator=generator) * scale
    logits[:, :3] += peak
    logits[5, 100] = float("-inf")  # masked (top-p) tokens never win
    rows = noise_torch.row_keys("t", [str(i) for i in range(64)], list(range(64)))
    for step in range(4):
        dense = (logits + noise_torch.gumbel_noise(rows, step, 5000)).argmax(-1)
        assert torch.equal(gumbel_argmax(logits, rows, step), dense)
        assert torch.equal(gumbel_argmax(logits, rows, step, dense_fraction=0.0), dense)


def test_top_p_keeps_the_nucleus_and_temperature_zero_is_greedy():
    from coupled.runner.decode import sample_next_tokens

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]])).expand(4000, -1)
    rows = noise_torch.row_keys("t", ["p"] * 4000, list(range(4000)))
    tokens = sample_next_tokens(logits, rows, 0, 1.0, top_p=0.8)
    assert set(tokens.tolist()) == {0, 1}  # 0.6 < 0.8, so token 1 completes the nucleus
    # renormalised nucleus: P(0) = 2/3; 4000 draws, SE ~ 0.0075, allow 4 SE
    assert abs((tokens == 0).double().mean().item() - 2 / 3) < 4 * 0.0075
    assert set(sample_next_tokens(logits, rows, 0, 0.0).tolist()) == {0}
