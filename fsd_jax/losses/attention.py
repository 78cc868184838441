"""MiniLM's self-attention distribution and value-relation transfer (docs/methods.md §5).

Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
Pre-Trained Transformers", NeurIPS 2020.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fsd_jax.losses.logits import softmax_kl
from fsd_jax.losses.reduction import check_same_heads, weighted_mean
from fsd_jax.masking import key_mask_bias


def value_relation_logits(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """V Vᵀ / sqrt(d_h) per head (B, h, L, L), with the key-padding bias when ``mask`` is given."""
    v = values.astype(jnp.float32)
    logits = jnp.einsum("bhqd,bhkd->bhqk", v, v) / math.sqrt(v.shape[-1])
    if mask is not None:
        logits = logits + key_mask_bias(mask)
    return logits


def attention_kl(
    teacher_scores: jax.Array,
    student_scores: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Row-wise KL(softmax(teacher) ‖ softmax(student)), mean over heads and real queries.

    MiniLM's L_AT on one layer pair, also the ``kl_probs`` attention loss of the TinyBERT study
    (docs/methods.md §5, §6.3). Scores are (B, h, L, L) and carry the key-padding bias; ``mask=None``
    counts every query row.
    """
    kl = softmax_kl(teacher_scores, student_scores)
    return weighted_mean(_mean_over_heads_and_queries(kl, mask), weights)


def _mean_over_heads_and_queries(kl: jax.Array, mask: jax.Array | None) -> jax.Array:
    """(B, h, L) → (B,): mean over heads and over real query tokens."""
    if mask is None:
        return kl.mean(axis=(1, 2))
    q = mask.astype(jnp.float32)[:, None, :]
    return (kl * q).sum(axis=(1, 2)) / (kl.shape[1] * jnp.maximum(q.sum(axis=(1, 2)), 1.0))


def minilm(
    teacher_scores: jax.Array,
    student_scores: jax.Array,
    teacher_values: jax.Array,
    student_values: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """``L_AT + L_VR`` on one layer pair (MiniLM Eq. 4–6, fine-tuning variant).

    L_AT = (1 / (A_h·|x|)) Σ_a Σ_t KL(A_t[a, t] ‖ A_s[a, t]) with A = softmax(scores);
    L_VR the same for softmax(V Vᵀ / sqrt(d_h)). Averaged over real query tokens and examples.

    Args:
      teacher_scores: (B, h, L, L) pre-softmax attention scores (padding bias included).
      student_scores: (B, h, L, L); the head count must match the teacher's.
      teacher_values: (B, h, L, d_t / h).
      student_values: (B, h, L, d_s / h).
      mask: (B, L) token mask; None: the FSD repository's inputs (value relations without the
        padding mask, every query row counted).
      weights: optional (B,) example weights.
    """
    check_same_heads(teacher_scores, student_scores, "MiniLM")
    vr = softmax_kl(
        value_relation_logits(teacher_values, mask),
        value_relation_logits(student_values, mask),
    )
    return attention_kl(teacher_scores, student_scores, mask, weights) + weighted_mean(
        _mean_over_heads_and_queries(vr, mask), weights
    )
