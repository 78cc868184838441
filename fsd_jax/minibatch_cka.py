"""Minibatch CKA over a whole dataset: running sums of unbiased HSIC, one batch at a time.

Nguyen, Raghu & Kornblith, "Do wide and deep networks learn the same things?", ICLR 2021;
the unbiased HSIC estimator of Song et al. (JMLR 2012) on U-centred Grams
(:func:`fsd_jax.cka.centered_gram` with ``unbiased=True``): "debiased CKA", as Kornblith's
code calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fsd_jax.cka import _count, _valid, centered_gram


class MinibatchCKA(NamedTuple):
    """Running sums of unbiased HSIC over mini-batches (Nguyen, Raghu & Kornblith 2021).

    ``cka[i, j] = Σ_b HSIC_u(K_i^b, G_j^b) / sqrt(Σ_b HSIC_u(K_i^b, K_i^b) · Σ_b HSIC_u(G_j^b,
    G_j^b))`` over batches b, for layers i of one network and j of another: a dataset-wide
    debiased CKA that never holds more than one batch of features. Pure and jittable::

        state = MinibatchCKA.init(len(xs_layers), len(ys_layers))
        for batch in data:
            state = update(state, xs_of(batch), ys_of(batch), mask)   # update = jax.jit(...)
        matrix = state.result()                                        # (num_x, num_y)

    Each layer's U-centred Gram is computed once per batch.
    """

    xy: jax.Array  # (num_x, num_y) summed HSIC_u(K_i, G_j)
    xx: jax.Array  # (num_x,) summed HSIC_u(K_i, K_i)
    yy: jax.Array  # (num_y,) summed HSIC_u(G_j, G_j)
    batches: jax.Array  # () batches with at least 4 valid rows

    @classmethod
    def init(cls, num_x: int, num_y: int) -> MinibatchCKA:
        """Zero sums for ``num_x`` × ``num_y`` layers."""
        return cls(
            jnp.zeros((num_x, num_y), jnp.float32),
            jnp.zeros((num_x,), jnp.float32),
            jnp.zeros((num_y,), jnp.float32),
            jnp.zeros((), jnp.int32),
        )

    def update(
        self, xs: Sequence[jax.Array], ys: Sequence[jax.Array], mask: jax.Array | None = None
    ) -> MinibatchCKA:
        """Add one batch: ``xs[i]`` (n, p_i) and ``ys[j]`` (n, q_j) describe the same n rows."""
        if len(xs) != self.xx.shape[0] or len(ys) != self.yy.shape[0]:
            raise ValueError(
                f"MinibatchCKA was made for {self.xx.shape[0]} × {self.yy.shape[0]} layers; "
                f"update got {len(xs)} × {len(ys)}"
            )
        for name, group in (("xs", xs), ("ys", ys)):
            for i, a in enumerate(group):
                if jnp.ndim(a) != 2 or jnp.shape(a)[0] != jnp.shape(xs[0])[0]:
                    raise ValueError(
                        f"MinibatchCKA.update: {name}[{i}] has shape {tuple(jnp.shape(a))}; "
                        f"expected (n, features) with n = {jnp.shape(xs[0])[0]}"
                    )
        k = jnp.stack([centered_gram(a, mask, unbiased=True) for a in xs])
        g = jnp.stack([centered_gram(a, mask, unbiased=True) for a in ys])
        return self.update_grams(k, g, _count(_valid(mask), jnp.asarray(xs[0])))

    def update_grams(self, k: jax.Array, g: jax.Array, n: jax.Array | int) -> MinibatchCKA:
        """Add one batch from its U-centred Grams (``centered_gram(..., unbiased=True)``):
        ``k`` (num_x, n, n), ``g`` (num_y, n, n), ``n`` valid rows; a side that is the same
        for many comparisons (a teacher's layers) is then computed once."""
        n = jnp.asarray(n, jnp.float32)
        scale = 1.0 / jnp.maximum(n * (n - 3.0), 1.0)
        return MinibatchCKA(
            self.xy + jnp.einsum("inm,jnm->ij", k, g) * scale,
            self.xx + (k * k).sum((-2, -1)) * scale,
            self.yy + (g * g).sum((-2, -1)) * scale,
            self.batches + (n >= 4.0).astype(jnp.int32),
        )

    def result(self) -> jax.Array:
        """(num_x, num_y) debiased CKA over every batch added; 0 where a side is constant."""
        denom = jnp.sqrt(jnp.maximum(self.xx[:, None] * self.yy[None, :], 0.0))
        return jnp.where(denom > 0, self.xy / jnp.where(denom > 0, denom, 1.0), 0.0)
