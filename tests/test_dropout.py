"""The fused dropout: the hash is jax.random's, the keep probability and scale are exact, masks are
independent across elements and keys, and the model draws them from the "dropout" stream."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.random.threefry2x32 import threefry_2x32

from fsd_jax.models.dropout import Dropout, dropout, keep_mask, keep_threshold, threefry2x32


def test_the_hash_is_jax_randoms_threefry_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(3):
        key = jnp.asarray(rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32))
        counts = jnp.asarray(rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32))
        x0, x1 = jax.jit(threefry2x32)(key, counts[:2048], counts[2048:])
        np.testing.assert_array_equal(np.concatenate([x0, x1]), threefry_2x32(key, counts))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.03])
def test_keep_probability_is_within_2_to_the_minus_33_and_observed(rate):
    assert abs(keep_threshold(rate) / 2**32 - (1 - rate)) <= 2**-33
    shape = (64, 12, 128, 128)  # 12.6 M draws
    kept = np.asarray(jax.jit(keep_mask, static_argnums=(1, 2))(jax.random.key(7), rate, shape))
    p = 1 - rate
    sigma = np.sqrt(p * (1 - p) / kept.size)
    assert abs(kept.mean() - p) < 5 * sigma
    # neighbours (last axis, and across the first) are independent draws
    for a, b in ((kept[..., 1:], kept[..., :-1]), (kept[1:], kept[:-1])):
        both = (a & b).mean()
        assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / a.size)


def test_keys_and_shapes_give_different_masks_and_one_key_the_same():
    a = np.asarray(keep_mask(jax.random.key(1), 0.5, (4096,)))
    np.testing.assert_array_equal(a, np.asarray(keep_mask(jax.random.key(1), 0.5, (4096,))))
    b = np.asarray(keep_mask(jax.random.key(2), 0.5, (4096,)))
    assert 0.4 < (a != b).mean() < 0.6
    # raw key data and the typed key draw the same mask
    raw = jax.random.key_data(jax.random.key(1))
    np.testing.assert_array_equal(a, np.asarray(keep_mask(raw, 0.5, (4096,))))


def test_dropout_scales_kept_elements_by_the_exact_keep_probability_and_its_gradient_matches():
    x = jax.random.normal(jax.random.key(0), (8, 16, 32))
    key = jax.random.key(3)
    rate = 0.1
    scale = 2**32 / keep_threshold(rate)
    mask = np.asarray(keep_mask(key, rate, x.shape))
    y = np.asarray(jax.jit(dropout, static_argnums=1)(x, rate, key))
    np.testing.assert_allclose(y, np.where(mask, np.asarray(x) * np.float32(scale), 0), rtol=1e-7)
    w = jax.random.normal(jax.random.key(1), x.shape)
    grad = jax.grad(lambda v: jnp.sum(dropout(v, rate, key) * w))(x)
    np.testing.assert_allclose(
        np.asarray(grad), np.where(mask, np.asarray(w) * scale, 0), rtol=1e-6
    )
    # E[dropout(x)] = x: the mean over many keys of one element's output
    ones = jnp.ones((1 << 20,))
    assert abs(float(dropout(ones, 0.3, key).mean()) - 1.0) < 5 * np.sqrt(0.3 / 0.7 / ones.size)


def test_rate_zero_one_and_deterministic():
    x = jnp.arange(12.0).reshape(3, 4)
    key = jax.random.key(0)
    np.testing.assert_array_equal(dropout(x, 0.0, key), x)
    np.testing.assert_array_equal(dropout(x, 1.0, key), jnp.zeros_like(x))
    layer = Dropout(0.5)
    np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
    out = layer.apply({}, x, deterministic=False, rngs={"dropout": key})
    assert set(np.unique(np.asarray(out) == 0)) == {True, False}
    with pytest.raises(ValueError, match="2\\*\\*32"):
        keep_mask(key, 0.1, (1 << 17, 1 << 16))
