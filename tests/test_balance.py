"""The gradient-balance probe against a direct ``jax.grad`` of each term, and in a distill run."""

from __future__ import annotations

import importlib
import json

import jax
import numpy as np
import optax
import pytest
from conftest import padded_batch, tiny_finetune_config

from fsd_jax.models import BertForSequenceClassification, init_params
from fsd_jax.objective import make_distill_objective, make_distill_terms
from fsd_jax.terms import parse_terms
from fsd_jax.train.balance import balance_metrics, groups_of, make_gradient_balance
from fsd_jax.train.distill import run_distill
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import step_keys

TERMS = {
    "ce": {"weight": 0.5},
    "kd": {"weight": 0.5, "temperature": 5.0},
    "fsd_intra": {"weight": 3.0},
    "fsd_local": {"weight": 2.0},
    "fsd_g": {"weight": 0.01, "gamma_m": 0.5},
}


def _group_of(path: str) -> str:
    """The grouping written out again, from the parameter's path string."""
    if not path.startswith("student/"):
        return path.split("/")[0]
    if "/embeddings/" in path:
        return "embeddings"
    parts = [p for p in path.split("/") if p.startswith("layer_")]
    return parts[0] if parts else "head"


def _flat(tree) -> dict[str, np.ndarray]:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v, np.float64)
        for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_probe_matches_a_direct_gradient_of_each_term(tiny_config):
    teacher = BertForSequenceClassification(tiny_config)
    student = BertForSequenceClassification(tiny_config.replace(num_hidden_layers=2))
    tp, sp = init_params(teacher, 1), init_params(student, 2)
    t_mem = jax.random.normal(jax.random.key(3), (3, 9, tiny_config.hidden_size))
    s_mem = jax.random.normal(jax.random.key(4), (3, 9, tiny_config.hidden_size))
    params = {"student": sp, "memory": s_mem}
    state = TrainState.create(params, optax.adam(1e-3), seed=7)
    terms = parse_terms(TERMS)
    names = tuple(t.name for t in terms)
    batch = padded_batch()

    term_losses = make_distill_terms(student, teacher, terms)
    probe = jax.jit(make_gradient_balance(term_losses, params, names))
    got = balance_metrics(jax.device_get(probe(state, batch, tp, t_mem)), names, groups_of(params))

    # the step's dropout key; each term's gradient from an objective that has that term alone
    _, key = step_keys(state)
    grads = {}
    for name in names:
        alone = make_distill_objective(student, teacher, parse_terms({name: TERMS[name]}))
        grads[name] = _flat(jax.grad(lambda p, f=alone: f(p, batch, key, tp, t_mem)[0])(params))
    groups = sorted({_group_of(k) for k in grads["ce"]})
    assert sorted(groups_of(params)) == groups
    assert {"embeddings", "layer_0", "layer_1", "head", "memory"} == set(groups)

    def sums(a, b, group=None):
        return sum(float(np.vdot(a[k], b[k])) for k in a if group is None or _group_of(k) == group)

    checked_cos = 0
    for name in names:
        g, task = grads[name], grads["ce"]
        for group in [*groups, None]:
            suffix = f"/{group}" if group else ""
            norm = np.sqrt(sums(g, g, group))
            assert got[f"{name}/norm{suffix}"] == pytest.approx(norm, rel=1e-4, abs=1e-9)
            task_norm = np.sqrt(sums(task, task, group))
            if norm > 0 and task_norm > 0:
                cos = sums(g, task, group) / (norm * task_norm)
                assert got[f"{name}/cos{suffix}"] == pytest.approx(cos, abs=1e-4)
                ratio = got[f"{name}/ratio{suffix}"]
                assert ratio == pytest.approx(norm / task_norm, rel=1e-4)
                checked_cos += 1
            else:  # undefined: not reported
                assert f"{name}/cos{suffix}" not in got
    assert got["ce/cos"] == pytest.approx(1.0, abs=1e-5)
    assert "ce/norm/memory" in got and got["ce/norm/memory"] == 0.0  # CE cannot reach it
    assert "fsd_g/cos/memory" not in got and got["fsd_g/norm/memory"] > 0
    # the FSD terms read the penultimate states (layer_0's output): no gradient above, and none
    # reaches the memory but fsd_g's; 5 terms x 6 columns less those = 19 cosines checked
    assert "fsd_intra/cos/layer_1" not in got and got["fsd_intra/norm/head"] == 0.0
    assert checked_cos == 19


def _distill(tiny_teacher, tmp_path, name, balance_every):
    cfg = importlib.import_module("configs.distill.fsd_il").get_config("quickstart")
    base = tiny_finetune_config(tiny_teacher, tmp_path / "cache", max_steps=7)
    cfg.data, cfg.progress, cfg.tensorboard = base.data, False, False
    for k, v in base.train.items():
        cfg.train[k] = v
    cfg.train.balance_every = balance_every
    cfg.teacher = str(tiny_teacher)
    cfg.model.name_or_path = str(tiny_teacher)
    cfg.model.layers = "every:2"
    cfg.export = False
    return run_distill(cfg, tmp_path / name)


def test_distill_run_logs_the_balance_and_summarises_it(tiny_teacher, tmp_path):
    res = _distill(tiny_teacher, tmp_path, "probed", 3)
    rows = [json.loads(x) for x in (tmp_path / "probed" / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in rows if any(k.startswith("balance/") for k in r)]
    assert [r["step"] for r in probed] == [1, 3, 6]
    summary = json.loads((tmp_path / "probed" / "results.json").read_text())["gradient_balance"]
    assert summary["steps"] == [1, 3, 6]
    for key in ("fsd_intra/norm/layer_0", "fsd_local/cos/embeddings", "kd/ratio"):
        assert summary["median"][key] == pytest.approx(
            float(np.median([r[f"balance/{key}"] for r in probed])), rel=1e-6
        )
    # the probe reads the step and changes nothing: the same run without it trains the same
    plain = _distill(tiny_teacher, tmp_path, "plain", 0)
    assert "gradient_balance" not in plain
    assert plain["train_metrics"]["loss"] == pytest.approx(res["train_metrics"]["loss"], rel=1e-6)
    assert plain["dev"] == res["dev"]
