"""k-means on the device, in memory or streamed over a dataset (FSD's teacher memory, §2.5).

Lloyd's algorithm (Lloyd 1982) with k-means++ initialisation (Arthur & Vassilvitskii 2007).
Squared distances come from norms and one matrix product, ``||x||² + ||c||² − 2 x·cᵀ``, so no
N×K×D tensor is ever formed. A cluster left empty by an assignment is re-seeded with one of the
points farthest from their centroids (each empty cluster gets a different one).

Streaming (:class:`StreamingLloyd`) runs one Lloyd iteration per pass over batches of features:
per-centroid sums and counts are accumulated on the device, so memory is O(K·D) whatever N is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.distances import squared_distances_from_products


class KMeansResult(NamedTuple):
    centroids: jax.Array  # (K, D)
    assignments: jax.Array  # (N,) int32
    inertia: jax.Array  # () sum of squared distances to the assigned centroids


def squared_distances(points: jax.Array, centroids: jax.Array) -> jax.Array:
    """(N, K) squared Euclidean distances, clamped at 0 (float32 cancellation)."""
    x = points.astype(jnp.float32)
    c = centroids.astype(jnp.float32)
    xc = jnp.matmul(x, c.T, precision=jax.lax.Precision.HIGHEST)
    return squared_distances_from_products((x * x).sum(1)[:, None], (c * c).sum(1)[None, :], xc)


def kmeans_plus_plus(points: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's default).

    Each next centre is the best of ``2 + ln K`` candidates drawn with probability ∝ squared
    distance to the nearest chosen centre: the one that lowers the total potential most.
    """
    x = points.astype(jnp.float32)
    n = x.shape[0]
    trials = 2 + int(np.log(num_clusters))
    key, first = jax.random.split(key)
    idx0 = jax.random.randint(first, (), 0, n)
    centroids = jnp.zeros((num_clusters, x.shape[1]), jnp.float32).at[0].set(x[idx0])
    min_d2 = squared_distances(x, x[idx0][None])[:, 0]

    def body(i, carry):
        centroids, min_d2, key = carry
        key, sub = jax.random.split(key)
        # all points coincide with centres: fall back to uniform draws
        logits = jnp.where(min_d2.sum() > 0, jnp.log(min_d2 + 1e-30), jnp.zeros_like(min_d2))
        cand = jax.random.categorical(sub, logits, shape=(trials,))
        new_d2 = jnp.minimum(min_d2[None, :], squared_distances(x[cand], x))  # (trials, N)
        best = jnp.argmin(new_d2.sum(1))
        return centroids.at[i].set(x[cand[best]]), new_d2[best], key

    centroids, _, _ = jax.lax.fori_loop(1, num_clusters, body, (centroids, min_d2, key))
    return centroids


