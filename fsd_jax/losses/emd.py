"""BERT-EMD: many-to-many layer mapping by Earth Mover's Distance (docs/methods.md §7).

Li et al., "BERT-EMD: Many-to-Many Layer Mapping for BERT Compression with Earth Mover's
Distance", EMNLP 2020.

The transport problem between N_s student and N_t teacher layers is tiny (≤ 12×24), so it is
solved exactly on the host (transportation simplex in float64, called from the compiled step
through ``jax.pure_callback``); the flow is a constant for differentiation, as in the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

WEIGHT_UPDATES = ("inverse_norm", "softmax")


def transport_simplex(
    cost: np.ndarray, supply: np.ndarray, demand: np.ndarray, *, max_iters: int = 10_000
) -> np.ndarray:
    """Exact balanced transport: ``argmin_F Σ F_ij c_ij`` s.t. rows sum to ``supply``, columns
    to ``demand``, F ≥ 0 (NumPy float64; the MODI / u–v transportation simplex).

    Starts from the north-west corner basis (m + n − 1 cells, a spanning tree of the row/column
    graph, degenerate zeros included), then pivots on the most negative reduced cost until none
    is below −1e-12 (relative to the largest cost).

    Raises:
      ValueError if the shapes disagree, a mass is negative, or the totals differ.
    """
    c = np.asarray(cost, np.float64)
    a = np.asarray(supply, np.float64).copy()
    b = np.asarray(demand, np.float64).copy()
    m, n = c.shape if c.ndim == 2 else (0, 0)
    if c.ndim != 2 or a.shape != (m,) or b.shape != (n,) or m == 0 or n == 0:
        raise ValueError(
            f"transport: cost {c.shape}, supply {a.shape}, demand {b.shape}: expected "
            "(m, n), (m,), (n,) with m, n >= 1"
        )
    if (a < 0).any() or (b < 0).any():
        raise ValueError("transport: supply and demand must be non-negative")
    if not np.isclose(a.sum(), b.sum(), rtol=1e-6, atol=1e-12):
        raise ValueError(f"transport: total supply {a.sum()} != total demand {b.sum()}")
    if not np.isfinite(c).all():
        raise ValueError("transport: the cost matrix has non-finite entries")
    b *= a.sum() / b.sum() if b.sum() > 0 else 1.0
    flow = np.zeros((m, n))
    basis: set[tuple[int, int]] = set()
    i = j = 0
    while i < m and j < n:  # north-west corner
        x = min(a[i], b[j])
        flow[i, j] = x
        basis.add((i, j))
        a[i] -= x
        b[j] -= x
        if j == n - 1:
            i += 1
        elif i == m - 1 or a[i] > b[j]:
            j += 1
        else:
            i += 1
    tol = 1e-12 * max(1.0, np.abs(c).max())
    for _ in range(max_iters):
        u, v = _potentials(c, basis, m, n)
        reduced = c - u[:, None] - v[None, :]
        for cell in basis:
            reduced[cell] = 0.0
        ei, ej = np.unravel_index(np.argmin(reduced), reduced.shape)
        if reduced[ei, ej] >= -tol:
            return flow
        cycle = _cycle(basis, (int(ei), int(ej)), m)
        minus = cycle[1::2]
        leave = min(minus, key=lambda cell: flow[cell])
        theta = flow[leave]
        for k, cell in enumerate(cycle):
            flow[cell] += theta if k % 2 == 0 else -theta
        flow[leave] = 0.0
        basis.remove(leave)
        basis.add((int(ei), int(ej)))
    raise RuntimeError(f"transport simplex did not converge in {max_iters} pivots")


def _potentials(
    c: np.ndarray, basis: set[tuple[int, int]], m: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """u, v with u_i + v_j = c_ij on the basis tree (u_0 = 0)."""
    u, v = np.full(m, np.nan), np.full(n, np.nan)
    u[0] = 0.0
    rows: dict[int, list[int]] = {}
    cols: dict[int, list[int]] = {}
    for i, j in basis:
        rows.setdefault(i, []).append(j)
        cols.setdefault(j, []).append(i)
    stack = [("r", 0)]
    while stack:
        kind, k = stack.pop()
        if kind == "r":
            for j in rows.get(k, []):
                if np.isnan(v[j]):
                    v[j] = c[k, j] - u[k]
                    stack.append(("c", j))
        else:
            for i in cols.get(k, []):
                if np.isnan(u[i]):
                    u[i] = c[i, k] - v[k]
                    stack.append(("r", i))
    return u, v


def _cycle(basis: set[tuple[int, int]], enter: tuple[int, int], m: int) -> list[tuple[int, int]]:
    """Cells of the cycle that ``enter`` closes in the basis tree, starting with ``enter``.

    Nodes are rows 0..m−1 and columns m..m+n−1; the tree path from column j back to row i,
    prepended with the entering cell, alternates +, −, +, ... around the cycle.
    """
    ei, ej = enter
    adj: dict[int, list[int]] = {}
    for i, j in basis:
        adj.setdefault(i, []).append(m + j)
        adj.setdefault(m + j, []).append(i)
    parent = {m + ej: -1}
    queue = [m + ej]
    while queue:
        node = queue.pop(0)
        if node == ei:
            break
        for nxt in adj.get(node, []):
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    path = []
    node = ei
    while parent[node] != -1:
        prev = parent[node]
        path.append((node, prev - m) if node < m else (prev, node - m))
        node = prev
    # path runs row i → ... → column j; the cycle visits enter, then column j's side first
    return [enter, *reversed(path)]


def emd_flow(cost: jax.Array, supply: jax.Array, demand: jax.Array) -> jax.Array:
    """The optimal transport flow F (N_s, N_t) for ``cost`` between layer weights.

    Exact (see :func:`transport_simplex`); callable eagerly and inside ``jit`` (a host
    callback). The flow carries no gradient: BERT-EMD treats it as a constant and
    differentiates ``Σ F_ij D_ij`` through the cost D only. ``demand`` is rescaled to the total
    of ``supply`` to absorb float32 rounding.
    """
    cost = jax.lax.stop_gradient(jnp.asarray(cost, jnp.float32))
    supply = jax.lax.stop_gradient(jnp.asarray(supply, jnp.float32))
    demand = jax.lax.stop_gradient(jnp.asarray(demand, jnp.float32))

    def solve(c, a, b):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        b = b * (a.sum() / b.sum()) if b.sum() > 0 else b
        return transport_simplex(np.asarray(c), a, b).astype(np.float32)

    return jax.pure_callback(
        solve,
        jax.ShapeDtypeStruct(cost.shape, jnp.float32),
        cost,
        supply,
        demand,
        vmap_method="sequential",
    )


def update_layer_weights(
    flow: jax.Array,
    cost: jax.Array,
    student_weights: jax.Array,
    teacher_weights: jax.Array,
    *,
    rule: str = "inverse_norm",
    temperature: float = 1.0,
    add_softmax: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """BERT-EMD's cost attention: new (student, teacher) layer weights from the paid costs.

    c_i = Σ_j F_ij D_ij is the cost student layer i paid, x_i = c_i / w_i its cost per unit
    weight (columns likewise for the teacher). ``inverse_norm`` (the current reference code):
    w_i ∝ 1 / x_i, and a layer with x_i = 0 gets weight 0. ``softmax`` (the original release
    and the paper): w = softmax((Σ_k x_k / x_i) / T_emd), followed by a plain softmax when
    ``add_softmax``. If every cost is zero the weights stay as they were.
    """
    if rule not in WEIGHT_UPDATES:
        raise ValueError(f"EMD weight update {rule!r}: expected one of {WEIGHT_UPDATES}")
    paid = jax.lax.stop_gradient(flow * cost).astype(jnp.float32)

    def new(costs: jax.Array, old: jax.Array) -> jax.Array:
        x = costs / jnp.maximum(old, 1e-30)
        positive = x > 0
        if rule == "inverse_norm":
            inv = jnp.where(positive, 1.0 / jnp.where(positive, x, 1.0), 0.0)
            w = inv / jnp.maximum(inv.sum(), 1e-30)
        else:
            ratio = x.sum() / jnp.maximum(x, 1e-30)
            w = jax.nn.softmax(ratio / temperature)
            if add_softmax:
                w = jax.nn.softmax(w)
        return jnp.where(positive.any(), w, old)

    return new(paid.sum(1), student_weights), new(paid.sum(0), teacher_weights)
