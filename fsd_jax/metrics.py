"""GLUE metrics, computed with scikit-learn and SciPy."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from fsd_jax.data.tasks import Task, get_task


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(skm.accuracy_score(labels, preds))


def f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """Binary F1 of the positive class (1), as GLUE reports for MRPC and QQP."""
    return float(skm.f1_score(labels, preds, zero_division=0.0))


def matthews(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(skm.matthews_corrcoef(labels, preds))


def pearson(labels: np.ndarray, preds: np.ndarray) -> float:
    if np.std(preds) == 0 or np.std(labels) == 0:
        return 0.0
    return float(stats.pearsonr(preds, labels)[0])


def spearman(labels: np.ndarray, preds: np.ndarray) -> float:
    if np.std(preds) == 0 or np.std(labels) == 0:
        return 0.0
    return float(stats.spearmanr(preds, labels)[0])


def predictions_from_logits(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax), or the single output for a regression task."""
    logits = np.asarray(logits)
    return logits[:, 0] if task.is_regression else logits.argmax(-1)


def glue_metrics(task: Task | str, labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics plus ``"score"``, the single number GLUE ranks by.

    ``task`` is a :class:`Task` or its name (``"cola"``). CoLA: Matthews; MRPC and QQP:
    accuracy, F1 and their mean; STS-B: Pearson, Spearman and their mean; the others: accuracy.
    """
    if isinstance(task, str):
        task = get_task(task)
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(
            f"labels {labels.shape} and predictions {preds.shape}: need equal, non-empty 1-D"
        )
    if task.metric == "mcc":
        out = {"mcc": matthews(labels, preds), "accuracy": accuracy(labels, preds)}
        out["score"] = out["mcc"]
    elif task.metric == "f1_accuracy":
        out = {"accuracy": accuracy(labels, preds), "f1": f1(labels, preds)}
        out["score"] = (out["accuracy"] + out["f1"]) / 2
    elif task.metric == "pearson_spearman":
        out = {"pearson": pearson(labels, preds), "spearman": spearman(labels, preds)}
        out["score"] = (out["pearson"] + out["spearman"]) / 2
    elif task.metric == "accuracy":
        out = {"accuracy": accuracy(labels, preds)}
        out["score"] = out["accuracy"]
    else:
        raise ValueError(f"task {task.name}: unknown metric {task.metric!r}")
    return out
