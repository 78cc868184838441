"""Every loss against a NumPy float64 transcription of its docs/methods.md formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_cka import np_cka

from fsd_jax import losses

RNG = np.random.default_rng(0)


def np_softmax(z, axis=-1):
    z = z - z.max(axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis, keepdims=True)


def np_smooth_l1(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def _hidden(b=4, n=10, d=6, seed=1):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(b, n, d))
    s = 0.5 * t[..., : d - 1] @ rng.normal(size=(d - 1, d - 1)) + rng.normal(size=(b, n, d - 1))
    lengths = np.array([n, n - 3, 4, 7][:b])
    mask = (np.arange(n)[None, :] < lengths[:, None]).astype(np.int32)
    return t, s, mask, lengths


def _pad(x, extra, rng=RNG):
    """Append `extra` garbage positions on axis 1 (padding)."""
    shape = list(x.shape)
    shape[1] = extra
    return np.concatenate([x, rng.normal(size=shape) * 50], axis=1)


# ---------------------------------------------------------------- KD
def test_kd_matches_numpy_and_weights():
    zs, zt = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3)) * 2
    T = 4.0
    pt, ps = np_softmax(zt / T), np_softmax(zs / T)
    ref = T**2 * (pt * (np.log(pt) - np.log(ps))).sum(-1)
    np.testing.assert_allclose(losses.kd(zs, zt, T), ref.mean(), rtol=1e-5)
    w = np.array([1, 1, 0, 1, 0], np.float32)
    np.testing.assert_allclose(losses.kd(zs, zt, T, w), ref[w > 0].mean(), rtol=1e-5)


def test_kd_regression_is_mse_to_teacher_and_reference_zero():
    zs, zt = RNG.normal(size=(6, 1)), RNG.normal(size=(6, 1))
    np.testing.assert_allclose(losses.kd(zs, zt, 5.0), ((zs - zt) ** 2).mean(), rtol=1e-5)
    assert float(losses.kd_reference(zs, zt, 5.0)) == 0.0


def test_cross_entropy_and_mse():
    z, y = RNG.normal(size=(4, 3)), np.array([0, 2, 1, 2])
    ref = -np.log(np_softmax(z)[np.arange(4), y])
    np.testing.assert_allclose(losses.cross_entropy(z, y), ref.mean(), rtol=1e-5)
    w = np.array([0, 1, 1, 1.0])
    np.testing.assert_allclose(losses.cross_entropy(z, y, w), ref[1:].mean(), rtol=1e-5)


# ---------------------------------------------------------------- FSD intra / local
def test_fsd_intra_matches_numpy_masked_and_reference():
    t, s, mask, lengths = _hidden()
    per = np.array([np_cka(t[b, :k], s[b, :k]) for b, k in enumerate(lengths)])
    np.testing.assert_allclose(
        losses.fsd_intra(t, s, mask), np.mean(-np.log(np.abs(per) + 1e-8)), rtol=1e-5
    )
    full = np.array([np_cka(t[b], s[b]) for b in range(len(t))])
    np.testing.assert_allclose(
        losses.fsd_intra_reference(t, s), -np.log(np.abs(full).mean() + 1e-8), rtol=1e-5
    )


def test_fsd_intra_and_local_ignore_padding_length():
    t, s, mask, _ = _hidden()
    tp, sp = _pad(t, 5), _pad(s, 5)
    mp = np.concatenate([mask, np.zeros((4, 5), np.int32)], 1)
    for fn in (losses.fsd_intra, losses.fsd_local):
        np.testing.assert_allclose(fn(tp, sp, mp), fn(t, s, mask), rtol=1e-5)


def test_fsd_local_matches_numpy():
    t, s, mask, _ = _hidden()
    ft = (t * mask[..., None]).reshape(4, -1)
    fs = (s * mask[..., None]).reshape(4, -1)
    ref = -np.log(abs(np_cka(ft, fs)) + 1e-8)
    np.testing.assert_allclose(losses.fsd_local(t, s, mask), ref, rtol=1e-5)
    raw = -np.log(abs(np_cka(t.reshape(4, -1), s.reshape(4, -1))) + 1e-8)
    np.testing.assert_allclose(losses.fsd_local_reference(t, s), raw, rtol=1e-5)


# ---------------------------------------------------------------- partial batches
def _partial_cases():
    t, s, mask, _ = _hidden()
    rng = np.random.default_rng(3)
    et, es = rng.normal(size=(4, 12)), rng.normal(size=(4, 9))
    scores_t, scores_s = rng.normal(size=(4, 2, 10, 10)), rng.normal(size=(4, 2, 10, 10))
    vt, vs = rng.normal(size=(4, 2, 10, 3)), rng.normal(size=(4, 2, 10, 5))
    bias = (1 - mask[:, None, None, :]) * -10000.0
    tt = [t, t * 2]
    ss = [t + rng.normal(size=t.shape), t]
    return [
        ("fsd_intra", lambda w, k: losses.fsd_intra(t[:k], s[:k], mask[:k], w)),
        (
            "fsd_intra_faithful",
            lambda w, k: losses.fsd_intra_reference(t[:k], s[:k], w),
        ),
        ("fsd_local", lambda w, k: losses.fsd_local(t[:k], s[:k], mask[:k], w)),
        ("pkd", lambda w, k: losses.pkd([x[:k] for x in tt], [x[:k] for x in ss], mask[:k], w)),
        (
            "pkd_seq",
            lambda w, k: losses.pkd(
                [x[:k] for x in tt], [x[:k] for x in ss], mask[:k], w, full_sequence=True
            ),
        ),
        ("rkd_distance", lambda w, k: losses.rkd_distance(et[:k], es[:k], w)),
        ("rkd_angle", lambda w, k: losses.rkd_angle(et[:k], es[:k], w)),
        (
            "minilm",
            lambda w, k: losses.minilm(
                scores_t[:k] + bias[:k], scores_s[:k] + bias[:k], vt[:k], vs[:k], mask[:k], w
            ),
        ),
        ("kd", lambda w, k: losses.kd(es[:k, :3], et[:k, :3], 2.0, w)),
    ]


@pytest.mark.parametrize(("name", "fn"), _partial_cases())
def test_zero_weight_rows_are_ignored(name, fn):
    w = np.array([1, 1, 1, 0], np.float32)
    np.testing.assert_allclose(fn(w, 4), fn(None, 3), rtol=1e-5, err_msg=name)


# ---------------------------------------------------------------- PKD
def test_pkd_cls_and_full_sequence_match_numpy():
    t, _s, mask, lengths = _hidden(d=6)
    rng = np.random.default_rng(4)
    tl = [t, rng.normal(size=t.shape)]
    sl = [rng.normal(size=t.shape), rng.normal(size=t.shape)]
    nt = np.stack([x[:, 0] / np.linalg.norm(x[:, 0], axis=-1, keepdims=True) for x in tl], 1)
    ns = np.stack([x[:, 0] / np.linalg.norm(x[:, 0], axis=-1, keepdims=True) for x in sl], 1)
    np.testing.assert_allclose(losses.pkd(tl, sl), ((ns - nt) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(
        losses.pkd(tl, sl, normalize=False),
        ((np.stack(sl, 1)[:, :, 0] - np.stack(tl, 1)[:, :, 0]) ** 2).mean(),
        rtol=1e-5,
    )
    per = []
    for b, k in enumerate(lengths):
        vt = [x[b, :k].reshape(-1) for x in tl]
        vs = [x[b, :k].reshape(-1) for x in sl]
        per.append(
            np.mean(
                [
                    ((a / np.linalg.norm(a) - c / np.linalg.norm(c)) ** 2).mean()
                    for a, c in zip(vt, vs, strict=True)
                ]
            )
        )
    np.testing.assert_allclose(
        losses.pkd(tl, sl, mask, full_sequence=True), np.mean(per), rtol=1e-5
    )


def test_pkd_layer_maps_and_errors():
    assert losses.pkd_teacher_layers(12, 6, "skip") == (2, 4, 6, 8, 10)
    assert losses.pkd_teacher_layers(12, 6, "last") == (7, 8, 9, 10, 11)
    assert losses.pkd_teacher_layers(6, 3, "skip") == (2, 4)
    with pytest.raises(ValueError, match="multiple"):
        losses.pkd_teacher_layers(6, 4, "skip")
    with pytest.raises(ValueError, match="equal widths"):
        losses.pkd([np.ones((2, 3, 4))], [np.ones((2, 3, 5))])


# ---------------------------------------------------------------- RKD
def np_pdist(e):
    d2 = ((e[:, None] - e[None, :]) ** 2).sum(-1)
    d = np.sqrt(np.maximum(d2, 1e-12))
    np.fill_diagonal(d, 0)
    return d


def np_rkd_distance(t, s):
    dt, ds = np_pdist(t), np_pdist(s)
    dt, ds = dt / dt[dt > 0].mean(), ds / ds[ds > 0].mean()
    return np_smooth_l1(ds - dt).mean()


def np_angle(e):
    """The reference's explicit B×B×D form (lenscloth/RKD metric/loss.py)."""
    diff = e[None, :, :] - e[:, None, :]  # [a, b] = e_b − e_a
    norm = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-12)
    return np.einsum("abd,acd->abc", norm, norm)


