"""LAD's term: the student's layers against gated aggregates of the teacher's layers, the gates
trained with the student (Lin et al. 2022, docs/methods.md §8)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsd_jax import losses
from fsd_jax.mapping import layer_mapping
from fsd_jax.models import BertConfig
from fsd_jax.terms.spec import Context, TermInit, TermSpec, block_mean, same_width
from fsd_jax.terms.tinybert import check_mapping


def lad(ctx: Context, o: dict) -> jax.Array:
    """(1/N_s) Σ_i MSE(H_s^i, A_{g(i)}) with A the gated teacher aggregates (trains the gates)."""
    agg = losses.lad_aggregate(
        ctx.params["gates"],
        ctx.teacher.hidden_states[1:],
        ctx.token_mask(o),
        reverse=o["reverse"],
    )
    sh = ctx.student.hidden_states
    pairs = layer_mapping(o["mapping"], len(agg), len(sh) - 1, seed=o["seed"])
    total = sum(
        losses.hidden_mse(block_mean(agg, block, 1), sh[m], ctx.token_mask(o), ctx.weights)
        for m, block in pairs
    )
    return jnp.asarray(total) / len(pairs)


def init_lad(init: TermInit) -> dict:
    return {
        "gates": losses.init_lad_gates(
            init.key, init.teacher.num_hidden_layers, init.teacher.hidden_size, init.seq_len
        )
    }


def _check(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    check_mapping(name, o, teacher, student)
    same_width(name, teacher, student, "LAD")


TERMS = {
    "lad": TermSpec(
        lad,
        {"mapping": "uniform", "seed": 0, "reverse": False, "faithful": False},
        init_params=init_lad,
        check=_check,
    )
}
