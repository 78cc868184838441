"""Tables and plots of a finished (or half-finished) experiment grid (see :mod:`fsd_jax.experiments.grid`).

:func:`aggregate` collects each cell's dev metrics, :func:`aggregate_analyses` its analyses
(``<cell>/analysis/analysis.json``: CKA diagonal, restoration rate, relation differences) and
training throughput; :func:`write_report` turns both into ``results.md``, ``results.csv``,
``results.png`` (bars with error bars) and one ``cka_<task>.png`` per task (the CKA heat maps
of the methods side by side, FSD paper Fig. 5).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fsd_jax.experiments.paper_claims import claim_lines
from fsd_jax.experiments.stats import RELATIONS, Stat, relation_ranks, welch_interval
from fsd_jax.experiments.stats import stat as _stat


def seed_dirs(
    workdir: Path, task: str, method: str, seeds: Sequence[int] | None = None
) -> list[Path]:
    """The finished ``seed<k>`` cells of a method, by seed; only ``seeds`` when given (a report
    of ``--config.grid.seeds 0`` must not average in seed 1 because it happens to be there)."""
    cells = {}
    for f in (workdir / task / method).glob("seed*/results.json"):
        k = f.parent.name.removeprefix("seed")
        if k.isdigit() and (seeds is None or int(k) in seeds):
            cells[int(k)] = f.parent
    return [cells[k] for k in sorted(cells)]


def flat_dev(dev: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{"dev": {"accuracy": a}}`` → ``{"accuracy": a}``; several splits get a prefix."""
    if len(dev) == 1:
        return dict(next(iter(dev.values())))
    return {f"{split}/{k}": v for split, m in dev.items() for k, v in m.items()}


def aggregate(
    workdir: str | Path,
    tasks: list[str],
    methods: list[str],
    teachers: Mapping | None = None,
    seeds: Sequence[int] | None = None,
) -> dict:
    """Mean ± std (over seeds) of every dev metric, per task and method, from the cells' results.

    Returns ``{task: {method: {metric: (mean, std, n)}}}`` plus the teacher's metrics under
    ``"teacher"`` (``teachers[task]`` is its directory; default ``<task>/teacher``). ``seeds``:
    only those seeds' cells (default: every finished one).
    """
    workdir = Path(workdir)
    table: dict = {}
    for task in tasks:
        rows: dict = {}
        t_dir = Path((teachers or {}).get(task) or workdir / task / "teacher")
        if (t_dir / "results.json").is_file():
            dev = json.loads((t_dir / "results.json").read_text())["dev"]
            rows["teacher"] = {k: (v, 0.0, 1) for k, v in flat_dev(dev).items()}
        for m in methods:
            metrics = [
                flat_dev(json.loads((d / "results.json").read_text())["dev"])
                for d in seed_dirs(workdir, task, m, seeds)
            ]
            if metrics:
                keys = sorted(set.intersection(*(set(x) for x in metrics)))
                rows[m] = {k: _stat([x[k] for x in metrics]) for k in keys}
        table[task] = rows
    return table


def cell_throughput(result: Mapping[str, Any]) -> float:
    """Training examples per second of one cell: steady-state step time plus the time spent
    building a teacher cache; a phased run (TinyBERT) counts all its phases."""
    phases = result.get("phases") or {result.get("stage", ""): result}
    rates = [p.get("train_examples_per_s") for p in phases.values()]
    if not all(r and r > 0 for r in rates):
        return math.nan
    n = [p["epochs"] * p["train_examples"] for p in phases.values()]
    seconds = sum(ni / r for ni, r in zip(n, rates, strict=True))
    seconds += (result.get("teacher_cache") or {}).get("build_s", 0.0)
    return sum(n) / seconds


def cell_analysis(cell: Path) -> dict[str, float]:
    """The scalar analyses of one cell (empty if it was not analysed)."""
    f = cell / "analysis" / "analysis.json"
    if not f.is_file():
        return {}
    a = json.loads(f.read_text())
    out = {
        "cka_diagonal": a["cka_diagonal_mean"],
        "params": float(a["params"]["model"]),
        **a["relation_differences"],
    }
    for k, v in (a.get("restoration_rate") or {}).items():  # null: undefined (no positives)
        out[f"restoration_{k}"] = math.nan if v is None else v
    return out


