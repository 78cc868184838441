"""A distillation objective: a weighted sum of named loss terms declared in the config.

    objective = {"ce": {"weight": 0.5},
                 "kd": {"weight": 0.5, "temperature": 5.0},
                 "fsd_intra": {"weight": 30.0}}        # penultimate layers by default

Hidden-state layers are indices into ``hidden_states`` (0 = embeddings, -1 = last layer,
-2 = penultimate); attention layers index the N per-layer attention tensors (-1 = last).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fsd_jax import intermediate_terms, losses
from fsd_jax.intermediate_terms import TermInit
from fsd_jax.models import BertConfig, BertForSequenceClassification, BertOutput

Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Context:
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


@dataclasses.dataclass(frozen=True)
class TermSpec:
    """A loss term: ``fn(ctx, options)`` returns a scalar, or a dict with "total" and parts.

    ``init_params(TermInit)`` adds trainable tables to the trained tree (beside "student");
    a term with ``init_aux`` is stateful: ``fn`` returns ``(value, new_aux)`` and the step
    carries that state in ``TrainState.aux``.
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


def _ce(ctx: Context, o: dict) -> jax.Array:
    logits, labels = ctx.student.logits, ctx.batch["labels"]
    if logits.shape[-1] == 1:
        return losses.mse(logits, labels, ctx.weights)
    return losses.cross_entropy(logits, labels, ctx.weights)


def _kd(ctx: Context, o: dict) -> jax.Array:
    return losses.kd(
        ctx.student.logits,
        ctx.teacher.logits,
        o["temperature"],
        ctx.weights,
        faithful=o["faithful"],
    )


def _fsd(fn):
    def term(ctx: Context, o: dict) -> jax.Array:
        return fn(
            ctx.teacher.hidden_states[o["teacher_layer"]],
            ctx.student.hidden_states[o["student_layer"]],
            ctx.mask,
            ctx.weights,
            faithful=o["faithful"],
        )

    return term


def _pkd(ctx: Context, o: dict) -> jax.Array:
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


def _rkd(fn):
    def term(ctx: Context, o: dict) -> jax.Array:
        mask = None if o["faithful"] else ctx.mask
        return fn(
            losses.flatten_tokens(ctx.teacher.hidden_states[o["teacher_layer"]], mask),
            losses.flatten_tokens(ctx.student.hidden_states[o["student_layer"]], mask),
            ctx.weights,
        )

    return term


def _minilm(ctx: Context, o: dict) -> jax.Array:
    t, s = ctx.teacher.attentions, ctx.student.attentions
    i, j = o["teacher_layer"], o["student_layer"]
    return losses.minilm(
        t.scores[i],
        s.scores[j],
        t.values[i],
        s.values[j],
        ctx.mask,
        ctx.weights,
        faithful=o["faithful"],
    )


def _fsd_global(ctx: Context, o: dict) -> dict:
    return losses.fsd_global_terms(
        ctx.teacher.hidden_states[o["teacher_layer"]],
        ctx.student.hidden_states[o["student_layer"]],
        ctx.teacher_memory,
        ctx.student_memory,
        ctx.mask,
        ctx.weights,
        gamma_m=o["gamma_m"],
        faithful=o["faithful"],
        teacher_memory_gram=ctx.teacher_memory_gram,
    )


_PENULTIMATE = {"teacher_layer": -2, "student_layer": -2, "faithful": False}


def _no_layers(o: dict, n_t: int, n_s: int) -> tuple[int, ...]:
    return ()


def _teacher_layer(o: dict, n_t: int, n_s: int) -> tuple[int, ...]:
    return (o["teacher_layer"] % (n_t + 1),)


def _pkd_layers(o: dict, n_t: int, n_s: int) -> tuple[int, ...]:
    return losses.pkd_teacher_layers(n_t, n_s, o["mapping"])


def _one_layer(fn: Callable[[Context, dict], Any]) -> TermSpec:
    """A term reading one hidden state per side (penultimate by default)."""
    return TermSpec(fn, dict(_PENULTIMATE), teacher_layers=_teacher_layer)


