"""RKD's distance and angle terms over the batch's token features (docs/methods.md §4)."""

from __future__ import annotations

from collections.abc import Callable

import jax

from fsd_jax import losses
from fsd_jax.terms.spec import PENULTIMATE, Context, TermSpec, teacher_layer


def _tokens(ctx: Context, o: dict) -> tuple[jax.Array, jax.Array]:
    mask = ctx.token_mask(o)
    return (
        losses.flatten_tokens(ctx.teacher.hidden_states[o["teacher_layer"]], mask),
        losses.flatten_tokens(ctx.student.hidden_states[o["student_layer"]], mask),
    )


def rkd_distance(ctx: Context, o: dict) -> jax.Array:
    return losses.rkd_distance(*_tokens(ctx, o), ctx.weights)


def rkd_angle(ctx: Context, o: dict) -> jax.Array:
    return losses.rkd_angle(*_tokens(ctx, o), ctx.weights)


def _spec(fn: Callable[[Context, dict], jax.Array]) -> TermSpec:
    return TermSpec(fn, {**PENULTIMATE, "faithful": False}, teacher_layers=teacher_layer)


TERMS = {"rkd_distance": _spec(rkd_distance), "rkd_angle": _spec(rkd_angle)}
