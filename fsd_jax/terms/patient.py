"""PKD's patient term: normalised [CLS] states of mapped layers (docs/methods.md §3)."""

from __future__ import annotations

import jax

from fsd_jax import losses
from fsd_jax.models import BertConfig
from fsd_jax.terms.spec import Context, TermSpec, same_width


def pkd(ctx: Context, o: dict) -> jax.Array:
    n_t = len(ctx.teacher.hidden_states) - 1
    n_s = len(ctx.student.hidden_states) - 1
    layers = losses.pkd_teacher_layers(n_t, n_s, o["mapping"])
    return losses.pkd(
        [ctx.teacher.hidden_states[g] for g in layers],
        [ctx.student.hidden_states[j] for j in range(1, n_s)],
        ctx.mask,
        ctx.weights,
        normalize=o["normalize"],
        full_sequence=o["full_sequence"],
    )


def _layers(o: dict, n_t: int, n_s: int) -> tuple[int, ...]:
    return losses.pkd_teacher_layers(n_t, n_s, o["mapping"])


def _check(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    losses.pkd_teacher_layers(teacher.num_hidden_layers, student.num_hidden_layers, o["mapping"])
    same_width(name, teacher, student, "PKD")


TERMS = {
    "pkd": TermSpec(
        pkd,
        {"mapping": "skip", "normalize": True, "full_sequence": False},
        teacher_layers=_layers,
        check=_check,
    )
}
