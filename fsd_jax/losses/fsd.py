"""FSD intra-feature and local inter-feature structure losses (METHODS.md §2.1–§2.4).

Jung et al., "Feature Structure Distillation with Centered Kernel Alignment in BERT
Transferring", arXiv:2204.08922.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsd_jax.cka import cka_loss, linear_cka
from fsd_jax.losses.logits import weighted_mean

_EPS = 1e-8


def _example_mask(batch: int, weights: jax.Array | None) -> jax.Array:
    return jnp.ones((batch,), bool) if weights is None else weights > 0


def fsd_intra(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    *,
    faithful: bool = False,
) -> jax.Array:
    """FSD-I: token × token structure inside each example (paper §3, METHODS.md §2.3).

    Default: per example, linear CKA over its real tokens (padding masked), loss
    ``−log(|CKA_b| + 1e-8)`` averaged over the (weighted) examples, so the same examples padded
    to any length give the same loss. ``faithful=True`` is the reference code: every position
    counts, and the loss is ``−log(mean_b |CKA_b| + 1e-8)``.

    Args:
      teacher_hidden: (B, L, d_t).
      student_hidden: (B, L, d_s).
      mask: (B, L) token mask (1 = real token).
      weights: optional (B,) example weights.
      faithful: reproduce the reference implementation.
    """
    if mask is None or faithful:
        mask = jnp.ones(teacher_hidden.shape[:2], bool)
    per_example = jax.vmap(lambda t, s, m: linear_cka(t, s, mask=m))(
        teacher_hidden, student_hidden, mask.astype(bool)
    )
    if faithful:
        return -jnp.log(weighted_mean(jnp.abs(per_example), weights) + _EPS)
    return weighted_mean(-jnp.log(jnp.abs(per_example) + _EPS), weights)


def flatten_tokens(hidden: jax.Array, mask: jax.Array | None) -> jax.Array:
    """(B, L, d) → (B, L·d) with padding positions zeroed (unless mask is None)."""
    h = hidden.astype(jnp.float32)
    if mask is not None:
        h = h * mask[..., None].astype(jnp.float32)
    return h.reshape(h.shape[0], -1)


def fsd_local(
    teacher_hidden: jax.Array,
    student_hidden: jax.Array,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    *,
    faithful: bool = False,
) -> jax.Array:
    """FSD-L: example × example structure of the mini-batch (METHODS.md §2.4).

    ``−log(|CKA(flat(H_t), flat(H_s))| + 1e-8)`` over the B×B Gram matrices of the flattened
    (L·d) features. Default: padding positions zeroed before flattening, so extra padding adds
    only zero columns; zero-weight rows (a padded last batch) are left out of the Grams.
    ``faithful=True`` keeps the hidden states of padding positions, as the reference does.

    Args:
      teacher_hidden: (B, L, d_t).
      student_hidden: (B, L, d_s).
      mask: (B, L) token mask.
      weights: optional (B,) example weights; rows with weight 0 are excluded.
      faithful: reproduce the reference implementation.
    """
    token_mask = None if faithful else mask
    rows = _example_mask(teacher_hidden.shape[0], weights)
    return cka_loss(
        flatten_tokens(teacher_hidden, token_mask),
        flatten_tokens(student_hidden, token_mask),
        mask=rows,
    )
