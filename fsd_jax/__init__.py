"""fsd-jax: Feature Structure Distillation and baseline distillation methods for BERT in JAX."""

__version__ = "0.1.0"
