"""FSD intra-feature and local inter-feature structure losses (docs/methods.md §2.1–§2.4).

Jung et al., "Feature Structure Distillation with Centered Kernel Alignment in BERT
Transferring", arXiv:2204.08922.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsd_jax.cka import centered_gram, cka_from_grams, linear_cka
from fsd_jax.distances import squared_distances_from_products
from fsd_jax.losses.reduction import example_mask, weighted_mean

_EPS = 1e-8


def _neg_log(cka: jax.Array) -> jax.Array:
    return -jnp.log(jnp.abs(cka) + _EPS)


def _per_example_cka(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None,
    weights: jax.Array | None,
) -> jax.Array:
    """(B,) linear CKA of each example's token Grams, all in one batched call (one einsum per
    side, not a vmap); examples of weight 0 are masked whole, whatever they hold."""
    if mask is None:
        mask = jnp.ones(teacher_hidden.shape[:2], bool)
    rows = mask.astype(bool) & example_mask(teacher_hidden.shape[0], weights)[:, None]
    return linear_cka(teacher_hidden, student_hidden, mask=rows)


def fsd_intra(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """FSD-I: token × token structure inside each example (paper §3, docs/methods.md §2.3).

    Per example, linear CKA over its real tokens (padding masked), loss
    ``−log(|CKA_b| + 1e-8)`` averaged over the (weighted) examples, so the same examples padded
    to any length give the same loss; with no weighted example the loss is 0.
    :func:`fsd_intra_reference` is the reference code's variant.

    Args:
      teacher_hidden: (B, L, d_t).
      student_hidden: (B, L, d_s).
      mask: (B, L) token mask (1 = real token).
      weights: optional (B,) example weights.
    """
    per_example = _per_example_cka(teacher_hidden, student_hidden, mask, weights)
    return weighted_mean(_neg_log(per_example), weights)


def fsd_intra_reference(
    teacher_hidden: jax.Array, student_hidden: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """FSD-I as the reference code computes it (maroo-sky/FSD, docs/methods.md §2.3, §9):
    every position counts, padding included, and the loss is ``−log(mean_b |CKA_b| + 1e-8)``
    (the mean inside the log).

    Args:
      teacher_hidden: (B, L, d_t).
      student_hidden: (B, L, d_s).
      weights: optional (B,) example weights (weight 0: left out of the mean).
    """
    per_example = _per_example_cka(teacher_hidden, student_hidden, None, weights)
    return -jnp.log(weighted_mean(jnp.abs(per_example), weights) + _EPS)


def flatten_tokens(hidden: jax.Array, mask: jax.Array | None) -> jax.Array:
    """(B, L, d) → (B, L·d) with padding positions set to 0 (unless mask is None); a
    ``where``, not a product, so that NaN or inf at padding positions cannot leak through."""
    h = hidden.astype(jnp.float32)
    if mask is not None:
        h = jnp.where(mask[..., None].astype(bool), h, 0.0)
    return h.reshape(h.shape[0], -1)


def fsd_local(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """FSD-L: example × example structure of the mini-batch (docs/methods.md §2.4).

    ``−log(|CKA(flat(H_t), flat(H_s))| + 1e-8)`` over the B×B Gram matrices of the flattened
    (L·d) features. Padding positions are zeroed before flattening, so extra padding adds only
    zero columns; zero-weight rows (a padded last batch) are left out of the Grams, and with no
    weighted row the loss is 0 (as :func:`fsd_intra`'s). The reference code keeps the hidden
    states of padding positions: :func:`fsd_local_reference`, or ``mask=None``.

    Args:
      teacher_hidden: (B, L, d_t).
      student_hidden: (B, L, d_s).
      mask: (B, L) token mask; None: every position counts.
      weights: optional (B,) example weights; rows with weight 0 are excluded.
    """
    rows = example_mask(teacher_hidden.shape[0], weights)
    cka = linear_cka(
        flatten_tokens(teacher_hidden, mask), flatten_tokens(student_hidden, mask), mask=rows
    )
    return jnp.where(rows.any(), _neg_log(cka), 0.0)


def fsd_local_reference(
    teacher_hidden: jax.Array, student_hidden: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """FSD-L as the reference code computes it (maroo-sky/FSD, docs/methods.md §2.4): the
    flattened features include the hidden states of padding positions."""
    return fsd_local(teacher_hidden, student_hidden, None, weights)


def _memory_relations(
    hidden: jax.Array, memory: jax.Array, mask: jax.Array | None, eps: float
) -> tuple[jax.Array, jax.Array]:
    """Distances (B, K) and cosines (B, K) between examples and centroids.

    ``hidden`` (B, L, d) and ``memory`` (K, L_m, d) with L <= L_m. With a mask, an example is
    compared with the positions of each centroid where the example has real tokens, so the
    result does not depend on how far the batch is padded.
    """
    b, n, _ = hidden.shape
    if memory.shape[1] < n:
        raise ValueError(f"memory covers {memory.shape[1]} positions, the batch has {n}")
    m = memory[:, :n].astype(jnp.float32)
    f = hidden.astype(jnp.float32)
    if mask is not None:
        f = f * mask[..., None].astype(jnp.float32)
        m_sq = mask.astype(jnp.float32) @ (m * m).sum(-1).T  # (B, K)
    else:
        m_sq = jnp.broadcast_to((m * m).sum((1, 2))[None, :], (b, m.shape[0]))
    f_sq = (f * f).sum((1, 2))[:, None]
    dot = f.reshape(b, -1) @ m.reshape(m.shape[0], -1).T
    # sqrt(max(d², 0) + eps) on both sides: a finite gradient when a feature equals a centroid
    dist = jnp.sqrt(squared_distances_from_products(f_sq, m_sq, dot) + eps)
    cos = dot * jax.lax.rsqrt(f_sq * m_sq + 1e-20)
    return dist, cos


def memory_gram(teacher_memory: jax.Array) -> jax.Array:
    """The centred K×K Gram of the flattened teacher memory (K, L, d_t): a constant of the run,
    computed once and passed to :func:`fsd_global_terms` instead of again every step."""
    return centered_gram(teacher_memory.reshape(teacher_memory.shape[0], -1))


def fsd_global_terms(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    teacher_memory: jax.Array,
    student_memory: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    *,
    gamma_m: float = 0.5,
    eps: float = 1e-8,
    teacher_memory_gram: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """FSD-G: sample × centroid structure against a k-means memory (paper Eq. 8–10, §2.5).

    ``E[b, k] = ||f_b − m_k||``, ``C[b, k] = cos(f_b, m_k)`` for teacher (f_t, M_t) and student
    (f_s, M_s) flattened penultimate features; ``L_D^E = mean (E_s − E_t)²``,
    ``L_D^C = mean (C_s − C_t)²``, ``L_M = −log(|CKA(M_t, M_s)| + 1e-8)`` over the K×K Grams and
    ``L_G = γ_m·L_D^E + (1 − γ_m)·L_D^C + L_M``. The teacher memory is a constant.

    Args:
      teacher_hidden: (B, L, d_t).
      student_hidden: (B, L, d_s).
      teacher_memory: (K, L_m, d_t) centroids, L_m >= L.
      student_memory: (K, L_m, d_s) trainable student memory.
      mask: (B, L) token mask; None compares the full (padded) vectors, as the reference code
        does (docs/methods.md §2.5).
      weights: optional (B,) example weights.
      gamma_m: weight of the distance term against the cosine term.
      eps: inside the square root of both distances.
      teacher_memory_gram: :func:`memory_gram` of ``teacher_memory``, if precomputed.

    Returns:
      ``{"total", "distance", "cosine", "memory_cka"}`` scalars.
    """
    e_t, c_t = _memory_relations(teacher_hidden, jax.lax.stop_gradient(teacher_memory), mask, eps)
    e_s, c_s = _memory_relations(student_hidden, student_memory, mask, eps)
    dist = weighted_mean(((e_s - jax.lax.stop_gradient(e_t)) ** 2).mean(1), weights)
    cos = weighted_mean(((c_s - jax.lax.stop_gradient(c_t)) ** 2).mean(1), weights)
    if teacher_memory_gram is None:
        teacher_memory_gram = memory_gram(teacher_memory)
    k = student_memory.shape[0]
    mem = _neg_log(
        cka_from_grams(
            jax.lax.stop_gradient(teacher_memory_gram),
            centered_gram(student_memory.reshape(k, -1)),
        )
    )
    total = gamma_m * dist + (1.0 - gamma_m) * cos + mem
    return {"total": total, "distance": dist, "cosine": cos, "memory_cka": mem}


def fsd_global(*args, **kwargs) -> jax.Array:
    """L_G as a scalar; see :func:`fsd_global_terms` for the arguments."""
    return fsd_global_terms(*args, **kwargs)["total"]
