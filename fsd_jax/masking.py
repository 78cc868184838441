"""The additive attention mask shared by the model and the attention losses (a leaf module)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Original BERT's additive key mask. Finite, so an all-padding row still gives a finite
# (uniform) softmax, and TinyBERT's "score <= -100 means masked" convention holds.
MASK_BIAS = -10000.0


def key_mask_bias(mask: jax.Array) -> jax.Array:
    """(B, 1, 1, L) float32: 0 on real keys, ``MASK_BIAS`` on padded ones, for (B, h, L, L) logits."""
    return (1.0 - mask[:, None, None, :].astype(jnp.float32)) * MASK_BIAS
