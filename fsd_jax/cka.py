"""Centered Kernel Alignment (CKA) and HSIC with row masks, for any JAX code.

References:
  Gretton et al., "Measuring statistical dependence with Hilbert-Schmidt norms", ALT 2005 (HSIC).
  Song et al., "Feature selection via dependence maximization", JMLR 2012 (unbiased HSIC).
  Székely & Rizzo, "Partial distance correlation with methods for dissimilarities", Annals of
  Statistics 2014 (U-centering, the Gram-space form of the unbiased estimator).
  Kornblith et al., "Similarity of neural network representations revisited", ICML 2019 (CKA;
  "debiased CKA" is CKA on U-centred Grams, as in their code).
  Nguyen, Raghu & Kornblith, "Do wide and deep networks learn the same things?", ICLR 2021
  (minibatch CKA: :class:`fsd_jax.minibatch_cka.MinibatchCKA`).
  Jung et al., "Feature Structure Distillation with Centered Kernel Alignment in BERT
  Transferring", arXiv:2204.08922 (the −log CKA transfer loss; docs/methods.md).

Shapes: ``x: (..., n, p)`` and ``y: (..., n, q)`` describe the same n objects by p and q
features; leading dimensions are a batch of independent pairs (one CKA each), so a batch of
per-example token × token CKAs is one call. ``mask: (..., n)`` marks valid rows. The mask is
read as boolean (any non-zero value is a valid row; it is not a weight). Masked rows are
ignored: whatever they hold, NaN and inf included, the value and the gradient are those of the
unpadded input, and masked rows get a zero gradient. Results are float32 whatever the input
dtype.

How it is computed (the Gram route: whenever n < p + q, i.e. for every FSD shape, and always
for the debiased estimator): a masked input is shifted by one of its valid rows in the same
fused pass that zeroes its masked rows (CKA is shift-invariant, and removing most of the column
means keeps the float32 Gram accurate when feature means dwarf their spread); an unmasked input's
Gram is taken on the input itself, with no copy, unless the Gram shows column means large enough
to cost accuracy (trace over centred trace above 2), in which case it is taken again on the
shifted input (one decision for the whole batch; under ``jax.vmap`` the decision becomes a
select and both Grams are computed, so batch through leading dimensions instead). Each Gram is
one einsum, and the masked centering
``Kc = (K − r1ᵀ − 1rᵀ + g)·(w wᵀ)`` (row means r, grand mean g over valid rows) is done on the
Gram in O(n²). The Gram has a custom VJP, ``dX = (Ā + Āᵀ)·X`` with Ā the cotangent of the Gram,
which autodiff obtains already centred through the O(n²) centering: one matmul per
differentiated input instead of two. CKA is ``⟨K̂, Ĝ⟩ · rsqrt⟨K̂, K̂⟩ · rsqrt⟨Ĝ, Ĝ⟩`` on Grams
scaled to a largest entry of 1, so inputs scaled anywhere in 1e−15 … 1e15 give the same value.
When n ≥ p + q, the p×q feature cross-products are cheaper and are used instead.
:func:`centered_gram` and :func:`cka_from_grams` are public so that a side that does not change
(a teacher's memory) is computed once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsd_jax.distances import squared_distances_from_gram


# ------------------------------------------------------------------ validation and masks
def _check_features(name: str, x: jax.Array, mask: jax.Array | None) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} must be (..., n, features); got shape {tuple(x.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not match {name} of shape "
            f"{tuple(x.shape)}: expected {tuple(x.shape[:-1])}"
        )


def _check_pair(x: jax.Array, y: jax.Array, mask: jax.Array | None) -> None:
    if x.ndim < 2 or x.ndim != y.ndim or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            "CKA compares the same objects: x (..., n, p) and y (..., n, q) need the same "
            f"leading shape; got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    _check_features("x", x, mask)


def _valid(mask: jax.Array | None) -> jax.Array | None:
    return None if mask is None else jnp.asarray(mask).astype(bool)


def _count(valid: jax.Array | None, x: jax.Array) -> jax.Array:
    """Valid rows per pair, float32 of shape x.shape[:-2]."""
    if valid is None:
        return jnp.full(x.shape[:-2], x.shape[-2], jnp.float32)
    return valid.astype(jnp.float32).sum(-1)


def _use_gram(n: int, p: int, q: int) -> bool:
    """The one route rule: Grams cost ~n²(p + q), feature cross-products ~n(p + q)²."""
    return n < p + q


def _shifted(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    """x minus its first valid row (float32), masked rows set to 0.

    Centred Grams do not change under a common shift of the rows, so the shift carries no
    gradient (stop_gradient is exact here); it makes the Gram's entries of the size of the
    spread of x instead of its mean.
    """
    x = jnp.asarray(x).astype(jnp.float32)
    if valid is None:
        return x - jax.lax.stop_gradient(x[..., :1, :])
    first = jnp.argmax(valid, axis=-1)[..., None, None]
    ref = jax.lax.stop_gradient(jnp.take_along_axis(x, first, axis=-2))
    return jnp.where(valid[..., None], x - ref, 0.0)


# ------------------------------------------------------------------ Grams
def _plain_gram(x: jax.Array) -> jax.Array:
    return jnp.einsum("...np,...mp->...nm", x, x)


@jax.custom_vjp
def _gram(x: jax.Array) -> jax.Array:
    return _plain_gram(x)


def _gram_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _gram(x), x


def _gram_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    # (g + gᵀ) is symmetric: contracting its first axis is the same product, and XLA:CPU runs
    # the batched form of that layout 1.7x faster (32 x 128 x 128 by 128 x 384: 2.1 vs 3.5 ms)
    return (jnp.einsum("...mn,...mp->...np", g + jnp.swapaxes(g, -1, -2), x),)


_gram.defvjp(_gram_fwd, _gram_bwd)

# Largest Σ‖x_i‖² / Σ‖x_i − x̄‖² (the Gram's trace over its centred trace) for which an
# unmasked input's Gram is used without the shift. The float32 error of the centred Gram, and
# through it the gradient's, grows with this ratio (at 32 × 49,152: gradient error 2.0e-5 at
# 1.7, 3.6e-5 at 2.6, 7e-5 at 4.1); an input shifted by one of its rows has a ratio of about
# 2, so at 2 the unshifted Gram is as accurate as the shifted one. Measured on MiniLM hidden
# states and k-means memories (CoLA, 32 examples): 1.2–2.1 per example, 1.3–1.4 for masked
# flattened examples, 1.6 for a memory; 1.8–20 for flattened examples with their padding.
_RAW_GRAM_MAX_RATIO = 2.0


def _raw_gram_is_accurate(k: jax.Array) -> jax.Array:
    """Whether every Gram of the batch is within :data:`_RAW_GRAM_MAX_RATIO` (False on NaN)."""
    n = k.shape[-1]
    tr = jnp.trace(k, axis1=-2, axis2=-1)
    # n‖x̄‖² / Σ‖x_i‖² = (1ᵀK1 / n) / tr K, on K / tr K so that no sum overflows
    mean_share = (k / jnp.where(tr > 0, tr, 1.0)[..., None, None]).sum((-2, -1)) / n
    return jnp.all(mean_share <= 1.0 - 1.0 / _RAW_GRAM_MAX_RATIO)


@jax.custom_vjp
def _unmasked_gram(x: jax.Array) -> jax.Array:
    """The Gram of an unmasked float32 input, on the input itself when its column means are
    small (no shifted copy: one pass over x less), else on x shifted by its first row.

    Either Gram gives the same centred Gram; the check reads only the n×n Gram, so the
    shifted one is computed, as a second Gram, only for inputs that need it."""

    k = _plain_gram(x)
    return jax.lax.cond(_raw_gram_is_accurate(k), lambda: k, lambda: _plain_gram(x - x[..., :1, :]))


def _unmasked_gram_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _unmasked_gram(x), x


def _unmasked_gram_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    # The Gram is only read through a shift-invariant centering (biased, U-centring or the RBF
    # distances), so (g + gᵀ)·1 = 0 and (g + gᵀ)·x is the gradient of either Gram: the raw x
    # serves (a rounding of order ε·|mean|/spread relative, tested at means 10× the spread).
    s = g + jnp.swapaxes(g, -1, -2)
    if x.ndim == 2:  # a plain product: XLA:CPU's batched layout is the transposed one
        return (s @ x,)
    return (jnp.einsum("...mn,...mp->...np", s, x),)


_unmasked_gram.defvjp(_unmasked_gram_fwd, _unmasked_gram_bwd)


def _center(k: jax.Array, valid: jax.Array | None, unbiased: bool) -> jax.Array:
    """H K H (or U-centering) over valid rows; masked rows and columns become 0."""
    n = k.shape[-1]
    w = jnp.ones(k.shape[:-1], jnp.float32) if valid is None else valid.astype(jnp.float32)
    pair = w[..., :, None] * w[..., None, :]
    m = w.sum(-1)
    if not unbiased:
        inv = 1.0 / jnp.maximum(m, 1.0)
        r = (k * w[..., None, :]).sum(-1) * inv[..., None]
        g = (r * w).sum(-1) * inv
        return (k - r[..., :, None] - r[..., None, :] + g[..., None, None]) * pair
    # U-centering (Székely & Rizzo 2014; Kornblith et al.'s center_gram(unbiased=True)):
    # zero diagonal, row sums / (m − 2), minus half their total / (m − 1), zero diagonal again
    off = pair * (1.0 - jnp.eye(n, dtype=jnp.float32))
    k = k * off
    means = k.sum(-1) / jnp.maximum(m - 2.0, 1.0)[..., None]
    means = (
        means - (means * w).sum(-1, keepdims=True) / jnp.maximum(2.0 * (m - 1.0), 1.0)[..., None]
    )
    kc = (k - means[..., :, None] - means[..., None, :]) * off
    return jnp.where((m >= 4.0)[..., None, None], kc, 0.0)  # the estimator needs 4 rows


def _rbf_kernel(k: jax.Array, valid: jax.Array | None, sigma: float | None) -> jax.Array:
    d2 = squared_distances_from_gram(k)
    n = k.shape[-1]
    if sigma is None:
        # Kornblith et al.'s heuristic: bandwidth² = median squared distance of valid pairs
        pair = ~jnp.eye(n, dtype=bool)
        if valid is not None:
            pair = pair & valid[..., :, None] & valid[..., None, :]
        bw2 = jnp.nanmedian(jnp.where(pair, d2, jnp.nan), axis=(-2, -1))
        # the bandwidth depends on x, and so does the gradient (no stop_gradient)
        bw2 = jnp.where(jnp.isfinite(bw2) & (bw2 > 0), bw2, 1.0)
        bw2 = bw2[..., None, None]
    else:
        bw2 = jnp.asarray(sigma, jnp.float32) ** 2
    return jnp.exp(-d2 / (2.0 * bw2))


def centered_gram(
    x: jax.Array,
    mask: jax.Array | None = None,
    *,
    kernel: str = "linear",
    sigma: float | None = None,
    unbiased: bool = False,
) -> jax.Array:
    """The centred Gram matrix of the rows of ``x`` over its valid rows.

    ``H K H`` with ``K = x xᵀ`` (``kernel="linear"``) or ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))``
    (``"rbf"``; ``sigma=None`` takes σ² = the median squared distance between valid rows,
    Kornblith et al. 2019); ``unbiased=True`` U-centres instead (Székely & Rizzo 2014), which
    gives the unbiased HSIC estimator of Song et al. (2012) through :func:`cka_from_grams` —
    zero when fewer than 4 rows are valid. Masked rows and columns are 0.

    Args:
      x: (..., n, p) features.
      mask: optional (..., n) validity of rows, read as boolean.
      kernel: "linear" or "rbf".
      sigma: RBF bandwidth (ignored for the linear kernel).
      unbiased: U-centering instead of H-centering.

    Returns:
      (..., n, n) float32.
    """
    _check_features("x", jnp.asarray(x), mask)
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"kernel={kernel!r}: expected 'linear' or 'rbf'")
    valid = _valid(mask)
    if valid is None:
        k = _unmasked_gram(jnp.asarray(x).astype(jnp.float32))
    else:  # the masking pass (NaN-safe) is needed anyway, and the shift rides in it
        k = _gram(_shifted(x, valid))
    if kernel == "rbf":
        k = _rbf_kernel(k, valid, sigma)
    return _center(k, valid, unbiased)


def _unit_scale(k: jax.Array) -> jax.Array:
    """k divided by its largest |entry| (a constant: CKA is scale-invariant). One O(n²) read:
    reading only the diagonal (the maximum of a PSD Gram) measured no faster in the step."""
    s = jnp.max(jnp.abs(k), axis=(-2, -1), keepdims=True)
    return k / jax.lax.stop_gradient(jnp.where(s > 0, s, 1.0))


def cka_from_grams(kc: jax.Array, gc: jax.Array) -> jax.Array:
    """CKA of two centred Gram matrices, ``⟨Kc, Gc⟩ / (‖Kc‖ ‖Gc‖)`` (Kornblith et al. Eq. 3).

    Pass the output of :func:`centered_gram` (biased or U-centred: the latter gives debiased
    CKA); precompute a side that does not change and pass it again each step. 0 when either
    Gram is 0.

    Args:
      kc: (..., n, n) centred Gram.
      gc: (..., n, n) centred Gram of the same objects.

    Returns:
      float32 of shape (...).
    """
    if kc.ndim < 2 or kc.shape != gc.shape or kc.shape[-1] != kc.shape[-2]:
        raise ValueError(
            f"cka_from_grams needs two (..., n, n) Grams of one shape; got {tuple(kc.shape)} "
            f"and {tuple(gc.shape)}"
        )
    k = _unit_scale(kc.astype(jnp.float32))
    g = _unit_scale(gc.astype(jnp.float32))
    return _ratio((k * g).sum((-2, -1)), (k * k).sum((-2, -1)), (g * g).sum((-2, -1)))


def _ratio(kg: jax.Array, kk: jax.Array, gg: jax.Array) -> jax.Array:
    """kg / sqrt(kk · gg) as two rsqrt (no overflow of the product); 0 where a side is 0,
    with finite gradients (the inputs are scaled so that kk, gg >= 1 unless 0)."""

    def safe(v: jax.Array) -> jax.Array:
        return jax.lax.rsqrt(jnp.where(v > 0, v, 1.0))

    return kg * safe(kk) * safe(gg)


# ------------------------------------------------------------------ the feature route
def _centered_features(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    """x minus its column means over valid rows, masked rows 0, scaled to max |entry| 1."""
    xs = _shifted(x, valid)
    w = jnp.ones(xs.shape[:-1], jnp.float32) if valid is None else valid.astype(jnp.float32)
    # the mean as a (1, n)·(n, p) product: XLA:CPU's column reduction is far slower
    mean = jnp.einsum("...n,...np->...p", w, xs) / jnp.maximum(w.sum(-1), 1.0)[..., None]
    xc = (xs - mean[..., None, :]) * w[..., None]
    s = jnp.max(jnp.abs(xc), axis=(-2, -1), keepdims=True)
    return xc / jax.lax.stop_gradient(jnp.where(s > 0, s, 1.0))


def _feature_terms(xc: jax.Array, yc: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """⟨Kc, Gc⟩, ⟨Kc, Kc⟩, ⟨Gc, Gc⟩ as squared norms of feature cross-products."""
    xy = jnp.einsum("...np,...nq->...pq", xc, yc)
    xx = jnp.einsum("...np,...nr->...pr", xc, xc)
    yy = jnp.einsum("...nq,...nr->...qr", yc, yc)
    return (xy * xy).sum((-2, -1)), (xx * xx).sum((-2, -1)), (yy * yy).sum((-2, -1))


# ------------------------------------------------------------------ public measures
def linear_cka(
    x: jax.Array, y: jax.Array, *, mask: jax.Array | None = None, unbiased: bool = False
) -> jax.Array:
    """Linear CKA, ``HSIC(K, G) / sqrt(HSIC(K, K) · HSIC(G, G))`` (Kornblith et al. 2019 Eq. 3).

    Invariant to orthogonal transforms, isotropic scaling and shifts of either input; 1 for
    ``linear_cka(x, x)``; 0, with finite gradients, when either input is constant, has one
    valid row or none.

    Args:
      x: (..., n, p) features.
      y: (..., n, q) features of the same objects.
      mask: optional (..., n) validity of rows (boolean; see the module docstring).
      unbiased: debiased CKA, from the unbiased HSIC estimator (0 with fewer than 4 rows).

    Returns:
      float32 of shape (...), in [0, 1] (the debiased variant can be slightly negative).
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_pair(x, y, mask)
    n, p, q = x.shape[-2], x.shape[-1], y.shape[-1]
    if unbiased or _use_gram(n, p, q):
        return cka_from_grams(
            centered_gram(x, mask, unbiased=unbiased), centered_gram(y, mask, unbiased=unbiased)
        )
    valid = _valid(mask)
    return _ratio(*_feature_terms(_centered_features(x, valid), _centered_features(y, valid)))


