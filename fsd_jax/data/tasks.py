"""The GLUE task registry: files, columns, labels, metrics (docs/methods.md §0.1)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TsvLayout:
    """Where a task's fields sit in the original GLUE ``.tsv`` files.

    Columns are header names, or 0-based indices for files without a header (CoLA).
    """

    text_columns: tuple[str | int, ...]
    label_column: str | int
    has_header: bool = True
    num_columns: int | None = None  # required when there is no header


@dataclasses.dataclass(frozen=True)
class Task:
    """A GLUE task.

    Attributes:
      name: canonical lower-case name (``"sst2"``).
      dir_name: folder in the GLUE layout (``"SST-2"``).
      hub_config: config name of ``nyu-mll/glue`` on the Hugging Face hub.
      hub_text_columns: text fields of the hub dataset, in the same order as ``tsv.text_columns``.
      label_names: class names in the hub's ClassLabel order; ``()`` for regression.
      tsv_label_values: raw label strings of the ``.tsv`` files in the same order.
      metric: the task's headline GLUE metric name (see :mod:`fsd_jax.metrics`).
      dev_splits: local file stem per dev split (MNLI has two).
      builtin_dir: where a task shipped with the package keeps its ``.tsv`` files.
      score_range: for a regression task, the range its scores lie in (STS-B: 0 to 5).
    """

    name: str
    dir_name: str
    hub_config: str
    hub_text_columns: tuple[str, ...]
    tsv: TsvLayout
    label_names: tuple[str, ...]
    tsv_label_values: tuple[str, ...]
    metric: str
    dev_splits: dict[str, str] = dataclasses.field(default_factory=lambda: {"dev": "dev"})
    builtin_dir: str | None = None  # a task shipped with fsd-jax reads its files from here
    score_range: tuple[float, float] | None = None  # regression: the scores a file may hold

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return max(1, len(self.label_names))

    @property
    def is_pair(self) -> bool:
        return len(self.hub_text_columns) == 2

    def hub_split(self, split: str) -> str:
        if split == "train":
            return "train"
        if split == "dev":
            return "validation"
        if self.name == "mnli" and split in ("dev_matched", "dev_mismatched"):
            return "validation_" + split.split("_")[1]
        raise ValueError(f"task {self.name}: unknown split {split!r}; expected {self.splits}")

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.dev_splits)


_BINARY = ("0", "1")
_ENTAIL = ("entailment", "not_entailment")

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "cola",
            "CoLA",
            "cola",
            ("sentence",),
            TsvLayout((3,), 1, has_header=False, num_columns=4),
            ("unacceptable", "acceptable"),
            _BINARY,
            "mcc",
        ),
        Task(
            "sst2",
            "SST-2",
            "sst2",
            ("sentence",),
            TsvLayout(("sentence",), "label"),
            ("negative", "positive"),
            _BINARY,
            "accuracy",
        ),
        Task(
            "mrpc",
            "MRPC",
            "mrpc",
            ("sentence1", "sentence2"),
            TsvLayout(("#1 String", "#2 String"), "Quality"),
            ("not_equivalent", "equivalent"),
            _BINARY,
            "f1_accuracy",
        ),
        Task(
            "stsb",
            "STS-B",
            "stsb",
            ("sentence1", "sentence2"),
            TsvLayout(("sentence1", "sentence2"), "score"),
            (),
            (),
            "pearson_spearman",
            score_range=(0.0, 5.0),  # STS-B's similarity scale (Cer et al. 2017)
        ),
        Task(
            "qqp",
            "QQP",
            "qqp",
            ("question1", "question2"),
            TsvLayout(("question1", "question2"), "is_duplicate"),
            ("not_duplicate", "duplicate"),
            _BINARY,
            "f1_accuracy",
        ),
        Task(
            "mnli",
            "MNLI",
            "mnli",
            ("premise", "hypothesis"),
            TsvLayout(("sentence1", "sentence2"), "gold_label"),
            ("entailment", "neutral", "contradiction"),
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            {"dev_matched": "dev_matched", "dev_mismatched": "dev_mismatched"},
        ),
        Task(
            "qnli",
            "QNLI",
            "qnli",
            ("question", "sentence"),
            TsvLayout(("question", "sentence"), "label"),
            _ENTAIL,
            _ENTAIL,
            "accuracy",
        ),
        Task(
            "rte",
            "RTE",
            "rte",
            ("sentence1", "sentence2"),
            TsvLayout(("sentence1", "sentence2"), "label"),
            _ENTAIL,
            _ENTAIL,
            "accuracy",
        ),
        Task(
            "wnli",
            "WNLI",
            "wnli",
            ("sentence1", "sentence2"),
            TsvLayout(("sentence1", "sentence2"), "label"),
            ("not_entailment", "entailment"),
            _BINARY,
            "accuracy",
        ),
    ]
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli"}


def register_task(task: Task) -> None:
    """Add a task (e.g. the quickstart's) so every loader and metric knows it."""
    TASKS[task.name] = task


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive; ``SST-2`` and ``sst2`` both work)."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key]
