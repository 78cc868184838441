"""TinyBERT-style intermediate-layer losses (docs/methods.md §6) and their study variants.

Jiao et al., "TinyBERT: Distilling BERT for Natural Language Understanding", Findings of
EMNLP 2020; Dankar et al., arXiv 2308.13958 (attention loss, layer mapping, loss weights).

Every loss here compares one layer pair and returns a scalar averaged over examples (with the
optional per-example ``weights``). With a token ``mask`` padding is left out, so the same
examples padded to different lengths give the same value; ``mask=None`` is the reference code's
average over every position of the padded batch. The prediction loss's reference variant is
:func:`soft_cross_entropy_reference`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fsd_jax.losses.reduction import check_same_heads, weighted_mean

# TinyBERT zeroes score entries at or below this (the masked keys, whose bias is -10000).
_MASKED_SCORE = -100.0


def _pair_mask(mask: jax.Array) -> jax.Array:
    """(B, L) token mask → (B, 1, L, L) float mask of (real query, real key) pairs."""
    m = mask.astype(jnp.float32)
    return m[:, None, :, None] * m[:, None, None, :]


def _masked_mean(sq: jax.Array, pair: jax.Array | None, weights: jax.Array | None) -> jax.Array:
    """Per-example mean of ``sq`` (B, ...) over the entries ``pair`` marks, then over examples."""
    b = sq.shape[0]
    if pair is None:
        return weighted_mean(sq.reshape(b, -1).mean(-1), weights)
    pair = jnp.broadcast_to(pair, sq.shape).reshape(b, -1)
    per = (sq.reshape(b, -1) * pair).sum(-1) / jnp.maximum(pair.sum(-1), 1.0)
    return weighted_mean(per, weights)


def attention_scores_mse(
    teacher_scores: jax.Array,
    student_scores: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """TinyBERT's attention loss: MSE between pre-softmax scores of one layer pair.

    ``(1/h) Σ_heads MSE(Ã_s, Ã_t)`` with Ã the scores whose masked-key entries are set to 0.
    With ``mask`` the mean runs over heads and (real query, real key) pairs of each example;
    ``mask=None``: entries ≤ −100 become 0 and the mean runs over all h·L·L entries (padded
    query rows included), as ``task_distill.py`` does.

    Args:
      teacher_scores: (B, h, L, L) scores including the key-padding bias.
      student_scores: (B, h, L, L), same head count.
      mask: (B, L) token mask, or None for the reference's averaging.
      weights: optional (B,) example weights.
    """
    check_same_heads(teacher_scores, student_scores, "attention_scores_mse")
    t = teacher_scores.astype(jnp.float32)
    s = student_scores.astype(jnp.float32)
    if mask is None:
        t = jnp.where(t <= _MASKED_SCORE, 0.0, t)
        s = jnp.where(s <= _MASKED_SCORE, 0.0, s)
        return _masked_mean((s - t) ** 2, None, weights)
    return _masked_mean((s - t) ** 2, _pair_mask(mask), weights)


def attention_probs_mse(
    teacher_probs: jax.Array,
    student_probs: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """MSE between attention probabilities (B, h, L, L) of one layer pair.

    Averaged over heads and (real query, real key) pairs; ``mask=None`` counts every entry.
    """
    check_same_heads(teacher_probs, student_probs, "attention_probs_mse")
    sq = (student_probs.astype(jnp.float32) - teacher_probs.astype(jnp.float32)) ** 2
    pair = None if mask is None else _pair_mask(mask)
    return _masked_mean(sq, pair, weights)


def hidden_mse(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """TinyBERT's hidden-state (and embedding) loss: MSE(H_s·W_h, H_t) on one layer pair.

    The caller applies the projection W_h; both inputs are (B, L, d_t). Averaged over the
    features of real tokens (all tokens with ``mask=None``, as the reference).
    """
    t = teacher_hidden.astype(jnp.float32)
    s = student_hidden.astype(jnp.float32)
    if t.shape != s.shape:
        raise ValueError(f"hidden_mse: teacher {t.shape} vs student {s.shape} (project first)")
    tok = None if mask is None else mask.astype(jnp.float32)[:, :, None]
    return _masked_mean((s - t) ** 2, tok, weights)


def hidden_cosine(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """``1 − cos(h_s, h_t)`` per token, averaged over real tokens (all with ``mask=None``).

    The cosine alternative to :func:`hidden_mse` of the TinyBERT loss study (docs/methods.md §6.3).
    """
    t = teacher_hidden.astype(jnp.float32)
    s = student_hidden.astype(jnp.float32)
    if t.shape != s.shape:
        raise ValueError(f"hidden_cosine: teacher {t.shape} vs student {s.shape} (project first)")
    tok = None if mask is None else mask.astype(jnp.float32)
    return _masked_mean(optax.losses.cosine_distance(s, t, epsilon=1e-12), tok, weights)


def soft_cross_entropy(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    temperature: float = 1.0,
    weights: jax.Array | None = None,
) -> jax.Array:
    """TinyBERT's prediction loss ``−Σ_v p_t^T(v) · log p_s^T(v)``, mean over examples.

    No T² factor (as in TinyBERT). For a regression head (one logit) this is the MSE to the
    teacher's output.
    """
    s = student_logits.astype(jnp.float32)
    t = teacher_logits.astype(jnp.float32)
    if s.shape[-1] == 1:
        return weighted_mean((s[:, 0] - t[:, 0]) ** 2, weights)
    per = optax.losses.softmax_cross_entropy(
        s / temperature, jax.nn.softmax(t / temperature, axis=-1)
    )
    return weighted_mean(per, weights)


def soft_cross_entropy_reference(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    temperature: float = 1.0,
    weights: jax.Array | None = None,
    *,
    labels: jax.Array | None = None,
) -> jax.Array:
    """:func:`soft_cross_entropy` as ``task_distill.py`` computes it: divided by the number of
    classes (its mean runs over B·V), and for a regression head the MSE to the gold ``labels``
    (TinyBERT stage 2) instead of the teacher's output (docs/methods.md §6.1)."""
    s = student_logits.astype(jnp.float32)
    if s.shape[-1] == 1:
        if labels is None:
            raise ValueError("soft_cross_entropy_reference: regression needs the gold labels")
        return weighted_mean((s[:, 0] - labels.astype(jnp.float32)) ** 2, weights)
    return soft_cross_entropy(student_logits, teacher_logits, temperature, weights) / s.shape[-1]
