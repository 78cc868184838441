"""TinyBERT's terms (and the study's variants of them): attention, hidden states, embeddings and
predictions, with a configurable layer mapping (Jiao et al. 2020, docs/methods.md §6).

W_h (``proj``: student width → teacher width) lives beside the student in the trained tree,
is shared by every hidden-state comparison (as in the TinyBERT and BERT-EMD code) and is left
out of the export.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fsd_jax import losses
from fsd_jax.mapping import layer_mapping
from fsd_jax.models import BertConfig
from fsd_jax.terms.spec import Context, TermSpec, attentions, block_mean, same_heads

ATTENTION_LOSSES = ("mse_scores", "kl_probs", "mse_probs")
HIDDEN_LOSSES = ("mse", "cosine")


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


def project(ctx: Context, h: jax.Array) -> jax.Array:
    """A student hidden state through W_h when the objective has one."""
    proj = ctx.params.get("proj")
    h = h.astype(jnp.float32)
    return h if proj is None else h @ proj["kernel"] + proj["bias"]


def _mapping(o: dict, n_teacher: int, n_student: int) -> Any:
    return layer_mapping(
        o["mapping"], n_teacher, n_student, seed=o["seed"], layers=o["layers"] or None
    )


def _attention_pair_loss(kind: str, t_att, s_att, ti, si, ctx: Context, o: dict):
    """One layer pair's attention loss; ``ti`` a teacher block, ``si`` a 0-based student index."""
    mask = ctx.token_mask(o)
    if kind == "mse_probs":
        return losses.attention_probs_mse(
            block_mean(t_att.probs, ti, 1), s_att.probs[si], mask, ctx.weights
        )
    t_scores = block_mean(t_att.scores, ti, 1)
    if kind == "kl_probs":
        return losses.attention_kl(t_scores, s_att.scores[si], mask, ctx.weights)
    return losses.attention_scores_mse(t_scores, s_att.scores[si], mask, ctx.weights)


def tiny_attention(ctx: Context, o: dict) -> jax.Array:
    """Σ over mapped layers of the attention loss (TinyBERT L_attn or a study variant)."""
    t, s = attentions(ctx)
    pairs = _mapping(o, len(t.scores), len(s.scores))
    return sum(_attention_pair_loss(o["loss"], t, s, block, m - 1, ctx, o) for m, block in pairs)


def _hidden_pair_loss(kind: str, t: jax.Array, s: jax.Array, ctx: Context, o: dict):
    fn = losses.hidden_mse if kind == "mse" else losses.hidden_cosine
    return fn(t, project(ctx, s), ctx.token_mask(o), ctx.weights)


def tiny_hidden(ctx: Context, o: dict) -> jax.Array:
    """Σ over mapped layers of MSE(H_s·W_h, H_t) (or the cosine variant)."""
    th, sh = ctx.teacher.hidden_states, ctx.student.hidden_states
    pairs = _mapping(o, len(th) - 1, len(sh) - 1)
    return sum(
        _hidden_pair_loss(o["loss"], block_mean(th, block, 0), sh[m], ctx, o) for m, block in pairs
    )


def tiny_embedding(ctx: Context, o: dict) -> jax.Array:
    """MSE(E_s·W_h, E_t) on the embedding outputs (hidden state 0)."""
    return _hidden_pair_loss(
        o["loss"], ctx.teacher.hidden_states[0], ctx.student.hidden_states[0], ctx, o
    )


def tiny_prediction(ctx: Context, o: dict) -> jax.Array:
    """TinyBERT's soft cross-entropy to the teacher's predictions."""
    args = (ctx.student.logits, ctx.teacher.logits, o["temperature"], ctx.weights)
    if o["faithful"]:
        return losses.soft_cross_entropy_reference(*args, labels=ctx.batch["labels"])
    return losses.soft_cross_entropy(*args)


def check_mapping(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    try:
        layer_mapping(
            o["mapping"],
            teacher.num_hidden_layers,
            student.num_hidden_layers,
            seed=o["seed"],
            layers=o.get("layers") or None,
        )
    except ValueError as e:
        raise ValueError(f"objective.{name}.mapping: {e}") from None


def check_projection(name: str, o: dict) -> None:
    if o["projection"] not in ("auto", "always"):
        raise ValueError(
            f"objective.{name}.projection={o['projection']!r}: expected auto or always"
        )


def _check_att(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    check_mapping(name, o, teacher, student)
    if o["loss"] not in ATTENTION_LOSSES:
        raise ValueError(f"objective.{name}.loss={o['loss']!r}: expected one of {ATTENTION_LOSSES}")
    same_heads(name, o, teacher, student)


def _check_hidden(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    if "mapping" in o:
        check_mapping(name, o, teacher, student)
    if o["loss"] not in HIDDEN_LOSSES:
        raise ValueError(f"objective.{name}.loss={o['loss']!r}: expected one of {HIDDEN_LOSSES}")
    check_projection(name, o)


MAPPING = {"mapping": "uniform", "layers": "", "seed": 0}
TERMS = {
    "tiny_att": TermSpec(
        tiny_attention,
        {**MAPPING, "loss": "mse_scores", "faithful": False},
        needs_attentions=True,
        check=_check_att,
    ),
    "tiny_hidden": TermSpec(
        tiny_hidden,
        {**MAPPING, "loss": "mse", "projection": "auto", "faithful": False},
        check=_check_hidden,
    ),
    "tiny_emb": TermSpec(
        tiny_embedding,
        {"loss": "mse", "projection": "auto", "faithful": False},
        check=_check_hidden,
    ),
    "tiny_pred": TermSpec(tiny_prediction, {"temperature": 1.0, "faithful": False}),
}
