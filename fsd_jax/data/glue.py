"""GLUE examples from the original ``glue_data`` TSV files or from the Hugging Face hub.

Both sources produce the same :class:`Examples`: texts, and labels as class ids in the hub's
ClassLabel order (float scores for STS-B).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fsd_jax.data.tasks import Task, get_task

log = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and the cause."""


@dataclasses.dataclass(frozen=True)
class Examples:
    """One split of a task: parallel texts and labels."""

    task: Task
    split: str
    text_a: tuple[str, ...]
    text_b: tuple[str, ...] | None
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.text_a)


def _column_index(layout_col: str | int, header: list[str] | None, path: Path) -> int:
    if isinstance(layout_col, int):
        return layout_col
    assert header is not None
    try:
        return header.index(layout_col)
    except ValueError:
        raise DataError(f"{path}:1: header has no column {layout_col!r} (found {header})") from None


def _parse_label(task: Task, raw: str, where: str) -> float | int:
    raw = raw.strip()
    if task.is_regression:
        try:
            score = float(raw)
        except ValueError:
            raise DataError(f"{where}: label {raw!r} is not a number") from None
        low, high = task.score_range or (-math.inf, math.inf)
        if not (math.isfinite(score) and low <= score <= high):
            bounds = f"in [{low:g}, {high:g}]" if task.score_range else "finite"
            raise DataError(f"{where}: label {raw!r}: {task.name} scores must be {bounds}")
        return score
    try:
        return task.tsv_label_values.index(raw)
    except ValueError:
        raise DataError(
            f"{where}: unknown label {raw!r}; expected one of {list(task.tsv_label_values)}"
        ) from None