def test_rkd_matches_numpy_and_explicit_angle():
    t, s = RNG.normal(size=(6, 20)), RNG.normal(size=(6, 11))
    np.testing.assert_allclose(losses.rkd_distance(t, s), np_rkd_distance(t, s), rtol=1e-5)
    np.testing.assert_allclose(losses.angle_potential(t), np_angle(t), atol=1e-5)
    ref = np_smooth_l1(np_angle(s) - np_angle(t)).mean()
    np.testing.assert_allclose(losses.rkd_angle(t, s), ref, rtol=1e-5)


def test_rkd_gradients_finite_with_duplicate_examples():
    t = RNG.normal(size=(4, 8))
    s = RNG.normal(size=(4, 8))
    s[1] = s[0]
    for fn in (losses.rkd_distance, losses.rkd_angle):
        g = jax.grad(lambda x, f=fn: f(jnp.asarray(t), x))(jnp.asarray(s))
        assert np.isfinite(np.asarray(g)).all()


# ---------------------------------------------------------------- MiniLM
def np_minilm(st, ss, vt, vs, mask):
    b, h, _n, _ = st.shape
    out = []
    for i in range(b):
        k = int(mask[i].sum())
        total = 0.0
        for a in range(h):
            pt, ps = np_softmax(st[i, a, :k, :k]), np_softmax(ss[i, a, :k, :k])
            rt = np_softmax(vt[i, a, :k] @ vt[i, a, :k].T / np.sqrt(vt.shape[-1]))
            rs = np_softmax(vs[i, a, :k] @ vs[i, a, :k].T / np.sqrt(vs.shape[-1]))
            total += (pt * np.log(pt / ps)).sum() + (rt * np.log(rt / rs)).sum()
        out.append(total / (h * k))
    return np.mean(out)


