"""A distillation objective: the weighted sum of the parsed terms of :mod:`fsd_jax.terms`,
with the teacher (live, or its cached outputs) and the student run in one differentiable
function that :func:`fsd_jax.train.step.make_train_step` compiles into the train step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fsd_jax.models import BertConfig, BertForSequenceClassification, BertOutput, model_inputs
from fsd_jax.terms import TERMS, Context, Term, TermInit, check_terms, needs_attentions
from fsd_jax.terms.tinybert import init_projection, uses_projection

Batch = Mapping[str, jax.Array]
# teacher_outputs(teacher_params, batch) -> the teacher's outputs for the batch
TeacherOutputs = Callable[[Any, Batch], BertOutput]


def make_distill_terms(
    student: BertForSequenceClassification,
    teacher: BertForSequenceClassification,
    terms: tuple[Term, ...],
    *,
    teacher_outputs: TeacherOutputs | None = None,
) -> Callable:
    """``term_losses(params, batch, key, teacher_params, teacher_memory=None,
    teacher_memory_gram=None, *, aux=None) -> (weighted, (metrics, new_aux))``: each term's
    weighted loss (``weighted``: name → weight · value, in the order of ``terms``).

    ``params`` is ``{"student": ...}``, plus ``"memory"`` (the student memory) when a term uses
    one, plus the terms' extra tables. The teacher runs in eval mode under ``stop_gradient``;
    the student with dropout. ``teacher_outputs`` replaces the teacher's forward pass, e.g.
    :func:`fsd_jax.teacher_cache.cached_teacher`, which reads them from the batch.
    Metrics hold each term's unweighted value and the parts of composite terms
    (``fsd_g/distance``, ...); ``new_aux`` is the stateful terms' new state (``aux`` unchanged
    when no term has state). ``teacher_memory_gram`` (:func:`fsd_jax.losses.memory_gram` of
    the teacher memory) spares the step the teacher memory's Gram; without it, each step
    computes it.
    """
    check_terms(terms, teacher.config, student.config)
    if student.config.num_labels != teacher.config.num_labels:
        raise ValueError(
            f"teacher has {teacher.config.num_labels} outputs, student {student.config.num_labels}"
        )
    attentions = needs_attentions(terms)

    def live_teacher(teacher_params, batch):
        return teacher.apply(
            {"params": teacher_params}, **model_inputs(batch), output_attentions=attentions
        )

    teacher_fn = teacher_outputs or live_teacher

    def term_losses(
        params,
        batch,
        key,
        teacher_params,
        teacher_memory=None,
        teacher_memory_gram=None,
        *,
        aux=None,
    ):
        aux = aux or {}
        t_out = jax.lax.stop_gradient(teacher_fn(teacher_params, batch))
        s_out = student.apply(
            {"params": params["student"]},
            **model_inputs(batch),
            deterministic=False,
            rngs={"dropout": key},
            output_attentions=attentions,
        )
        ctx = Context(
            t_out,
            s_out,
            batch,
            teacher_memory,
            teacher_memory_gram,
            params.get("memory"),
            params,
            aux,
        )
        metrics, weighted, new_aux = {}, {}, dict(aux)
        for t in terms:
            value = TERMS[t.name].fn(ctx, t.options)
            if TERMS[t.name].init_aux is not None:
                value, state = value
                new_aux.update(state)
            if isinstance(value, dict):
                metrics.update({f"{t.name}/{k}": v for k, v in value.items() if k != "total"})
                value = value["total"]
            metrics[t.name] = value.astype(jnp.float32)
            weighted[t.name] = t.weight * metrics[t.name]
        return weighted, (metrics, new_aux)

    return term_losses


def objective_of(term_losses: Callable) -> Callable:
    """The objective ``(params, batch, key, *step_args, aux=None) -> (loss, (metrics,
    new_aux))`` of :func:`fsd_jax.train.step.make_train_step`: the sum of the weighted terms of
    ``term_losses`` (:func:`make_distill_terms`); metrics add the total as ``loss``."""

    def objective(*args, aux=None):
        weighted, (metrics, new_aux) = term_losses(*args, aux=aux)
        loss = jnp.zeros((), jnp.float32)
        for value in weighted.values():
            loss = loss + value
        return loss, ({"loss": loss, **metrics}, new_aux)

    return objective


def make_distill_objective(
    student: BertForSequenceClassification,
    teacher: BertForSequenceClassification,
    terms: tuple[Term, ...],
    *,
    teacher_outputs: TeacherOutputs | None = None,
) -> Callable:
    """``objective(params, batch, key, teacher_params, teacher_memory=None,
    teacher_memory_gram=None, *, aux=None) -> (loss, (metrics, new_aux))``: the weighted sum of
    the terms of :func:`make_distill_terms` (same arguments), ``loss`` added to the metrics."""
    return objective_of(
        make_distill_terms(student, teacher, terms, teacher_outputs=teacher_outputs)
    )


def init_objective_state(
    terms: tuple[Term, ...],
    teacher: BertConfig,
    student: BertConfig,
    seq_len: int,
    seed: int,
) -> tuple[dict, dict]:
    """Extra trainable tables (``proj``, ``gates``) and step state (``emd``) the terms need.

    W_h (``proj``) is created once and shared when a hidden-state term compares widths that
    differ, or a term sets ``projection="always"``.
    """
    key = jax.random.fold_in(jax.random.key(seed), 2)
    params: dict = {}
    aux: dict = {}
    hidden_terms = [t for t in terms if "projection" in t.options]
    if hidden_terms and uses_projection(teacher, student, [t.options for t in hidden_terms]):
        params["proj"] = init_projection(
            jax.random.fold_in(key, 0), student.hidden_size, teacher.hidden_size
        )
    for i, t in enumerate(terms, start=1):
        spec = TERMS[t.name]
        init = TermInit(teacher, student, t.options, seq_len, jax.random.fold_in(key, i))
        if spec.init_params is not None:
            params.update(spec.init_params(init))
        if spec.init_aux is not None:
            aux.update(spec.init_aux(init))
    return params, aux