def aggregate_analyses(
    workdir: str | Path,
    tasks: list[str],
    methods: list[str],
    seeds: Sequence[int] | None = None,
) -> dict:
    """``{task: {method: {key: (mean, std, n)}}}`` over seeds (only ``seeds`` when given):
    ``cka_diagonal``, ``restoration_{precision,recall,f1}``, the four relation differences,
    ``examples_per_s`` and ``speed_vs_vkd`` (mean examples/s over VKD's, when VKD is in the
    grid)."""
    workdir = Path(workdir)
    table: dict = {}
    for task in tasks:
        rows: dict = {}
        for m in methods:
            cells = seed_dirs(workdir, task, m, seeds)
            values: dict[str, list[float]] = {}
            for cell in cells:
                speed = cell_throughput(json.loads((cell / "results.json").read_text()))
                # NaN (undefined restoration value, unknown speed) is kept: n/a in the table
                for k, v in {**cell_analysis(cell), "examples_per_s": speed}.items():
                    values.setdefault(k, []).append(float(v))
            if values:
                rows[m] = {k: _stat(v) for k, v in values.items()}
        vkd = rows.get("vkd", {}).get("examples_per_s")
        for r in rows.values():
            if vkd and vkd[2] and r.get("examples_per_s", (0, 0, 0))[2]:
                r["speed_vs_vkd"] = (r["examples_per_s"][0] / vkd[0], 0.0, r["examples_per_s"][2])
        table[task] = rows
    return table


BASELINES = ("nokd", "vkd")  # every other method is compared with these on the main score


def _comparison_lines(rows: Mapping[str, Mapping[str, Stat]], key: str = "score") -> list[str]:
    """Each method against no-KD and VKD on ``key``: the difference of the means (×100) with
    its 95 % Welch interval; "yes" where the interval excludes 0."""
    base = [b for b in BASELINES if key in rows.get(b, {})]
    pairs = [
        (m, b)
        for m in rows
        if m != "teacher" and key in rows[m]
        for b in base
        if m != b and not (m == "nokd" and b == "vkd")
    ]
    found = [
        (m, b, w) for m, b in pairs if (w := welch_interval(rows[m][key], rows[b][key])) is not None
    ]
    if not found:
        return []
    lines = [
        f"Differences in {key} (×100, mean over seeds, 95 % Welch interval); separated: the "
        "interval excludes 0.",
        "",
        "| method | against | difference | 95 % interval | separated |",
        "|---|---|---|---|---|",
    ]
    for m, b, (d, lo, hi) in found:
        sep = "yes" if lo > 0 or hi < 0 else "no"
        lines.append(f"| {m} | {b} | {100 * d:+.2f} | [{100 * lo:+.2f}, {100 * hi:+.2f}] | {sep} |")
    return [*lines, ""]


def _fmt(stat: Stat | None, scale: float = 100.0, digits: int = 2) -> str:
    if stat is None:
        return "—"
    mean, std, n = stat
    if n == 0:
        return "n/a"
    if n > 1:
        return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"
    return f"{scale * mean:.{digits}f}"


def _analysis_lines(rows: Mapping[str, Mapping[str, Stat]], throughput: bool) -> list[str]:
    ranks = relation_ranks(rows)
    head = (
        "| method | CKA diag | restoration P / R / F1 / agree | inter euclid | inter cos "
        "| intra euclid | intra cos | mean rank | params (M) |"
    )
    head += " examples/s | ÷ VKD |" if throughput else ""
    lines = [head, "|---" * (11 if throughput else 9) + "|"]
    for m, r in rows.items():
        rest = " / ".join(
            _fmt(r.get(f"restoration_{k}")) for k in ("precision", "recall", "f1", "agreement")
        )
        rel = [
            f"{_fmt(r.get(k), 1.0, 3)} ({ranks[m][k]})" if k in ranks[m] else "—" for k in RELATIONS
        ]
        mean_rank = f"{ranks[m]['mean']:.2f}" if "mean" in ranks[m] else "—"
        lines.append(
            f"| {m} | {_fmt(r.get('cka_diagonal'), 1.0, 3)} | {rest} | "
            + " | ".join(rel)
            + f" | {mean_rank} | {_fmt(r.get('params'), 1e-6, 2)} |"
            + (
                f" {_fmt(r.get('examples_per_s'), 1.0, 1)} | {_fmt(r.get('speed_vs_vkd'), 1.0, 3)} |"
                if throughput
                else ""
            )
        )
    return lines


