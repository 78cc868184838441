"""The FSD terms: intra-feature, local inter-feature and global inter-feature structure
(Jung et al., "Feature Structure Distillation with Centered Kernel Alignment in BERT
Transferring", docs/methods.md §2)."""

from __future__ import annotations

import jax

from fsd_jax import losses
from fsd_jax.terms.spec import PENULTIMATE, Context, TermSpec, teacher_layer


def _pair(ctx: Context, o: dict) -> tuple[jax.Array, jax.Array]:
    return (
        ctx.teacher.hidden_states[o["teacher_layer"]],
        ctx.student.hidden_states[o["student_layer"]],
    )


# faithful: the reference code's variant of each loss (padding counted; docs/methods.md §9)
def fsd_intra(ctx: Context, o: dict) -> jax.Array:
    if o["faithful"]:
        return losses.fsd_intra_reference(*_pair(ctx, o), ctx.weights)
    return losses.fsd_intra(*_pair(ctx, o), ctx.mask, ctx.weights)


def fsd_local(ctx: Context, o: dict) -> jax.Array:
    if o["faithful"]:
        return losses.fsd_local_reference(*_pair(ctx, o), ctx.weights)
    return losses.fsd_local(*_pair(ctx, o), ctx.mask, ctx.weights)


def fsd_g(ctx: Context, o: dict) -> dict:
    if ctx.teacher_memory is None or ctx.student_memory is None:
        raise ValueError("objective.fsd_g: the step has no teacher memory or student memory")
    return losses.fsd_global_terms(
        *_pair(ctx, o),
        ctx.teacher_memory,
        ctx.student_memory,
        ctx.token_mask(o),  # the reference compares full padded vectors
        ctx.weights,
        gamma_m=o["gamma_m"],
        teacher_memory_gram=ctx.teacher_memory_gram,
    )


_ONE_LAYER = {**PENULTIMATE, "faithful": False}
TERMS = {
    "fsd_intra": TermSpec(fsd_intra, dict(_ONE_LAYER), teacher_layers=teacher_layer),
    "fsd_local": TermSpec(fsd_local, dict(_ONE_LAYER), teacher_layers=teacher_layer),
    "fsd_g": TermSpec(
        fsd_g,
        # memory_init_std: the student memory starts as Normal(0, std²); 1.0 is the reference's
        # (PyTorch embedding default), read by the distill stage, not by the loss.
        {**_ONE_LAYER, "gamma_m": 0.5, "memory_init_std": 1.0},
        needs_memory=True,
        teacher_layers=teacher_layer,
    ),
}


def weights_from_reference(
    epsilon: float, sigma: float, gamma: float, beta: float
) -> dict[str, dict[str, float]]:
    """The FSD (ILG) script's (ε, σ, γ, β) as objective terms with explicit weights
    (docs/methods.md §2.6), ready for a config's ``objective`` beside the CE and KD terms.

    ``L = α·CE + (1−α)·KD + ε·[σ·L_G + (1−σ)·½·(γ·L_I + (1−γ)·L_L)]`` with γ_m passed as β:
    γ_i = ε(1−σ)γ/2, γ_l = ε(1−σ)(1−γ)/2, γ_g = ε·σ, γ_m = β. A term whose weight is 0 is left
    out (σ = 0 gives FSD-IL, which needs no memory).
    """
    terms = {
        "fsd_intra": {"weight": epsilon * (1 - sigma) * gamma / 2},
        "fsd_local": {"weight": epsilon * (1 - sigma) * (1 - gamma) / 2},
        "fsd_g": {"weight": epsilon * sigma, "gamma_m": beta},
    }
    return {name: o for name, o in terms.items() if o["weight"] != 0}
