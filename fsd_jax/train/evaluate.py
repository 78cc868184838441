"""Predictions and GLUE metrics of a model on encoded splits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fsd_jax.config_checks import check_sequence_length
from fsd_jax.data import (
    Encoded,
    Task,
    check_task_files,
    encode,
    get_task,
    iterate_batches,
    load_examples,
)
from fsd_jax.metrics import glue_metrics, predictions_from_logits
from fsd_jax.models import BertForSequenceClassification, load_pretrained, load_tokenizer
from fsd_jax.train.oom import is_out_of_memory, out_of_memory_error
from fsd_jax.train.step import make_predict_fn


def predict_logits(
    model: BertForSequenceClassification,
    params: Any,
    data: Encoded,
    batch_size: int,
    seq_len: int,
    predict: Any = None,
    pad_to: Any = None,
) -> np.ndarray:
    """Logits (N, V) of every example of ``data``, in data order (``pad_to``: bucketing)."""
    predict = predict or make_predict_fn(model)
    out = np.zeros((len(data), model.config.num_labels), np.float32)
    for batch in iterate_batches(data, batch_size, seq_len, pad_to=pad_to):
        logits = np.asarray(predict(params, batch))
        valid = batch["weights"] > 0
        out[batch["index"][valid]] = logits[valid]
    return out


class NonFiniteLogitsError(ValueError):
    """The model gave NaN or infinite logits: no metric is computed from them."""


def evaluate(
    model: BertForSequenceClassification,
    params: Any,
    task: Task,
    splits: Mapping[str, Encoded],
    batch_size: int,
    seq_len: int,
    pad_to: Any = None,
    predict: Any = None,
    batch_option: str = "train.eval_batch_size",
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """GLUE metrics and logits for each split (``predict``: e.g. a sharded predict function).

    Out of device memory raises :class:`OutOfMemoryError` naming ``batch_option``.
    """
    predict = predict or make_predict_fn(model)
    metrics, logits = {}, {}
    for name, data in splits.items():
        try:
            logits[name] = predict_logits(model, params, data, batch_size, seq_len, predict, pad_to)
        except jax.errors.JaxRuntimeError as e:
            if not is_out_of_memory(e):
                raise
            where = f"evaluating {task.name} {name}"
            raise out_of_memory_error(e, where, (batch_size, seq_len), batch_option) from None
        bad = ~np.isfinite(logits[name]).all(axis=-1)
        if bad.any():  # a NaN logit is an error, never a score
            raise NonFiniteLogitsError(
                f"{task.name} {name}: {int(bad.sum())} of {bad.size} examples have non-finite "
                f"logits (first: example {int(np.argmax(bad))}); the model's outputs are NaN or "
                "infinite (a diverged checkpoint, or inputs beyond the model's positions)"
            )
        metrics[name] = glue_metrics(task, data.labels, predictions_from_logits(task, logits[name]))
    return metrics, logits


def evaluate_checkpoint(
    model_path: str | Path,
    task_name: str,
    out_dir: str | Path,
    *,
    data_dir: str | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 128,
    cache_dir: str | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate a workdir, HF directory or hub id on a task's dev split(s).

    Writes ``metrics.json`` and ``predictions_<split>.tsv`` (index, predicted label, gold
    label, logits) into ``out_dir`` and returns the metrics. ``max_seq_length`` defaults to the
    workdir's training setting, else 128.
    """
    task = get_task(task_name)
    if batch_size < 1:
        raise ValueError(f"--batch_size={batch_size}: must be an integer >= 1")
    if max_seq_length is not None and max_seq_length < 2:
        raise ValueError(f"--max_seq_length={max_seq_length}: must be >= 2 ([CLS] and [SEP])")
    if max_seq_length is None:
        cfg_file = Path(model_path) / "train_config.json"
        train_cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        max_seq_length = int(train_cfg.get("data", {}).get("max_seq_length", 128))
    check_task_files(task, data_dir, task.dev_splits)
    model, params = load_pretrained(model_path)
    if model.config.num_labels != task.num_labels:
        raise ValueError(
            f"{model_path}: the model has {model.config.num_labels} outputs, task {task.name} "
            f"needs {task.num_labels}"
        )
    check_sequence_length(
        max_seq_length, model.config.max_position_embeddings, str(model_path), "--max_seq_length"
    )
    tokenizer = load_tokenizer(model_path)
    splits = {
        s: encode(load_examples(task, s, data_dir), tokenizer, max_seq_length, cache_dir)
        for s in task.dev_splits
    }
    metrics, logits = evaluate(
        model, params, task, splits, batch_size, max_seq_length, batch_option="--batch_size"
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = task.label_names
    for split, data in splits.items():
        preds = predictions_from_logits(task, logits[split])
        with open(out_dir / f"predictions_{split}.tsv", "w", encoding="utf-8") as f:
            f.write(
                "index\tprediction\tlabel\t"
                + "\t".join(f"logit_{i}" for i in range(logits[split].shape[1]))
                + "\n"
            )
            for i, (p, y, z) in enumerate(zip(preds, data.labels, logits[split], strict=True)):
                p_s, y_s = (f"{p:.6g}", f"{y:.6g}") if task.is_regression else (names[p], names[y])
                f.write(f"{i}\t{p_s}\t{y_s}\t" + "\t".join(f"{v:.6g}" for v in z) + "\n")
    result = {
        "task": task.name,
        "model": str(model_path),
        "max_seq_length": max_seq_length,
        "dev": metrics,
    }
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return metrics
