"""Objectives from config, the distillation step and the distill stage for every method."""

from __future__ import annotations

import importlib
import json

import jax
import numpy as np
import pytest
from conftest import padded_batch, tiny_finetune_config

from fsd_jax import losses
from fsd_jax.models import BertForSequenceClassification, init_params
from fsd_jax.objective import make_distill_objective
from fsd_jax.terms import parse_terms, weights_from_reference
from fsd_jax.train.distill import run_distill

METHODS = ["vkd", "pkd", "rkd", "minilm", "fsd_i", "fsd_l", "fsd_il"]


def test_parse_terms_validates():
    terms = parse_terms({"ce": {"weight": 0.5}, "kd": {"weight": 0.5, "temperature": 3.0}})
    assert [t.name for t in terms] == ["ce", "kd"]
    assert terms[1].options == {"temperature": 3.0, "faithful": False}
    with pytest.raises(ValueError, match="objective.kdd: unknown term"):
        parse_terms({"kdd": {"weight": 1.0}})
    with pytest.raises(ValueError, match=r"objective.kd: unknown options \['temp'\]"):
        parse_terms({"kd": {"weight": 1.0, "temp": 2.0}})
    with pytest.raises(ValueError, match="objective.ce: missing 'weight'"):
        parse_terms({"ce": {}})


def test_reference_weights_give_the_reference_scripts_loss(tiny_config):
    """The (ε, σ, γ, β) converter's output parses as an objective whose loss is the FSD (ILG)
    script's L = α·CE + (1−α)·KD + ε·[σ·L_G + (1−σ)·½·(γ·L_I + (1−γ)·L_L)], γ_m = β."""
    eps, sigma, gamma, beta, alpha = 0.1, 0.4, 0.25, 0.7, 0.3
    config = {
        "ce": {"weight": alpha},
        "kd": {"weight": 1 - alpha, "temperature": 2.0},
        **weights_from_reference(epsilon=eps, sigma=sigma, gamma=gamma, beta=beta),
    }
    terms = parse_terms(config)
    assert [t.name for t in terms] == ["ce", "kd", "fsd_intra", "fsd_local", "fsd_g"]
    teacher, tp, student, sp = _models(tiny_config)
    objective = make_distill_objective(student, teacher, terms)
    batch, key = padded_batch(), jax.random.key(0)
    t_mem = jax.random.normal(jax.random.key(3), (3, 9, tiny_config.hidden_size))
    s_mem = jax.random.normal(jax.random.key(4), (3, 9, tiny_config.hidden_size))
    loss, (m, _) = objective({"student": sp, "memory": s_mem}, batch, key, tp, t_mem)
    reference = alpha * m["ce"] + (1 - alpha) * m["kd"]
    reference += eps * (
        sigma * m["fsd_g"]
        + (1 - sigma) * 0.5 * (gamma * m["fsd_intra"] + (1 - gamma) * m["fsd_local"])
    )
    assert float(loss) == pytest.approx(float(reference), rel=1e-6)
    # γ_m reached the global term: its value is fsd_global_terms(..., gamma_m=β)
    t_out = teacher.apply({"params": tp}, batch["input_ids"], batch["attention_mask"])
    s_out = student.apply(
        {"params": sp},
        batch["input_ids"],
        batch["attention_mask"],
        deterministic=False,
        rngs={"dropout": key},
    )
    args = (t_out.hidden_states[-2], s_out.hidden_states[-2], t_mem, s_mem)
    mask, w = batch["attention_mask"], batch["weights"]
    want = losses.fsd_global_terms(*args, mask, w, gamma_m=beta)["total"]
    other = losses.fsd_global_terms(*args, mask, w, gamma_m=0.0)["total"]
    assert float(m["fsd_g"]) == pytest.approx(float(want), rel=1e-5)
    assert abs(float(want) - float(other)) > 1e-3 * abs(float(want))
    # σ = 0 is FSD-IL: no global term, so no memory needed
    assert set(weights_from_reference(epsilon=60.0, sigma=0.0, gamma=0.5, beta=0.0)) == {
        "fsd_intra",
        "fsd_local",
    }


