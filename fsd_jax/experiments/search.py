"""The grid's searches: candidate settings, and running a method's student search.

``grid.teacher_search`` (fields of ``config.train``) and ``grid.student_search`` (nested config
fields, per method name or ``"*"``) give comma-separated values; every combination is one
candidate, run on one seed, and the best dev score is chosen (the first of equal ones).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from fsd_jax.experiments.cell_checks import check_student_depth, check_teacher, recorded
from fsd_jax.experiments.records import GridRecords

log = logging.getLogger("fsd_jax.experiments.grid")  # the grid's log, as before the split


def split_values(value: Any) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` → ``["a", "b"]`` (a grid option's comma-separated list)."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def teacher_candidates(search: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """``{"learning_rate": "3e-5,1e-4", "num_epochs": "3"}`` → one dict per combination
    (fields of ``config.train``, values as strings, in the given order)."""
    search = search or {}
    keys = list(search)
    grids = [split_values(search[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grids)]


def student_candidates(g: ConfigDict, name: str) -> list[dict[str, str]]:
    """The settings ``grid.student_search`` gives the method named ``name``: its own entry and
    the ``"*"`` entry (every method), nested config fields with comma-separated values
    (``{"train": {"learning_rate": "3e-5,5e-5"}}``), one dict of dotted fields per
    combination; ``[{}]`` when there is nothing to search. A value ``"=other.field"`` ties a
    field to a searched one (it takes that field's value in every candidate: e.g. FSD-IL's two
    structure weights searched as one)."""
    search = dict(g.get("student_search") or {})
    fields = {**_dotted(search.get("*")), **_dotted(search.get(name))}
    tied = {k: str(v)[1:] for k, v in fields.items() if str(v).startswith("=")}
    for k, source in tied.items():
        if source not in fields or source in tied:
            raise ValueError(
                f"grid.student_search.{name}: {k} = '={source}': "
                f"expected one of the searched fields ({', '.join(sorted(set(fields) - set(tied)))})"
            )
    free = teacher_candidates({k: v for k, v in fields.items() if k not in tied})
    return [{k: c[tied[k]] if k in tied else c[k] for k in fields} for c in free]


def _dotted(tree: Any, prefix: str = "") -> dict[str, str]:
    if not isinstance(tree, Mapping | ConfigDict):
        return {prefix[:-1]: tree} if prefix else {}
    out: dict[str, str] = {}
    for k, v in dict(tree).items():
        out.update(_dotted(v, f"{prefix}{k}."))
    return out


def set_fields(config: ConfigDict, fields: Mapping[str, str]) -> ConfigDict:
    """Set dotted ``fields`` (values as strings, converted to each field's type)."""
    for dotted, value in fields.items():
        *parents, leaf = dotted.split(".")
        node = config
        for p in parents:
            node = node.get(p) if isinstance(node, ConfigDict) else None
        if not isinstance(node, ConfigDict) or leaf not in node:
            raise ValueError(f"grid.student_search: {dotted}: no such field in the run's config")
        old = node[leaf]
        node[leaf] = value if old is None or isinstance(old, str) else type(old)(float(value))
    return config


def candidate_dir(base: Path, fields: Mapping[str, str]) -> Path:
    """Where a method's student-search candidate ``fields`` runs, under the method's folder."""
    return base / "search" / "_".join(f"{k}-{v}" for k, v in fields.items())


def student_search(
    g: ConfigDict,
    task: str,
    name: str,
    cell: Callable[[int], ConfigDict],
    teacher: Path,
    base: Path,
    records: GridRecords,
    out_of_time: Callable[[], bool],
    run: Callable[[ConfigDict, Path], None],
) -> tuple[dict[str, str], list[dict]] | None:
    """Run every candidate of method ``name``'s student search on ``task`` (the config
    ``cell(grid.search_seed)`` with the candidate's fields, into ``base/search/…``) that is
    neither done nor recorded; return the chosen settings (best dev score, the first of equal
    ones) and the scored candidates (``({}, [])`` without a search; None: out of time before
    every candidate ran)."""
    candidates = student_candidates(g, name)
    if candidates == [{}]:
        return {}, []
    seed = int(g.get("search_seed") or 0)
    searched = cell(seed)  # what a done candidate is checked against (the fields set aside)
    scored = []
    for fields in candidates:
        d = candidate_dir(base, fields)
        if (d / "results.json").is_file():
            check_teacher(d / "results.json", teacher)
            check_student_depth(json.loads((d / "results.json").read_text()), d, searched)
            records.save(d)
        elif recorded(g, records, d, teacher, analysed=False):
            check_student_depth(records.results(d) or {}, records.where(d), searched)
        else:
            if out_of_time():
                return None
            log.info("grid: %s %s search %s", task, name, fields)
            run(set_fields(cell(seed), fields), d)
            records.save(d)
        dev = (records.results(d) or json.loads((d / "results.json").read_text()))["dev"]
        scored.append(
            {"settings": fields, "dir": str(d), "score": next(iter(dev.values()))["score"]}
        )
    best = max(range(len(scored)), key=lambda i: scored[i]["score"])
    scored[best]["chosen"] = True
    base.mkdir(parents=True, exist_ok=True)
    (base / "search.json").write_text(json.dumps(scored, indent=2))
    if records.root:
        records.write(records.root / task / name / "search.json", scored)
    return candidates[best], scored


def reuse_search_run(
    g: ConfigDict, scored: list[dict], seed: int, out: Path, cell: ConfigDict
) -> bool:
    """Make the seed cell ``out`` a copy of its search's run of the chosen settings when that
    run is the same training: the cell's seed is ``grid.search_seed`` and the run's settings
    (``train_config.json``, as a resumed run compares them) are the cell's. Large files are
    hard links (``results.json`` is written anew); False, and nothing copied, otherwise (the
    cell then runs)."""
    from fsd_jax.train.training_run import fingerprint

    best = next((c for c in scored if c.get("chosen")), None)
    if seed != int(g.get("search_seed") or 0) or best is None or out.exists():
        return False
    chosen = Path(best["dir"])
    if not (chosen / "results.json").is_file() or not (chosen / "train_config.json").is_file():
        return False  # only recorded (another machine's workdir): run the cell
    made = fingerprint(ConfigDict(json.loads((chosen / "train_config.json").read_text())))
    wanted = fingerprint(cell)
    # the memory is the task's, set on the config when the run starts
    made.pop("teacher_memory", None)
    wanted.pop("teacher_memory", None)
    if made != wanted:
        diff = sorted(k for k in made.keys() | wanted.keys() if made.get(k) != wanted.get(k))
        log.warning("grid: %s differs from the search run %s in %s: running it", out, chosen, diff)
        return False

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem
            shutil.copy2(src, dst)

    shutil.copytree(chosen, out, copy_function=link)
    results = json.loads((out / "results.json").read_text())
    results["student_search"] = best["settings"]
    # relative to the method's folder: records are read on other machines
    results["reused_search_run"] = os.path.relpath(chosen, out.parent)
    (out / "results.json").unlink()  # a link to the search run's file: not written through
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log.info("grid: %s is the search run %s (same settings and seed): copied", out, chosen)
    return True
