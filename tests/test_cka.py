"""fsd_jax.cka against a NumPy float64 transcription of METHODS.md §2.1 (explicit H matrices)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsd_jax import cka


def np_hsic(x, y):
    """tr(K H G H) / (n − 1)² with an explicit centering matrix, float64."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(x @ x.T @ h @ y @ y.T @ h) / (n - 1) ** 2


def np_cka(x, y):
    return np_hsic(x, y) / np.sqrt(np_hsic(x, x) * np_hsic(y, y))


def np_unbiased_hsic(k, g):
    """Song et al. (2012) Eq. 5, float64."""
    n = k.shape[0]
    k = k - np.diag(np.diag(k))
    g = g - np.diag(np.diag(g))
    one = np.ones(n)
    return (
        np.trace(k @ g)
        + (one @ k @ one) * (one @ g @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ k @ g @ one
    ) / (n * (n - 3))


def np_rbf_cka(x, y, sigma):
    def gram(a):
        d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
        bw2 = sigma**2 if sigma is not None else np.median(d2[~np.eye(len(a), dtype=bool)])
        return np.exp(-d2 / (2 * bw2))

    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, g = h @ gram(x) @ h, h @ gram(y) @ h
    return (k * g).sum() / np.sqrt((k * k).sum() * (g * g).sum())


def _xy(n, p, q, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = x[:, : min(p, q)] @ rng.normal(size=(min(p, q), q)) + 0.5 * rng.normal(size=(n, q))
    return x, y


@pytest.mark.parametrize(("n", "p", "q"), [(8, 20, 30), (64, 5, 7), (16, 16, 3), (128, 48, 48)])
def test_linear_hsic_and_cka_match_numpy(n, p, q):
    x, y = _xy(n, p, q)
    np.testing.assert_allclose(cka.linear_hsic(x, y), np_hsic(x, y), rtol=2e-5)
    np.testing.assert_allclose(cka.linear_cka(x, y), np_cka(x, y), rtol=2e-5)
    np.testing.assert_allclose(cka.cka_loss(x, y), -np.log(abs(np_cka(x, y)) + 1e-8), rtol=2e-5)


def test_gram_and_feature_routes_agree():
    x, y = _xy(40, 30, 25, seed=3)
    xc, yc = cka.center(jnp.asarray(x)), cka.center(jnp.asarray(y))
    gram = [(xc @ xc.T * (yc @ yc.T)).sum(), (xc @ xc.T * (xc @ xc.T)).sum()]
    feat = [((xc.T @ yc) ** 2).sum(), ((xc.T @ xc) ** 2).sum()]
    np.testing.assert_allclose(gram, feat, rtol=1e-4)
    # both routes reached through the public API on shapes that pick each
    assert cka._use_gram(40, 30, 25) and not cka._use_gram(40, 10, 10)
    for shape in [(40, 30, 25), (40, 10, 10)]:
        a, b = _xy(*shape, seed=4)
        np.testing.assert_allclose(cka.linear_cka(a, b), np_cka(a, b), rtol=2e-5)


def test_unbiased_matches_numpy():
    x, y = _xy(20, 6, 9, seed=5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, g = xc @ xc.T, yc @ yc.T
    np.testing.assert_allclose(
        cka.linear_hsic(x, y, unbiased=True), np_unbiased_hsic(k, g), rtol=1e-4
    )
    ref = np_unbiased_hsic(k, g) / np.sqrt(np_unbiased_hsic(k, k) * np_unbiased_hsic(g, g))
    np.testing.assert_allclose(cka.linear_cka(x, y, unbiased=True), ref, rtol=1e-4)


@pytest.mark.parametrize("sigma", [None, 3.0])
def test_rbf_cka_matches_numpy(sigma):
    x, y = _xy(24, 5, 8, seed=6)
    np.testing.assert_allclose(cka.rbf_cka(x, y, sigma=sigma), np_rbf_cka(x, y, sigma), rtol=1e-4)


def test_invariances_identity_and_symmetry():
    x, y = _xy(32, 12, 10, seed=7)
    q, _ = np.linalg.qr(np.random.default_rng(8).normal(size=(12, 12)))
    base = float(cka.linear_cka(x, y))
    np.testing.assert_allclose(cka.linear_cka(x @ q, y), base, rtol=1e-5)
    np.testing.assert_allclose(cka.linear_cka(7.5 * x, 0.01 * y), base, rtol=1e-5)
    np.testing.assert_allclose(cka.linear_cka(x + 3.0, y), base, rtol=1e-5)
    np.testing.assert_allclose(cka.linear_cka(y, x), base, rtol=1e-6)
    np.testing.assert_allclose(cka.linear_cka(x, x), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cka.rbf_cka(x, x), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cka.rbf_cka(x @ q, y), cka.rbf_cka(x, y), rtol=1e-5)


@pytest.mark.parametrize(
    "fn",
    [
        cka.linear_cka,
        cka.rbf_cka,
        cka.linear_hsic,
        lambda a, b, mask: cka.linear_cka(a, b, mask=mask, unbiased=True),
    ],
)
def test_masked_equals_unpadded(fn):
    x, y = _xy(20, 6, 9, seed=9)
    rng = np.random.default_rng(10)
    xp = np.concatenate([x, rng.normal(size=(5, 6)) * 100])
    yp = np.concatenate([y, rng.normal(size=(5, 9))])
    mask = np.arange(25) < 20
    np.testing.assert_allclose(fn(xp, yp, mask=mask), fn(x, y, mask=None), rtol=1e-5)


@pytest.mark.parametrize("case", ["constant_x", "zero_both", "one_valid_row", "bf16"])
def test_degenerate_inputs_are_finite_with_finite_gradients(case):
    x, y = _xy(10, 4, 6, seed=11)
    mask = None
    if case == "constant_x":
        x = np.ones_like(x) * 3.0
    elif case == "zero_both":
        x, y = np.zeros_like(x), np.zeros_like(y)
    elif case == "one_valid_row":
        mask = np.arange(10) < 1
    x, y = jnp.asarray(x), jnp.asarray(y)
    if case == "bf16":
        x, y = x.astype(jnp.bfloat16), y.astype(jnp.bfloat16)
    for fn in (cka.linear_cka, cka.cka_loss, cka.rbf_cka):
        value, grads = jax.value_and_grad(lambda a, b, f=fn: f(a, b, mask=mask), argnums=(0, 1))(
            x, y
        )
        assert value.dtype == jnp.float32
        assert np.isfinite(float(value)), (case, fn)
        assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads), (case, fn)
    if case != "bf16":
        assert float(cka.linear_cka(x, y, mask=mask)) == 0.0
    else:
        np.testing.assert_allclose(
            cka.linear_cka(x, y),
            np_cka(np.asarray(x, np.float64), np.asarray(y, np.float64)),
            rtol=1e-5,
        )


def test_jit_vmap_grad_without_retracing():
    rng = np.random.default_rng(12)
    xs = jnp.asarray(rng.normal(size=(3, 16, 8)), jnp.float32)
    ys = jnp.asarray(rng.normal(size=(3, 16, 5)), jnp.float32)
    masks = jnp.asarray(np.arange(16)[None, :] < np.array([[16], [10], [4]]))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def batched(a, b, m):
        return jax.vmap(lambda u, v, w: cka.cka_loss(u, v, mask=w))(a, b, m).mean()

    for _ in range(3):
        value, g = jax.value_and_grad(batched)(xs, ys, masks)
    per = [
        float(cka.cka_loss(xs[i, : int(masks[i].sum())], ys[i, : int(masks[i].sum())]))
        for i in range(3)
    ]
    np.testing.assert_allclose(value, np.mean(per), rtol=1e-5)
    assert np.isfinite(np.asarray(g)).all()
    assert not np.asarray(g)[2, 4:].any()  # masked rows get no gradient
