"""Objective terms of the intermediate-layer family: TinyBERT (and its study variants),
BERT-EMD and LAD (METHODS.md §6–§8). Registered into ``fsd_jax.objective.TERMS``.

Extra trainable tables live beside the student in the trained tree and are left out of the
export: ``proj`` (W_h: student width → teacher width, shared by every hidden-state comparison,
as in the TinyBERT and BERT-EMD code) and ``gates`` (LAD). BERT-EMD's layer weights are
non-trainable state (``aux["emd"]``) that the step updates.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from fsd_jax import losses
from fsd_jax.losses import emd as emd_lib
from fsd_jax.losses import intermediate as inter
from fsd_jax.losses.lad import init_lad_gates, lad_aggregate
from fsd_jax.mapping import layer_mapping

if TYPE_CHECKING:
    from fsd_jax.models import BertConfig
    from fsd_jax.objective import Context

ATTENTION_LOSSES = ("mse_scores", "kl_probs", "mse_probs")
HIDDEN_LOSSES = ("mse", "cosine")


@dataclasses.dataclass(frozen=True)
class TermInit:
    """What a term needs to create its extra parameters or state."""

    teacher: BertConfig
    student: BertConfig
    options: dict
    seq_len: int
    key: jax.Array


def uses_projection(teacher: BertConfig, student: BertConfig, all_options: list[dict]) -> bool:
    """W_h exists when the widths differ or a term asks for it (``projection="always"``)."""
    return teacher.hidden_size != student.hidden_size or any(
        o.get("projection") == "always" for o in all_options
    )


def init_projection(key: jax.Array, student_width: int, teacher_width: int) -> dict:
    """W_h with BERT's initialisation: kernel Normal(0, 0.02), zero bias."""
    return {
        "kernel": 0.02 * jax.random.normal(key, (student_width, teacher_width), jnp.float32),
        "bias": jnp.zeros((teacher_width,), jnp.float32),
    }


def _project(ctx: Context, h: jax.Array) -> jax.Array:
    proj = ctx.params.get("proj")
    h = h.astype(jnp.float32)
    return h if proj is None else h @ proj["kernel"] + proj["bias"]


def _mapping(o: dict, n_teacher: int, n_student: int):
    return layer_mapping(
        o["mapping"], n_teacher, n_student, seed=o["seed"], layers=o["layers"] or None
    )


def _block_mean(tensors: Any, block: tuple[int, ...], offset: int) -> jax.Array:
    """Mean of ``tensors[j - offset]`` over the 1-based teacher layers j of ``block``."""
    if len(block) == 1:
        return tensors[block[0] - offset]
    return sum(tensors[j - offset].astype(jnp.float32) for j in block) / len(block)


def _attention_pair_loss(kind: str, t_att, s_att, ti, si, ctx: Context, faithful: bool):
    """One layer pair's attention loss; ``ti`` a teacher block, ``si`` a 0-based student index."""
    if kind == "mse_probs":
        return inter.attention_probs_mse(
            _block_mean(t_att.probs, ti, 1),
            s_att.probs[si],
            ctx.mask,
            ctx.weights,
            faithful=faithful,
        )
    t_scores = _block_mean(t_att.scores, ti, 1)
    if kind == "kl_probs":
        return losses.attention_kl(
            t_scores, s_att.scores[si], None if faithful else ctx.mask, ctx.weights
        )
    return inter.attention_scores_mse(
        t_scores, s_att.scores[si], ctx.mask, ctx.weights, faithful=faithful
    )


def tiny_attention(ctx: Context, o: dict) -> jax.Array:
    """Σ over mapped layers of the attention loss (TinyBERT L_attn or a study variant)."""
    t, s = ctx.teacher.attentions, ctx.student.attentions
    pairs = _mapping(o, len(t.scores), len(s.scores))
    return sum(
        _attention_pair_loss(o["loss"], t, s, block, m - 1, ctx, o["faithful"])
        for m, block in pairs
    )


def _hidden_pair_loss(kind: str, t: jax.Array, s: jax.Array, ctx: Context, faithful: bool):
    fn = inter.hidden_mse if kind == "mse" else inter.hidden_cosine
    return fn(t, _project(ctx, s), ctx.mask, ctx.weights, faithful=faithful)


def tiny_hidden(ctx: Context, o: dict) -> jax.Array:
    """Σ over mapped layers of MSE(H_s·W_h, H_t) (or the cosine variant)."""
    th, sh = ctx.teacher.hidden_states, ctx.student.hidden_states
    pairs = _mapping(o, len(th) - 1, len(sh) - 1)
    return sum(
        _hidden_pair_loss(o["loss"], _block_mean(th, block, 0), sh[m], ctx, o["faithful"])
        for m, block in pairs
    )


def tiny_embedding(ctx: Context, o: dict) -> jax.Array:
    """MSE(E_s·W_h, E_t) on the embedding outputs (hidden state 0)."""
    return _hidden_pair_loss(
        o["loss"], ctx.teacher.hidden_states[0], ctx.student.hidden_states[0], ctx, o["faithful"]
    )


