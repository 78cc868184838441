"""What every training stage shares: data, optimiser, resumable fit, evaluation, export."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fsd_jax.data import (
    Task,
    bucket_padding,
    encode,
    iterate_batches,
    load_examples,
    num_batches,
)
from fsd_jax.models import BertForSequenceClassification, save_pretrained
from fsd_jax.train.balance import GradientBalance, read_probes, summarise
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.evaluate import evaluate
from fsd_jax.train.loop import fit, restore
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.sharding import Sharder, is_primary
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import Objective, make_predict_fn, make_train_step
from fsd_jax.train.writer import MetricWriter

log = logging.getLogger(__name__)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Settings that do not change what training computes: a run may resume with other values.
_NOT_FINGERPRINTED = {
    "progress",
    "tensorboard",
    "export",
    "data.data_dir",
    "data.cache_dir",
    "train.eval_batch_size",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.balance_every",  # the probe reads the step, it does not change it
    "mesh.data",  # results do not depend on the device layout (tests/test_sharding.py)
    "mesh.model",
    "multihost",
}


def parse_layers(spec: Any) -> Any:
    """``"2,4,6"`` → [2, 4, 6]; ``"first:3"``, ``"every:2"`` and ints pass through; None stays."""
    if spec is None or spec == "" or isinstance(spec, int | list | tuple):
        return spec or None
    spec = str(spec).strip()
    if "," in spec or spec.isdigit():
        try:
            values = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"model.layers={spec!r}: expected e.g. '2,4,6' or 'first:3'") from None
        return values if "," in spec else values[0]
    return spec


def dtype_of(name: str) -> Any:
    if name not in _DTYPES:
        raise ValueError(f"model.dtype={name!r}: expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def fingerprint(config: Any) -> dict:
    """Every setting that changes what training computes, flattened: a resumed run must match."""
    flat = traverse_util.flatten_dict(config.to_dict(), sep=".")
    return {
        k: (v if isinstance(v, int | float | str | bool) or v is None else repr(v))
        for k, v in flat.items()
        if k not in _NOT_FINGERPRINTED
    }


def total_steps_of(config: Any, num_train: int) -> tuple[int, int]:
    """(steps per epoch, total steps); the epochs and steps were checked by
    :func:`fsd_jax.config_checks.check_config` when the stage started."""
    per_epoch = num_batches(num_train, config.train.batch_size)
    if config.train.max_steps > 0:
        return per_epoch, int(config.train.max_steps)
    return per_epoch, max(1, math.ceil(config.train.num_epochs * per_epoch))


def load_splits(config: Any, task: Task, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    d = config.data
    enc = lambda split: encode(  # noqa: E731
        load_examples(task, split, d.data_dir, d.on_bad_row),
        tokenizer,
        d.max_seq_length,
        d.cache_dir,
    )
    return enc("train"), {s: enc(s) for s in task.dev_splits}


def train_and_evaluate(
    config: Any,
    workdir: str | Path,
    *,
    task: Task,
    tokenizer: Any,
    model: BertForSequenceClassification,
    params: Any,
    objective: Objective,
    step_args: tuple = (),
    on_step: Callable[[int], None] | None = None,
    extra_results: dict | None = None,
    model_params: Callable[[Any], Any] = lambda p: p,
    aux: Any = None,
    batch_transform: Callable[[Any, Any], Callable[[dict], dict]] | None = None,
    balance: GradientBalance | None = None,
) -> dict:
    """Train ``params`` on ``objective`` (resuming from ``workdir``), evaluate, export.

    Writes checkpoints, ``metrics.jsonl``, TensorBoard events, ``train_config.json``,
    ``results.json`` and a Hugging Face export (``<workdir>/export``); returns the results.
    ``model_params`` picks the model's parameters out of the trained tree (which may hold
    training-only tables such as a student memory; those are checkpointed, not exported).
    ``aux`` is the initial non-trainable step state of a stateful objective.
    ``batch_transform(train_data, pad_to)`` returns a function applied to every training batch
    (e.g. adding cached teacher outputs). ``balance`` probes the gradient balance of the
    objective's terms (``balance/`` scalars in the logs, their medians in the results).
    """
    workdir = Path(workdir)
    t = config.train
    if t.batch_size < 1:
        raise ValueError(f"train.batch_size={t.batch_size}: must be >= 1")
    seq_len = int(config.data.max_seq_length)
    train, dev = load_splits(config, task, tokenizer)
    per_epoch, total = total_steps_of(config, len(train))
    tx = make_optimizer(
        t.learning_rate,
        total,
        warmup_steps=round(t.warmup_ratio * total),
        weight_decay=t.weight_decay,
        b1=t.adam_b1,
        b2=t.adam_b2,
        eps=t.adam_eps,
        max_grad_norm=t.max_grad_norm,
        schedule=t.get("schedule", "linear"),
        group_learning_rates=dict(t.get("group_learning_rates") or {}),
    )
    sharder = Sharder.from_config(config)
    sharder.check_batch_size(t.batch_size)
    sharder.check_batch_size(t.eval_batch_size, "train.eval_batch_size")
    state = sharder.put_state(TrainState.create(params, tx, config.seed, aux=aux))
    step_args = sharder.put_args(step_args)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=t.keep_checkpoints)
    fp = fingerprint(config)
    try:
        state = restore(checkpointer, state, fp)
    except BaseException:
        checkpointer.close()
        raise
    finished = workdir / "results.json"
    if int(state.step) >= total and finished.is_file():
        # the same command on a finished workdir: report it and leave every file as it is
        checkpointer.close()
        log.info("%s is finished (step %d of %d); results: %s", workdir, total, total, finished)
        return json.loads(finished.read_text())
    primary = is_primary()  # one process of a multi-process run writes logs and results
    if primary:
        (workdir / "train_config.json").write_text(config.to_json_best_effort(indent=2))
    writer = MetricWriter(workdir, tensorboard=config.tensorboard, enabled=primary)
    pad_to = bucket_padding(config.data.get("buckets"), seq_len)
    try:
        transform = batch_transform(train, pad_to) if batch_transform else None
        step = sharder.jit_train_step(make_train_step(objective), state, step_args)
        probe = balance.probe(sharder, state, step_args) if balance else None

        def batches(epoch, start):
            it = iterate_batches(
                train,
                t.batch_size,
                seq_len,
                shuffle=True,
                pad_to=pad_to,
                seed=config.seed,
                epoch=epoch,
                start_batch=start,
            )
            return it if transform is None else map(transform, it)

        state, stats = fit(
            state,
            step,
            batches,
            steps_per_epoch=per_epoch,
            total_steps=total,
            checkpointer=checkpointer,
            writer=writer,
            fingerprint=fp,
            checkpoint_every=t.checkpoint_every,
            log_every=t.log_every,
            on_step=on_step,
            progress=config.progress and primary,
            desc=f"{config.stage} {task.name}",
            step_args=step_args,
            probe=probe,
            probe_every=balance.every if balance else 0,
        )
        metrics, _ = evaluate(
            model,
            model_params(state.params),
            task,
            dev,
            t.eval_batch_size,
            seq_len,
            pad_to,
            predict=sharder.predict_fn(make_predict_fn(model)),
        )
        for split, m in metrics.items():
            writer.write(total, m, prefix=f"{split}/")
    finally:
        writer.close()
        checkpointer.close()
    export = None
    if config.export:
        export = str(workdir / "export")
        if primary:
            save_pretrained(export, model, model_params(state.params), tokenizer)
    if balance is not None:
        probes = read_probes(workdir / "metrics.jsonl", total) if primary else []
        if probes:
            stats["gradient_balance"] = summarise(probes)
    results = {
        "task": task.name,
        "stage": config.stage,
        "num_layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "dev": metrics,
        "epochs": total / per_epoch,
        "train_examples": len(train),
        **stats,
        **(extra_results or {}),
        "export": export,
    }
    if primary:
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    return results


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
