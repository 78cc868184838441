"""GLUE metrics against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest

from fsd_jax.data import get_task
from fsd_jax.metrics import glue_metrics


def test_classification_metrics_match_formulas():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.8, y, 1 - y)
    tp = ((p == 1) & (y == 1)).sum()
    fp = ((p == 1) & (y == 0)).sum()
    fn = ((p == 0) & (y == 1)).sum()
    tn = ((p == 0) & (y == 0)).sum()
    m = glue_metrics(get_task("mrpc"), y, p)
    assert m["accuracy"] == pytest.approx((tp + tn) / 200)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["score"] == pytest.approx((m["accuracy"] + m["f1"]) / 2)
    assert glue_metrics("mrpc", y, p) == m  # a task name does as well
    mcc = (tp * tn - fp * fn) / np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    assert glue_metrics(get_task("cola"), y, p)["mcc"] == pytest.approx(mcc)


def test_regression_metrics_match_formulas():
    rng = np.random.default_rng(1)
    y = rng.random(100) * 5
    p = y + rng.normal(0, 1, 100)
    m = glue_metrics(get_task("stsb"), y, p)
    assert m["pearson"] == pytest.approx(np.corrcoef(y, p)[0, 1])
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731  (no ties in continuous data)
    assert m["spearman"] == pytest.approx(np.corrcoef(rank(y), rank(p))[0, 1])
    assert glue_metrics(get_task("stsb"), y, np.ones(100))["pearson"] == 0.0


def test_metric_input_errors():
    with pytest.raises(ValueError, match="need equal"):
        glue_metrics(get_task("rte"), np.array([0, 1]), np.array([0]))
