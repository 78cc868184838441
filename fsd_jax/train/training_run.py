"""What every training stage shares: its data, optimiser, devices, resumed state, evaluation and
export (:class:`TrainingRun`); the stage itself builds its step and calls the loop."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
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
from fsd_jax.train.balance import read_probes, summarise
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.evaluate import evaluate
from fsd_jax.train.loop import BatchFn, Loop, restore
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.sharding import Sharder, is_primary
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import make_predict_fn
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


@dataclass
class TrainingRun:
    """One stage's run in ``workdir``: its data, step count, devices, the state restored from
    the newest checkpoint, its checkpoints and logs (:class:`Loop`).

    A stage opens it, builds its train step on ``sharder`` and ``state``, calls
    :func:`fsd_jax.train.loop.fit` with :meth:`batches` and ``loop``, evaluates with
    :meth:`evaluate` inside ``with run:`` (which closes the logs and checkpoints) and writes
    the export and ``results.json`` with :meth:`finish`. ``finished`` holds the results of a
    workdir that is already done: the same command again reports them and changes nothing.
    """

    config: Any
    workdir: Path
    task: Task
    train: Any
    dev: dict[str, Any]
    sharder: Sharder
    state: TrainState
    loop: Loop
    pad_to: Any
    primary: bool
    finished: dict | None = None

    @classmethod
    def open(
        cls,
        config: Any,
        workdir: str | Path,
        task: Task,
        tokenizer: Any,
        params: Any,
        aux: Any = None,
    ) -> TrainingRun:
        """Load the task's splits, build the optimiser and devices, and restore ``params``
        (and a stateful objective's ``aux``) from ``workdir``'s newest checkpoint if any."""
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
        workdir.mkdir(parents=True, exist_ok=True)
        checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=t.keep_checkpoints)
        fp = fingerprint(config)
        try:
            state = restore(checkpointer, state, fp)
        except BaseException:
            checkpointer.close()
            raise
        done = workdir / "results.json"
        primary = is_primary()  # one process of a multi-process run writes logs and results
        finished = None
        if int(state.step) >= total and done.is_file():
            checkpointer.close()
            log.info("%s is finished (step %d of %d); results: %s", workdir, total, total, done)
            finished = json.loads(done.read_text())
        elif primary:
            (workdir / "train_config.json").write_text(config.to_json_best_effort(indent=2))
        writer = MetricWriter(
            workdir, tensorboard=config.tensorboard, enabled=primary and finished is None
        )
        loop = Loop(
            steps_per_epoch=per_epoch,
            total_steps=total,
            checkpointer=checkpointer,
            writer=writer,
            fingerprint=fp,
            checkpoint_every=t.checkpoint_every,
            log_every=t.log_every,
            progress=config.progress and primary,
            desc=f"{config.stage} {task.name}",
        )
        pad_to = bucket_padding(config.data.get("buckets"), seq_len)
        return cls(
            config, workdir, task, train, dev, sharder, state, loop, pad_to, primary, finished
        )

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.writer.close()
        self.loop.checkpointer.close()

    def batches(self, transform: Callable[[dict], dict] | None = None) -> BatchFn:
        """The training batches of ``epoch`` from batch ``start`` on (``transform`` applied
        to each, e.g. adding cached teacher outputs): the order depends on the seed alone."""
        t = self.config.train

        def batches(epoch: int, start: int) -> Any:
            it = iterate_batches(
                self.train,
                t.batch_size,
                int(self.config.data.max_seq_length),
                shuffle=True,
                pad_to=self.pad_to,
                seed=self.config.seed,
                epoch=epoch,
                start_batch=start,
            )
            return it if transform is None else map(transform, it)

        return batches

    def evaluate(self, model: BertForSequenceClassification, params: Any) -> dict:
        """Dev metrics of ``params`` on every dev split, also written to the logs."""
        metrics, _ = evaluate(
            model,
            params,
            self.task,
            self.dev,
            self.config.train.eval_batch_size,
            int(self.config.data.max_seq_length),
            self.pad_to,
            predict=self.sharder.predict_fn(make_predict_fn(model)),
        )
        for split, m in metrics.items():
            self.loop.writer.write(self.loop.total_steps, m, prefix=f"{split}/")
        return metrics

    def gradient_balance(self) -> dict:
        """``{"gradient_balance": medians}`` of the probes in ``metrics.jsonl`` (every part of
        a resumed run), or {} when there are none."""
        path = self.workdir / "metrics.jsonl"
        probes = read_probes(path, self.loop.total_steps) if self.primary else []
        return {"gradient_balance": summarise(probes)} if probes else {}

    def finish(
        self,
        model: BertForSequenceClassification,
        params: Any,
        tokenizer: Any,
        metrics: dict,
        stats: dict,
    ) -> dict:
        """Export ``params`` (when ``config.export``) and write ``results.json``: the run's
        shape, its dev ``metrics`` and ``stats`` (the loop's and the stage's own)."""
        export = None
        if self.config.export:
            export = str(self.workdir / "export")
            if self.primary:
                save_pretrained(export, model, params, tokenizer)
        results = {
            "task": self.task.name,
            "stage": self.config.stage,
            "num_layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size,
            "dev": metrics,
            "epochs": self.loop.total_steps / self.loop.steps_per_epoch,
            "train_examples": len(self.train),
            **stats,
            "export": export,
        }
        if self.primary:
            text = json.dumps(results, indent=2, default=_jsonable)
            (self.workdir / "results.json").write_text(text)
        return results


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