def tiny_prediction(ctx: Context, o: dict) -> jax.Array:
    """TinyBERT's soft cross-entropy to the teacher's predictions."""
    return inter.soft_cross_entropy(
        ctx.student.logits,
        ctx.teacher.logits,
        o["temperature"],
        ctx.weights,
        labels=ctx.batch["labels"],
        faithful=o["faithful"],
    )


def emd_costs(ctx: Context, faithful: bool) -> tuple[jax.Array, jax.Array]:
    """BERT-EMD's cost matrices D^A and D^H (N_s × N_t), differentiable in the student."""
    t, s = ctx.teacher, ctx.student
    att = jnp.stack(
        [
            jnp.stack(
                [
                    inter.attention_scores_mse(ts, ss, ctx.mask, ctx.weights, faithful=faithful)
                    for ts in t.attentions.scores
                ]
            )
            for ss in s.attentions.scores
        ]
    )
    rep = jnp.stack(
        [
            jnp.stack(
                [
                    inter.hidden_mse(
                        th, _project(ctx, sh), ctx.mask, ctx.weights, faithful=faithful
                    )
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
    att_cost, rep_cost = emd_costs(ctx, o["faithful"])
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


def lad(ctx: Context, o: dict) -> jax.Array:
    """(1/N_s) Σ_i MSE(H_s^i, A_{g(i)}) with A the gated teacher aggregates (trains the gates)."""
    agg = lad_aggregate(
        ctx.params["gates"],
        ctx.teacher.hidden_states[1:],
        ctx.mask,
        reverse=o["reverse"],
        faithful=o["faithful"],
    )
    sh = ctx.student.hidden_states
    pairs = layer_mapping(o["mapping"], len(agg), len(sh) - 1, seed=o["seed"])
    total = sum(
        inter.hidden_mse(
            _block_mean(agg, block, 1), sh[m], ctx.mask, ctx.weights, faithful=o["faithful"]
        )
        for m, block in pairs
    )
    return total / len(pairs)


def init_lad(init: TermInit) -> dict:
    return {
        "gates": init_lad_gates(
            init.key, init.teacher.num_hidden_layers, init.teacher.hidden_size, init.seq_len
        )
    }


def check(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    """Validate a term's options against the two models (one-line errors naming the option)."""
    n_t, n_s = teacher.num_hidden_layers, student.num_hidden_layers
    if "mapping" in o:
        try:
            layer_mapping(o["mapping"], n_t, n_s, seed=o["seed"], layers=o.get("layers") or None)
        except ValueError as e:
            raise ValueError(f"objective.{name}.mapping: {e}") from None
    if name == "tiny_att" and o["loss"] not in ATTENTION_LOSSES:
        raise ValueError(
            f"objective.tiny_att.loss={o['loss']!r}: expected one of {ATTENTION_LOSSES}"
        )
    if name in ("tiny_hidden", "tiny_emb") and o["loss"] not in HIDDEN_LOSSES:
        raise ValueError(f"objective.{name}.loss={o['loss']!r}: expected one of {HIDDEN_LOSSES}")
    if "projection" in o and o["projection"] not in ("auto", "always"):
        raise ValueError(
            f"objective.{name}.projection={o['projection']!r}: expected auto or always"
        )
    if name in ("tiny_att", "emd") and teacher.num_attention_heads != student.num_attention_heads:
        raise ValueError(
            f"objective.{name}: teacher has {teacher.num_attention_heads} attention heads, "
            f"student {student.num_attention_heads}; attention losses need equal counts"
        )
    if name == "emd" and o["weight_update"] not in emd_lib.WEIGHT_UPDATES:
        raise ValueError(
            f"objective.emd.weight_update={o['weight_update']!r}: expected one of "
            f"{emd_lib.WEIGHT_UPDATES}"
        )
    if name == "lad" and teacher.hidden_size != student.hidden_size:
        raise ValueError(
            f"objective.lad: teacher width {teacher.hidden_size} != student width "
            f"{student.hidden_size} (LAD has no projection)"
        )


_MAP = {"mapping": "uniform", "layers": "", "seed": 0}
# name: (fn, defaults, needs_attentions, init_params, init_aux)
SPECS: dict[str, tuple] = {
    "tiny_att": (
        tiny_attention,
        {**_MAP, "loss": "mse_scores", "faithful": False},
        True,
        None,
        None,
    ),
    "tiny_hidden": (
        tiny_hidden,
        {**_MAP, "loss": "mse", "projection": "auto", "faithful": False},
        False,
        None,
        None,
    ),
    "tiny_emb": (
        tiny_embedding,
        {"loss": "mse", "projection": "auto", "faithful": False},
        False,
        None,
        None,
    ),
    "tiny_pred": (tiny_prediction, {"temperature": 1.0, "faithful": False}, False, None, None),
    "emd": (
        bert_emd,
        {
            "weight_update": "inverse_norm",
            "temperature": 1.0,
            "add_softmax": False,
            "separate": False,
            "projection": "auto",
            "faithful": False,
        },
        True,
        None,
        init_emd_weights,
    ),
    "lad": (
        lad,
        {"mapping": "uniform", "seed": 0, "reverse": False, "faithful": False},
        False,
        init_lad,
        None,
    ),
}
