"""The registry of distillation loss terms, and the way from a config's ``objective`` to them.

    objective = {"ce": {"weight": 0.5},
                 "kd": {"weight": 0.5, "temperature": 5.0},
                 "fsd_intra": {"weight": 30.0}}        # penultimate layers by default

One module per method family declares its terms (``TERMS``: name → :class:`TermSpec`); each
term is a small function from a :class:`Context` (teacher and student outputs, batch, memories,
extra parameters) and its options to a loss, calling one formula of :mod:`fsd_jax.losses`.
Hidden-state layers are indices into ``hidden_states`` (0 = embeddings, -1 = last layer,
-2 = penultimate); attention layers index the N per-layer attention tensors (-1 = last).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fsd_jax.models import BertConfig
from fsd_jax.terms import attention, emd, fsd, lad, logits, patient, relational, tinybert
from fsd_jax.terms.fsd import weights_from_reference
from fsd_jax.terms.spec import Context, Term, TermInit, TermSpec

TERMS: dict[str, TermSpec] = {
    **logits.TERMS,
    **fsd.TERMS,
    **patient.TERMS,
    **relational.TERMS,
    **attention.TERMS,
    **tinybert.TERMS,
    **emd.TERMS,
    **lad.TERMS,
}

__all__ = [
    "TERMS",
    "Context",
    "Term",
    "TermInit",
    "TermSpec",
    "cached_teacher_layers",
    "check_terms",
    "needs_attentions",
    "needs_memory",
    "parse_terms",
    "weights_from_reference",
    "with_defaults",
]


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


def needs_memory(terms: tuple[Term, ...]) -> bool:
    """Whether a term reads the teacher/student memories (FSD-G)."""
    return any(TERMS[t.name].needs_memory for t in terms)


def needs_attentions(terms: tuple[Term, ...]) -> bool:
    """Whether a term reads the models' attention intermediates."""
    return any(TERMS[t.name].needs_attentions for t in terms)


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


def check_terms(terms: tuple[Term, ...], teacher: BertConfig, student: BertConfig) -> None:
    """One-line ValueErrors naming the option for layer indices out of range and options the
    two models cannot take (head counts, widths, mappings)."""
    for t in terms:
        spec = TERMS[t.name]
        for side, cfg in (("teacher", teacher), ("student", student)):
            key = f"{side}_layer"
            if key not in t.options:
                continue
            count = cfg.num_hidden_layers + (0 if spec.needs_attentions else 1)
            idx = t.options[key]
            if not isinstance(idx, int) or not -count <= idx < count:
                what = "attention layers 0.." if spec.needs_attentions else "hidden states 0.."
                raise ValueError(
                    f"objective.{t.name}.{key}={idx!r}: the {side} has {what}{count - 1} "
                    f"(negative indices count from the end)"
                )
    for t in terms:
        check = TERMS[t.name].check
        if check is not None:
            check(t.name, t.options, teacher, student)
