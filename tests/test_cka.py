"""fsd_jax.cka against NumPy float64 transcriptions with explicit centering matrices.

Values within 1e-5 and gradients within 1e-4 (relative, float64 central differences of the
oracle) on padded inputs of different widths whose feature means reach 10x their spread, then
the robustness properties the module docstring promises.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsd_jax import cka
from fsd_jax.losses import fsd_intra, fsd_local


# ------------------------------------------------------------------ float64 oracles
def np_hsic(x, y):
    """tr(K H G H) / (n − 1)² with an explicit centering matrix."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(x @ x.T @ h @ y @ y.T @ h) / (n - 1) ** 2


def np_cka(x, y):
    return np_hsic(x, y) / np.sqrt(np_hsic(x, x) * np_hsic(y, y))


def np_unbiased_hsic(k, g):
    """Song et al. (2012) Eq. 5 on raw Grams."""
    n = k.shape[0]
    k = k - np.diag(np.diag(k))
    g = g - np.diag(np.diag(g))
    one = np.ones(n)
    return (
        np.trace(k @ g)
        + (one @ k @ one) * (one @ g @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ k @ g @ one
    ) / (n * (n - 3))


def np_debiased_cka(x, y):
    # centred first (the estimator is shift-invariant: see the test below) so that float64
    # central differences do not lose digits to the raw Grams' large entries
    x, y = x - x.mean(0), y - y.mean(0)
    k, g = x @ x.T, y @ y.T
    return np_unbiased_hsic(k, g) / np.sqrt(np_unbiased_hsic(k, k) * np_unbiased_hsic(g, g))


def np_rbf_gram(a, sigma):
    d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    bw2 = sigma**2 if sigma is not None else np.median(d2[~np.eye(len(a), dtype=bool)])
    return np.exp(-d2 / (2 * bw2))


def np_rbf_cka(x, y, sigma):
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, g = h @ np_rbf_gram(x, sigma) @ h, h @ np_rbf_gram(y, sigma) @ h
    return (k * g).sum() / np.sqrt((k * k).sum() * (g * g).sum())


def np_grad(fn, x, y, step=1e-6):
    """Central differences of the float64 oracle ``fn(x, y)`` with respect to x."""
    g = np.zeros_like(x)
    h = step * np.abs(x).max()
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (fn(xp, y) - fn(xm, y)) / (2 * h)
    return g


def _xy(n, p, q, *, offset=0.0, seed=0):
    """x, y related but not equal; column means ``offset`` × (1..2) × the spread."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = x[:, : min(p, q)] @ rng.normal(size=(min(p, q), q)) + 0.7 * rng.normal(size=(n, q))
    x = x + offset * (1 + rng.random(p))
    y = y + offset * y.std() * (1 + rng.random(q))
    return x, y


def _padded(x, y, extra, seed=1):
    """x, y with ``extra`` rows of garbage appended (NaN, inf, huge) and the mask for them."""
    rng = np.random.default_rng(seed)
    junk = rng.normal(size=(extra, x.shape[1])) * 1e6
    junk[0, 0] = np.nan
    if extra > 1:
        junk[1, -1] = np.inf
    xp = np.concatenate([x, junk])
    yp = np.concatenate([y, np.full((extra, y.shape[1]), np.nan)])
    return xp, yp, np.arange(len(xp)) < len(x)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


MEASURES = {
    # name: (fsd_jax function of (x, y, mask), float64 oracle of unpadded (x, y))
    "linear": (lambda x, y, m: cka.linear_cka(x, y, mask=m), np_cka),
    "debiased": (lambda x, y, m: cka.linear_cka(x, y, mask=m, unbiased=True), np_debiased_cka),
    "rbf": (
        lambda x, y, m: cka.rbf_cka(x, y, sigma=None, mask=m),
        lambda x, y: np_rbf_cka(x, y, None),
    ),
    "rbf_sigma": (
        lambda x, y, m: cka.rbf_cka(x, y, sigma=4.0, mask=m),
        lambda x, y: np_rbf_cka(x, y, 4.0),
    ),
}


# ------------------------------------------------------------------ accuracy
@pytest.mark.parametrize("offset", [0.0, 3.0, 10.0])
@pytest.mark.parametrize(
    ("n", "p", "q"),
    [(24, 16, 12), (40, 3, 4)],  # the Gram route (n < p + q) and the feature route
)
@pytest.mark.parametrize("measure", list(MEASURES))
def test_values_and_gradients_match_float64_on_padded_inputs(measure, n, p, q, offset):
    fn, oracle = MEASURES[measure]
    x, y = _xy(n, p, q, offset=offset, seed=2)
    # the oracle sees what the kernel sees: the inputs rounded to float32
    x, y = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    xp, yp, mask = _padded(x, y, extra=3)
    value, grad = jax.value_and_grad(lambda a: fn(a, jnp.asarray(yp, jnp.float32), mask))(
        jnp.asarray(xp, jnp.float32)
    )
    expected = oracle(x, y)
    assert abs(float(value) - expected) <= 1e-5 * abs(expected), (float(value), expected)
    grad = np.asarray(grad)
    assert np.isfinite(grad).all()
    assert not grad[n:].any()  # masked rows get exactly no gradient
    assert _rel(grad[:n], np_grad(oracle, x, y)) <= 1e-4


def _mean_ratio(x):
    """Σ‖x_i‖² / Σ‖x_i − x̄‖²: what decides whether an unmasked Gram is used unshifted."""
    return (x**2).sum() / ((x - x.mean(0)) ** 2).sum()


# column-mean offsets whose ratio lands either side of the raw-Gram limit (2): 0 and 0.6 give
# 1.06 and 1.87 (raw Gram), 0.7 and 10 give 2.15 and 214 (the shifted fallback)
@pytest.mark.parametrize("offset", [0.0, 0.6, 0.7, 10.0])
@pytest.mark.parametrize("measure", list(MEASURES))
def test_unmasked_inputs_match_float64_on_both_gram_routes(measure, offset):
    fn, oracle = MEASURES[measure]
    x, y = _xy(24, 16, 12, offset=offset, seed=12)
    x, y = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    raw = bool(cka._raw_gram_is_accurate(jnp.asarray(x @ x.T, jnp.float32)))
    assert raw == (_mean_ratio(x) <= cka._RAW_GRAM_MAX_RATIO), _mean_ratio(x)
    assert raw == (offset < 0.65)  # both routes are exercised
    value, grad = jax.value_and_grad(lambda a: fn(a, jnp.asarray(y, jnp.float32), None))(
        jnp.asarray(x, jnp.float32)
    )
    expected = oracle(x, y)
    assert abs(float(value) - expected) <= 1e-5 * abs(expected), (float(value), expected)
    assert _rel(np.asarray(grad), np_grad(oracle, x, y)) <= 1e-4


@pytest.mark.parametrize("offset", [0.0, 0.4, 10.0])  # ratios 1.03, 1.7: raw; 427: shifted
def test_unmasked_local_shape_at_full_width(offset):
    """The flattened shape (32 × 49,152) unmasked, as the reference-style local term computes
    it: value and analytic gradient against float64."""
    rng = np.random.default_rng(13)
    n, p = 32, 128 * 384
    t = rng.normal(size=(n, p)) + offset * (1 + rng.random(p))
    s = 0.5 * t + rng.normal(size=(n, p)) + offset * (1 + rng.random(p))
    t, s = t.astype(np.float32).astype(np.float64), s.astype(np.float32).astype(np.float64)
    value, grad = jax.value_and_grad(lambda a: cka.linear_cka(jnp.asarray(t, jnp.float32), a))(
        jnp.asarray(s, jnp.float32)
    )
    tc, sc = t - t.mean(0), s - s.mean(0)
    k, g = tc @ tc.T, sc @ sc.T
    nk, ng = np.linalg.norm(k), np.linalg.norm(g)
    expected = (k * g).sum() / (nk * ng)
    assert abs(float(value) - expected) <= 1e-5 * expected, (float(value), expected)
    a = k / (nk * ng) - expected * g / ng**2
    h = np.eye(n) - 1.0 / n
    assert _rel(np.asarray(grad), 2 * h @ a @ h @ s) <= 1e-4


@pytest.mark.parametrize("unbiased", [False, True])
def test_hsic_matches_float64(unbiased):
    x, y = _xy(16, 9, 6, offset=10.0, seed=3)
    xp, yp, mask = _padded(x, y, extra=2)
    got = cka.linear_hsic(xp, yp, mask=mask, unbiased=unbiased)
    if unbiased:
        xc, yc = x - x.mean(0), y - y.mean(0)
        expected = np_unbiased_hsic(xc @ xc.T, yc @ yc.T)
    else:
        expected = np_hsic(x, y)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_unbiased_hsic_does_not_depend_on_centering_first():
    """U-centering removes any shift: Song et al.'s estimator on raw and centred features."""
    x, y = _xy(14, 5, 8, offset=2.0, seed=4)
    xc, yc = x - x.mean(0), y - y.mean(0)
    np.testing.assert_allclose(
        np_unbiased_hsic(x @ x.T, y @ y.T), np_unbiased_hsic(xc @ xc.T, yc @ yc.T), rtol=1e-9
    )
    np.testing.assert_allclose(
        float(cka.linear_hsic(x, y, unbiased=True)), np_unbiased_hsic(x @ x.T, y @ y.T), rtol=1e-5
    )


def test_the_fsd_shapes_at_full_size():
    """Per-example intra (32 × 128 × 384, padded) and the flattened local shape, value and
    gradient against float64 (analytic gradient of the oracle), feature means 10x the spread."""
    rng = np.random.default_rng(5)
    b, length, d = 4, 128, 384
    t = rng.normal(size=(b, length, d)) + 10 * (1 + rng.random(d))
    s = 0.5 * t[..., ::-1] + rng.normal(size=(b, length, d)) + 10 * (1 + rng.random(d))
    lengths = np.array([128, 97, 40, 5])
    mask = np.arange(length)[None] < lengths[:, None]
    value, grad = jax.value_and_grad(
        lambda a: cka.linear_cka(jnp.asarray(t, jnp.float32), a, mask=mask).sum()
    )(jnp.asarray(s, jnp.float32))
    for i, m in enumerate(lengths):
        ti, si = t[i, :m], s[i, :m]
        expected = np_cka(ti, si)
        got = float(cka.linear_cka(t[i, :m].astype(np.float32), s[i, :m].astype(np.float32)))
        assert abs(got - expected) <= 1e-5 * expected
        tc, sc = ti - ti.mean(0), si - si.mean(0)
        k, g = tc @ tc.T, sc @ sc.T
        nk, ng = np.linalg.norm(k), np.linalg.norm(g)
        a = k / (nk * ng) - expected * g / ng**2
        h = np.eye(m) - 1.0 / m
        assert _rel(np.asarray(grad)[i, :m], 2 * h @ a @ h @ si) <= 1e-4
    assert not np.asarray(grad)[3, 5:].any()
    assert abs(float(value) - sum(np_cka(t[i, :m], s[i, :m]) for i, m in enumerate(lengths))) < 4e-5


# ------------------------------------------------------------------ precomputed Grams
def test_precomputed_gram_equals_live():
    x, y = _xy(24, 30, 20, offset=3.0, seed=6)
    mask = np.arange(24) < 19
    gx = cka.centered_gram(x, mask)

    def live(b):
        return cka.linear_cka(jnp.asarray(x, jnp.float32), b, mask=mask)

    def pre(b):
        return cka.cka_from_grams(gx, cka.centered_gram(b, mask))

    y32 = jnp.asarray(y, jnp.float32)
    np.testing.assert_allclose(pre(y32), live(y32), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(pre)(y32), jax.grad(live)(y32), rtol=1e-5, atol=1e-9)
    # the centred Gram itself: H K H over valid rows, zero elsewhere
    xv = x[:19] - x[:19].mean(0)
    expected = np.zeros((24, 24))
    expected[:19, :19] = xv @ xv.T
    np.testing.assert_allclose(np.asarray(gx), expected, rtol=1e-5, atol=1e-4 * expected.max())


def test_batched_leading_dimensions_equal_a_loop():
    rng = np.random.default_rng(7)
    xs, ys = rng.normal(size=(2, 3, 10, 6)), rng.normal(size=(2, 3, 10, 8))
    masks = rng.random((2, 3, 10)) < 0.8
    got = np.asarray(cka.linear_cka(xs, ys, mask=masks))
    assert got.shape == (2, 3)
    for i, j in np.ndindex(2, 3):
        m = masks[i, j]
        np.testing.assert_allclose(got[i, j], np_cka(xs[i, j][m], ys[i, j][m]), rtol=1e-5)


# ------------------------------------------------------------------ robustness
def test_nan_and_inf_in_masked_rows_never_reach_value_or_gradient():
    x, y = _xy(10, 6, 9, seed=8)
    xp, yp, mask = _padded(x, y, extra=4)
    for name, fn in {
        "linear_cka": lambda a, b, m: cka.linear_cka(a, b, mask=m),
        "debiased": lambda a, b, m: cka.linear_cka(a, b, mask=m, unbiased=True),
        "cka_loss": lambda a, b, m: cka.cka_loss(a, b, mask=m),
        "rbf_cka": lambda a, b, m: cka.rbf_cka(a, b, mask=m),
        "linear_hsic": lambda a, b, m: cka.linear_hsic(a, b, mask=m),
    }.items():
        value, grads = jax.value_and_grad(fn, argnums=(0, 1))(xp, yp, mask)
        np.testing.assert_allclose(value, fn(x, y, None), rtol=1e-5, err_msg=name)
        for g in grads:
            assert np.isfinite(np.asarray(g)).all(), name
            assert not np.asarray(g)[10:].any(), name
    # the same through the FSD losses: NaN at padding positions and in a zero-weight example
    rng = np.random.default_rng(9)
    t, s = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 6, 5))
    tok = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], bool)
    w = np.array([1.0, 1.0, 0.0])
    clean = [fn(t, s, tok, w) for fn in (fsd_intra, fsd_local)]
    t[0, 4:], s[0, 5:] = np.nan, np.inf
    t[2], s[2] = np.nan, np.nan
    for fn, expected in zip((fsd_intra, fsd_local), clean, strict=True):
        value, g = jax.value_and_grad(fn, argnums=1)(t, s, tok, w)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        assert np.isfinite(np.asarray(g)).all(), fn.__name__


