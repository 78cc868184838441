"""What every loss shares: the mean over weighted examples, the mask of examples that count,
and the head-count check of the attention losses.

The padded last batch of a split carries rows of weight 0; a loss never lets them count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_mean(values: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean of per-example ``values`` (B,) over examples with non-zero weight."""
    values = values.astype(jnp.float32)
    if weights is None:
        return values.mean()
    weights = weights.astype(jnp.float32)
    return (values * weights).sum() / jnp.maximum(weights.sum(), 1e-12)


def example_mask(batch: int, weights: jax.Array | None) -> jax.Array:
    """(B,) bool: the examples that count (weight > 0; all of them without weights)."""
    return jnp.ones((batch,), bool) if weights is None else weights > 0


def check_same_heads(teacher: jax.Array, student: jax.Array, what: str) -> None:
    """Attention maps (B, h, L, L) of teacher and student must have the same head count."""
    if teacher.shape[1] != student.shape[1]:
        raise ValueError(
            f"{what} needs equal head counts: teacher {teacher.shape[1]}, "
            f"student {student.shape[1]}"
        )
