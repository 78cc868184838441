"""Gradient balance of a distillation objective: for each weighted term and parameter group,
the norm of the term's gradient and its cosine with the task (label-loss) gradient.

A structure term whose gradient is hundreds of times the task gradient's on the lower layers
trains those layers alone under Adam; a cosine near 0 says the two pull in unrelated directions.
These numbers are what a user needs to choose the weights. The probe reruns the step's forward
pass with the step's own dropout key (one forward pass, one backward pass per term) on the steps
it is asked for, and costs nothing on the others.

Groups follow the parameter tree: ``embeddings``, ``layer_0`` … (the encoder layers as the
checkpoint names them), ``head`` (pooler and classifier) and each extra table of the objective
(``memory``, ``proj``, ``gates``) by its name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.train.step import step_keys

TASK_TERM = "ce"


def param_group(path: Sequence[str]) -> str:
    """The group of a parameter from its path in the trained tree (``("student", "bert",
    "encoder", "layer_2", ...)`` → ``"layer_2"``)."""
    if path[0] != "student":
        return str(path[0])
    if "embeddings" in path:
        return "embeddings"
    for part in path:
        if part.startswith("layer_"):
            return str(part)
    return "head"


def _leaf_groups(params: Any) -> tuple[list[str], list[int]]:
    """The sorted group names and, for each leaf of ``params`` (tree order), its group index."""
    paths = [
        tuple(getattr(k, "key", getattr(k, "name", str(k))) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    names = [param_group(p) for p in paths]
    order = sorted(set(names), key=lambda g: (g != "embeddings", g == "head", _layer_index(g), g))
    return order, [order.index(n) for n in names]


def _layer_index(group: str) -> int:
    return int(group[6:]) if group.startswith("layer_") and group[6:].isdigit() else -1


def make_gradient_balance(term_losses: Callable, params: Any, terms: Sequence[str]) -> Callable:
    """``balance(state, batch, *step_args) -> {"sq": (T, G), "dot": (T, G)}``: per term (in
    ``terms`` order) and group (:func:`groups_of`), the squared norm of the weighted term's
    gradient and its inner product with the task term's (``ce``; zeros without one).

    ``term_losses`` is :func:`fsd_jax.objective.make_distill_terms`'s function and ``params``
    the trained tree (for its structure). Pure; jit it like the train step. The dropout key is
    the one the train step draws from the same state, so the gradients are that step's.
    """
    _, leaf_group = _leaf_groups(params)
    n_groups = max(leaf_group) + 1
    task = terms.index(TASK_TERM) if TASK_TERM in terms else None

    def per_group(a: Any, b: Any) -> jax.Array:
        sums = [
            jnp.vdot(x.astype(jnp.float32), y.astype(jnp.float32))
            for x, y in zip(a, b, strict=True)
        ]
        out = jnp.zeros((n_groups,), jnp.float32)
        return out.at[jnp.asarray(leaf_group)].add(jnp.stack(sums))

    def balance(state, batch, *step_args):
        _, key = step_keys(state)

        def weighted(p):
            values, _ = term_losses(p, batch, key, *step_args, aux=state.aux)
            return jnp.stack([values[n] for n in terms])

        _, vjp = jax.vjp(weighted, state.params)
        basis = jnp.eye(len(terms), dtype=jnp.float32)
        grads = [jax.tree.leaves(vjp(basis[i])[0]) for i in range(len(terms))]
        sq = jnp.stack([per_group(g, g) for g in grads])
        if task is None:
            return {"sq": sq, "dot": jnp.zeros_like(sq)}
        dot = jnp.stack([per_group(g, grads[task]) for g in grads])
        return {"sq": sq, "dot": dot}

    return balance


def groups_of(params: Any) -> list[str]:
    """The group names of the ``(T, G)`` arrays of :func:`make_gradient_balance`, in order."""
    return _leaf_groups(params)[0]


def balance_metrics(
    raw: Mapping[str, Any], terms: Sequence[str], groups: Sequence[str]
) -> dict[str, float]:
    """Scalars to log from one probe: ``{term}/norm/{group}`` and ``{term}/norm`` (all groups),
    ``{term}/cos/{group}`` and ``{term}/cos`` with the task gradient, and ``{term}/ratio/…``,
    the norm over the task gradient's, where both gradients are non-zero (a term that cannot
    reach a group, or a run without ``ce``, has neither)."""
    sq = np.asarray(raw["sq"], np.float64)
    dot = np.asarray(raw["dot"], np.float64)
    task = list(terms).index(TASK_TERM) if TASK_TERM in terms else None
    out: dict[str, float] = {}
    for i, term in enumerate(terms):
        cols = [
            (g, sq[i, j], dot[i, j], sq[task, j] if task is not None else 0.0)
            for j, g in enumerate(groups)
        ]
        cols.append(("", sq[i].sum(), dot[i].sum(), sq[task].sum() if task is not None else 0.0))
        for group, s, d, s_task in cols:
            suffix = f"/{group}" if group else ""
            out[f"{term}/norm{suffix}"] = float(np.sqrt(s))
            if s > 0 and s_task > 0:
                out[f"{term}/cos{suffix}"] = float(d / np.sqrt(s * s_task))
                out[f"{term}/ratio{suffix}"] = float(np.sqrt(s / s_task))
    return out


def summarise(probes: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, Any]:
    """``results.json``'s summary: the probed steps and, per logged scalar, its median over
    them (the early steps, where the terms' scales differ most, count as much as the late)."""
    keys = sorted({k for _, m in probes for k in m})
    return {
        "steps": [s for s, _ in probes],
        "median": {k: float(np.median([m[k] for _, m in probes if k in m])) for k in keys},
    }


def read_probes(metrics_jsonl: str | Path, last_step: int) -> list[tuple[int, dict[str, float]]]:
    """The probes a workdir's ``metrics.jsonl`` holds up to ``last_step``, across resumes (a
    step probed again after a resume counts once, with its latest values)."""
    found: dict[int, dict[str, float]] = {}
    path = Path(metrics_jsonl)
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        values = {
            k[len("balance/") :]: v
            for k, v in row.items()
            if k.startswith("balance/") and v is not None
        }
        if values and row["step"] <= last_step:
            found[int(row["step"])] = values
    return sorted(found.items())


@dataclasses.dataclass(frozen=True)
class GradientBalance:
    """What a stage hands the training loop to probe the gradient balance every ``every`` steps:
    the per-term losses (:func:`fsd_jax.objective.make_distill_terms`) and the term names."""

    term_losses: Callable
    terms: tuple[str, ...]
    every: int

    def probe(self, sharder: Any, state: Any, step_args: tuple) -> Callable:
        """``probe(state, numpy_batch, *step_args) -> scalars`` of :func:`balance_metrics`,
        jitted on ``sharder``'s mesh like the train step."""
        raw = sharder.jit_probe(
            make_gradient_balance(self.term_losses, state.params, self.terms), state, step_args
        )
        groups = groups_of(state.params)
        return lambda *args: balance_metrics(jax.device_get(raw(*args)), self.terms, groups)