@pytest.mark.parametrize("scale", [1e-15, 1e-8, 1e-3, 1e3, 1e8, 1e15])
def test_scale_invariance_over_thirty_orders_of_magnitude(scale):
    x, y = _xy(16, 12, 7, offset=1.0, seed=10)
    base = np_cka(x, y)
    for route_x in (x, np.tile(x, (1, 2))[:, :3]):  # Gram route, then the feature route
        ref = np_cka(route_x, y) if route_x is not x else base
        got = float(cka.linear_cka((scale * route_x).astype(np.float32), y.astype(np.float32)))
        assert abs(got - ref) <= 1e-5 * ref, (scale, got, ref)
    got = float(cka.linear_cka(x.astype(np.float32), (scale * y).astype(np.float32)))
    assert abs(got - base) <= 1e-5 * base
    g = jax.grad(lambda a: cka.linear_cka(a, jnp.asarray(y, jnp.float32)))(
        jnp.asarray(scale * x, jnp.float32)
    )
    assert np.isfinite(np.asarray(g)).all()
    np.testing.assert_allclose(
        np.asarray(g) * scale, np_grad(np_cka, x, y), rtol=1e-3, atol=1e-4 * np.abs(g * scale).max()
    )


@pytest.mark.parametrize("case", ["constant_x", "zero_both", "one_row", "fully_masked", "bf16"])
def test_degenerate_inputs_are_finite_with_finite_gradients(case):
    x, y = _xy(10, 4, 6, seed=11)
    mask = None
    if case == "constant_x":
        x = np.ones_like(x) * 3.0
    elif case == "zero_both":
        x, y = np.zeros_like(x), np.zeros_like(y)
    elif case == "one_row":
        x, y = x[:1], y[:1]
    elif case == "fully_masked":
        mask = np.zeros(10, bool)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if case == "bf16":
        x, y = x.astype(jnp.bfloat16), y.astype(jnp.bfloat16)
    fns = {
        "linear": lambda a, b: cka.linear_cka(a, b, mask=mask),
        "debiased": lambda a, b: cka.linear_cka(a, b, mask=mask, unbiased=True),
        "loss": lambda a, b: cka.cka_loss(a, b, mask=mask),
        "rbf": lambda a, b: cka.rbf_cka(a, b, mask=mask),
        "hsic": lambda a, b: cka.linear_hsic(a, b, mask=mask),
    }
    for name, fn in fns.items():
        value, grads = jax.value_and_grad(fn, argnums=(0, 1))(x, y)
        assert value.dtype == jnp.float32
        assert np.isfinite(float(value)), (case, name)
        assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads), (case, name)
    if case == "bf16":
        expected = np_cka(np.asarray(x, np.float64), np.asarray(y, np.float64))
        np.testing.assert_allclose(cka.linear_cka(x, y), expected, rtol=1e-5)
        assert cka.linear_cka(x, y).dtype == jnp.float32
    else:
        assert float(cka.linear_cka(x, y, mask=mask)) == 0.0