TERMS: dict[str, TermSpec] = {
    "ce": TermSpec(_ce, {}, needs_teacher=False, teacher_layers=_no_layers),
    "kd": TermSpec(_kd, {"temperature": 1.0, "faithful": False}, teacher_layers=_no_layers),
    "fsd_intra": _one_layer(_fsd(losses.fsd_intra)),
    "fsd_local": _one_layer(_fsd(losses.fsd_local)),
    "pkd": TermSpec(
        _pkd,
        {"mapping": "skip", "normalize": True, "full_sequence": False},
        teacher_layers=_pkd_layers,
    ),
    "rkd_distance": _one_layer(_rkd(losses.rkd_distance)),
    "rkd_angle": _one_layer(_rkd(losses.rkd_angle)),
    "minilm": TermSpec(
        _minilm,
        {"teacher_layer": -1, "student_layer": -1, "faithful": False},
        needs_attentions=True,
    ),
    "fsd_g": TermSpec(
        _fsd_global,
        # memory_init_std: the student memory starts as Normal(0, std²); 1.0 is the reference's
        # (PyTorch embedding default), read by the distill stage, not by the loss.
        {**_PENULTIMATE, "gamma_m": 0.5, "memory_init_std": 1.0},
        needs_memory=True,
        teacher_layers=_teacher_layer,
    ),
}
for _name, (_fn, _defaults, _att, _params, _aux) in intermediate_terms.SPECS.items():
    TERMS[_name] = TermSpec(
        _fn, _defaults, needs_attentions=_att, init_params=_params, init_aux=_aux
    )


@dataclasses.dataclass(frozen=True)
class Term:
    name: str
    weight: float
    options: dict


def needs_memory(terms: tuple[Term, ...]) -> bool:
    """Whether a term reads the teacher/student memories (FSD-G)."""
    return any(TERMS[t.name].needs_memory for t in terms)


def cached_teacher_layers(
    terms: tuple[Term, ...], teacher: BertConfig, student: BertConfig
) -> tuple[int, ...]:
    """The teacher hidden-state layers (sorted, non-negative) that a teacher cache must hold
    for ``terms``; ValueError naming the term when one cannot use a cache."""
    layers: set[int] = set()
    for t in terms:
        spec = TERMS[t.name]
        if spec.teacher_layers is None:
            raise ValueError(
                f"teacher_cache: objective.{t.name} reads the teacher's attentions or every "
                "layer, which are not cached; set teacher_cache='off' (or 'auto')"
            )
        if t.options.get("faithful"):
            raise ValueError(
                f"teacher_cache: objective.{t.name}.faithful=True reads padded positions, "
                "which the cache stores as zeros; set teacher_cache='off' (or 'auto')"
            )
        layers.update(
            spec.teacher_layers(t.options, teacher.num_hidden_layers, student.num_hidden_layers)
        )
    return tuple(sorted(layers))


