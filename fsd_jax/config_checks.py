"""Every config value checked once, at start-up, before anything is loaded or trained.

Each rule names its option (``train.learning_rate=0: must be > 0``) so that a bad value ends in
one line instead of a traceback from deep inside a step, or, worse, a run that trains on a zero
learning rate. Rules apply to the options a config has (stages differ); the limits that need the
model (its positions) are checked where the model is loaded (:func:`check_sequence_length`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# option -> (test, what it must be)
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {}


def _rule(test: Callable[[Any], bool], expected: str, *options: str) -> None:
    for option in options:
        _RULES[option] = (test, expected)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_rule(lambda x: _number(x) and x > 0, "a number > 0", "train.learning_rate", "train.adam_eps")
_rule(
    lambda x: _integer(x) and x >= 1,
    "an integer >= 1",
    "train.batch_size",
    "train.eval_batch_size",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "mesh.model",
)
_rule(lambda x: _integer(x) and x >= 0, "an integer >= 0", "train.max_steps", "seed")
_rule(
    lambda x: _integer(x) and x >= 0,
    "an integer >= 0 (0: no gradient-balance probe)",
    "train.balance_every",
)
_rule(lambda x: _number(x) and x >= 0, "a number >= 0", "train.num_epochs")
_rule(lambda x: _number(x) and 0 <= x < 1, "a number in [0, 1)", "train.warmup_ratio")
_rule(lambda x: _number(x) and 0 <= x < 1, "a number in [0, 1)", "train.adam_b1", "train.adam_b2")
_rule(lambda x: _number(x) and x >= 0, "a number >= 0", "train.weight_decay")
_rule(
    lambda x: x is None or (_number(x) and x >= 0),
    "a number >= 0 (0: no clipping)",
    "train.max_grad_norm",
)
_rule(
    lambda x: _integer(x) and x >= 2,
    "an integer >= 2 ([CLS] and [SEP] at least)",
    "data.max_seq_length",
)
_rule(
    lambda x: _integer(x) and x >= 0, "an integer >= 0 (0: the model's width)", "model.hidden_size"
)
_rule(lambda x: _integer(x) and (x == -1 or x >= 1), "-1 (all devices) or >= 1", "mesh.data")


def _get(config: Any, dotted: str) -> tuple[bool, Any]:
    node = config
    for part in dotted.split("."):
        try:
            if part not in node:
                return False, None
            node = node[part]
        except TypeError:
            return False, None
    return True, node


def check_config(config: Any) -> None:
    """Raise one ``ValueError`` naming every option whose value breaks its rule."""
    problems = []
    for option, (test, expected) in _RULES.items():
        present, value = _get(config, option)
        if present and not test(value):
            problems.append(f"{option}={value!r}: must be {expected}")
    present, epochs = _get(config, "train.num_epochs")
    _, max_steps = _get(config, "train.max_steps")
    if present and _number(epochs) and epochs <= 0 and not (_integer(max_steps) and max_steps > 0):
        problems.append(f"train.num_epochs={epochs!r}: must be > 0 (or set train.max_steps)")
    if problems:
        raise ValueError("; ".join(problems))


def check_sequence_length(seq_len: int, positions: int, model: str, option: str) -> None:
    """``seq_len`` tokens must fit the model's ``positions`` position embeddings."""
    if seq_len > positions:
        raise ValueError(
            f"{option}={seq_len}: {model} has {positions} positions "
            f"(max_position_embeddings); use at most {positions}"
        )
