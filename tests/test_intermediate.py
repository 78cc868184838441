"""Layer mappings, TinyBERT-style losses, BERT-EMD and LAD against NumPy float64 transcriptions
of docs/methods.md §6–§8."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from fsd_jax import losses
from fsd_jax.mapping import layer_mapping
from fsd_jax.masking import MASK_BIAS

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- mappings
@pytest.mark.parametrize(
    ("kind", "nt", "ns", "expected"),
    [
        ("uniform", 12, 4, [[3], [6], [9], [12]]),
        ("uniform", 6, 3, [[2], [4], [6]]),
        ("last", 12, 4, [[9], [10], [11], [12]]),
        ("first", 12, 4, [[1], [2], [3], [4]]),
        ("pkd_skip", 12, 6, [[2], [4], [6], [8], [10]]),
        ("mean", 12, 4, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]),
        ("mean", 6, 4, [[1], [2, 3], [4], [5, 6]]),
    ],
)
def test_layer_mappings(kind, nt, ns, expected):
    pairs = layer_mapping(kind, nt, ns)
    assert [list(b) for _, b in pairs] == expected
    assert [m for m, _ in pairs] == list(range(1, len(expected) + 1))


def test_random_and_explicit_mappings():
    a = layer_mapping("random", 12, 4, seed=3)
    assert a == layer_mapping("random", 12, 4, seed=3)  # fixed by the seed
    chosen = [b[0] for _, b in a]
    assert chosen == sorted(chosen) and len(set(chosen)) == 4 and 1 <= min(chosen) <= 12
    assert {tuple(b[0] for _, b in layer_mapping("random", 12, 4, seed=s)) for s in range(8)} != {
        tuple(chosen)
    }
    assert layer_mapping("explicit", 6, 3, layers="1,3,6") == ((1, (1,)), (2, (3,)), (3, (6,)))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("uniform", 6, 4), {}, r"teacher 6 layers, student 4\).*multiple"),
        (("first", 3, 4), {}, "shallower"),
        (("explicit", 6, 3), {"layers": "1,7,2"}, r"\[7\] out of range 1..6"),
        (("explicit", 6, 3), {"layers": "1,2"}, "names 2 teacher layers, expected one per"),
        (("diagonal", 6, 3), {}, "unknown mapping"),
        (("pkd_skip", 6, 1), {}, "at least 2 layers"),
    ],
)
def test_mapping_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_mapping(*args, **kwargs)


# ---------------------------------------------------------------- TinyBERT losses
def _mask(b=3, n=7):
    lengths = RNG.integers(2, n + 1, b)
    lengths[0] = n
    return (np.arange(n)[None] < lengths[:, None]).astype(np.float32)


def _scores(mask, h=2):
    b, n = mask.shape
    s = RNG.normal(size=(b, h, n, n))
    return s + (1 - mask[:, None, None, :]) * MASK_BIAS


def _np_scores_mse(t, s, mask, weights, faithful):
    b = t.shape[0]
    if faithful:
        t = np.where(t <= -100, 0, t)
        s = np.where(s <= -100, 0, s)
        per = ((s - t) ** 2).reshape(b, -1).mean(1)
    else:
        per = np.empty(b)
        for i in range(b):
            n = int(mask[i].sum())
            per[i] = ((s[i, :, :n, :n] - t[i, :, :n, :n]) ** 2).mean()
    return (per * weights).sum() / weights.sum()


@pytest.mark.parametrize("faithful", [False, True])
def test_attention_scores_mse(faithful):
    mask = _mask()
    t, s = _scores(mask), _scores(mask)
    w = np.array([1.0, 1.0, 0.0])
    got = losses.attention_scores_mse(t, s, None if faithful else mask, w)
    np.testing.assert_allclose(got, _np_scores_mse(t, s, mask, w, faithful), rtol=1e-5)


def _pad(x, mask, extra, axes, value=0.0):
    """``x`` with ``extra`` more positions along ``axes``, filled with ``value``."""
    widths = [(0, extra if a in axes else 0) for a in range(x.ndim)]
    return np.pad(x, widths, constant_values=value)


def test_masked_losses_ignore_extra_padding():
    mask = _mask()
    t, s = _scores(mask), _scores(mask)
    mask2 = _pad(mask, mask, 5, (1,))
    t2 = _pad(t, mask, 5, (2, 3)) + (1 - mask2[:, None, None, :]) * MASK_BIAS * (
        np.arange(mask2.shape[1]) >= mask.shape[1]
    )
    s2 = _pad(s, mask, 5, (2, 3)) + (1 - mask2[:, None, None, :]) * MASK_BIAS * (
        np.arange(mask2.shape[1]) >= mask.shape[1]
    )
    a = losses.attention_scores_mse(t, s, mask)
    b = losses.attention_scores_mse(t2, s2, mask2)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    ht, hs = RNG.normal(size=(3, 7, 8)), RNG.normal(size=(3, 7, 8))
    for fn in (losses.hidden_mse, losses.hidden_cosine):
        np.testing.assert_allclose(
            fn(ht, hs, mask),
            fn(_pad(ht, mask, 5, (1,), 1.0), _pad(hs, mask, 5, (1,), -2.0), mask2),
            rtol=1e-6,
        )


def test_attention_probs_mse_and_kl():
    mask = _mask()
    t, s = _scores(mask), _scores(mask)
    w = np.array([1.0, 0.5, 2.0])

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pt, ps = softmax(t), softmax(s)
    mse = np.empty(3)
    kl = np.empty(3)
    for i in range(3):
        n = int(mask[i].sum())
        mse[i] = ((ps[i, :, :n, :n] - pt[i, :, :n, :n]) ** 2).mean()
        a, b = pt[i, :, :n, :n], ps[i, :, :n, :n]
        kl[i] = (a * (np.log(a) - np.log(b))).sum(-1).mean()
    np.testing.assert_allclose(
        losses.attention_probs_mse(pt, ps, mask, w), (mse * w).sum() / w.sum(), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.attention_kl(t, s, mask, w), (kl * w).sum() / w.sum(), rtol=1e-5
    )


@pytest.mark.parametrize("faithful", [False, True])
def test_hidden_mse_and_cosine(faithful):
    mask = _mask()
    t, s = RNG.normal(size=(3, 7, 6)), RNG.normal(size=(3, 7, 6))
    w = np.array([1.0, 1.0, 0.0])
    m = np.ones_like(mask) if faithful else mask
    sq = ((s - t) ** 2).mean(-1)
    cos = 1 - (s * t).sum(-1) / np.linalg.norm(s, axis=-1) / np.linalg.norm(t, axis=-1)
    for fn, per_tok in ((losses.hidden_mse, sq), (losses.hidden_cosine, cos)):
        per = (per_tok * m).sum(1) / m.sum(1)
        np.testing.assert_allclose(
            fn(t, s, None if faithful else mask, w), (per * w).sum() / w.sum(), rtol=1e-5
        )


def test_soft_cross_entropy():
    zs, zt = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    temp = 2.0
    pt = np.exp(zt / temp) / np.exp(zt / temp).sum(-1, keepdims=True)
    logps = zs / temp - np.log(np.exp(zs / temp).sum(-1, keepdims=True))
    per = -(pt * logps).sum(-1)
    np.testing.assert_allclose(losses.soft_cross_entropy(zs, zt, temp), per.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        losses.soft_cross_entropy_reference(zs, zt, temp), per.mean() / 3, rtol=1e-5
    )
    y = RNG.normal(size=4)
    r_s, r_t = zs[:, :1], zt[:, :1]
    np.testing.assert_allclose(
        losses.soft_cross_entropy(r_s, r_t), ((r_s - r_t) ** 2).mean(), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.soft_cross_entropy_reference(r_s, r_t, labels=y),
        ((r_s[:, 0] - y) ** 2).mean(),
        rtol=1e-5,
    )


# ---------------------------------------------------------------- BERT-EMD
def _linprog(c, a, b):
    m, n = c.shape
    eq = np.zeros((m + n, m * n))
    for i in range(m):
        eq[i, i * n : (i + 1) * n] = 1
    for j in range(n):
        eq[m + j, j::n] = 1
    return linprog(c.ravel(), A_eq=eq, b_eq=np.r_[a, b], bounds=(0, None), method="highs").fun


@pytest.mark.parametrize(("m", "n"), [(3, 6), (4, 8), (4, 12), (6, 12), (5, 7)])
def test_emd_flow_matches_linprog(m, n):
    for trial in range(10):
        c = RNG.random((m, n))
        if trial % 3 == 0:
            c = np.round(c * 3)  # ties: degenerate pivots
        a = RNG.random(m)
        b = RNG.random(n)
        a, b = a / a.sum(), b / b.sum()
        if trial % 4 == 0:
            a, b = np.full(m, 1 / m), np.full(n, 1 / n)
        flow = losses.transport_simplex(c, a, b)
        np.testing.assert_allclose(flow.sum(1), a, atol=1e-12)
        np.testing.assert_allclose(flow.sum(0), b, atol=1e-12)
        assert (flow >= 0).all()
        best = _linprog(c, a, b)
        assert abs((flow * c).sum() - best) <= 1e-6 * max(abs(best), 1e-12)
    # the float32 helper, inside jit, returns the same flow
    f32 = jax.jit(losses.emd_flow)(c.astype(np.float32), a, b)
    np.testing.assert_allclose((np.asarray(f32) * c).sum(), best, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(f32).sum(0), b, atol=1e-6)


def test_transport_errors():
    with pytest.raises(ValueError, match="total supply"):
        losses.transport_simplex(np.ones((2, 2)), np.array([0.5, 0.5]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="expected"):
        losses.transport_simplex(np.ones((2, 3)), np.ones(2), np.ones(2))


def _np_update(flow, cost, ws, wt, rule, temp, add_softmax):
    paid = flow * cost

    def new(c, w):
        x = c / w
        if not (x > 0).any():
            return w
        if rule == "inverse_norm":
            inv = np.where(x > 0, 1 / np.where(x > 0, x, 1), 0)
            return inv / inv.sum()
        z = (x.sum() / x) / temp
        out = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        if add_softmax:
            out = np.exp(out) / np.exp(out).sum()
        return out

    return new(paid.sum(1), ws), new(paid.sum(0), wt)


@pytest.mark.parametrize(
    ("rule", "temp", "add"),
    [("inverse_norm", 1.0, False), ("softmax", 1.0, False), ("softmax", 5.0, True)],
)
def test_emd_weight_update(rule, temp, add):
    cost = RNG.random((3, 6))
    ws, wt = np.full(3, 1 / 3), RNG.random(6)
    wt /= wt.sum()
    flow = losses.transport_simplex(cost, ws, wt)
    got = losses.update_layer_weights(
        flow, cost, ws, wt, rule=rule, temperature=temp, add_softmax=add
    )
    for g, e in zip(got, _np_update(flow, cost, ws, wt, rule, temp, add), strict=True):
        # atol: float32 softmax weights below ~1e-38 underflow to 0 (float64 keeps 1e-165)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-12)
        assert abs(float(g.sum()) - 1) < 1e-5
    zero = losses.update_layer_weights(np.zeros((3, 6)), cost, ws, wt, rule=rule)
    np.testing.assert_allclose(zero[0], ws)  # all costs zero: weights kept, never NaN


# ---------------------------------------------------------------- LAD
def _np_lad(gates, hs, mask, reverse, faithful):
    g = {k: np.asarray(v, np.float64) for k, v in gates.items()}
    hs = [np.asarray(h, np.float64) for h in hs]
    order = hs[::-1] if reverse else hs
    agg = [order[0]]
    for k in range(1, len(order)):
        prev = agg[-1]
        gate = 1 / (1 + np.exp(-(prev @ g["kernel"][k - 1] + g["bias"][k - 1])))
        x = order[k] * gate + prev * (1 - gate)
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            n = x.shape[1] if faithful else int(mask[i].sum())
            mu, var = x[i, :n].mean(), x[i, :n].var()
            out[i] = (x[i] - mu) / np.sqrt(var + 1e-5)
        n_pos = x.shape[1]
        agg.append(out * g["ln_scale"][k - 1][:n_pos] + g["ln_bias"][k - 1][:n_pos])
    return agg[::-1] if reverse else agg


@pytest.mark.parametrize(("reverse", "faithful"), [(False, False), (True, False), (False, True)])
def test_lad_gates_match_numpy(reverse, faithful):
    mask = _mask(3, 6)
    gates = losses.init_lad_gates(jax.random.key(0), 4, 5, seq_len=8)
    gates = jax.tree.map(lambda x: x + 0.1 * jnp.asarray(RNG.normal(size=x.shape)), gates)
    hs = [RNG.normal(size=(3, 6, 5)) for _ in range(4)]
    got = losses.lad_aggregate(gates, hs, None if faithful else mask, reverse=reverse)
    want = _np_lad(gates, hs, mask, reverse, faithful)
    for g, w in zip(got, want, strict=True):
        m = np.ones_like(mask) if faithful else mask
        np.testing.assert_allclose(
            np.asarray(g) * m[..., None], w * m[..., None], rtol=1e-4, atol=1e-5
        )


def test_lad_gradients_reach_every_gate():
    mask = _mask(3, 6)
    gates = losses.init_lad_gates(jax.random.key(1), 4, 5, seq_len=6)
    hs = [jnp.asarray(RNG.normal(size=(3, 6, 5)), jnp.float32) for _ in range(4)]
    student = [jnp.asarray(RNG.normal(size=(3, 6, 5)), jnp.float32) for _ in range(2)]

    def loss(g):
        agg = losses.lad_aggregate(g, hs, mask)
        return losses.hidden_mse(agg[1], student[0], mask) + losses.hidden_mse(
            agg[3], student[1], mask
        )

    grads = jax.grad(loss)(gates)
    for name, g in grads.items():
        g = np.asarray(g)
        assert np.isfinite(g).all()
        assert all(np.abs(g[k]).sum() > 0 for k in range(3)), name
