"""Records of an experiment grid: the few KB of each finished run that its report is made of.

A grid's workdir holds checkpoints and exported models, hundreds of MB per task, which no one
commits and a lost or cleaned disk takes with it. Its records, under ``grid.records_dir``, hold
only the report's inputs — each teacher's and cell's ``results.json``, each cell's
``analysis/analysis.json`` and each ``teacher_search.json`` — in the workdir's layout, with the
paths inside them made relative to the workdir. Committed beside the report, they let the grid
go on where it stopped on another machine: a cell with a record is not run again, and a teacher
is fine-tuned again only when a missing cell needs it, and must then reproduce its record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fsd_jax.experiments.report import flat_dev

# the fields of records that name runs of the grid
PATH_FIELDS = ("teacher", "model", "dir", "export")


class GridRecords:
    """The records of the runs under ``workdir``, kept under ``root`` (None: no records)."""

    def __init__(self, root: str | Path | None, workdir: str | Path) -> None:
        self.root = Path(root) if root else None
        self.workdir = Path(workdir)

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the workdir (as written in records); unchanged if outside it."""
        try:
            return Path(path).resolve().relative_to(self.workdir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def where(self, run: Path) -> Path | None:
        """The record of the workdir's ``run`` directory (None without records)."""
        return self.root / self.relative(run) if self.root else None

    def results(self, run: Path) -> dict | None:
        """The recorded ``results.json`` of ``run``, if there is one."""
        return _read(self.where(run), "results.json")

    def analysis(self, run: Path) -> dict | None:
        """The recorded ``analysis/analysis.json`` of ``run``, if there is one."""
        return _read(self.where(run), "analysis/analysis.json")

    def save(self, run: Path) -> None:
        """Copy ``run``'s ``results.json`` and, if any, ``analysis/analysis.json`` into its
        record, replacing what was there."""
        if self.root is None:
            return
        record = self.root / self.relative(run)
        for name in ("results.json", "analysis/analysis.json"):
            if (run / name).is_file():
                self.write(record / name, json.loads((run / name).read_text()))

    def save_teacher(self, run: Path) -> None:
        """Record a fine-tuned teacher. One fine-tuned again (its workdir was lost) must give
        the dev metrics of its record, or the grid would mix students of two teachers; its
        record is then kept as it is, since wall time and the last digits of train metrics
        differ from run to run and a committed record should not change on every start."""
        recorded = self.results(run)
        if recorded is not None:
            dev = json.loads((run / "results.json").read_text())["dev"]
            if dev != recorded["dev"]:
                raise ValueError(
                    f"grid: teacher {run} fine-tuned again scores {flat_dev(dev)} on dev, its record "
                    f"{self.where(run)} {flat_dev(recorded['dev'])}: the runs are not reproducible "
                    "here (other package versions or hardware?); move the task's records away "
                    "to redo the task with this teacher"
                )
            return
        self.save(run)

    def write(self, path: Path, obj: Any) -> None:
        """Write ``obj`` as JSON to ``path`` (replaced atomically), run paths made relative."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._relative_paths(obj), indent=2))
        tmp.replace(path)

    def _relative_paths(self, obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: self.relative(v)
                if k in PATH_FIELDS and isinstance(v, str)
                else self._relative_paths(v)
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [self._relative_paths(v) for v in obj]
        return obj


def _read(record: Path | None, name: str) -> dict | None:
    if record is None or not (record / name).is_file():
        return None
    return json.loads((record / name).read_text())
