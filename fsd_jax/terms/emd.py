"""BERT-EMD's many-to-many layer term: EMD flows over attention and hidden-state costs, with
the cost-attention update of the layer weights as step state (Li et al. 2020, docs/methods.md §7)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsd_jax import losses
from fsd_jax.losses import emd as emd_lib
from fsd_jax.models import BertConfig
from fsd_jax.terms.spec import Context, TermInit, TermSpec, attentions, same_heads
from fsd_jax.terms.tinybert import check_projection, project


def emd_costs(ctx: Context, o: dict) -> tuple[jax.Array, jax.Array]:
    """BERT-EMD's cost matrices D^A and D^H (N_s × N_t), differentiable in the student."""
    (t_att, s_att), t, s = attentions(ctx), ctx.teacher, ctx.student
    mask = ctx.token_mask(o)
    att = jnp.stack(
        [
            jnp.stack(
                [losses.attention_scores_mse(ts, ss, mask, ctx.weights) for ts in t_att.scores]
            )
            for ss in s_att.scores
        ]
    )
    rep = jnp.stack(
        [
            jnp.stack(
                [
                    losses.hidden_mse(th, project(ctx, sh), mask, ctx.weights)
                    for th in t.hidden_states[1:]
                ]
            )
            for sh in s.hidden_states[1:]
        ]
    )
    return att, rep


def bert_emd(ctx: Context, o: dict) -> tuple[dict, dict]:
    """L_att + L_rep = Σ F^A ∘ D^A + Σ F^H ∘ D^H, then the cost-attention weight update."""
    w = ctx.aux["emd"]
    att_cost, rep_cost = emd_costs(ctx, o)
    att_flow = emd_lib.emd_flow(att_cost, w["att_student"], w["att_teacher"])
    rep_flow = emd_lib.emd_flow(rep_cost, w["rep_student"], w["rep_teacher"])
    l_att = (att_flow * att_cost).sum()
    l_rep = (rep_flow * rep_cost).sum()
    rule = {k: o[k] for k in ("temperature", "add_softmax")} | {"rule": o["weight_update"]}
    att_s, att_t = emd_lib.update_layer_weights(
        att_flow, att_cost, w["att_student"], w["att_teacher"], **rule
    )
    rep_s, rep_t = emd_lib.update_layer_weights(
        rep_flow, rep_cost, w["rep_student"], w["rep_teacher"], **rule
    )
    if not o["separate"]:
        att_s = rep_s = (att_s + rep_s) / 2
        att_t = rep_t = (att_t + rep_t) / 2
    new = {"att_student": att_s, "att_teacher": att_t, "rep_student": rep_s, "rep_teacher": rep_t}
    return {"total": l_att + l_rep, "att": l_att, "rep": l_rep}, {"emd": new}


def init_emd_weights(init: TermInit) -> dict:
    """Uniform layer weights, one buffer per vector (the step donates them)."""
    n_s, n_t = init.student.num_hidden_layers, init.teacher.num_hidden_layers

    def uniform(n: int) -> jax.Array:
        return jnp.full((n,), 1.0 / n, jnp.float32)

    return {
        "emd": {
            "att_student": uniform(n_s),
            "att_teacher": uniform(n_t),
            "rep_student": uniform(n_s),
            "rep_teacher": uniform(n_t),
        }
    }


def _check(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    check_projection(name, o)
    same_heads(name, o, teacher, student)
    if o["weight_update"] not in emd_lib.WEIGHT_UPDATES:
        raise ValueError(
            f"objective.{name}.weight_update={o['weight_update']!r}: expected one of "
            f"{emd_lib.WEIGHT_UPDATES}"
        )


TERMS = {
    "emd": TermSpec(
        bert_emd,
        {
            "weight_update": "inverse_norm",
            "temperature": 1.0,
            "add_softmax": False,
            "separate": False,
            "projection": "auto",
            "faithful": False,
        },
        needs_attentions=True,
        init_aux=init_emd_weights,
        check=_check,
    )
}
