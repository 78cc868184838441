"""Terms on the logits: the label loss and Hinton et al.'s KD (VKD, docs/methods.md §1)."""

from __future__ import annotations

import jax

from fsd_jax import losses
from fsd_jax.terms.spec import Context, TermSpec, no_layers


def ce(ctx: Context, o: dict) -> jax.Array:
    return losses.label_loss(ctx.student.logits, ctx.batch["labels"], ctx.weights)


def kd(ctx: Context, o: dict) -> jax.Array:
    # faithful: the FSD code's KD (0 on a regression head)
    fn = losses.kd_reference if o["faithful"] else losses.kd
    return fn(ctx.student.logits, ctx.teacher.logits, o["temperature"], ctx.weights)


TERMS = {
    "ce": TermSpec(ce, {}, needs_teacher=False, teacher_layers=no_layers),
    "kd": TermSpec(kd, {"temperature": 1.0, "faithful": False}, teacher_layers=no_layers),
}
