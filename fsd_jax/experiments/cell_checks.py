"""Whether a finished grid cell (or its record) may stand for the cell the grid would run now:
made from this grid's teacher, analysed against it, with the settings the student search
chooses now; a changed objective is kept with a warning (an earlier protocol's records)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from fsd_jax.experiments.records import GridRecords

log = logging.getLogger("fsd_jax.experiments.grid")


def recorded(
    g: ConfigDict, records: GridRecords, cell: Path, teacher: Path, analysed: bool = True
) -> bool:
    """Whether ``cell``, not in the workdir, has a record that makes running it unnecessary: one
    from this teacher, analysed against it unless not ``analysed`` (a recorded no-KD cell
    analysed against another teacher is run again: its model, which the analysis needs, went
    with the workdir)."""
    result = records.results(cell)
    if result is None:
        return False
    made_from = result.get("teacher")
    if made_from is not None and made_from != records.relative(teacher):
        raise ValueError(
            f"grid: the record {records.where(cell)} was made from teacher {made_from}, this "
            f"grid's teacher for the task is {records.relative(teacher)} (grid.teacher or "
            "grid.teacher_search changed?); move the record away to redo the cell with this "
            "teacher, or restore the settings it was made with"
        )
    if not analysed or not g.get("analysis_batches"):
        return True
    analysis = records.analysis(cell)
    if analysis is not None and analysis.get("teacher") == records.relative(teacher):
        return True
    log.warning(
        "grid: the record %s has no analysis against teacher %s and its run is gone: running "
        "the cell again",
        records.where(cell),
        records.relative(teacher),
    )
    return False


def same_path(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).samefile(b)
    except OSError:  # one of them is gone: only the same spelling counts
        return str(a) == str(b)


def other_teacher(record: Path, teacher: Path) -> str | None:
    """The teacher a cell's, memory's or analysis's JSON ``record`` was made from, if not
    ``teacher`` (None when the same or not recorded: a no-KD cell has none)."""
    made_from = json.loads(record.read_text()).get("teacher")
    return None if made_from is None or same_path(made_from, teacher) else made_from


def warn_other_objective(results: Mapping[str, Any], config: ConfigDict, cell: Path | None) -> None:
    """Warn when a finished cell's objective is not its config's now (a config's weights were
    changed since, e.g. records of an earlier protocol): the cell is kept and reported as it was
    made."""
    from fsd_jax.terms import parse_terms

    made = results.get("objective")
    if made is None or "objective" not in config:
        return
    objective = config.objective
    if config.get("phases"):  # the results are the last phase's
        objective = list(config.phases.values())[-1].get("objective") or objective
    now = {t.name: {"weight": t.weight, **t.options} for t in parse_terms(objective)}
    now = json.loads(json.dumps(now))
    diff = sorted(
        f"{name}.{k}: {made.get(name, {}).get(k)!r} (now {v!r})"
        for name, options in now.items()
        for k, v in options.items()
        if made.get(name, {}).get(k) != v
    )
    if diff or set(made) != set(now):
        log.warning(
            "grid: %s was made with other objective settings than its config has now (%s); it "
            "is reported as it was made: move it away to redo it with these",
            cell,
            ", ".join(diff) or f"terms {sorted(made)} vs {sorted(now)}",
        )


def check_settings(
    results: Mapping[str, Any], cell: Path | None, fields: Mapping[str, str]
) -> None:
    """A finished cell (its ``results``) counts only if it was made with the settings its
    method's student search chose now (a cell made before a search, or under another one, has
    other settings)."""
    made = results.get("student_search") or {}
    if made != dict(fields):
        raise ValueError(
            f"grid: {cell} was made with student settings {made or 'of no search'}, "
            f"grid.student_search now chooses {dict(fields) or 'none'}; move it away to redo it "
            "(or use another grid.records_dir for the new protocol)"
        )


def _depth(spec: Any) -> int | None:
    """Layers of a student made with layer spec ``spec`` ("first:3", "last:2", "3", "2,4,6"),
    None where it depends on the source model's depth ("every:2") or there is no spec."""
    from fsd_jax.models.surgery import resolve_layers
    from fsd_jax.train.training_run import parse_layers

    layers = parse_layers(spec)
    if layers is None or str(layers).startswith("every:"):
        return None
    # first:k, last:k, k and explicit lists name their depth whatever the source's is
    return len(resolve_layers(layers, num_layers=1 << 20))


def check_student_depth(results: Mapping[str, Any], cell: Path | None, config: ConfigDict) -> None:
    """A finished cell counts only if its student has the depth the grid's student has now
    (``grid.student_layers`` or ``grid.student_per_task`` changed: records of another
    protocol)."""
    made = results.get("num_layers")
    spec = config.get("model", {}).get("layers")
    want = _depth(spec)
    if made is not None and want is not None and int(made) != want:
        raise ValueError(
            f"grid: {cell} was made with a {made}-layer student, the grid's student for the task "
            f"now has {want} layers (model.layers {spec!r}); move it away to redo it (or use "
            "another grid.records_dir for the new protocol)"
        )


def check_teacher(record: Path, teacher: Path) -> None:
    """A finished cell or memory counts only if it was made from this grid's teacher of the task
    (a changed ``grid.teacher``/``teacher_search`` would otherwise mix students of two teachers)."""
    made_from = other_teacher(record, teacher)
    if made_from is not None:
        raise ValueError(
            f"grid: {record.parent} was made from teacher {made_from}, this grid's teacher for the "
            f"task is {teacher} (grid.teacher or grid.teacher_search changed?); move it away to "
            "redo it with this teacher, or restore the settings it was made with"
        )
