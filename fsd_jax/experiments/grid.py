"""Experiment grid: methods × tasks × seeds, with the teacher and memory of a task reused.

Layout under the grid's workdir::

    <task>/teacher            stage finetune (the teacher, once per task), or with
    <task>/teacher_search/*   ``grid.teacher_search``: one teacher per candidate setting, the
                              best dev score chosen (``<task>/teacher_search.json``); only
                              for the tasks of ``grid.teacher_search_tasks`` when it is set
    <task>/memory             stage memory (once per task, if a method needs it)
    <task>/<method>/search/*  ``grid.student_search``: the method's candidate settings, each run
                              with ``grid.search_seed``; the best dev score is used for every
                              seed (``<task>/<method>/search.json``)
    <task>/<method>/seed<k>   one cell: stage distill (or finetune for ``nokd``), with
                              ``analysis/`` (CKA heat map, restoration, relation differences)

A cell whose ``results.json`` exists is done and skipped; an interrupted cell resumes from its
checkpoints, so running the grid again continues a half-finished grid. With
``grid.records_dir`` every finished run is also recorded there (:mod:`fsd_jax.experiments.records`:
its results and analysis, a few KB), the report is made from the records, and a recorded cell
counts as done even when the workdir is gone (another machine goes on from committed records).
:mod:`fsd_jax.experiments.report` turns the cells into mean ± std tables (Markdown, CSV) and plots.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict
from tqdm.auto import tqdm

from fsd_jax.cli import load_config
from fsd_jax.experiments.cell_checks import (
    check_settings,
    check_student_depth,
    check_teacher,
    other_teacher,
    recorded,
    warn_other_objective,
)
from fsd_jax.experiments.records import GridRecords
from fsd_jax.experiments.report import aggregate, aggregate_analyses, seed_dirs, write_report
from fsd_jax.experiments.search import (
    reuse_search_run,
    set_fields,
    split_values,
    student_search,
    teacher_candidates,
)

log = logging.getLogger(__name__)

NO_KD = "nokd"  # the student fine-tuned on the labels alone


def method_name(spec: str) -> str:
    """``"tinybert:kl+one_stage"`` → ``"tinybert-kl-one_stage"`` (a directory and table name).

    A method spec is a config file of ``configs/distill`` with optional variants after ``:``
    joined by ``+`` (commas separate the methods of a grid).
    """
    file, variants = _parse_spec(spec)
    return "-".join([file, *variants])


def _parse_spec(spec: str) -> tuple[str, list[str]]:
    file, _, variants = spec.partition(":")
    return file, [v for v in variants.split("+") if v]


def _apply(config: ConfigDict, overrides: Mapping[str, Any] | None, where: str = "") -> ConfigDict:
    """Merge nested ``overrides`` into ``config``; every key must name an existing field."""
    for k, v in dict(overrides or {}).items():
        if k not in config:
            raise ValueError(f"grid override {where}{k}: no such field in the run's config")
        if isinstance(v, Mapping | ConfigDict) and isinstance(config[k], ConfigDict):
            _apply(config[k], v, f"{where}{k}.")
        else:
            config[k] = v
    return config


def _stage_config(grid: ConfigDict, file: str, arg: str) -> ConfigDict:
    """``get_config(arg)`` of ``grid.configs_dir/file`` (``finetune.py``, ``distill/pkd.py``)."""
    root = grid.get("configs_dir")
    if not root:
        raise ValueError(
            "grid.configs_dir: the directory holding finetune.py, memory.py and distill/ "
            "(configs/grid.py sets it to its own directory)"
        )
    path = Path(root) / file
    if not path.is_file():
        listing = sorted(p.stem for p in (Path(root) / "distill").glob("[!_]*.py"))
        raise ValueError(f"grid: no config {path} (methods in distill/: {', '.join(listing)})")
    return load_config(path, arg)


def cell_config(grid: ConfigDict, task: str, spec: str, seed: int, teacher: Path) -> ConfigDict:
    """The config of one cell: the method's config for ``task`` with the grid's overrides."""
    if spec == NO_KD:
        c = _stage_config(grid, "finetune.py", task)
        c.model.layers = grid.student_layers
    else:
        file, variants = _parse_spec(spec)
        c = _stage_config(grid, f"distill/{file}.py", ",".join([task, *variants]))
        c.teacher = str(teacher)
        c.model.layers = grid.student_layers
    c.seed = seed
    c.progress = False
    _common(c, grid, task)
    _apply(c, grid.get("student"))
    _apply(c, (grid.get("student_per_task") or {}).get(task), f"student_per_task.{task}.")
    if spec != NO_KD:
        _apply(c, grid.get("distill"))
    _apply(c, (grid.get("methods_overrides") or {}).get(method_name(spec)))
    return c


def _common(config: ConfigDict, grid: ConfigDict, task: str) -> ConfigDict:
    """``grid.common``, then ``grid.common_per_task[task]``: what every run of the task shares."""
    _apply(config, grid.get("common"))
    return _apply(config, (grid.get("common_per_task") or {}).get(task))


def run_grid(config: ConfigDict, workdir: str | Path) -> dict:
    """Run every missing cell of ``config.grid`` under ``workdir``; return :func:`aggregate`."""
    g = config.grid
    workdir = Path(workdir)
    tasks, methods = split_values(g.tasks), split_values(g.methods)
    seeds = [int(s) for s in split_values(g.seeds)]
    unknown = set(split_values(g.get("teacher_search_tasks") or "")) - set(tasks)
    if unknown:
        raise ValueError(
            f"grid.teacher_search_tasks: {', '.join(sorted(unknown))} not in grid.tasks ({g.tasks})"
        )
    cells = [(t, m, s) for t in tasks for m in methods for s in seeds]
    bar = tqdm(total=len(cells), desc="grid", disable=not config.get("progress", True))
    budget = float(g.get("max_hours") or 0.0) * 3600.0
    t0 = time.monotonic()

    def out_of_time() -> bool:
        return budget > 0 and time.monotonic() - t0 > budget

    records = GridRecords(g.get("records_dir"), workdir)
    teachers, searches, skipped = {}, {}, 0
    student_searches: dict[str, dict[str, list[dict]]] = {}
    for task in tasks:
        found = _teacher(g, task, workdir, records, out_of_time)
        if found is None:
            skipped += len(methods) * len(seeds)
            continue
        teacher, searches[task], need_teacher = found
        teachers[task] = teacher
        mem = workdir / task / "memory"

        run_student = functools.partial(_run_student, g, task, teacher, need_teacher, mem)

        chosen: dict[str, dict[str, str] | None] = {}
        scored: dict[str, list[dict]] = {}
        for spec in methods:
            found_search = student_search(
                g,
                task,
                method_name(spec),
                functools.partial(cell_config, g, task, spec, teacher=teacher),
                teacher,
                workdir / task / method_name(spec),
                records,
                out_of_time,
                functools.partial(run_student, spec=spec),
            )
            chosen[spec] = found_search[0] if found_search else None
            if found_search and found_search[1]:
                student_searches.setdefault(task, {})[method_name(spec)] = found_search[1]
                scored[spec] = found_search[1]
        # seed-major: every method gets seed 0 before any gets seed 1, so a grid stopped
        # part-way has all methods with the fewest seeds missing
        for seed in seeds:
            for spec in methods:
                out = workdir / task / method_name(spec) / f"seed{seed}"
                bar.set_postfix_str(f"{task} {method_name(spec)} seed {seed}")
                if chosen[spec] is None:  # its search ran out of time
                    skipped += 1
                    continue
                fields = chosen[spec] or {}
                c = set_fields(cell_config(g, task, spec, seed, teacher), fields)
                if spec in scored and records.results(out) is None:
                    reuse_search_run(g, scored[spec], seed, out, c)
                if (out / "results.json").is_file():
                    check_teacher(out / "results.json", teacher)
                    done = json.loads((out / "results.json").read_text())
                    check_settings(done, out, fields)
                    check_student_depth(done, out, c)
                    warn_other_objective(done, c, out)
                    _analyze(g, c, out, teacher, task, need_teacher)
                    records.save(out)
                    bar.update(1)
                    continue
                if recorded(g, records, out, teacher):
                    done = records.results(out) or {}
                    check_settings(done, records.where(out), fields)
                    check_student_depth(done, records.where(out), c)
                    warn_other_objective(done, c, records.where(out))
                    bar.update(1)
                    continue
                if out_of_time():
                    skipped += 1
                    continue
                run_student(c, out, spec)
                if fields:  # what the search chose, so that a changed search is noticed
                    done = json.loads((out / "results.json").read_text())
                    done["student_search"] = fields
                    (out / "results.json").write_text(json.dumps(done, indent=2))
                _analyze(g, c, out, teacher, task, need_teacher)
                records.save(out)
                bar.update(1)
    bar.close()
    if skipped:
        log.warning(
            "grid: %d of %d cells not run (grid.max_hours=%s); run again to continue",
            skipped,
            len(cells),
            g.max_hours,
        )
    names = [method_name(m) for m in methods]
    # the report is made from the records where there are any: they outlive the workdir
    source = records.root or workdir
    teachers = {t: records.where(d) or d for t, d in teachers.items()}
    table = aggregate(source, tasks, names, teachers, seeds)
    analyses = aggregate_analyses(source, tasks, names, seeds)
    preamble = Path(g.preamble_file).read_text() if g.get("preamble_file") else ""
    report = write_report(
        table,
        g.get("report_dir") or workdir / "report",
        g.get("title", "Results"),
        analyses=analyses,
        heatmaps={t: _heatmaps(source, t, names, seeds) for t in tasks},
        preamble=preamble,
        teacher_search=searches,
        student_search=student_searches,
        expected={"methods": names, "seeds": len(seeds)},
        throughput=bool(g.get("report_throughput", True)),
    )
    return {
        "stage": "grid",
        "cells_not_run": skipped,
        "table": table,
        "analyses": analyses,
        "report": {k: str(v) for k, v in report.items()},
    }


def _run_student(
    g: ConfigDict,
    task: str,
    teacher: Path,
    need_teacher: Callable[[], None],
    mem: Path,
    c: ConfigDict,
    out: Path,
    spec: str,
) -> None:
    """Run one student (a cell or a search candidate) into ``out``, building the task's
    teacher memory first if its objective needs one."""
    from fsd_jax.terms import needs_memory, parse_terms
    from fsd_jax.train.distill import run_distill
    from fsd_jax.train.finetune import run_finetune
    from fsd_jax.train.teacher_memory import run_memory

    need_teacher()
    if spec != NO_KD and needs_memory(parse_terms(c.objective)):
        if (mem / "memory.json").is_file():
            check_teacher(mem / "memory.json", teacher)
        if not (mem / "memory.npz").is_file():
            mc = _common(_stage_config(g, "memory.py", task), g, task)
            _apply(mc, g.get("memory"))
            mc.teacher, mc.progress = str(teacher), False
            run_memory(mc, mem)
        c.teacher_memory = str(mem)
    (run_finetune if spec == NO_KD else run_distill)(c, out)


def teacher_dirs(g: ConfigDict, task: str, workdir: Path) -> list[tuple[dict, Path]]:
    """(train overrides, directory) of each teacher the grid fine-tunes for ``task``: one,
    or one per candidate of ``grid.teacher_search`` (for the tasks of ``teacher_search_tasks``)."""
    candidates = teacher_candidates(g.get("teacher_search"))
    only = split_values(g.get("teacher_search_tasks") or "")
    if candidates == [{}] or (only and task not in only):
        return [({}, workdir / task / "teacher")]
    names = ("_".join(f"{k}-{v}" for k, v in c.items()) for c in candidates)
    return [
        (c, workdir / task / "teacher_search" / n) for c, n in zip(candidates, names, strict=True)
    ]


def _teacher(
    g: ConfigDict,
    task: str,
    workdir: Path,
    records: GridRecords,
    out_of_time: Callable[[], bool],
) -> tuple[Path, list[dict], Callable[[], None]] | None:
    """Fine-tune the task's teacher (every candidate of ``grid.teacher_search``, keeping the
    best dev score) unless done or recorded; return its directory, the candidates' scores and
    a function that fine-tunes the chosen teacher again if only its record is left (called
    when a cell needs the teacher itself). None: out of time before every candidate ran (the
    finished ones are recorded)."""
    from fsd_jax.train.finetune import run_finetune

    def config(train: Mapping[str, str]) -> ConfigDict:
        tc = _common(_stage_config(g, "finetune.py", task), g, task)
        _apply(tc, g.get("teacher"))
        _apply(tc, (g.get("teacher_per_task") or {}).get(task))
        for k, v in train.items():
            if k not in tc.train:
                raise ValueError(f"grid.teacher_search.{k}: no such field in config.train")
            tc.train[k] = type(tc.train[k])(v) if tc.train[k] is not None else v
        tc.progress = False
        return tc

    def fine_tune(train: Mapping[str, str], d: Path) -> None:
        log.info("grid: fine-tuning the %s teacher %s", task, train or "")
        run_finetune(config(train), d)
        records.save_teacher(d)

    dirs = teacher_dirs(g, task, workdir)
    for _, d in dirs:
        if (d / "results.json").is_file():
            records.save_teacher(d)
    for train, d in dirs:
        if not (d / "results.json").is_file() and records.results(d) is None:
            if out_of_time():
                return None
            fine_tune(train, d)
    dev = {
        d: (records.results(d) or json.loads((d / "results.json").read_text()))["dev"]
        for _, d in dirs
    }
    scored = [
        {"train": train, "dir": str(d), "score": next(iter(dev[d].values()))["score"]}
        for train, d in dirs
    ]
    best = max(range(len(scored)), key=lambda i: scored[i]["score"])  # first of equal scores
    chosen_train, chosen = dirs[best]

    def need_teacher() -> None:
        if not (chosen / "results.json").is_file():
            fine_tune(chosen_train, chosen)

    if len(dirs) == 1 and not chosen_train:
        return chosen, [], need_teacher
    scored[best]["chosen"] = True
    (workdir / task).mkdir(parents=True, exist_ok=True)
    (workdir / task / "teacher_search.json").write_text(json.dumps(scored, indent=2))
    if records.root:
        records.write(records.root / task / "teacher_search.json", scored)
    return chosen, scored, need_teacher


def _analyze(
    g: ConfigDict,
    c: ConfigDict,
    cell: Path,
    teacher: Path,
    task: str,
    need_teacher: Callable[[], None],
) -> None:
    """Analyse a finished cell against its teacher once (``grid.analysis_batches`` = 0: never);
    an analysis of an older format gets its restoration rate recomputed where needed, one
    against another teacher (a no-KD cell kept across a teacher change) is redone."""
    if not g.get("analysis_batches"):
        return
    from fsd_jax.analysis import analyze, refresh_restoration

    kw = {
        "data_dir": c.data.data_dir,
        "max_seq_length": c.data.max_seq_length,
        "num_batches": g.analysis_batches,
        "cache_dir": c.data.get("cache_dir"),
    }
    record = cell / "analysis" / "analysis.json"
    if record.is_file():
        made_from = other_teacher(record, teacher)
        if made_from is None:
            refresh_restoration(cell / "analysis", **kw)
            return
        # a no-KD cell does not depend on the teacher, so it is kept when the teacher
        # changes; only its comparison with the teacher is stale
        log.warning(
            "grid: %s was analysed against teacher %s, not %s: analysing it again",
            cell,
            made_from,
            teacher,
        )
    need_teacher()
    analyze(cell, teacher, task, cell / "analysis", **kw)


def _heatmaps(workdir: Path, task: str, methods: list[str], seeds: list[int]) -> dict:
    """Each method's CKA heat map from its lowest-numbered analysed seed of the grid."""
    maps = {}
    for m in methods:
        for cell in seed_dirs(workdir, task, m, seeds):
            f = cell / "analysis" / "analysis.json"
            if f.is_file():
                maps[m] = json.loads(f.read_text())["cka_heatmap"]
                break
    return maps