def _models(tiny_config):
    teacher = BertForSequenceClassification(tiny_config)
    student = BertForSequenceClassification(tiny_config.replace(num_hidden_layers=2))
    return teacher, init_params(teacher, 1), student, init_params(student, 2)


def test_objective_is_the_weighted_sum_and_teacher_gets_no_gradient(tiny_config):
    teacher, tp, student, sp = _models(tiny_config)
    terms = parse_terms(
        {
            "ce": {"weight": 0.3},
            "kd": {"weight": 0.7, "temperature": 2.0},
            "fsd_intra": {"weight": 5.0},
            "fsd_local": {"weight": 2.0},
            "minilm": {"weight": 1.5},
            "rkd_angle": {"weight": 0.5},
        }
    )
    objective = make_distill_objective(student, teacher, terms)
    batch = padded_batch()
    loss, (m, _) = objective({"student": sp}, batch, jax.random.key(0), tp)
    expected = (
        0.3 * m["ce"]
        + 0.7 * m["kd"]
        + 5 * m["fsd_intra"]
        + 2 * m["fsd_local"]
        + 1.5 * m["minilm"]
        + 0.5 * m["rkd_angle"]
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    # the terms read the penultimate hidden states (default) of both models
    t_out = teacher.apply({"params": tp}, batch["input_ids"], batch["attention_mask"])
    s_out = student.apply(
        {"params": sp},
        batch["input_ids"],
        batch["attention_mask"],
        deterministic=False,
        rngs={"dropout": jax.random.key(0)},
    )
    expected = losses.fsd_intra(
        t_out.hidden_states[-2], s_out.hidden_states[-2], batch["attention_mask"], batch["weights"]
    )
    assert float(m["fsd_intra"]) == pytest.approx(float(expected), rel=1e-5)
    g_teacher = jax.grad(lambda p: objective({"student": sp}, batch, jax.random.key(0), p)[0])(tp)
    assert all(not np.asarray(x).any() for x in jax.tree.leaves(g_teacher))
    g_student = jax.grad(lambda p: objective({"student": p}, batch, jax.random.key(0), tp)[0])(sp)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g_student))
    assert any(np.asarray(x).any() for x in jax.tree.leaves(g_student))


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        (
            {"fsd_intra": {"weight": 1.0, "teacher_layer": 9}},
            r"objective.fsd_intra.teacher_layer=9: the teacher has hidden states 0..4",
        ),
        (
            {"minilm": {"weight": 1.0, "student_layer": 2}},
            r"objective.minilm.student_layer=2: the student has attention layers 0..1",
        ),
        ({"pkd": {"weight": 1.0, "mapping": "diagonal"}}, "PKD mapping 'diagonal'"),
    ],
)
def test_layer_errors_name_the_option(tiny_config, terms, message):
    teacher, _, student, _ = _models(tiny_config)
    with pytest.raises(ValueError, match=message):
        make_distill_objective(student, teacher, parse_terms(terms))


def test_method_configs_list_every_option_of_their_terms():
    """So that each option can be set from the command line (config_flags refuses new keys)."""

    from fsd_jax.terms import TERMS

    for name in ("vkd", "pkd", "rkd", "minilm", "fsd_ilg", "tinybert", "bert_emd", "lad"):
        c = importlib.import_module(f"configs.distill.{name}").get_config("rte")
        objectives = [c.objective] + [p.objective for p in (c.get("phases") or {}).values()]
        for objective in objectives:
            for term, options in objective.items():
                assert set(options) == {"weight", *TERMS[term].defaults}, (name, term)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_distils(method, tiny_teacher, tmp_path):
    cfg = importlib.import_module(f"configs.distill.{method}").get_config("quickstart")
    base = tiny_finetune_config(tiny_teacher, tmp_path / "cache", max_steps=3)
    cfg.data, cfg.train, cfg.progress = base.data, base.train, False
    cfg.teacher = str(tiny_teacher)
    cfg.model.name_or_path = str(tiny_teacher)
    cfg.model.layers = "every:2"
    res = run_distill(cfg, tmp_path / method)
    assert res["steps"] == 3 and res["num_layers"] == 2
    terms = set(cfg.objective.keys())
    assert terms <= set(res["train_metrics"]) and "loss" in res["train_metrics"]
    assert all(np.isfinite(v) for v in res["train_metrics"].values())
    saved = json.loads((tmp_path / method / "results.json").read_text())
    assert set(saved["objective"]) == terms
    assert (tmp_path / method / "export" / "model.safetensors").is_file()