def test_minilm_matches_numpy_on_real_tokens():
    _, _, mask, _ = _hidden()
    rng = np.random.default_rng(5)
    st, ss = rng.normal(size=(4, 3, 10, 10)), rng.normal(size=(4, 3, 10, 10))
    vt, vs = rng.normal(size=(4, 3, 10, 4)), rng.normal(size=(4, 3, 10, 2))
    bias = (1 - mask[:, None, None, :]) * -10000.0
    got = losses.minilm(st + bias, ss + bias, vt, vs, mask)
    np.testing.assert_allclose(got, np_minilm(st, ss, vt, vs, mask), rtol=1e-5)
    with pytest.raises(ValueError, match="equal head counts"):
        losses.minilm(st, ss[:, :2], vt, vs[:, :2], mask)


# ---------------------------------------------------------------- FSD global (memory)
def np_global(t, s, mt, ms, mask, gamma_m, eps=1e-8):
    """Eq. 8–10 in float64, each example compared with its valid positions only."""
    b, k = t.shape[0], mt.shape[0]
    e_t, e_s, c_t, c_s = (np.zeros((b, k)) for _ in range(4))
    for i in range(b):
        n = int(mask[i].sum())
        ft, fs = t[i, :n].ravel(), s[i, :n].ravel()
        for j in range(k):
            mtj, msj = mt[j, :n].ravel(), ms[j, :n].ravel()
            e_t[i, j] = np.sqrt(((ft - mtj) ** 2).sum() + eps)
            e_s[i, j] = np.sqrt(((fs - msj) ** 2).sum() + eps)
            c_t[i, j] = ft @ mtj / (np.linalg.norm(ft) * np.linalg.norm(mtj))
            c_s[i, j] = fs @ msj / (np.linalg.norm(fs) * np.linalg.norm(msj))
    dist = ((e_s - e_t) ** 2).mean()
    cos = ((c_s - c_t) ** 2).mean()
    mem = -np.log(abs(np_cka(mt.reshape(k, -1), ms.reshape(k, -1))) + 1e-8)
    return {
        "total": gamma_m * dist + (1 - gamma_m) * cos + mem,
        "distance": dist,
        "cosine": cos,
        "memory_cka": mem,
    }


def test_fsd_global_matches_numpy_and_ignores_padding():
    t, s, mask, _ = _hidden(n=10)
    rng = np.random.default_rng(7)
    mt, ms = rng.normal(size=(5, 12, 6)), rng.normal(size=(5, 12, 5))
    got = losses.fsd_global_terms(t, s, mt, ms, mask, gamma_m=0.3)
    ref = np_global(t, s, mt, ms, mask, 0.3)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-4, err_msg=key)
    padded = losses.fsd_global(
        _pad(t, 2),
        _pad(s, 2),
        mt,
        ms,
        np.concatenate([mask, np.zeros((4, 2), np.int32)], 1),
        gamma_m=0.3,
    )
    np.testing.assert_allclose(padded, got["total"], rtol=1e-5)
    w = np.array([1, 1, 1, 0], np.float32)
    np.testing.assert_allclose(
        losses.fsd_global(t, s, mt, ms, mask, w, gamma_m=0.3),
        losses.fsd_global(t[:3], s[:3], mt, ms, mask[:3], gamma_m=0.3),
        rtol=1e-5,
    )


