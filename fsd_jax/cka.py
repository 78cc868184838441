"""Centered Kernel Alignment (CKA) and HSIC, with row masks, for any JAX code.

References:
  Gretton et al., "Measuring statistical dependence with Hilbert-Schmidt norms", ALT 2005 (HSIC).
  Song et al., "Feature selection via dependence maximization", JMLR 2012 (unbiased HSIC).
  Kornblith et al., "Similarity of neural network representations revisited", ICML 2019 (CKA).
  Jung et al., "Feature Structure Distillation with Centered Kernel Alignment in BERT
  Transferring", arXiv:2204.08922 (the −log CKA transfer loss; METHODS.md §2.1).

All functions take ``x: (n, p)`` and ``y: (n, q)`` (the same n objects described by p and q
features) and return a float32 scalar, whatever the input dtype. ``mask: (n,)`` marks valid rows;
masked rows are ignored, so a padded input gives the same value as the unpadded one. For a batch
of pairs use ``jax.vmap``::

    per_example = jax.vmap(lambda a, b, m: linear_cka(a, b, mask=m))(xs, ys, masks)  # (B,)

Linear CKA picks the cheaper of two exact routes at trace time: n×n Gram matrices
(cost ~ n²(p+q)) when n is small, the p×q feature cross-product (cost ~ n(p+q)²) otherwise.
Neither route forms an n×n centering matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Added under square roots and to denominators so that constant or all-zero features give a
# finite CKA (0) with finite gradients instead of 0/0.
_TINY = 1e-20  # rsqrt'(1e-20) ~ 1e30 stays inside float32; 1e-30 would overflow


def _valid_count(n: int, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.asarray(n, jnp.float32)
    return mask.astype(jnp.float32).sum()


def center(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Subtract the column means over valid rows (float32); masked rows become 0."""
    x = x.astype(jnp.float32)
    w = jnp.ones(x.shape[0], jnp.float32) if mask is None else mask.astype(jnp.float32)
    # the mean as a (1, n) x (n, p) product: XLA:CPU's column reduction is ~20x slower
    # (benchmarks/run.py, docs/benchmarks.md)
    mean = (w @ x) / jnp.maximum(w.sum(), 1.0)
    xc = x - mean[None, :]
    return xc if mask is None else xc * w[:, None]


def _unit(x: jax.Array) -> jax.Array:
    """x / ||x||_F; CKA is scale-invariant, and unit scale keeps float32 sums in range."""
    return x * jax.lax.rsqrt((x * x).sum() + _TINY)


def _use_gram(n: int, p: int, q: int) -> bool:
    return n < p + q


