"""What a loss term is: the inputs it reads (:class:`Context`) and its declaration (:class:`TermSpec`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fsd_jax.models import AttentionIntermediates, BertConfig, BertOutput

Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything a term reads in one step; the teacher's outputs are live or cached alike."""

    teacher: BertOutput
    student: BertOutput
    batch: Batch
    teacher_memory: jax.Array | None = None  # (K, L, d_t), a constant
    teacher_memory_gram: jax.Array | None = None  # its centred K×K Gram, computed once
    student_memory: jax.Array | None = None  # (K, L, d_s), trained
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # proj, gates, ...
    aux: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. EMD layer weights

    @property
    def mask(self) -> jax.Array:
        return self.batch["attention_mask"]

    @property
    def weights(self) -> jax.Array:
        return self.batch["weights"]

    def token_mask(self, options: Mapping[str, Any]) -> jax.Array | None:
        """The token mask a loss gets: none with ``faithful=True``, where the reference code
        counts every padded position (docs/methods.md §9)."""
        return None if options.get("faithful") else self.mask


@dataclasses.dataclass(frozen=True)
class TermInit:
    """What a term needs to create its extra parameters or state."""

    teacher: BertConfig
    student: BertConfig
    options: dict
    seq_len: int
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class TermSpec:
    """A loss term: ``fn(ctx, options)`` returns a scalar, or a dict with "total" and parts.

    ``init_params(TermInit)`` adds trainable tables to the trained tree (beside "student").
    A term with ``init_aux`` is stateful: ``fn`` returns ``(value, new_state)`` and the step
    carries that state in ``TrainState.aux``. ``check(name, options, teacher, student)``
    raises a one-line ValueError naming the option when the two models cannot take it.
    """

    fn: Callable[[Context, dict], Any]
    defaults: dict
    needs_teacher: bool = True
    needs_attentions: bool = False
    needs_memory: bool = False
    init_params: Callable[[TermInit], dict] | None = None
    init_aux: Callable[[TermInit], dict] | None = None
    # teacher hidden-state layers read, from (options, N_t, N_s); None: the term cannot take
    # the teacher's outputs from a cache (it reads attentions or every layer)
    teacher_layers: Callable[[dict, int, int], tuple[int, ...]] | None = None
    check: Callable[[str, dict, BertConfig, BertConfig], None] | None = None


@dataclasses.dataclass(frozen=True)
class Term:
    """A term of a parsed objective: its registry name, weight and complete options."""

    name: str
    weight: float
    options: dict


PENULTIMATE = {"teacher_layer": -2, "student_layer": -2}


def attentions(ctx: Context) -> tuple[AttentionIntermediates, AttentionIntermediates]:
    """The teacher's and the student's attention intermediates (terms with needs_attentions)."""
    t, s = ctx.teacher.attentions, ctx.student.attentions
    if t is None or s is None:
        raise ValueError("an attention term ran on outputs without attentions")
    return t, s


def no_layers(o: dict, n_t: int, n_s: int) -> tuple[int, ...]:
    return ()


def teacher_layer(o: dict, n_t: int, n_s: int) -> tuple[int, ...]:
    return (o["teacher_layer"] % (n_t + 1),)


def block_mean(tensors: Any, block: tuple[int, ...], offset: int) -> jax.Array:
    """Mean of ``tensors[j - offset]`` over the 1-based teacher layers j of ``block``."""
    if len(block) == 1:
        return tensors[block[0] - offset]
    return sum(tensors[j - offset].astype(jnp.float32) for j in block) / len(block)


def same_heads(name: str, o: dict, teacher: BertConfig, student: BertConfig) -> None:
    if teacher.num_attention_heads != student.num_attention_heads:
        raise ValueError(
            f"objective.{name}: teacher has {teacher.num_attention_heads} attention heads, "
            f"student {student.num_attention_heads}; attention losses need equal counts"
        )


def same_width(name: str, teacher: BertConfig, student: BertConfig, method: str) -> None:
    if teacher.hidden_size != student.hidden_size:
        raise ValueError(
            f"objective.{name}: teacher width {teacher.hidden_size} != student "
            f"width {student.hidden_size} ({method} has no projection)"
        )
