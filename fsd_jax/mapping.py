"""Layer mappings for intermediate-layer distillation (docs/methods.md §6.3).

A mapping pairs each distilled student layer m (1-based, 1..N_s) with a block of teacher layers
(1-based, 1..N_t) whose representations are averaged into the target; every mapping but ``mean``
uses blocks of one layer. Layer 0 (the embeddings) is never part of a mapping: the embedding
loss pairs 0 with 0.

    >>> layer_mapping("uniform", 6, 3)
    ((1, (2,)), (2, (4,)), (3, (6,)))
    >>> layer_mapping("mean", 6, 3)
    ((1, (1, 2)), (2, (3, 4)), (3, (5, 6)))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAPPINGS = ("uniform", "last", "first", "pkd_skip", "random", "mean", "explicit")

# (student layer, teacher layers averaged into its target)
Mapping = tuple[tuple[int, tuple[int, ...]], ...]


def layer_mapping(
    kind: str,
    num_teacher: int,
    num_student: int,
    *,
    seed: int = 0,
    layers: str | Sequence[int] | None = None,
) -> Mapping:
    """Pairs (student layer m, teacher block) for a mapping ``kind``.

    Kinds (k = N_t / N_s):
      ``uniform``: m ↔ m·k (TinyBERT; k must be an integer).
      ``last``: m ↔ N_t − N_s + m.
      ``first``: m ↔ m.
      ``pkd_skip``: m ↔ m·k for m = 1..N_s − 1 (PKD-Skip; the last layer is left to the
        prediction loss).
      ``random``: N_s distinct teacher layers drawn once from ``seed``, sorted.
      ``mean``: m ↔ the average of teacher layers ⌊(m−1)·N_t/N_s⌋+1 .. ⌊m·N_t/N_s⌋.
      ``explicit``: ``layers`` lists the teacher layer of each student layer ("2,4,6").

    Raises:
      ValueError naming the mapping and both depths when the mapping cannot be built.
    """
    where = f"layer mapping {kind!r} (teacher {num_teacher} layers, student {num_student})"
    if num_student < 1 or num_teacher < 1:
        raise ValueError(f"{where}: both models need at least one layer")
    if kind != "explicit" and layers not in (None, "", ()):
        raise ValueError(f"{where}: 'layers' is only used by the 'explicit' mapping")
    if kind in ("uniform", "pkd_skip"):
        if num_teacher % num_student:
            raise ValueError(f"{where}: the teacher depth must be a multiple of the student's")
        k = num_teacher // num_student
        count = num_student if kind == "uniform" else num_student - 1
        if count < 1:
            raise ValueError(f"{where}: PKD-skip needs a student with at least 2 layers")
        return tuple((m, (m * k,)) for m in range(1, count + 1))
    if num_teacher < num_student and kind in ("last", "first", "random", "mean"):
        raise ValueError(f"{where}: the teacher is shallower than the student")
    if kind == "last":
        return tuple((m, (num_teacher - num_student + m,)) for m in range(1, num_student + 1))
    if kind == "first":
        return tuple((m, (m,)) for m in range(1, num_student + 1))
    if kind == "random":
        rng = np.random.default_rng(seed)
        chosen = sorted(int(x) + 1 for x in rng.choice(num_teacher, num_student, replace=False))
        return tuple((m, (t,)) for m, t in enumerate(chosen, start=1))
    if kind == "mean":
        bounds = [m * num_teacher // num_student for m in range(num_student + 1)]
        return tuple(
            (m, tuple(range(bounds[m - 1] + 1, bounds[m] + 1))) for m in range(1, num_student + 1)
        )
    if kind == "explicit":
        chosen = _parse_layers(layers, where)
        if len(chosen) != num_student:
            raise ValueError(
                f"{where}: 'layers' names {len(chosen)} teacher layers, expected one per "
                f"student layer ({num_student})"
            )
        bad = [t for t in chosen if not 1 <= t <= num_teacher]
        if bad:
            raise ValueError(f"{where}: teacher layers {bad} out of range 1..{num_teacher}")
        return tuple((m, (t,)) for m, t in enumerate(chosen, start=1))
    raise ValueError(f"{where}: unknown mapping; expected one of {', '.join(MAPPINGS)}")


def _parse_layers(layers: str | Sequence[int] | None, where: str) -> list[int]:
    if layers is None or layers == "":
        raise ValueError(f"{where}: set 'layers', e.g. '2,4,6'")
    if isinstance(layers, str):
        try:
            return [int(x) for x in layers.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"{where}: layers={layers!r}, expected e.g. '2,4,6'") from None
    return [int(x) for x in layers]