def _hsic_terms(xc: jax.Array, yc: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """<K, G>, <K, K>, <G, G> for centred K = xc xcᵀ, G = yc ycᵀ, by the cheaper route."""
    n, p = xc.shape
    q = yc.shape[1]
    if _use_gram(n, p, q):
        k = xc @ xc.T
        g = yc @ yc.T
        return (k * g).sum(), (k * k).sum(), (g * g).sum()
    xy = xc.T @ yc
    xx = xc.T @ xc
    yy = yc.T @ yc
    return (xy * xy).sum(), (xx * xx).sum(), (yy * yy).sum()


def linear_hsic(
    x: jax.Array, y: jax.Array, *, mask: jax.Array | None = None, unbiased: bool = False
) -> jax.Array:
    """HSIC with linear kernels, ``tr(K H G H) / (n − 1)²`` (FSD paper Eq. 5).

    Args:
      x: (n, p) features.
      y: (n, q) features of the same n objects.
      mask: optional (n,) validity of rows.
      unbiased: the unbiased estimator of Song et al. (2012) instead; 0 when fewer than 4
        rows are valid.

    Returns:
      float32 scalar.
    """
    n = _valid_count(x.shape[0], mask)
    xc, yc = center(x, mask), center(y, mask)
    if unbiased:
        return _unbiased_hsic(xc @ xc.T, yc @ yc.T, n)
    n_, p = xc.shape
    q = yc.shape[1]
    if n_ * n_ * (p + q) < n_ * p * q:
        value = ((xc @ xc.T) * (yc @ yc.T)).sum()
    else:
        xy = xc.T @ yc
        value = (xy * xy).sum()
    return value / jnp.maximum(n - 1.0, 1.0) ** 2


def _unbiased_hsic(k: jax.Array, g: jax.Array, n: jax.Array) -> jax.Array:
    """Song et al. (2012) Eq. 5 on Grams whose masked rows/columns are already 0."""
    k = k - jnp.diag(jnp.diag(k))
    g = g - jnp.diag(jnp.diag(g))
    term1 = (k * g).sum()
    term2 = k.sum() * g.sum() / jnp.maximum((n - 1.0) * (n - 2.0), 1.0)
    term3 = 2.0 * (k.sum(axis=0) @ g.sum(axis=1)) / jnp.maximum(n - 2.0, 1.0)
    value = (term1 + term2 - term3) / jnp.maximum(n * (n - 3.0), 1.0)
    return jnp.where(n > 3.0, value, 0.0)


def linear_cka(
    x: jax.Array, y: jax.Array, *, mask: jax.Array | None = None, unbiased: bool = False
) -> jax.Array:
    """Linear CKA, ``HSIC(K, G) / sqrt(HSIC(K, K) · HSIC(G, G))`` (Kornblith et al. 2019 Eq. 3).

    Invariant to orthogonal transforms and isotropic scaling of either input; 1 for
    ``linear_cka(x, x)``; 0 (finite, with finite gradients) when either input is constant.

    Args:
      x: (n, p) features.
      y: (n, q) features.
      mask: optional (n,) validity of rows.
      unbiased: use unbiased HSIC estimates (needs at least 4 valid rows, else 0).

    Returns:
      float32 scalar in [0, 1] (the unbiased variant can be slightly negative).
    """
    xc, yc = _unit(center(x, mask)), _unit(center(y, mask))
    if unbiased:
        n = _valid_count(x.shape[0], mask)
        k, g = xc @ xc.T, yc @ yc.T
        hxy, hxx, hyy = _unbiased_hsic(k, g, n), _unbiased_hsic(k, k, n), _unbiased_hsic(g, g, n)
        return hxy * jax.lax.rsqrt(jnp.maximum(hxx * hyy, 0.0) + _TINY)
    hxy, hxx, hyy = _hsic_terms(xc, yc)
    return hxy * jax.lax.rsqrt(hxx * hyy + _TINY)


def cka_loss(x: jax.Array, y: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    """The FSD transfer loss ``−log(|CKA(x, y)| + 1e-8)`` (METHODS.md §2.1)."""
    return -jnp.log(jnp.abs(linear_cka(x, y, mask=mask)) + 1e-8)


def _center_gram(k: jax.Array, mask: jax.Array | None) -> jax.Array:
    """H K H over valid rows without forming H; masked rows and columns become 0."""
    if mask is None:
        return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
    w = mask.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    row = (k * w[None, :]).sum(1, keepdims=True) / n
    col = (k * w[:, None]).sum(0, keepdims=True) / n
    total = (row[:, 0] * w).sum() / n
    return (k - row - col + total) * w[:, None] * w[None, :]


def _rbf_gram(x: jax.Array, sigma: float | None, mask: jax.Array | None) -> jax.Array:
    x = x.astype(jnp.float32)
    sq = (x * x).sum(1)
    d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    if sigma is None:
        # Kornblith et al.'s heuristic: bandwidth² = median squared distance of valid pairs.
        valid = jnp.ones_like(d2, bool) if mask is None else (mask[:, None] & mask[None, :])
        valid = valid & ~jnp.eye(d2.shape[0], dtype=bool)
        bw2 = jnp.nanmedian(jnp.where(valid, d2, jnp.nan))
        bw2 = jnp.where(jnp.isfinite(bw2) & (bw2 > 0), bw2, 1.0)
        bw2 = jax.lax.stop_gradient(bw2)
    else:
        bw2 = jnp.asarray(sigma, jnp.float32) ** 2
    return jnp.exp(-d2 / (2.0 * bw2))


def rbf_cka(
    x: jax.Array, y: jax.Array, *, sigma: float | None = None, mask: jax.Array | None = None
) -> jax.Array:
    """CKA with Gaussian (RBF) kernels ``exp(−||a − b||² / (2σ²))`` (Kornblith et al. 2019).

    Args:
      x: (n, p) features.
      y: (n, q) features.
      sigma: kernel bandwidth; None uses the median distance between valid rows of each input.
      mask: optional (n,) validity of rows.
    """
    mask_b = None if mask is None else mask.astype(bool)
    k = _center_gram(_rbf_gram(x, sigma, mask_b), mask)
    g = _center_gram(_rbf_gram(y, sigma, mask_b), mask)
    return (k * g).sum() * jax.lax.rsqrt((k * k).sum() * (g * g).sum() + _TINY)