def with_defaults(terms: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each known term's options completed with its defaults (unknown names left for
    :func:`parse_terms` to reject): configs list every option, so each can be set from the
    command line (``--config.objective.fsd_g.memory_init_std 0.02``)."""
    return {
        name: {**dict(raw), **{k: v for k, v in TERMS[name].defaults.items() if k not in raw}}
        if name in TERMS
        else dict(raw)
        for name, raw in terms.items()
    }


def parse_terms(config: Mapping[str, Any]) -> tuple[Term, ...]:
    """Terms from ``{name: {"weight": w, option: value, ...}}``; unknown names or options raise."""
    terms = []
    for name, raw in dict(config).items():
        if name not in TERMS:
            raise ValueError(f"objective.{name}: unknown term; known terms: {', '.join(TERMS)}")
        raw = dict(raw)
        if "weight" not in raw:
            raise ValueError(f"objective.{name}: missing 'weight'")
        weight = float(raw.pop("weight"))
        spec = TERMS[name]
        unknown = sorted(set(raw) - set(spec.defaults))
        if unknown:
            raise ValueError(
                f"objective.{name}: unknown options {unknown}; expected {sorted(spec.defaults)}"
            )
        terms.append(Term(name, weight, {**spec.defaults, **raw}))
    if not terms:
        raise ValueError("objective: no terms")
    return tuple(terms)


def _check_layers(terms: tuple[Term, ...], teacher: BertConfig, student: BertConfig) -> None:
    for t in terms:
        for side, cfg in (("teacher", teacher), ("student", student)):
            key = f"{side}_layer"
            if key not in t.options:
                continue
            count = (
                cfg.num_hidden_layers
                if TERMS[t.name].needs_attentions
                else cfg.num_hidden_layers + 1
            )
            idx = t.options[key]
            if not isinstance(idx, int) or not -count <= idx < count:
                what = (
                    "attention layers 0.."
                    if TERMS[t.name].needs_attentions
                    else "hidden states 0.."
                )
                raise ValueError(
                    f"objective.{t.name}.{key}={idx!r}: the {side} has {what}{count - 1} "
                    f"(negative indices count from the end)"
                )
    for t in terms:
        if t.name in intermediate_terms.SPECS:
            intermediate_terms.check(t.name, t.options, teacher, student)
    if any(t.name == "pkd" for t in terms):
        opts = next(t for t in terms if t.name == "pkd").options
        losses.pkd_teacher_layers(
            teacher.num_hidden_layers, student.num_hidden_layers, opts["mapping"]
        )
        if teacher.hidden_size != student.hidden_size:
            raise ValueError(
                f"objective.pkd: teacher width {teacher.hidden_size} != student "
                f"width {student.hidden_size} (PKD has no projection)"
            )
    if any(t.name == "minilm" for t in terms) and (
        teacher.num_attention_heads != student.num_attention_heads
    ):
        raise ValueError(
            f"objective.minilm: teacher has {teacher.num_attention_heads} heads, "
            f"student {student.num_attention_heads}; MiniLM needs equal counts"
        )


def make_distill_objective(
    student: BertForSequenceClassification,
    teacher: BertForSequenceClassification,
    terms: tuple[Term, ...],
    *,
    teacher_cache: bool = False,
) -> Callable:
    """``objective(params, batch, key, teacher_params, teacher_memory=None,
    teacher_memory_gram=None) -> (loss, metrics)``.

    ``params`` is ``{"student": ...}``, plus ``"memory"`` (the student memory) when a term uses
    one. The teacher runs in eval mode under ``stop_gradient``; the student with dropout.
    With ``teacher_cache`` the teacher does not run: its outputs come in the batch
    (:mod:`fsd_jax.teacher_cache`) and ``teacher_params`` is unused.
    Metrics hold the total, each term's unweighted value and the parts of composite terms
    (``fsd_g/distance``, ...). ``teacher_memory_gram`` (:func:`fsd_jax.losses.memory_gram` of
    the teacher memory) spares the step the teacher memory's Gram; without it, each step
    computes it.
    """
    _check_layers(terms, teacher.config, student.config)
    if student.config.num_labels != teacher.config.num_labels:
        raise ValueError(
            f"teacher has {teacher.config.num_labels} outputs, student {student.config.num_labels}"
        )
    attentions = any(TERMS[t.name].needs_attentions for t in terms)
    stateful = any(TERMS[t.name].init_aux is not None for t in terms)
    if teacher_cache:
        cached_teacher_layers(terms, teacher.config, student.config)
    from fsd_jax.teacher_cache import cached_output
    from fsd_jax.train.step import model_inputs

    def objective(
        params,
        batch,
        key,
        teacher_params,
        teacher_memory=None,
        teacher_memory_gram=None,
        *,
        aux=None,
    ):
        inputs = model_inputs(batch)
        if teacher_cache:
            t_out = cached_output(batch, teacher.config.num_hidden_layers)
        else:
            t_out = teacher.apply(
                {"params": teacher_params}, **inputs, output_attentions=attentions
            )
        t_out = jax.lax.stop_gradient(t_out)
        s_out = student.apply(
            {"params": params["student"]},
            **inputs,
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
            aux or {},
        )
        metrics, loss, new_aux = {}, jnp.zeros((), jnp.float32), dict(aux or {})
        for t in terms:
            value = TERMS[t.name].fn(ctx, t.options)
            if TERMS[t.name].init_aux is not None:
                value, state = value
                new_aux.update(state)
            if isinstance(value, dict):
                metrics.update({f"{t.name}/{k}": v for k, v in value.items() if k != "total"})
                value = value["total"]
            metrics[t.name] = value.astype(jnp.float32)
            loss = loss + t.weight * metrics[t.name]
        metrics = {"loss": loss, **metrics}
        return (loss, (metrics, new_aux)) if stateful else (loss, metrics)

    # the train step passes ``aux=state.aux`` and stores the returned state
    objective.stateful = stateful
    return objective


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
    if hidden_terms and intermediate_terms.uses_projection(
        teacher, student, [t.options for t in hidden_terms]
    ):
        params["proj"] = intermediate_terms.init_projection(
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


def weights_from_reference(
    epsilon: float, sigma: float, gamma: float, beta: float
) -> dict[str, float]:
    """The FSD (ILG) script's (ε, σ, γ, β) as explicit weights (METHODS.md §2.6).

    ``L = α·CE + (1−α)·KD + ε·[σ·L_G + (1−σ)·½·(γ·L_I + (1−γ)·L_L)]`` with γ_m passed as β:
    γ_i = ε(1−σ)γ/2, γ_l = ε(1−σ)(1−γ)/2, γ_g = ε·σ, γ_m = β.
    """
    return {
        "fsd_intra": epsilon * (1 - sigma) * gamma / 2,
        "fsd_local": epsilon * (1 - sigma) * (1 - gamma) / 2,
        "fsd_global": epsilon * sigma,
        "gamma_m": beta,
    }
