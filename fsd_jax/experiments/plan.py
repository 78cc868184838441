"""What a grid has left to run and about how long it will take (``grid.plan=True``).

Reads the workdir and the records only (nothing is trained): per task and method, the teacher,
student-search candidates and seed cells not yet done, and an estimate of their time from the
median wall time of the runs already done for the same task and method (else of the task's
other student runs). The search seed's cell of a searched method costs nothing when its search
ran in this workdir (it is a copy of the chosen candidate, :func:`~fsd_jax.experiments.search.
reuse_search_run`). An estimate, for planning sessions or cluster time: a run's wall time
depends on the machine and on what else it ran beside.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ml_collections import ConfigDict

from fsd_jax.experiments.grid import method_name, teacher_dirs
from fsd_jax.experiments.records import GridRecords
from fsd_jax.experiments.search import candidate_dir, split_values, student_candidates


def grid_plan(config: ConfigDict, workdir: str | Path) -> dict:
    """The runs ``config.grid`` has left under ``workdir`` with their estimated hours.

    Returns ``{"rows": [...], "runs_left", "hours_left", "unknown"}``; ``unknown`` counts runs
    with no finished run of their task to estimate from.
    """
    g = config.grid
    workdir = Path(workdir)
    records = GridRecords(g.get("records_dir"), workdir)
    search_seed = int(g.get("search_seed") or 0)

    def results(d: Path) -> dict | None:
        if (d / "results.json").is_file():
            return json.loads((d / "results.json").read_text())
        return records.results(d)

    rows: list[dict] = []
    for task in split_values(g.tasks):
        teachers = [d for _, d in teacher_dirs(g, task, workdir)]
        per_method: dict[str, tuple[list[Path], list[Path], list[float]]] = {}
        for spec in split_values(g.methods):
            name = method_name(spec)
            base = workdir / task / name
            search = [candidate_dir(base, f) for f in student_candidates(g, name) if f]
            local = all((d / "results.json").is_file() or results(d) is None for d in search)
            cells = [
                base / f"seed{s}"
                for s in (int(v) for v in split_values(g.seeds))
                if not (search and local and s == search_seed)  # a copy of the search run
            ]
            done = [r for d in search + cells if (r := results(d)) is not None]
            walls = [float(r["wall_time_s"]) for r in done if r.get("wall_time_s")]
            left = [d for d in search + cells if results(d) is None]
            per_method[name] = (search, left, walls)
        task_walls = [w for _, _, walls in per_method.values() for w in walls]
        teacher_walls = [float(r.get("wall_time_s") or 0) for d in teachers if (r := results(d))]
        left_teachers = [d for d in teachers if results(d) is None]
        if left_teachers:
            rows.append(_row(task, "teacher", len(left_teachers), teacher_walls))
        for name, (search, left, walls) in per_method.items():
            if left:
                row = _row(task, name, len(left), walls or task_walls)
                row["search_left"] = sum(1 for d in left if d in search)
                rows.append(row)
    known = [r for r in rows if r["minutes_per_run"] is not None]
    return {
        "rows": rows,
        "runs_left": sum(r["runs_left"] for r in rows),
        "hours_left": sum(r["hours"] for r in known),
        "unknown": sum(r["runs_left"] for r in rows if r["minutes_per_run"] is None),
    }


def _row(task: str, name: str, left: int, walls: list[float]) -> dict:
    minutes = statistics.median(walls) / 60 if walls else None
    return {
        "task": task,
        "method": name,
        "runs_left": left,
        "search_left": 0,
        "minutes_per_run": minutes,
        "hours": left * minutes / 60 if minutes is not None else 0.0,
    }


def format_plan(plan: dict) -> str:
    """The plan as a Markdown table and a total line."""
    lines = [
        "| task | method | runs left | of which search | min / run (median of done) | hours |",
        "|---|---|---|---|---|---|",
    ]
    for r in plan["rows"]:
        m = r["minutes_per_run"]
        lines.append(
            f"| {r['task']} | {r['method']} | {r['runs_left']} | {r['search_left']} | "
            f"{'unknown' if m is None else f'{m:.1f}'} | {r['hours']:.2f} |"
        )
    total = f"{plan['runs_left']} runs left, about {plan['hours_left']:.1f} hours"
    if plan["unknown"]:
        total += f" and {plan['unknown']} runs with no finished run of their task to go by"
    return "\n".join([*lines, "", total])


def print_plan(config: ConfigDict, workdir: str | Path) -> dict:
    """Print :func:`format_plan` of :func:`grid_plan` (the ``grid.plan`` stage); its dict."""
    plan = grid_plan(config, workdir)
    print(format_plan(plan))
    return {"stage": "grid", **plan}