def test_fsd_global_gradients_finite_when_feature_equals_centroid():
    t, s, mask, _ = _hidden(n=10)
    mask = np.ones_like(mask)
    rng = np.random.default_rng(8)
    mt = rng.normal(size=(3, 10, 6))
    ms = rng.normal(size=(3, 10, 5))
    ms[0] = s[0]  # a student feature sits exactly on a centroid
    mt[1] = t[1]
    grads = jax.grad(
        lambda a, b: losses.fsd_global(jnp.asarray(t), a, jnp.asarray(mt), b, mask), argnums=(0, 1)
    )(jnp.asarray(s), jnp.asarray(ms))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    assert all(np.asarray(g).any() for g in grads)
    g_teacher = jax.grad(
        lambda m: losses.fsd_global(jnp.asarray(t), jnp.asarray(s), m, jnp.asarray(ms), mask)
    )(jnp.asarray(mt))
    assert not np.asarray(g_teacher).any()


# ---------------------------------------------------------------- jit and gradients
def _grad_cases():
    """(name, loss of the student-side input, that input): the losses the terms call."""
    t, s, mask, _ = _hidden()
    rng = np.random.default_rng(5)
    et, es = rng.normal(size=(4, 12)), rng.normal(size=(4, 9))
    st, ss = rng.normal(size=(4, 2, 10, 10)), rng.normal(size=(4, 2, 10, 10))
    vt, vs = rng.normal(size=(4, 2, 10, 3)), rng.normal(size=(4, 2, 10, 5))
    bias = (1 - mask[:, None, None, :]) * -10000.0
    zt, zs = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    mem_t, mem_s = rng.normal(size=(3, 10, 6)), rng.normal(size=(3, 10, 5))
    tp = jax.nn.softmax(st + bias)
    w = np.array([1.0, 0.5, 2.0, 1.0])
    return [
        ("fsd_intra", lambda x: losses.fsd_intra(t, x, mask, w), s),
        ("fsd_intra_reference", lambda x: losses.fsd_intra_reference(t, x, w), s),
        ("fsd_local", lambda x: losses.fsd_local(t, x, mask, w), s),
        ("fsd_local_reference", lambda x: losses.fsd_local_reference(t, x, w), s),
        ("fsd_global", lambda x: losses.fsd_global(t, x, mem_t, mem_s, mask, w), s),
        ("fsd_global memory", lambda m: losses.fsd_global(t, s, mem_t, m, mask, w), mem_s),
        ("kd", lambda x: losses.kd(x, zt, 2.0, w), zs),
        ("kd_reference", lambda x: losses.kd_reference(x, zt, 2.0, w), zs),
        ("pkd", lambda x: losses.pkd([t[..., :5]], [x], mask, w), s),
        ("rkd_distance", lambda x: losses.rkd_distance(et, x, w), es),
        ("rkd_angle", lambda x: losses.rkd_angle(et, x, w), es),
        ("minilm", lambda x: losses.minilm(st + bias, ss + bias, vt, x, mask, w), vs),
        ("attention_kl", lambda x: losses.attention_kl(st + bias, x + bias, mask, w), ss),
        ("attention_scores_mse", lambda x: losses.attention_scores_mse(st, x, mask, w), ss),
        ("attention_probs_mse", lambda x: losses.attention_probs_mse(tp, x, mask, w), ss),
        ("hidden_mse", lambda x: losses.hidden_mse(t[..., :5], x, mask, w), s),
        ("hidden_cosine", lambda x: losses.hidden_cosine(t[..., :5], x, mask, w), s),
        ("soft_cross_entropy", lambda x: losses.soft_cross_entropy(x, zt, 2.0, w), zs),
    ]


@pytest.mark.parametrize(
    ("name", "fn", "x"), _grad_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_losses_jit_and_their_gradients_match_finite_differences(name, fn, x):
    """Each loss compiles under ``jax.jit`` to the eager value, and its reverse-mode gradient
    (custom VJPs included) agrees with central differences (``jax.test_util.check_grads``)."""
    from jax.test_util import check_grads

    x = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(jax.jit(fn)(x), fn(x), rtol=1e-5, err_msg=name)
    check_grads(fn, (x,), order=1, modes=("rev",), eps=1e-2, atol=1e-5, rtol=2e-2)
