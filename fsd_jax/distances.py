"""Squared Euclidean distances from inner products: the one implementation that k-means, RKD,
the FSD memory term, RBF CKA and the analyses share.

``‖a − b‖² = ‖a‖² + ‖b‖² − 2⟨a, b⟩`` costs one matrix product instead of an (n, m, d)
difference tensor; float32 cancellation can leave it slightly negative, so it is clamped at 0.
Works on NumPy arrays (float64 analyses stay NumPy) and on JAX arrays (jitted losses).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


def _xp(*arrays: Any) -> Any:
    return np if all(isinstance(a, np.ndarray | np.generic | float) for a in arrays) else jnp


def squared_distances_from_products(a_sq: Any, b_sq: Any, ab: Any) -> Any:
    """``max(a_sq + b_sq − 2·ab, 0)``: ``a_sq`` and ``b_sq`` are squared norms shaped to
    broadcast against the inner products ``ab`` (e.g. (n, 1), (1, m) and (n, m))."""
    return _xp(a_sq, b_sq, ab).maximum(a_sq + b_sq - 2.0 * ab, 0.0)


def squared_distances_from_gram(g: Any) -> Any:
    """(..., n, n) squared distances between the rows whose Gram (inner products) is ``g``."""
    sq = _xp(g).diagonal(g, axis1=-2, axis2=-1)
    return squared_distances_from_products(sq[..., :, None], sq[..., None, :], g)
