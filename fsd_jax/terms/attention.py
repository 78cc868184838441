"""MiniLM's attention-distribution and value-relation term (docs/methods.md §5)."""

from __future__ import annotations

import jax

from fsd_jax import losses
from fsd_jax.terms.spec import Context, TermSpec, attentions, same_heads


def minilm(ctx: Context, o: dict) -> jax.Array:
    t, s = attentions(ctx)
    i, j = o["teacher_layer"], o["student_layer"]
    return losses.minilm(
        t.scores[i],
        s.scores[j],
        t.values[i],
        s.values[j],
        ctx.token_mask(o),  # the FSD repository's inputs: every query row, unmasked values
        ctx.weights,
    )


TERMS = {
    "minilm": TermSpec(
        minilm,
        {"teacher_layer": -1, "student_layer": -1, "faithful": False},
        needs_attentions=True,
        check=same_heads,
    )
}
