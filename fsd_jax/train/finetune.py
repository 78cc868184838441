"""Stage ``finetune``: train a teacher (or a plain student) on a GLUE task with gold labels."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.data import encode, get_task, iterate_batches, load_examples, num_batches
from fsd_jax.models import load_pretrained, load_tokenizer, save_pretrained
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.evaluate import evaluate
from fsd_jax.train.loop import fit, restore
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import make_train_step, supervised_objective
from fsd_jax.train.writer import MetricWriter

log = logging.getLogger(__name__)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
    """The settings that change what training computes: a resumed run must share them."""
    t = config.train
    return {
        "stage": config.stage,
        "task": config.task,
        "seed": config.seed,
        "model": config.model.name_or_path,
        "layers": str(config.model.layers),
        "dtype": config.model.dtype,
        "max_seq_length": config.data.max_seq_length,
        "batch_size": t.batch_size,
        "num_epochs": t.num_epochs,
        "max_steps": t.max_steps,
        "learning_rate": t.learning_rate,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
    }


def total_steps_of(config: Any, num_train: int) -> tuple[int, int]:
    per_epoch = num_batches(num_train, config.train.batch_size)
    if config.train.max_steps > 0:
        return per_epoch, int(config.train.max_steps)
    if config.train.num_epochs <= 0:
        raise ValueError(
            f"train.num_epochs={config.train.num_epochs}: must be > 0 (or set train.max_steps)"
        )
    return per_epoch, max(1, math.ceil(config.train.num_epochs * per_epoch))


def run_finetune(
    config: Any, workdir: str | Path, on_step: Callable[[int], None] | None = None
) -> dict:
    """Fine-tune ``config.model.name_or_path`` on ``config.task``; resumable in ``workdir``.

    Writes checkpoints, ``metrics.jsonl``, TensorBoard events, ``results.json`` and a Hugging
    Face export (``<workdir>/export``). Returns the results dict.
    """
    workdir = Path(workdir)
    task = get_task(config.task)
    if config.train.batch_size < 1:
        raise ValueError(f"train.batch_size={config.train.batch_size}: must be >= 1")
    seq_len = int(config.data.max_seq_length)
    tokenizer = load_tokenizer(config.model.name_or_path)
    model, params = load_pretrained(
        config.model.name_or_path,
        label_names=task.label_names or ("score",),
        layers=parse_layers(config.model.layers),
        dtype=dtype_of(config.model.dtype),
        seed=config.seed,
    )
    data_dir = config.data.data_dir
    train = encode(
        load_examples(task, "train", data_dir, config.data.on_bad_row),
        tokenizer,
        seq_len,
        config.data.cache_dir,
    )
    dev = {
        s: encode(
            load_examples(task, s, data_dir, config.data.on_bad_row),
            tokenizer,
            seq_len,
            config.data.cache_dir,
        )
        for s in task.dev_splits
    }
    per_epoch, total = total_steps_of(config, len(train))
    t = config.train
    tx = make_optimizer(
        t.learning_rate,
        total,
        warmup_steps=round(t.warmup_ratio * total),
        weight_decay=t.weight_decay,
        b1=t.adam_b1,
        b2=t.adam_b2,
        eps=t.adam_eps,
        max_grad_norm=t.max_grad_norm,
    )
    state = TrainState.create(params, tx, config.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "train_config.json").write_text(config.to_json_best_effort(indent=2))
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=t.keep_checkpoints)
    writer = MetricWriter(workdir, tensorboard=config.tensorboard)
    fp = fingerprint(config)
    try:
        state = restore(checkpointer, state, fp)
        step = jax.jit(make_train_step(supervised_objective(model)), donate_argnums=0)

        def batches(epoch, start):
            return iterate_batches(
                train,
                t.batch_size,
                seq_len,
                shuffle=True,
                seed=config.seed,
                epoch=epoch,
                start_batch=start,
            )

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
            progress=config.progress,
            desc=f"{config.stage} {task.name}",
        )
        metrics, _ = evaluate(model, state.params, task, dev, t.eval_batch_size, seq_len)
        for split, m in metrics.items():
            writer.write(total, m, prefix=f"{split}/")
    finally:
        writer.close()
        checkpointer.close()
    export = None
    if config.export:
        export = str(save_pretrained(workdir / "export", model, state.params, tokenizer))
    results = {
        "task": task.name,
        "stage": config.stage,
        "model": str(config.model.name_or_path),
        "num_layers": model.config.num_hidden_layers,
        "dev": metrics,
        "epochs": total / per_epoch,
        "train_examples": len(train),
        **stats,
        "export": export,
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    return results


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
