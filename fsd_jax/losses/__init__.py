"""Distillation and supervised losses: pure functions of arrays (and masks)."""

from fsd_jax.losses.logits import cross_entropy, mse, weighted_mean

__all__ = ["cross_entropy", "mse", "weighted_mean"]
