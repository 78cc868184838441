"""fsd_jax.minibatch_cka against float64 sums of the unbiased HSIC estimator."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from test_cka import np_unbiased_hsic

from fsd_jax import cka
from fsd_jax.minibatch_cka import MinibatchCKA


def test_minibatch_cka_matches_float64_sums_of_unbiased_hsic():
    rng = np.random.default_rng(17)
    widths_x, widths_y, n, batches = (6, 9, 4), (5, 7), 12, 3
    data = []
    for _ in range(batches):
        base = rng.normal(size=(n, 4))
        xs = [base @ rng.normal(size=(4, w)) + rng.normal(size=(n, w)) + 5 for w in widths_x]
        ys = [base @ rng.normal(size=(4, w)) + rng.normal(size=(n, w)) for w in widths_y]
        data.append((xs, ys))
    update = jax.jit(lambda st, xs, ys, m: st.update(xs, ys, m))
    state = MinibatchCKA.init(3, 2)
    mask = np.arange(n) < 10  # the last two rows of every batch are padding
    for xs, ys in data:
        xs_p = [np.where(mask[:, None], a, np.nan) for a in xs]
        state = update(state, xs_p, ys, mask)
    got = np.asarray(state.result())

    def h(a, b):
        return np_unbiased_hsic(a[:10] @ a[:10].T, b[:10] @ b[:10].T)

    expected = np.zeros((3, 2))
    for i, j in np.ndindex(3, 2):
        xy = sum(h(xs[i], ys[j]) for xs, ys in data)
        xx = sum(h(xs[i], xs[i]) for xs, _ in data)
        yy = sum(h(ys[j], ys[j]) for _, ys in data)
        expected[i, j] = xy / np.sqrt(xx * yy)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert int(state.batches) == batches
    # one batch is debiased linear CKA
    one = MinibatchCKA.init(1, 1).update([data[0][0][0]], [data[0][1][0]])
    np.testing.assert_allclose(
        one.result()[0, 0], cka.linear_cka(data[0][0][0], data[0][1][0], unbiased=True), rtol=1e-5
    )
    with pytest.raises(ValueError, match="made for 3 × 2 layers; update got 1 × 2"):
        MinibatchCKA.init(3, 2).update(data[0][0][:1], data[0][1])
