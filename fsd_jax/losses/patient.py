"""Patient KD (PKD) intermediate-layer loss (docs/methods.md §3).

Sun et al., "Patient Knowledge Distillation for BERT Model Compression", EMNLP 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from fsd_jax.losses.reduction import weighted_mean


def pkd_teacher_layers(num_teacher: int, num_student: int, mode: str = "skip") -> tuple[int, ...]:
    """Teacher layers g(j) for student layers j = 1..N_s − 1 (the last layer is left to KD).

    ``skip``: g(j) = k·j with k = N_t / N_s (PKD-Skip: 2, 4, 6, 8, 10 for 12 → 6);
    ``last``: g(j) = N_t − N_s + j (PKD-Last: 7..11 for 12 → 6).
    """
    from fsd_jax.mapping import layer_mapping

    if num_student < 2:
        raise ValueError(f"PKD needs a student with >= 2 layers, got {num_student}")
    if mode not in ("skip", "last"):
        raise ValueError(f"PKD mapping {mode!r}: expected 'skip' or 'last'")
    pairs = layer_mapping("pkd_skip" if mode == "skip" else "last", num_teacher, num_student)
    return tuple(block[0] for m, block in pairs if m < num_student)


def _normalize(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum((x * x).sum(-1, keepdims=True), 1e-24))


def pkd(
    teacher_hidden: Sequence[jax.Array],
    student_hidden: Sequence[jax.Array],
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    *,
    normalize: bool = True,
    full_sequence: bool = False,
) -> jax.Array:
    """Mean squared difference of (normalised) [CLS] vectors over mapped layer pairs.

    ``L_PT = mean over (B, M, d) of (ĥ_s − ĥ_t)²``, ĥ = h / ||h||₂ (PKD's elementwise mean;
    d_s must equal d_t). ``full_sequence=True`` uses the whole token sequence of each layer,
    normalised as one L·d vector (the FSD repository's variant), padding masked, averaged over
    the real tokens so that padding length does not matter.

    Args:
      teacher_hidden: M arrays (B, L, d): teacher layers g(1..M).
      student_hidden: M arrays (B, L, d): student layers 1..M.
      mask: (B, L) token mask (used with ``full_sequence``).
      weights: optional (B,) example weights.
      normalize: L2-normalise before the difference (PKD's ``normalize_patience``).
      full_sequence: use all tokens instead of [CLS].
    """
    if len(teacher_hidden) != len(student_hidden) or not teacher_hidden:
        raise ValueError(
            f"PKD: {len(teacher_hidden)} teacher vs {len(student_hidden)} student layers"
        )
    t = jnp.stack([h.astype(jnp.float32) for h in teacher_hidden], axis=1)  # (B, M, L, d)
    s = jnp.stack([h.astype(jnp.float32) for h in student_hidden], axis=1)
    if t.shape[-1] != s.shape[-1]:
        raise ValueError(f"PKD needs equal widths: teacher {t.shape[-1]}, student {s.shape[-1]}")
    if not full_sequence:
        t, s = t[:, :, 0], s[:, :, 0]  # (B, M, d)
        if normalize:
            t, s = _normalize(t), _normalize(s)
        return weighted_mean(((s - t) ** 2).mean(axis=(1, 2)), weights)
    b, m, n, d = t.shape
    tok = jnp.ones((b, n), jnp.float32) if mask is None else mask.astype(jnp.float32)
    t = (t * tok[:, None, :, None]).reshape(b, m, n * d)
    s = (s * tok[:, None, :, None]).reshape(b, m, n * d)
    if normalize:
        t, s = _normalize(t), _normalize(s)
    per_example = ((s - t) ** 2).sum(axis=(1, 2)) / (m * d * jnp.maximum(tok.sum(1), 1.0))
    return weighted_mean(per_example, weights)
