"""Stage ``finetune``: train a teacher (or a plain student) on a GLUE task with gold labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsd_jax.config_checks import check_config, check_sequence_length
from fsd_jax.data import check_task_files, get_task
from fsd_jax.models import load_pretrained, load_tokenizer
from fsd_jax.train.loop import fit
from fsd_jax.train.step import make_train_step, supervised_objective
from fsd_jax.train.training_run import TrainingRun, dtype_of, parse_layers


def run_finetune(
    config: Any, workdir: str | Path, on_step: Callable[[int], None] | None = None
) -> dict:
    """Fine-tune ``config.model.name_or_path`` (optionally some layers of it) on ``config.task``."""
    check_config(config)
    task = get_task(config.task)
    check_task_files(task, config.data.data_dir)
    tokenizer = load_tokenizer(config.model.name_or_path)
    model, params = load_pretrained(
        config.model.name_or_path,
        label_names=task.label_names or ("score",),
        layers=parse_layers(config.model.layers),
        hidden_size=config.model.get("hidden_size") or None,
        dtype=dtype_of(config.model.dtype),
        seed=config.seed,
    )
    check_sequence_length(
        int(config.data.max_seq_length),
        model.config.max_position_embeddings,
        str(config.model.name_or_path),
        "data.max_seq_length",
    )
    run = TrainingRun.open(config, workdir, task, tokenizer, params)
    if run.finished is not None:
        return run.finished
    with run:
        step = run.sharder.jit_train_step(
            make_train_step(supervised_objective(model)), run.state, ()
        )
        state, stats = fit(run.state, step, run.batches(), run.loop, on_step=on_step)
        metrics = run.evaluate(model, state.params)
    stats["model"] = str(config.model.name_or_path)
    return run.finish(model, state.params, tokenizer, metrics, stats)
