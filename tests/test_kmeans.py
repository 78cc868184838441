"""k-means on the device against scikit-learn, streaming against in-memory, empty clusters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsd_jax import kmeans


def _blobs(n=600, k=8, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), centres


def test_squared_distances_match_explicit_form():
    x, _c = _blobs(50, 4, 6)
    explicit = ((x[:, None, :].astype(np.float64) - x[None, :7, :]) ** 2).sum(-1)
    np.testing.assert_allclose(kmeans.squared_distances(x, x[:7]), explicit, rtol=1e-4, atol=1e-3)


def test_kmeans_reaches_sklearn_best_of_10_inertia():
    sklearn = pytest.importorskip("sklearn.cluster")
    x, _ = _blobs()
    best = sklearn.KMeans(8, n_init=10, random_state=0).fit(x).inertia_
    res = kmeans.kmeans(jnp.asarray(x), 8, key=jax.random.key(0), num_iters=20)
    assert float(res.inertia) <= 1.01 * best
    # the reported inertia is that of the returned assignments
    d2 = ((x - np.asarray(res.centroids)[np.asarray(res.assignments)]) ** 2).sum()
    np.testing.assert_allclose(float(res.inertia), d2, rtol=1e-4)
    rand = kmeans.kmeans(jnp.asarray(x), 8, key=jax.random.key(1), num_iters=30, init="random")
    assert np.isfinite(float(rand.inertia))


def test_lloyd_step_matches_numpy():
    x, _ = _blobs(100, 3, 4, seed=2)
    c = x[:3].copy()
    new, assign, inertia = kmeans.lloyd_step(jnp.asarray(x), jnp.asarray(c))
    d2 = ((x[:, None] - c[None]) ** 2).sum(-1)
    ref_assign = d2.argmin(1)
    ref = np.stack([x[ref_assign == j].mean(0) for j in range(3)])
    np.testing.assert_array_equal(np.asarray(assign), ref_assign)
    np.testing.assert_allclose(np.asarray(new), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(inertia), d2.min(1).sum(), rtol=1e-5)


def test_empty_cluster_is_reseeded_with_a_far_point():
    x, _ = _blobs(200, 2, 4, seed=3)
    far_away = np.full((2, 4), 1e4, np.float32)  # no point is nearest to these two centroids
    init = np.concatenate([x[:2], far_away])
    new, assign, _ = kmeans.lloyd_step(jnp.asarray(x), jnp.asarray(init))
    assert set(np.asarray(assign).tolist()) <= {0, 1}
    new = np.asarray(new)
    d_own = ((x[:, None] - init[None, :2]) ** 2).sum(-1).min(1)
    farthest = x[np.argsort(-d_own)[:2]]
    np.testing.assert_allclose(new[2:], farthest, rtol=1e-6)
    assert len({tuple(r) for r in new.round(4)}) == 4


def test_streaming_equals_in_memory_from_the_same_init():
    x, _ = _blobs(300, 5, 8, seed=4)
    init = x[kmeans.sample_indices(300, 5, seed=0)]
    ref = kmeans.kmeans(jnp.asarray(x), 5, key=jax.random.key(0), num_iters=3, init=init)

    def batches():
        for i in range(0, 300, 64):  # last batch partial, padded with zero-weight rows
            chunk = x[i : i + 64]
            pad = 64 - len(chunk)
            feats = np.concatenate([chunk, np.full((pad, 8), 77.0, np.float32)])
            yield jnp.asarray(feats), jnp.asarray(np.r_[np.ones(len(chunk)), np.zeros(pad)])

    cents, history = kmeans.streaming_kmeans(batches, jnp.asarray(init), num_passes=3)
    np.testing.assert_allclose(np.asarray(cents), np.asarray(ref.centroids), rtol=1e-5, atol=1e-4)
    assert len(history) == 3 and history[0] >= history[1] >= history[2]


def test_kmeans_input_errors():
    x = jnp.ones((5, 3))
    with pytest.raises(ValueError, match="num_clusters=6"):
        kmeans.kmeans(x, 6, key=jax.random.key(0))
    with pytest.raises(ValueError, match="init='lloyd'"):
        kmeans.kmeans(x, 2, key=jax.random.key(0), init="lloyd")
    with pytest.raises(ValueError, match="K=9 centroids but only 5"):
        kmeans.sample_indices(5, 9, seed=0)