def test_shape_errors_name_both_shapes():
    x, y = np.zeros((8, 3)), np.zeros((7, 3))
    with pytest.raises(ValueError, match=r"x \(8, 3\) and y \(7, 3\)"):
        cka.linear_cka(x, y)
    with pytest.raises(ValueError, match=r"x \(8,\) and y \(8, 3\)"):
        cka.linear_cka(np.zeros(8), np.zeros((8, 3)))
    with pytest.raises(ValueError, match=r"mask of shape \(7,\).*\(8, 3\).*expected \(8,\)"):
        cka.rbf_cka(x, x, mask=np.ones(7))
    with pytest.raises(ValueError, match=r"\(8, 8\) and \(7, 7\)"):
        cka.cka_from_grams(np.zeros((8, 8)), np.zeros((7, 7)))
    with pytest.raises(ValueError, match="kernel='poly'"):
        cka.centered_gram(x, kernel="poly")


def test_a_non_binary_mask_is_read_as_boolean():
    x, y = _xy(12, 5, 7, seed=12)
    soft = np.where(np.arange(12) < 9, np.linspace(0.2, 3.0, 12), 0.0)
    np.testing.assert_allclose(
        cka.linear_cka(x, y, mask=soft), cka.linear_cka(x[:9], y[:9]), rtol=1e-6
    )