def write_report(
    table: dict,
    out_dir: str | Path,
    title: str = "Results",
    *,
    analyses: dict | None = None,
    heatmaps: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    preamble: str = "",
    teacher_search: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    student_search: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    expected: Mapping[str, Any] | None = None,
    throughput: bool = True,
) -> dict[str, Path]:
    """``results.md`` (mean ± std over seeds, ×100), ``results.csv``, ``results.png`` (bars with
    error bars of each task's main score) and, given ``heatmaps[task][method]``, one
    ``cka_<task>.png`` per task into ``out_dir``. ``expected = {"methods": [...], "seeds": n}``
    adds a "not run yet" row for each planned method without a finished cell. ``throughput``
    False leaves out the examples/s columns (cells that shared their machine)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble.rstrip(), ""]
    rows_csv = []
    plots = {"plot": _plot(table, out / "results.png")}
    for task, rows in table.items():
        metrics = sorted({k for r in rows.values() for k in r}) or ["dev"]  # nothing ran yet
        lines += [f"## {task}", "", "| method | seeds | " + " | ".join(metrics) + " |"]
        lines.append("|---|---|" + "---|" * len(metrics))
        for method, r in rows.items():
            n = max(v[2] for v in r.values()) if r else 0
            lines.append(
                f"| {method} | {n} | " + " | ".join(_fmt(r.get(k)) for k in metrics) + " |"
            )
            for k, (mean, std, count) in r.items():
                rows_csv.append([task, method, k, mean, std, count])
        missing = [m for m in (expected or {}).get("methods", []) if m not in rows]
        for method in missing:
            lines.append(f"| {method} | 0 | " + " | ".join("not run yet" for _ in metrics) + " |")
        if expected and expected.get("seeds"):
            lines += ["", f"Planned: {expected['seeds']} seed(s) per method."]
        lines.append("")
        lines += _comparison_lines(rows)
        search = (teacher_search or {}).get(task)
        if search:
            title = "Teacher tuning (dev score of each candidate; the best is the teacher):"
            lines += _search_lines(title, search, "train")
        for method, found in ((student_search or {}).get(task) or {}).items():
            title = (
                f"Student tuning, {method} (dev score of each candidate with the search seed; "
                "the best is used for every seed):"
            )
            lines += _search_lines(title, found, "settings")
        a_rows = (analyses or {}).get(task)
        if a_rows:
            lines += [f"### {task}: analyses against the teacher (dev)", ""]
            lines += [*_analysis_lines(a_rows, throughput), ""]
            for method, r in a_rows.items():
                for k, (mean, std, count) in r.items():
                    rows_csv.append([task, method, k, mean, std, count])
        lines += claim_lines(task, rows, a_rows)
        task_heatmaps = (heatmaps or {}).get(task)
        if task_heatmaps:
            png = _plot_heatmaps(task_heatmaps, out / f"cka_{task}.png", task)
            plots[f"cka_{task}"] = png
            lines += [f"![CKA heat maps, {task}]({png.name})", ""]
    lines += ["![dev scores](results.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "method", "metric", "mean", "std", "seeds"])
        w.writerows(rows_csv)
    return {"markdown": out / "results.md", "csv": out / "results.csv", **plots}


def _search_lines(title: str, candidates: Sequence[Mapping[str, Any]], field: str) -> list[str]:
    keys = sorted({k for c in candidates for k in c[field]})
    lines = [title, ""]
    lines += ["| " + " | ".join(keys) + " | dev score | chosen |", "|---" * (len(keys) + 2) + "|"]
    for c in candidates:
        chosen = "✓" if c.get("chosen") else ""
        vals = " | ".join(str(c[field].get(k, "")) for k in keys)
        lines.append(f"| {vals} | {100 * c['score']:.2f} | {chosen} |")
    return [*lines, ""]


def _plot(table: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in table if table[t]]  # a task with nothing finished gets no panel
    fig, axes = plt.subplots(
        1, max(1, len(tasks)), figsize=(4.5 * max(1, len(tasks)), 3.4), squeeze=False
    )
    for ax, task in zip(axes[0], tasks, strict=False):
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


def _plot_heatmaps(maps: Mapping[str, np.ndarray], path: Path, task: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, len(maps))
    nrows = math.ceil(len(maps) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (method, m) in zip(axes.flat, maps.items(), strict=False):
        m = np.asarray(m)
        ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"{method}\ndiag {np.mean(np.diag(m)):.3f}", fontsize=8)
    fig.suptitle(f"{task}: CKA(teacher batch i, model batch j), seed of the first cell", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