def linear_hsic(
    x: jax.Array, y: jax.Array, *, mask: jax.Array | None = None, unbiased: bool = False
) -> jax.Array:
    """HSIC with linear kernels, ``tr(K H G H) / (n − 1)²`` (FSD paper Eq. 5).

    Args:
      x: (..., n, p) features.
      y: (..., n, q) features of the same objects.
      mask: optional (..., n) validity of rows.
      unbiased: the unbiased estimator of Song et al. (2012), ``⟨Ku, Gu⟩ / (n(n − 3))`` on
        U-centred Grams; 0 when fewer than 4 rows are valid.

    Returns:
      float32 of shape (...); not scale-invariant (it grows with the square of each input's
      scale), unlike CKA.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_pair(x, y, mask)
    n = _count(_valid(mask), x)
    kc = centered_gram(x, mask, unbiased=unbiased)
    gc = centered_gram(y, mask, unbiased=unbiased)
    value = (kc * gc).sum((-2, -1))
    if unbiased:
        return value / jnp.maximum(n * (n - 3.0), 1.0)
    return value / jnp.maximum(n - 1.0, 1.0) ** 2


def cka_loss(x: jax.Array, y: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
    """The FSD transfer loss ``−log(|CKA(x, y)| + 1e-8)`` (docs/methods.md, FSD)."""
    return -jnp.log(jnp.abs(linear_cka(x, y, mask=mask)) + 1e-8)


def rbf_cka(
    x: jax.Array,
    y: jax.Array,
    *,
    sigma: float | None = None,
    mask: jax.Array | None = None,
    unbiased: bool = False,
) -> jax.Array:
    """CKA with Gaussian (RBF) kernels ``exp(−‖a − b‖² / (2σ²))`` (Kornblith et al. 2019).

    Args:
      x: (..., n, p) features.
      y: (..., n, q) features.
      sigma: kernel bandwidth; None uses the median distance between valid rows of each input.
      mask: optional (..., n) validity of rows.
      unbiased: debiased CKA (U-centred Grams; 0 with fewer than 4 rows).
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_pair(x, y, mask)
    kx = centered_gram(x, mask, kernel="rbf", sigma=sigma, unbiased=unbiased)
    ky = centered_gram(y, mask, kernel="rbf", sigma=sigma, unbiased=unbiased)
    return cka_from_grams(kx, ky)
