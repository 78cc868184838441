"""Dropout whose random bits XLA fuses into the op that applies the mask.

``flax.linen.Dropout`` draws its mask through ``jax.random.bernoulli``; on XLA:CPU that hash runs
as a rolled loop whose state is written to memory and read back on each of its five
iterations, and the backward pass reads the saved bits again: 53 ms of a 79 ms attention
softmax + dropout forward and backward at (32, 12, 128, 128) on the 2-core CPU, about a fifth of
a distillation step (issue 34, docs/benchmarks.md). Here the same counter-based hash
(Threefry-2x32, 20 rounds; Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"),
bit for bit the one ``jax.random`` uses, is written out in ``jnp``, one hash per element, so XLA
fuses it into the elementwise op that applies the mask and recomputes it in the backward pass
instead of storing anything (11 ms instead of 53).

An element is kept when the first word of the hash of (key, element index) is below
``keep_threshold(rate) = round((1 - rate) · 2³²)``: with probability within ``2⁻³³`` of
``1 - rate``; kept elements are divided by that exact probability, so the layer's expectation
is its input. The element index is an ``iota``, so every device count and sharding draws the
same mask for the same element.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(v: jax.Array, r: int) -> jax.Array:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds of the uint32 counters ``(x0, x1)`` under ``key`` (u32[2]).

    Bit for bit the hash ``jax.random`` uses (``jax._src.random.threefry2x32.threefry_2x32``), unrolled so that
    XLA fuses it with its consumers.
    """
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def keep_threshold(rate: float) -> int:
    """The 32-bit threshold below which an element is kept: ``round((1 - rate) · 2³²)``."""
    return min(round((1.0 - rate) * (1 << 32)), (1 << 32) - 1)


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
    size = int(np.prod(shape, dtype=np.int64))
    if size > 1 << 32:
        raise ValueError(f"dropout on {size} elements: at most 2**32 are supported")
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in range(len(shape) - 1, -1, -1):
        iota = jax.lax.broadcasted_iota(jnp.uint32, shape, axis)
        index = index + iota * np.uint32(stride)
        stride *= shape[axis]
    return index


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Boolean mask of ``shape``, each element True with probability ``keep_threshold(rate) / 2³²``.

    ``key`` is a typed PRNG key or its raw u32[2] data.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    key = key.reshape(-1)[:2].astype(jnp.uint32)
    index = _flat_index(shape)
    word, _ = threefry2x32(key, jnp.zeros_like(index), index)
    return word < np.uint32(keep_threshold(rate))


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout: zero each element of ``x`` with probability ``rate`` (to ``2⁻³³``).

    Kept elements are divided by the exact keep probability, so ``E[dropout(x)] = x``.
    """
    if rate <= 0.0:
        return x
    if rate >= 1.0:
        return jnp.zeros_like(x)
    scale = (1 << 32) / keep_threshold(rate)
    keep = keep_mask(key, rate, x.shape)
    return jnp.where(keep, x * jnp.asarray(scale, x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """``flax.linen.Dropout``'s interface (``rate``, the ``"dropout"`` RNG stream) on :func:`dropout`."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate <= 0.0:
            return x
        return dropout(x, self.rate, self.make_rng("dropout"))
