"""Experiment grid: methods × tasks × seeds, with the teacher and memory of a task reused.

Layout under the grid's workdir::

    <task>/teacher            stage finetune (the teacher, once per task)
    <task>/memory             stage memory (once per task, if a method needs it)
    <task>/<method>/seed<k>   one cell: stage distill (or finetune for ``nokd``)

A cell whose ``results.json`` exists is done and skipped; an interrupted cell resumes from its
checkpoints, so running the grid again continues a half-finished grid. :func:`aggregate` turns the
cells into mean ± std tables (Markdown, CSV) and a bar plot.
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ml_collections import ConfigDict
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

NO_KD = "nokd"  # the student fine-tuned on the labels alone


def method_name(spec: str) -> str:
    """``"tinybert:kl+one_stage"`` → ``"tinybert-kl-one_stage"`` (a directory and table name).

    A method spec is a config file of ``configs/distill`` with optional variants after ``:``
    joined by ``+`` (commas separate the methods of a grid).
    """
    file, _, variants = spec.partition(":")
    return "-".join([file, *[v for v in variants.split("+") if v]])


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


def _split(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def cell_config(grid: ConfigDict, task: str, spec: str, seed: int, teacher: Path) -> ConfigDict:
    """The config of one cell: the method's config for ``task`` with the grid's overrides."""
    from configs import finetune

    if spec == NO_KD:
        c = finetune.get_config(task)
        c.model.layers = grid.student_layers
    else:
        file, _, variants = spec.partition(":")
        module = importlib.import_module(f"configs.distill.{file}")
        c = module.get_config(",".join([task, *[v for v in variants.split("+") if v]]))
        c.teacher = str(teacher)
        c.model.layers = grid.student_layers
    c.seed = seed
    c.progress = False
    _apply(c, grid.get("common"))
    _apply(c, grid.get("student"))
    _apply(c, (grid.get("methods_overrides") or {}).get(method_name(spec)))
    return c


def run_grid(config: ConfigDict, workdir: str | Path) -> dict:
    """Run every missing cell of ``config.grid`` under ``workdir``; return :func:`aggregate`."""
    from configs import finetune, memory
    from fsd_jax.objective import needs_memory, parse_terms
    from fsd_jax.train.distill import run_distill
    from fsd_jax.train.finetune import run_finetune
    from fsd_jax.train.teacher_memory import run_memory

    g = config.grid
    workdir = Path(workdir)
    tasks, methods = _split(g.tasks), _split(g.methods)
    seeds = [int(s) for s in _split(g.seeds)]
    cells = [(t, m, s) for t in tasks for m in methods for s in seeds]
    bar = tqdm(total=len(cells), desc="grid", disable=not config.get("progress", True))
    for task in tasks:
        teacher = workdir / task / "teacher"
        if not (teacher / "results.json").is_file():
            tc = _apply(finetune.get_config(task), g.get("common"))
            _apply(tc, g.get("teacher"))
            _apply(tc, (g.get("teacher_per_task") or {}).get(task))
            tc.progress = False
            log.info("grid: fine-tuning the %s teacher", task)
            run_finetune(tc, teacher)
        mem = workdir / task / "memory"
        for spec in methods:
            for seed in seeds:
                out = workdir / task / method_name(spec) / f"seed{seed}"
                bar.set_postfix_str(f"{task} {method_name(spec)} seed {seed}")
                if (out / "results.json").is_file():
                    bar.update(1)
                    continue
                c = cell_config(g, task, spec, seed, teacher)
                if spec != NO_KD and needs_memory(parse_terms(c.objective)):
                    if not (mem / "memory.npz").is_file():
                        mc = _apply(memory.get_config(task), g.get("common"))
                        _apply(mc, g.get("memory"))
                        mc.teacher, mc.progress = str(teacher), False
                        run_memory(mc, mem)
                    c.teacher_memory = str(mem)
                (run_finetune if spec == NO_KD else run_distill)(c, out)
                bar.update(1)
    bar.close()
    table = aggregate(workdir, tasks, [method_name(m) for m in methods])
    report = write_report(
        table, g.get("report_dir") or workdir / "report", g.get("title", "Results")
    )
    return {"stage": "grid", "table": table, "report": {k: str(v) for k, v in report.items()}}


def _cells(workdir: Path, task: str, method: str) -> list[dict]:
    out = []
    for f in sorted((workdir / task / method).glob("seed*/results.json")):
        out.append(json.loads(f.read_text()))
    return out


def aggregate(workdir: str | Path, tasks: list[str], methods: list[str]) -> dict:
    """Mean ± std (over seeds) of every dev metric, per task and method, from the cells' results.

    Returns ``{task: {method: {metric: (mean, std, n)}}}`` plus the teacher's metrics under
    ``"teacher"``.
    """
    workdir = Path(workdir)
    table: dict = {}
    for task in tasks:
        rows: dict = {}
        t_file = workdir / task / "teacher" / "results.json"
        if t_file.is_file():
            dev = json.loads(t_file.read_text())["dev"]
            rows["teacher"] = {k: (v, 0.0, 1) for k, v in _flat(dev).items()}
        for m in methods:
            cells = _cells(workdir, task, m)
            if not cells:
                continue
            metrics = [_flat(c["dev"]) for c in cells]
            keys = sorted(set.intersection(*(set(x) for x in metrics)))
            rows[m] = {
                k: (
                    float(np.mean([x[k] for x in metrics])),
                    float(np.std([x[k] for x in metrics], ddof=1)) if len(metrics) > 1 else 0.0,
                    len(metrics),
                )
                for k in keys
            }
        table[task] = rows
    return table


def _flat(dev: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{"dev": {"accuracy": a}}`` → ``{"accuracy": a}``; several splits get a prefix."""
    if len(dev) == 1:
        return dict(next(iter(dev.values())))
    return {f"{split}/{k}": v for split, m in dev.items() for k, v in m.items()}


def write_report(table: dict, out_dir: str | Path, title: str = "Results") -> dict[str, Path]:
    """``results.md`` (mean ± std, ×100), ``results.csv`` and ``results.png`` (bars with error
    bars of each task's main score) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    rows_csv = []
    for task, rows in table.items():
        metrics = sorted({k for r in rows.values() for k in r})
        lines += [f"## {task}", "", "| method | seeds | " + " | ".join(metrics) + " |"]
        lines.append("|---|---|" + "---|" * len(metrics))
        for method, r in rows.items():
            n = max(v[2] for v in r.values()) if r else 0
            cells = [
                f"{100 * r[k][0]:.2f} ± {100 * r[k][1]:.2f}" if k in r else "—" for k in metrics
            ]
            lines.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
            for k, (mean, std, count) in r.items():
                rows_csv.append([task, method, k, mean, std, count])
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "method", "metric", "mean", "std", "seeds"])
        w.writerows(rows_csv)
    png = _plot(table, out / "results.png")
    return {"markdown": out / "results.md", "csv": out / "results.csv", "plot": png}


def _plot(table: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(table)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = table[task]
        key = next(
            (
                k
                for k in ("score", "accuracy", "matthews", "pearson")
                if any(k in r for r in rows.values())
            ),
            None,
        )
        names = [m for m, r in rows.items() if key in r]
        means = [100 * rows[m][key][0] for m in names]
        stds = [100 * rows[m][key][1] for m in names]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{task} ({key})", fontsize=9)
        if means:
            ax.set_ylim(max(0.0, min(means) - 10), min(100.0, max(means) + 5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