def random_init(points: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
    """K distinct points drawn uniformly."""
    idx = jax.random.choice(key, points.shape[0], (num_clusters,), replace=False)
    return points[idx].astype(jnp.float32)


def _reseed_empty(centroids, counts, far_points):
    """Replace centroids with count 0 by far_points[0], far_points[1], ... in order."""
    empty = counts == 0
    rank = jnp.clip(jnp.cumsum(empty) - 1, 0, far_points.shape[0] - 1)
    return jnp.where(empty[:, None], far_points[rank], centroids)


def lloyd_step(points: jax.Array, centroids: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One assignment + update; returns (new centroids, assignments, inertia before update)."""
    x = points.astype(jnp.float32)
    k = centroids.shape[0]
    d2 = squared_distances(x, centroids)
    assign = jnp.argmin(d2, axis=1)
    best = jnp.take_along_axis(d2, assign[:, None], 1)[:, 0]
    sums = jax.ops.segment_sum(x, assign, num_segments=k)
    counts = jax.ops.segment_sum(jnp.ones_like(best), assign, num_segments=k)
    updated = sums / jnp.maximum(counts, 1.0)[:, None]
    far = x[jnp.argsort(-best)[: min(k, x.shape[0])]]
    return _reseed_empty(updated, counts, far), assign.astype(jnp.int32), best.sum()


def kmeans(
    points: jax.Array,
    num_clusters: int,
    *,
    key: jax.Array,
    num_iters: int = 20,
    init: str | jax.Array = "kmeans++",
) -> KMeansResult:
    """Lloyd's k-means on the device.

    Args:
      points: (N, D) features.
      num_clusters: K <= N.
      key: PRNG key for the initialisation.
      num_iters: Lloyd iterations (a ``lax.fori_loop``; no early stop, so the compiled program
        has a fixed shape).
      init: ``"kmeans++"``, ``"random"`` (K distinct samples) or an explicit (K, D) array.

    Returns:
      KMeansResult with the final centroids, assignments to them and their inertia.
    """
    n = points.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"num_clusters={num_clusters}: need 1 <= K <= number of points ({n})")
    if isinstance(init, str):
        if init not in ("kmeans++", "random"):
            raise ValueError(f"init={init!r}: expected 'kmeans++', 'random' or an array")
        fn = kmeans_plus_plus if init == "kmeans++" else random_init
        centroids = fn(points, num_clusters, key)
    else:
        centroids = jnp.asarray(init, jnp.float32)
        if centroids.shape != (num_clusters, points.shape[1]):
            raise ValueError(
                f"init has shape {centroids.shape}, expected {(num_clusters, points.shape[1])}"
            )
    return _kmeans_loop(points, centroids, num_iters)


@functools.partial(jax.jit, static_argnums=2)
def _kmeans_loop(points, centroids, num_iters):
    centroids = jax.lax.fori_loop(0, num_iters, lambda _, c: lloyd_step(points, c)[0], centroids)
    d2 = squared_distances(points, centroids)
    assign = jnp.argmin(d2, axis=1).astype(jnp.int32)
    return KMeansResult(centroids, assign, jnp.take_along_axis(d2, assign[:, None], 1).sum())


class PassState(NamedTuple):
    sums: jax.Array  # (K, D)
    counts: jax.Array  # (K,)
    inertia: jax.Array  # ()
    far_points: jax.Array  # (K, D): the points farthest from their centroids seen so far
    far_d2: jax.Array  # (K,)


@jax.jit
def _accumulate(state: PassState, centroids, feats, weights) -> PassState:
    k = centroids.shape[0]
    x = feats.astype(jnp.float32)
    d2 = squared_distances(x, centroids)
    assign = jnp.argmin(d2, axis=1)
    best = jnp.take_along_axis(d2, assign[:, None], 1)[:, 0]
    w = weights.astype(jnp.float32)
    sums = state.sums + jax.ops.segment_sum(x * w[:, None], assign, num_segments=k)
    counts = state.counts + jax.ops.segment_sum(w, assign, num_segments=k)
    cand_d2 = jnp.concatenate([state.far_d2, jnp.where(w > 0, best, -1.0)])
    cand = jnp.concatenate([state.far_points, x])
    top_d2, top = jax.lax.top_k(cand_d2, k)
    return PassState(sums, counts, state.inertia + (best * w).sum(), cand[top], top_d2)


class StreamingLloyd:
    """Lloyd iterations over a stream of feature batches, one iteration per pass.

    Example::

        lloyd = StreamingLloyd(initial_centroids)
        for _ in range(3):
            for feats, weights in batches():   # (B, D) features, (B,) 0/1 weights
                lloyd.add(feats, weights)
            centroids = lloyd.finish_pass()
    """

    def __init__(self, centroids: jax.Array):
        self.centroids = jnp.asarray(centroids, jnp.float32)
        self.history: list[float] = []
        self._reset()

    def _reset(self) -> None:
        k, d = self.centroids.shape
        self._state = PassState(
            jnp.zeros((k, d)),
            jnp.zeros((k,)),
            jnp.zeros(()),
            jnp.zeros((k, d)),
            jnp.full((k,), -1.0),
        )

    def add(
        self, feats: jax.Array | np.ndarray, weights: jax.Array | np.ndarray | None = None
    ) -> None:
        if weights is None:
            weights = jnp.ones((feats.shape[0],), jnp.float32)
        self._state = _accumulate(self._state, self.centroids, feats, weights)

    def finish_pass(self) -> jax.Array:
        """Move every centroid to the mean of its members; returns the new centroids."""
        s = self._state
        updated = s.sums / jnp.maximum(s.counts, 1.0)[:, None]
        self.centroids = _reseed_empty(updated, s.counts, s.far_points)
        self.history.append(float(s.inertia))
        self._reset()
        return self.centroids


def streaming_kmeans(
    batches: Callable[[], Iterable[tuple[jax.Array, jax.Array]]],
    initial_centroids: jax.Array,
    num_passes: int,
) -> tuple[jax.Array, list[float]]:
    """Run ``num_passes`` streamed Lloyd iterations; ``batches()`` yields (features, weights).

    Returns the centroids and the inertia measured during each pass (before its update).
    """
    lloyd = StreamingLloyd(initial_centroids)
    for _ in range(num_passes):
        for feats, weights in batches():
            lloyd.add(feats, weights)
        lloyd.finish_pass()
    return lloyd.centroids, lloyd.history


def sample_indices(num_examples: int, num_clusters: int, seed: int) -> np.ndarray:
    """K distinct example indices for a random-sample initialisation, fixed by the seed."""
    if num_clusters > num_examples:
        raise ValueError(f"K={num_clusters} centroids but only {num_examples} training examples")
    return np.sort(np.random.default_rng(seed).choice(num_examples, num_clusters, replace=False))