def test_fsd_intra_and_local_agree_when_no_example_counts():
    rng = np.random.default_rng(13)
    t, s = rng.normal(size=(4, 6, 5)), rng.normal(size=(4, 6, 3))
    tok, w = np.ones((4, 6)), np.zeros(4)
    for fn in (fsd_intra, fsd_local):
        value, g = jax.value_and_grad(fn, argnums=1)(t, s, tok, w)
        assert float(value) == 0.0, fn.__name__
        assert not np.asarray(g).any()


def test_invariances_identity_and_symmetry():
    x, y = _xy(32, 12, 10, seed=14)
    q, _ = np.linalg.qr(np.random.default_rng(15).normal(size=(12, 12)))
    base = float(cka.linear_cka(x, y))
    np.testing.assert_allclose(cka.linear_cka(x @ q, y), base, rtol=1e-5)
    np.testing.assert_allclose(cka.linear_cka(7.5 * x, 0.01 * y), base, rtol=1e-5)
    np.testing.assert_allclose(cka.linear_cka(x + 3.0, y), base, rtol=1e-5)
    np.testing.assert_allclose(cka.linear_cka(y, x), base, rtol=1e-6)
    np.testing.assert_allclose(cka.linear_cka(x, x), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cka.rbf_cka(x, x), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cka.rbf_cka(x @ q, y), cka.rbf_cka(x, y), rtol=1e-5)


def test_jit_and_grad_without_retracing():
    rng = np.random.default_rng(16)
    xs = jnp.asarray(rng.normal(size=(3, 16, 8)), jnp.float32)
    ys = jnp.asarray(rng.normal(size=(3, 16, 5)), jnp.float32)
    masks = jnp.asarray(np.arange(16)[None, :] < np.array([[16], [10], [4]]))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def batched(a, b, m):
        return cka.cka_loss(a, b, mask=m).mean()

    for _ in range(3):
        value, g = jax.value_and_grad(batched)(xs, ys, masks)
    per = [
        float(cka.cka_loss(xs[i, : int(masks[i].sum())], ys[i, : int(masks[i].sum())]))
        for i in range(3)
    ]
    np.testing.assert_allclose(value, np.mean(per), rtol=1e-5)
    assert np.isfinite(np.asarray(g)).all()
    assert not np.asarray(g)[2, 4:].any()
