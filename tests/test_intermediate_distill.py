"""The intermediate-layer family inside the distillation objective and the distill stage:
TinyBERT (two phases, study variants), BERT-EMD (layer weights in the train state), LAD (gates
on their own optimiser), W_h for a narrower student."""

from __future__ import annotations

import importlib
import json

import jax
import numpy as np
import pytest
from conftest import padded_batch, tiny_finetune_config

from fsd_jax import losses
from fsd_jax.models import BertForSequenceClassification, init_params, load_pretrained
from fsd_jax.objective import init_objective_state, make_distill_objective
from fsd_jax.terms import parse_terms
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.distill import run_distill


def _models(tiny_config, width=None):
    teacher = BertForSequenceClassification(tiny_config)
    s_cfg = tiny_config.replace(num_hidden_layers=2)
    if width:
        s_cfg = s_cfg.replace(hidden_size=width, intermediate_size=2 * width)
    student = BertForSequenceClassification(s_cfg)
    return teacher, init_params(teacher, 1), student, init_params(student, 2)


def _outputs(teacher, tp, student, sp, batch):
    t = teacher.apply(
        {"params": tp}, batch["input_ids"], batch["attention_mask"], output_attentions=True
    )
    s = student.apply(
        {"params": sp},
        batch["input_ids"],
        batch["attention_mask"],
        deterministic=False,
        rngs={"dropout": jax.random.key(0)},
        output_attentions=True,
    )
    return t, s


def test_tinybert_terms_read_the_mapped_layers_through_w_h(tiny_config):
    teacher, tp, student, sp = _models(tiny_config, width=16)
    terms = parse_terms(
        {
            "tiny_att": {"weight": 1.0, "mapping": "mean", "loss": "kl_probs"},
            "tiny_hidden": {"weight": 2.0, "mapping": "uniform"},
            "tiny_emb": {"weight": 0.5},
            "tiny_pred": {"weight": 1.0, "temperature": 2.0},
        }
    )
    extra, aux = init_objective_state(terms, teacher.config, student.config, 9, seed=0)
    assert set(extra) == {"proj"} and extra["proj"]["kernel"].shape == (16, 32) and not aux
    objective = make_distill_objective(student, teacher, terms)
    batch = padded_batch((9, 5, 7, 3))
    params = {"student": sp, **extra}
    loss, (m, _) = objective(params, batch, jax.random.key(0), tp)
    t, s = _outputs(teacher, tp, student, sp, batch)
    mask, w = batch["attention_mask"], batch["weights"]
    proj = lambda h: h @ extra["proj"]["kernel"] + extra["proj"]["bias"]  # noqa: E731
    # 4 teacher layers → 2 student layers: mean blocks (1, 2), (3, 4); uniform 2, 4
    att = sum(
        losses.attention_kl(
            (t.attentions.scores[a] + t.attentions.scores[b]) / 2, s.attentions.scores[i], mask, w
        )
        for i, (a, b) in enumerate([(0, 1), (2, 3)])
    )
    hid = losses.hidden_mse(t.hidden_states[2], proj(s.hidden_states[1]), mask, w) + (
        losses.hidden_mse(t.hidden_states[4], proj(s.hidden_states[2]), mask, w)
    )
    emb = losses.hidden_mse(t.hidden_states[0], proj(s.hidden_states[0]), mask, w)
    pred = losses.soft_cross_entropy(s.logits, t.logits, 2.0, w)
    for name, want in (
        ("tiny_att", att),
        ("tiny_hidden", hid),
        ("tiny_emb", emb),
        ("tiny_pred", pred),
    ):
        np.testing.assert_allclose(m[name], want, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(loss, att + 2 * hid + 0.5 * emb + pred, rtol=2e-5)
    grads = jax.grad(lambda p: objective(p, batch, jax.random.key(0), tp)[0])(params)
    assert np.abs(np.asarray(grads["proj"]["kernel"])).sum() > 0


def test_emd_term_is_sum_of_flow_times_cost_and_updates_weights(tiny_config):
    teacher, tp, student, sp = _models(tiny_config)
    terms = parse_terms({"emd": {"weight": 1.0, "weight_update": "softmax", "temperature": 2.0}})
    extra, aux = init_objective_state(terms, teacher.config, student.config, 9, seed=0)
    assert not extra  # equal widths: no W_h unless projection="always"
    np.testing.assert_allclose(aux["emd"]["att_teacher"], np.full(4, 0.25))
    objective = make_distill_objective(student, teacher, terms)
    batch = padded_batch((9, 5, 7, 3))
    _, (m, new_aux) = jax.jit(objective)({"student": sp}, batch, jax.random.key(0), tp, aux=aux)
    t, s = _outputs(teacher, tp, student, sp, batch)
    mask, w = batch["attention_mask"], batch["weights"]
    d_att = np.array(
        [
            [losses.attention_scores_mse(ts, ss, mask, w) for ts in t.attentions.scores]
            for ss in s.attentions.scores
        ]
    )
    d_rep = np.array(
        [
            [losses.hidden_mse(th, sh, mask, w) for th in t.hidden_states[1:]]
            for sh in s.hidden_states[1:]
        ]
    )
    f_att = losses.transport_simplex(d_att, np.full(2, 0.5), np.full(4, 0.25))
    f_rep = losses.transport_simplex(d_rep, np.full(2, 0.5), np.full(4, 0.25))
    np.testing.assert_allclose(m["emd/att"], (f_att * d_att).sum(), rtol=1e-4)
    np.testing.assert_allclose(m["emd/rep"], (f_rep * d_rep).sum(), rtol=1e-4)
    ws_a, wt_a = losses.update_layer_weights(
        f_att, d_att, np.full(2, 0.5), np.full(4, 0.25), rule="softmax", temperature=2.0
    )
    ws_r, wt_r = losses.update_layer_weights(
        f_rep, d_rep, np.full(2, 0.5), np.full(4, 0.25), rule="softmax", temperature=2.0
    )
    # not separate: attention and hidden weights are averaged and shared
    np.testing.assert_allclose(new_aux["emd"]["att_student"], (ws_a + ws_r) / 2, rtol=1e-4)
    np.testing.assert_allclose(new_aux["emd"]["rep_teacher"], (wt_a + wt_r) / 2, rtol=1e-4)


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        (
            {"tiny_hidden": {"weight": 1.0, "mapping": "explicit", "layers": "1,9"}},
            r"objective.tiny_hidden.mapping: .*\[9\] out of range 1..4",
        ),
        ({"tiny_att": {"weight": 1.0, "loss": "l1"}}, "objective.tiny_att.loss='l1'"),
        ({"emd": {"weight": 1.0, "weight_update": "x"}}, "objective.emd.weight_update='x'"),
    ],
)
def test_intermediate_option_errors(tiny_config, terms, message):
    teacher, _, student, _ = _models(tiny_config)
    with pytest.raises(ValueError, match=message):
        make_distill_objective(student, teacher, parse_terms(terms))