def test_distill_rejects_a_teacher_for_another_task(tiny_teacher, tmp_path):
    cfg = importlib.import_module("configs.distill.vkd").get_config("stsb")
    cfg.teacher = str(tiny_teacher)
    cfg.model.name_or_path = str(tiny_teacher)
    with pytest.raises(ValueError, match="task stsb needs 1"):
        run_distill(cfg, tmp_path / "x")


def test_faithful_terms_compute_the_named_reference_losses():
    """``faithful=True`` on a term runs the loss's reference variant (padding counted), and
    the default the masked loss: the two differ on a padded batch."""
    from fsd_jax.models.bert import BertOutput
    from fsd_jax.terms import TERMS
    from fsd_jax.terms.spec import Context

    rng = np.random.default_rng(0)
    b, n, k = 6, 10, 4
    mask = (np.arange(n)[None] < rng.integers(3, n, b)[:, None]).astype(np.int32)
    hidden = lambda d: tuple(rng.normal(size=(b, n, d)).astype(np.float32) for _ in range(3))  # noqa: E731
    logits = lambda: rng.normal(size=(b, 1)).astype(np.float32)  # noqa: E731  (regression)
    t_h, s_h = hidden(12), hidden(8)
    t_mem = rng.normal(size=(k, n, 12)).astype(np.float32)
    s_mem = rng.normal(size=(k, n, 8)).astype(np.float32)
    batch = {
        "attention_mask": mask,
        "weights": np.array([1, 1, 1, 1, 1, 0], np.float32),
        "labels": rng.normal(size=b).astype(np.float32),
    }
    ctx = Context(
        BertOutput(logits(), None, t_h, None),
        BertOutput(logits(), None, s_h, None),
        batch,
        teacher_memory=t_mem,
        teacher_memory_gram=losses.memory_gram(t_mem),
        student_memory=s_mem,
    )
    w = batch["weights"]
    expected = {
        "fsd_intra": (
            losses.fsd_intra(t_h[1], s_h[1], mask, w),
            losses.fsd_intra_reference(t_h[1], s_h[1], w),
        ),
        "fsd_local": (
            losses.fsd_local(t_h[1], s_h[1], mask, w),
            losses.fsd_local_reference(t_h[1], s_h[1], w),
        ),
        "fsd_g": (
            losses.fsd_global(t_h[1], s_h[1], t_mem, s_mem, mask, w),
            losses.fsd_global(t_h[1], s_h[1], t_mem, s_mem, None, w),
        ),
        "kd": (
            losses.kd(ctx.student.logits, ctx.teacher.logits, 2.0, w),
            losses.kd_reference(ctx.student.logits, ctx.teacher.logits, 2.0, w),
        ),
        "tiny_pred": (
            losses.soft_cross_entropy(ctx.student.logits, ctx.teacher.logits, 2.0, w),
            losses.soft_cross_entropy_reference(
                ctx.student.logits, ctx.teacher.logits, 2.0, w, labels=batch["labels"]
            ),
        ),
    }
    for name, (default, reference) in expected.items():
        spec = TERMS[name]
        got = {}
        for faithful in (False, True):
            o = {**spec.defaults, "teacher_layer": 1, "student_layer": 1, "temperature": 2.0}
            out = spec.fn(ctx, {**o, "faithful": faithful})
            got[faithful] = float(out["total"] if isinstance(out, dict) else out)
        np.testing.assert_allclose(got[False], float(default), rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[True], float(reference), rtol=1e-6, err_msg=name)
        assert abs(got[True] - got[False]) > 1e-4, name  # the variants are not the same loss