def _read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # utf-8-sig: the MRPC files start with a byte-order mark
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: byte 0x{data[e.start]:02x} is not UTF-8 (GLUE files are UTF-8; "
            "re-encode the file, e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return text.split("\n")


def _check_sentences(path: Path, text_a: list, text_b: list, lines_of: list[int]) -> None:
    """Rows with an empty sentence train on nothing: a warning, or an error if every row has one."""
    empty = [
        line
        for i, line in enumerate(lines_of)
        if not text_a[i].strip() or (text_b and not text_b[i].strip())
    ]
    if len(empty) == len(lines_of):
        raise DataError(f"{path}: every row has an empty sentence (first: line {empty[0]})")
    if empty:
        log.warning(
            "%s: %d of %d rows have an empty sentence (first: line %d)",
            path,
            len(empty),
            len(lines_of),
            empty[0],
        )


def read_tsv(
    task: Task,
    path: str | os.PathLike,
    split: str = "train",
    on_bad_row: Literal["error", "skip"] = "error",
) -> Examples:
    """Read a GLUE ``.tsv`` file as the GLUE script writes it (tab-split, no quoting).

    Args:
      task: the task whose layout the file follows.
      path: the file.
      split: split name recorded in the result.
      on_bad_row: ``"error"`` stops at the first row with a wrong column count or label;
        ``"skip"`` drops such rows with one warning (some public QQP copies have them).

    Raises:
      DataError: a missing or empty file, a ragged row or an unknown label, naming file and line.
    """
    path = Path(path)
    _check_file(path, task, split)
    layout = task.tsv
    lines = _read_lines(path)
    while lines and not lines[-1].strip("\r"):
        lines.pop()
    header = None
    start = 0
    if layout.has_header:
        if not lines:
            raise DataError(f"{path}: empty file (task {task.name}, split {split})")
        header = lines[0].rstrip("\r").split("\t")
        start = 1
    num_columns = len(header) if header is not None else layout.num_columns
    text_idx = [_column_index(c, header, path) for c in layout.text_columns]
    label_idx = _column_index(layout.label_column, header, path)
    text_a, text_b, labels, skipped = [], [], [], []
    lines_of: list[int] = []
    for lineno in range(start + 1, len(lines) + 1):
        line = lines[lineno - 1].rstrip("\r")
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        try:
            if len(fields) != num_columns:
                raise DataError(
                    f"{where}: expected {num_columns} tab-separated columns, found {len(fields)}"
                )
            label = _parse_label(task, fields[label_idx], where)
        except DataError as e:
            if on_bad_row == "error":
                raise
            skipped.append(str(e))
            continue
        labels.append(label)
        lines_of.append(lineno)
        text_a.append(fields[text_idx[0]])
        if len(text_idx) > 1:
            text_b.append(fields[text_idx[1]])
    if skipped:
        log.warning("%s: skipped %d malformed rows, first: %s", path, len(skipped), skipped[0])
    if not labels:
        raise DataError(f"{path}: no examples (task {task.name}, split {split} is empty)")
    _check_sentences(path, text_a, text_b, lines_of)
    dtype = np.float32 if task.is_regression else np.int32
    return Examples(
        task,
        split,
        tuple(text_a),
        tuple(text_b) if text_idx[1:] else None,
        np.asarray(labels, dtype=dtype),
        str(path),
    )


def examples_from_dataset(task: Task, dataset: Any, split: str, source: str) -> Examples:
    """Convert a ``datasets.Dataset`` with the hub's GLUE schema into :class:`Examples`."""
    missing = [c for c in (*task.hub_text_columns, "label") if c not in dataset.column_names]
    if missing:
        raise DataError(f"{source}: columns {missing} missing (found {dataset.column_names})")
    feature = dataset.features["label"]
    names = getattr(feature, "names", None)
    if names is not None and tuple(names) != task.label_names:
        raise DataError(f"{source}: label names {names} differ from {list(task.label_names)}")
    labels = np.asarray(dataset["label"], dtype=np.float32 if task.is_regression else np.int32)
    if len(labels) == 0:
        raise DataError(f"{source}: no examples (task {task.name}, split {split} is empty)")
    if not task.is_regression and (labels < 0).any():
        raise DataError(f"{source}: split {split} has no labels (-1); it is a test split")
    cols = [tuple(dataset[c]) for c in task.hub_text_columns]
    return Examples(task, split, cols[0], cols[1] if len(cols) > 1 else None, labels, source)


def load_examples(
    task: str | Task,
    split: str,
    data_dir: str | os.PathLike | None = None,
    on_bad_row: Literal["error", "skip"] = "error",
) -> Examples:
    """Examples of ``task``'s ``split`` (``"train"``, ``"dev"``, or MNLI's two dev splits).

    Args:
      task: a task name or :class:`Task`.
      split: split name.
      data_dir: a GLUE directory (``<data_dir>/<TASK>/<split>.tsv``) or a task folder; when
        None, the task's built-in directory if it has one, else the hub (``nyu-mll/glue``).
      on_bad_row: see :func:`read_tsv`.
    """
    task = get_task(task) if isinstance(task, str) else task
    split = _split_name(task, split)
    path = task_file(task, split, data_dir)
    if path is not None:
        return read_tsv(task, path, split, on_bad_row)
    import datasets

    source = f"{HUB_DATASET}/{task.hub_config}:{task.hub_split(split)}"
    try:
        ds = datasets.load_dataset(HUB_DATASET, task.hub_config, split=task.hub_split(split))
    except Exception as e:
        raise DataError(
            f"{source}: could not load from the Hugging Face hub ({type(e).__name__}); "
            "pass a local GLUE directory with --config.data.data_dir"
        ) from None
    return examples_from_dataset(task, ds, split, source)


def task_file(task: Task, split: str, data_dir: str | os.PathLike | None) -> Path | None:
    """The local ``.tsv`` file that :func:`load_examples` reads for ``task``'s ``split``, or
    None when it comes from the hub. Checked before a run loads any model, so that a wrong
    ``--config.data.data_dir`` fails in a second, not after the checkpoint is read.

    Raises:
      DataError: an unknown split, a missing data directory or file, naming it.
    """
    split = _split_name(task, split)
    stem = "train" if split == "train" else task.dev_splits[split]
    if data_dir is None and task.builtin_dir is not None:
        data_dir = task.builtin_dir
    if data_dir is None:
        return None
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data directory not found")
    path = (root if (root / f"{stem}.tsv").is_file() else root / task.dir_name) / f"{stem}.tsv"
    _check_file(path, task, split)
    return path


def check_task_files(
    task: Task, data_dir: str | os.PathLike | None, splits: Iterable[str] | None = None
) -> None:
    """:func:`task_file` for each of ``splits`` (default: train and every dev split), so a
    stage fails on a wrong data directory before it spends time loading models.

    Raises:
      DataError: the first missing directory or file, naming it.
    """
    for split in ("train", *task.dev_splits) if splits is None else splits:
        task_file(task, split, data_dir)


def _split_name(task: Task, split: str) -> str:
    if split == "dev" and "dev" not in task.dev_splits:
        split = next(iter(task.dev_splits))
    if split not in task.splits:
        raise DataError(f"task {task.name}: unknown split {split!r}; expected one of {task.splits}")
    return split


def _check_file(path: Path, task: Task, split: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found (task {task.name}, split {split})")