def test_lad_needs_equal_widths(tiny_config):
    teacher, _, student, _ = _models(tiny_config, width=16)
    with pytest.raises(ValueError, match="objective.lad: teacher width 32 != student width 16"):
        make_distill_objective(student, teacher, parse_terms({"lad": {"weight": 1.0}}))


def _config(method, arg, teacher, student, tmp_path, steps=3):
    cfg = importlib.import_module(f"configs.distill.{method}").get_config(arg)
    groups = cfg.train.get("group_learning_rates")
    base = tiny_finetune_config(teacher, tmp_path / "cache", max_steps=steps)
    cfg.data, cfg.train, cfg.progress = base.data, base.train, False
    cfg.train.schedule = "linear"
    if groups:
        cfg.train.group_learning_rates = groups
    cfg.teacher = str(teacher)
    cfg.model.name_or_path = str(student)
    cfg.model.layers = "every:2" if student == teacher else None
    return cfg


@pytest.mark.parametrize(
    ("method", "arg"),
    [
        ("tinybert", "quickstart,one_stage"),
        ("tinybert", "quickstart,kl,random,one_stage"),
        ("bert_emd", "quickstart"),
        ("lad", "quickstart"),
    ],
)
def test_intermediate_methods_distil(method, arg, tiny_teacher, tmp_path):
    res = run_distill(_config(method, arg, tiny_teacher, tiny_teacher, tmp_path), tmp_path / "w")
    assert res["steps"] == 3 and res["num_layers"] == 2
    assert all(np.isfinite(v) for v in res["train_metrics"].values())
    _, exported = load_pretrained(tmp_path / "w")
    assert not {"proj", "gates"} & set(exported)
    # extra tables and step state are checkpointed with the run (and so resumed)
    ckpt = Checkpointer(tmp_path / "w" / "checkpoints")
    state, _, _ = ckpt.restore_latest(None)
    ckpt.close()
    if method == "bert_emd":
        weights = state["aux"]["emd"]
        assert abs(float(np.sum(weights["att_teacher"])) - 1) < 1e-5
        assert not np.allclose(weights["att_teacher"], 0.25)  # moved from the uniform start
    if method == "lad":
        assert set(state["params"]) == {"student", "gates"}


def test_tinybert_two_phases_and_narrow_student(tiny_teacher, tiny_narrow, tmp_path):
    cfg = _config("tinybert", "quickstart", tiny_teacher, tiny_narrow, tmp_path)
    res = run_distill(cfg, tmp_path / "w")
    assert list(res["phases"]) == ["intermediate", "prediction"]
    inter = res["phases"]["intermediate"]
    assert set(inter["objective"]) == {"tiny_att", "tiny_hidden", "tiny_emb"}
    assert set(res["phases"]["prediction"]["objective"]) == {"tiny_pred"}
    # the prediction phase starts from the intermediate phase's student
    pred_cfg = json.loads((tmp_path / "w" / "prediction" / "results.json").read_text())
    assert pred_cfg["model"] == str(tmp_path / "w" / "intermediate")
    model, params = load_pretrained(tmp_path / "w")
    assert model.config.hidden_size == 16 and "proj" not in params
    # a re-run finds both phases finished and trains nothing
    again = run_distill(cfg, tmp_path / "w")
    assert again["dev"] == res["dev"]
