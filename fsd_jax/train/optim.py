"""AdamW with linear warm-up and decay, no decay on biases and LayerNorm, gradient clipping."""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import traverse_util


def linear_schedule(
    learning_rate: float, total_steps: int, warmup_steps: int = 0
) -> optax.Schedule:
    """0 → lr over ``warmup_steps``, then lr → 0 at ``total_steps``."""
    decay = optax.linear_schedule(learning_rate, 0.0, max(total_steps - warmup_steps, 1))
    if warmup_steps <= 0:
        return decay
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: not biases, not LayerNorm scales."""
    flat = traverse_util.flatten_dict(params)
    mask = {k: not (k[-1] == "bias" or k[-1] == "scale" or "LayerNorm" in k) for k in flat}
    return traverse_util.unflatten_dict(mask)


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    max_grad_norm: float | None = 1.0,
    schedule: str = "linear",
    group_learning_rates: dict[str, float] | None = None,
) -> optax.GradientTransformation:
    """The optimiser of docs/methods.md §0.2 (AdamW, linear schedule, clip 1.0).

    ``schedule="constant"`` keeps the rate fixed (TinyBERT's intermediate stage, BERT-EMD).
    ``group_learning_rates`` maps top-level keys of the parameter tree (e.g. LAD's ``gates``)
    to their own AdamW with that peak rate and its own gradient clipping
    (``optax.multi_transform``); everything else uses ``learning_rate``.
    """

    def one(lr: float) -> optax.GradientTransformation:
        if schedule == "linear":
            rate = linear_schedule(lr, total_steps, warmup_steps)
        elif schedule == "constant":
            rate = lr
        else:
            raise ValueError(f"train.schedule={schedule!r}: expected 'linear' or 'constant'")
        parts = []
        if max_grad_norm:
            parts.append(optax.clip_by_global_norm(max_grad_norm))
        parts.append(
            optax.adamw(rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
        )
        return optax.chain(*parts)

    groups = dict(group_learning_rates or {})
    if not groups:
        return one(learning_rate)
    if "default" in groups:
        raise ValueError("train.group_learning_rates: 'default' is reserved")

    def labels(params: Any) -> Any:
        if not isinstance(params, dict):
            raise ValueError("train.group_learning_rates needs a dict of parameter groups")
        missing = sorted(set(groups) - set(params))
        if missing:
            raise ValueError(
                f"train.group_learning_rates: no parameter group {missing}; the trained tree "
                f"has {sorted(params)}"
            )
        return {
            k: jax.tree.map(lambda _, k=k: k if k in groups else "default", v)
            for k, v in params.items()
        }

    transforms = {"default": one(learning_rate)} | {k: one(lr) for k, lr in groups.items()}
    return optax.multi_transform(transforms, labels)
