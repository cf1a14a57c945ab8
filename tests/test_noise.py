"""The noise function's reference implementation, pinned to values computed independently.

The pinned numbers were produced by a pure-Python-integer transcription of DESIGN §2 (the
``_reference`` below), so a change to the numpy code that alters any bit fails here.
"""

import numpy as np
import pytest

from coupled.simulate import noise

MASK = (1 << 64) - 1


def _sm(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _reference(task, prompt_id, seed, stream, step, token):
    row = _sm(_sm(noise.text_hash(f"{task}\x1f{prompt_id}") ^ seed) ^ stream)
    return _sm(_sm(row ^ step) ^ token)


def test_pinned_values():
    row = noise.row_key("mmlu", "q1", 3, noise.stream_key("independent", "m"))
    assert row == 9372973351767834309
    assert int(noise.noise_bits(row, 0, 0)) == 15348004407290043630
    assert int(noise.noise_bits(row, 1, 5)) == 3150057843565441761
    assert int(noise.noise_bits(row, 7, 2**32 - 1)) == 2400815438071579867
    assert noise.bits_to_uniform(np.uint64(15348004407290043630)) == 0.8320169746875763


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
def test_vectorised_matches_scalar_reference(seed):
    prompts = ["0", "1", "007", "q\u00e9"]
    for mode, model in [("coupled", "A"), ("independent", "A"), ("independent", "B")]:
        stream = noise.stream_key(mode, model)
        rows = noise.row_keys("t", prompts, [seed] * len(prompts), stream)
        bits = noise.noise_bits(rows[:, None], 4, np.arange(6, dtype=np.uint64))
        for i, p in enumerate(prompts):
            for tok in range(6):
                assert int(bits[i, tok]) == _reference("t", p, seed, stream, 4, tok)


def test_key_parts_are_hashed_not_added():
    # seed + step mixing would make (s, step + 1) collide with (s + 1, step).
    a = noise.noise_bits(noise.row_key("t", "p", 1), 2, np.arange(4))
    b = noise.noise_bits(noise.row_key("t", "p", 2), 1, np.arange(4))
    assert not np.array_equal(a, b)
    # and the prompt is part of the key
    c = noise.noise_bits(noise.row_key("t", "p2", 1), 2, np.arange(4))
    assert not np.array_equal(a, c)


def test_uniforms_are_exact_in_float64_and_inside_unit_interval():
    rows = noise.row_keys("t", [str(i) for i in range(50)], range(50))
    bits = noise.noise_bits(rows[:, None], 0, np.arange(1000))
    u64 = noise.bits_to_uniform(bits)
    # exact: 2**25 * u is the odd integer 2 * (x >> 40) + 1
    doubled = u64 * 2**25
    assert np.array_equal(doubled, 2 * (bits >> np.uint64(40)).astype(np.float64) + 1)
    # float32 cannot hold every such u (25 significant bits): the cast rounds, by < 1 ulp
    u32 = noise.bits_to_uniform(bits, np.float32)
    assert not np.array_equal(u64, u32.astype(np.float64))
    assert np.all(np.abs(u64 - u32) <= np.spacing(np.float32(1)) / 2)
    assert u64.min() > 0 and u64.max() < 1
    # uniform on (0, 1): mean 1/2 within 5 standard errors
    assert abs(u64.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u64.size)


def test_coupled_stream_ignores_model_and_independent_does_not():
    assert noise.stream_key("coupled", "A") == noise.stream_key("coupled", "B") == 0
    assert noise.stream_key("independent", "A") != noise.stream_key("independent", "B")
    with pytest.raises(ValueError, match="mode"):
        noise.stream_key("paired", "A")
