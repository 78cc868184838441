"""GLUE tasks, examples, tokenisation and batching."""

from fsd_jax.data import synthetic  # noqa: F401  (registers the "quickstart" task)
from fsd_jax.data.batching import (
    Encoded,
    bucket_padding,
    encode,
    epoch_order,
    iterate_batches,
    make_batch,
    num_batches,
)
from fsd_jax.data.glue import (
    DataError,
    Examples,
    check_task_files,
    examples_from_dataset,
    load_examples,
    read_tsv,
    task_file,
)
from fsd_jax.data.tasks import TASKS, Task, TsvLayout, get_task, register_task

__all__ = [
    "TASKS",
    "DataError",
    "Encoded",
    "Examples",
    "Task",
    "TsvLayout",
    "bucket_padding",
    "check_task_files",
    "encode",
    "epoch_order",
    "examples_from_dataset",
    "get_task",
    "iterate_batches",
    "load_examples",
    "make_batch",
    "num_batches",
    "read_tsv",
    "register_task",
    "task_file",
]
