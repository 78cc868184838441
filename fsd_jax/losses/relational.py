"""Relational KD: distance and angle losses from Gram matrices (docs/methods.md §4).

Park et al., "Relational Knowledge Distillation", CVPR 2019 (reference: lenscloth/RKD).
Computed from the B×B Gram matrix G = e eᵀ, never from a B×B×D difference tensor:
``||e_b − e_a||² = G_aa + G_bb − 2G_ab`` and ``<e_b − e_a, e_c − e_a> = G_bc − G_ab − G_ac + G_aa``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fsd_jax.distances import squared_distances_from_gram
from fsd_jax.losses.reduction import example_mask


def smooth_l1(x: jax.Array) -> jax.Array:
    """Huber with β = 1 (PyTorch's ``smooth_l1_loss``): 0.5x² if |x| < 1 else |x| − 0.5
    (optax's ``huber_loss``)."""
    return optax.losses.huber_loss(x, delta=1.0)


def _gram(e: jax.Array) -> jax.Array:
    e = e.astype(jnp.float32).reshape(e.shape[0], -1)
    return jnp.matmul(e, e.T, precision=jax.lax.Precision.HIGHEST)


def pairwise_distances(e: jax.Array) -> jax.Array:
    """Euclidean distances (B, B) as the reference's pdist: squared distances clamped at 1e-12,
    diagonal 0."""
    d = jnp.sqrt(jnp.maximum(squared_distances_from_gram(_gram(e)), 1e-12))
    return d * (1.0 - jnp.eye(d.shape[0], dtype=d.dtype))


def _distance_potential(e: jax.Array, valid: jax.Array) -> jax.Array:
    d = pairwise_distances(e)
    pair = valid[:, None] * valid[None, :] * (1.0 - jnp.eye(d.shape[0]))
    mu = (d * pair).sum() / jnp.maximum(pair.sum(), 1.0)
    return d / jnp.maximum(mu, 1e-12)


def rkd_distance(
    teacher_emb: jax.Array, student_emb: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """RKD-D: smooth-L1 between distance matrices, each divided by its mean off-diagonal distance.

    Mean over the B² entries of valid pairs (zero-weight rows are left out).

    Args:
      teacher_emb: (B, D_t) (or (B, ...), flattened).
      student_emb: (B, D_s).
      weights: optional (B,) example weights.
    """
    valid = example_mask(teacher_emb.shape[0], weights).astype(jnp.float32)
    t = jax.lax.stop_gradient(_distance_potential(teacher_emb, valid))
    s = _distance_potential(student_emb, valid)
    pair = valid[:, None] * valid[None, :]
    return (smooth_l1(s - t) * pair).sum() / jnp.maximum(pair.sum(), 1.0)


def angle_potential(e: jax.Array) -> jax.Array:
    """ψ[a, b, c] = cos of the angle at a between e_b − e_a and e_c − e_a, (B, B, B) from the Gram.

    Entries with e_b = e_a or e_c = e_a (b = a, c = a, duplicate examples) are 0, as the
    reference's normalise-then-dot gives.
    """
    g = _gram(e)
    diag = jnp.diag(g)
    # dot[a, b, c] = G_bc − G_ab − G_ac + G_aa
    dot = g[None, :, :] - g[:, :, None] - g[:, None, :] + diag[:, None, None]
    d2 = squared_distances_from_gram(g)  # ||e_b − e_a||² at [a, b]
    # A zero difference vector gives cosine 0 in the reference (it normalises a zero vector).
    # In the Gram form float32 cancellation leaves ~1e-7·(G_aa + G_bb) instead of 0, so pairs
    # below that are treated as zero; their norm is set to 1 so that no gradient blows up.
    zero = d2 <= 1e-6 * (diag[:, None] + diag[None, :]) + 1e-24
    norm = jnp.where(zero, 1.0, jnp.sqrt(jnp.where(zero, 1.0, d2)))
    cos = dot / (norm[:, :, None] * norm[:, None, :])
    degenerate = zero[:, :, None] | zero[:, None, :]
    return jnp.where(degenerate, 0.0, cos)


def rkd_angle(
    teacher_emb: jax.Array, student_emb: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """RKD-A: smooth-L1 between angle potentials, mean over the B³ triplets of valid examples."""
    valid = example_mask(teacher_emb.shape[0], weights).astype(jnp.float32)
    t = jax.lax.stop_gradient(angle_potential(teacher_emb))
    s = angle_potential(student_emb)
    trip = valid[:, None, None] * valid[None, :, None] * valid[None, None, :]
    return (smooth_l1(s - t) * trip).sum() / jnp.maximum(trip.sum(), 1.0)
