"""Losses on logits. Every loss takes optional per-example ``weights`` (B,): the padded last
batch carries zero-weight rows, which must not count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from fsd_jax.losses.reduction import weighted_mean


def softmax_kl(
    teacher_logits: jax.Array, student_logits: jax.Array, temperature: float | jax.Array = 1.0
) -> jax.Array:
    """``KL(softmax(t / T) ‖ softmax(s / T))`` along the last axis, in float32 (optax's KL on
    log-probabilities)."""
    t = jnp.asarray(temperature, jnp.float32)
    log_pt = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)
    log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
    return optax.losses.kl_divergence_with_log_targets(log_ps, log_pt)


def cross_entropy(
    logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """Cross-entropy with integer ``labels``, averaged over weighted examples.

    Args:
      logits: (B, V).
      labels: (B,) int class ids.
      weights: optional (B,) example weights.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return weighted_mean(nll, weights)


def mse(predictions: jax.Array, targets: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Squared error per example, averaged over weighted examples (regression, V = 1).

    ``predictions`` of shape (B, 1) or (B,) and ``targets`` of shape (B,) or (B, 1).
    """
    p = predictions.astype(jnp.float32).reshape(predictions.shape[0], -1)
    t = targets.astype(jnp.float32).reshape(targets.shape[0], -1)
    return weighted_mean(((p - t) ** 2).mean(-1), weights)


def label_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """The supervised loss of a head: MSE for a one-output (regression) head, else cross-entropy."""
    if logits.shape[-1] == 1:
        return mse(logits, labels, weights)
    return cross_entropy(logits, labels, weights)


def kd(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    temperature: float,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Hinton KD: ``T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))``, mean over examples.

    Hinton et al., "Distilling the knowledge in a neural network", 2015; docs/methods.md §0, §1.
    For a regression head (one logit) the soft targets are meaningless, so this is the MSE
    to the teacher's output (:func:`kd_reference` is the FSD code's variant).

    Args:
      student_logits: (B, V).
      teacher_logits: (B, V), treated as constants by the caller.
      temperature: T > 0.
      weights: optional (B,) example weights.
    """
    if student_logits.shape[-1] == 1:
        return mse(student_logits, teacher_logits, weights)
    t = jnp.asarray(temperature, jnp.float32)
    return t * t * weighted_mean(softmax_kl(teacher_logits, student_logits, t), weights)


def kd_reference(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    temperature: float,
    weights: jax.Array | None = None,
) -> jax.Array:
    """KD as the FSD code computes it: :func:`kd`, except that for a regression head (one
    logit) the softmax over a single logit makes the loss identically 0 (docs/methods.md §9 item 9)."""
    if student_logits.shape[-1] == 1:
        return jnp.zeros((), jnp.float32)
    return kd(student_logits, teacher_logits, temperature, weights)
