"""LAD: layer-wise adaptive distillation through gated aggregation of teacher layers
(docs/methods.md §8).

Lin et al., "Layer-wise Adaptive Distillation for BERT Model Compression", Sensors 2023
(IKMLab/LAD). Gate k mixes teacher layer k into the running aggregate:

    A_1 = H_t^1
    G_k = sigmoid(A_{k−1} W_k + b_k)
    A_k = LayerNorm_k(H_t^k ⊙ G_k + A_{k−1} ⊙ (1 − G_k)),   k = 2..N_t

with LayerNorm over the joint (L, d) shape of each example and affine parameters of shape (L, d).
The targets are not detached: the hidden loss trains gates and student together.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

_LN_EPS = 1e-5  # torch.nn.LayerNorm's default


def init_lad_gates(key: jax.Array, num_teacher: int, hidden_size: int, seq_len: int) -> dict:
    """Parameters of the N_t − 1 gates: Xavier-uniform W (d, d), zero b, LayerNorm (L, d)."""
    if num_teacher < 2:
        raise ValueError(f"LAD needs a teacher with >= 2 layers, got {num_teacher}")
    g, d = num_teacher - 1, hidden_size
    bound = (6.0 / (d + d)) ** 0.5
    return {
        "kernel": jax.random.uniform(key, (g, d, d), jnp.float32, -bound, bound),
        "bias": jnp.zeros((g, d), jnp.float32),
        "ln_scale": jnp.ones((g, seq_len, d), jnp.float32),
        "ln_bias": jnp.zeros((g, seq_len, d), jnp.float32),
    }


def _joint_layer_norm(
    x: jax.Array, scale: jax.Array, bias: jax.Array, tok: jax.Array | None
) -> jax.Array:
    """LayerNorm over (L, d) per example; with ``tok`` (B, L) the statistics use real tokens."""
    n, d = x.shape[1], x.shape[2]
    if tok is None:
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    else:
        w = tok[:, :, None]
        count = jnp.maximum(w.sum(axis=(1, 2), keepdims=True), 1.0) * d
        mean = (x * w).sum(axis=(1, 2), keepdims=True) / count
        var = (((x - mean) ** 2) * w).sum(axis=(1, 2), keepdims=True) / count
    return (x - mean) * jax.lax.rsqrt(var + _LN_EPS) * scale[:n] + bias[:n]


def lad_aggregate(
    gates: dict,
    teacher_hidden: Sequence[jax.Array],
    mask: jax.Array | None = None,
    *,
    reverse: bool = False,
) -> list[jax.Array]:
    """The aggregates A_1..A_{N_t} (each (B, L, d)) of teacher layers 1..N_t.

    Args:
      gates: from :func:`init_lad_gates` (N_t − 1 gates).
      teacher_hidden: the teacher's layer outputs H^1..H^{N_t} (embeddings excluded).
      mask: (B, L) token mask: LayerNorm statistics use only real tokens, so the result at
        real positions does not depend on the padded length; None: statistics over all L·d
        entries, padding included (the reference). The affine parameters are read for the
        first L positions (bucketed batches may be shorter than the table).
      reverse: aggregate from the last layer down and return the list in layer order
        (the reference's ``reverse_gate``).
    """
    hs = [h.astype(jnp.float32) for h in teacher_hidden]
    if len(hs) - 1 != gates["kernel"].shape[0]:
        raise ValueError(
            f"LAD: {gates['kernel'].shape[0]} gates for a teacher of {len(hs)} layers "
            f"(expected {len(hs) - 1})"
        )
    if hs[0].shape[1] > gates["ln_scale"].shape[1]:
        raise ValueError(
            f"LAD: sequence length {hs[0].shape[1]} exceeds the gates' LayerNorm length "
            f"{gates['ln_scale'].shape[1]}"
        )
    tok = None if mask is None else mask.astype(jnp.float32)
    order = hs[::-1] if reverse else hs
    agg = [order[0]]
    for k in range(1, len(order)):
        prev = agg[-1]
        gate = jax.nn.sigmoid(prev @ gates["kernel"][k - 1] + gates["bias"][k - 1])
        mixed = order[k] * gate + prev * (1.0 - gate)
        agg.append(_joint_layer_norm(mixed, gates["ln_scale"][k - 1], gates["ln_bias"][k - 1], tok))
    return agg[::-1] if reverse else agg
