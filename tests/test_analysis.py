"""Analyses of a student against its teacher (docs/methods.md §2.9) against NumPy transcriptions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from fsd_jax.analysis import cka_heatmap, diagonal_mean, relation_differences, restoration_rate

RNG = np.random.default_rng(0)


def _np_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    k, g = x @ x.T, y @ y.T
    return (k * g).sum() / np.sqrt((k * k).sum() * (g * g).sum())


def test_cka_heatmap_cells_and_diagonal():
    t = [RNG.normal(size=(6, 4, 3)) for _ in range(3)]
    m = [x + 0.3 * RNG.normal(size=x.shape) for x in t]
    heat = cka_heatmap(t, m)
    for i in range(3):
        for j in range(3):
            want = _np_cka(t[i].reshape(6, -1), m[j].reshape(6, -1))
            np.testing.assert_allclose(heat[i, j], want, rtol=1e-4)
    np.testing.assert_allclose(diagonal_mean(cka_heatmap(t, t)), 1.0, rtol=1e-5)
    assert diagonal_mean(heat) > np.mean(heat[~np.eye(3, dtype=bool)])


def test_restoration_rate_binary_and_macro():
    teacher = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    model = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    r = restoration_rate(teacher, model, 2)
    tp, fp, fn = 3, 1, 2
    assert r["precision"] == tp / (tp + fp) and r["recall"] == tp / (tp + fn)
    np.testing.assert_allclose(r["f1"], 2 * tp / (2 * tp + fp + fn))
    assert r["agreement"] == 5 / 8
    # undefined values are NaN, not 0: both predict only class 0 = perfect agreement
    none = restoration_rate(np.zeros(5, int), np.zeros(5, int), 2)
    assert all(np.isnan(none[k]) for k in ("precision", "recall", "f1"))
    assert none["agreement"] == 1.0
    # the teacher has positives, the student predicts none: recall and F1 are 0, precision n/a
    miss = restoration_rate(np.array([1, 0, 0, 1]), np.zeros(4, int), 2)
    assert np.isnan(miss["precision"]) and miss["recall"] == 0.0 and miss["f1"] == 0.0
    t3 = np.array([0, 1, 2, 2, 1, 0])
    m3 = np.array([0, 2, 2, 2, 1, 1])
    r3 = restoration_rate(t3, m3, 3)
    per_p = [1 / 1, 1 / 2, 2 / 3]  # predicted-as-class precision
    per_r = [1 / 2, 1 / 2, 2 / 2]
    np.testing.assert_allclose(r3["precision"], np.mean(per_p))
    np.testing.assert_allclose(r3["recall"], np.mean(per_r))


def test_relation_differences_match_brute_force():
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    t = RNG.normal(size=(3, 4, 5)) * mask[..., None]
    s = RNG.normal(size=(3, 4, 5)) * mask[..., None]
    got = relation_differences(t, s, mask)

    def rel(a, b, kind):
        if kind == "euclid":
            return np.linalg.norm(a - b)
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    for kind in ("euclid", "cos"):
        tf, sf = t.reshape(3, -1), s.reshape(3, -1)
        inter = np.mean(
            [
                abs(rel(sf[a], sf[b], kind) - rel(tf[a], tf[b], kind))
                for a in range(3)
                for b in range(3)
            ]
        )
        intra = np.mean(
            [
                np.mean(
                    [
                        abs(rel(s[i, p], s[i, q], kind) - rel(t[i, p], t[i, q], kind))
                        for p in range(int(mask[i].sum()))
                        for q in range(int(mask[i].sum()))
                    ]
                )
                for i in range(3)
            ]
        )
        np.testing.assert_allclose(got[f"inter_{kind}"], inter, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got[f"intra_{kind}"], intra, rtol=1e-6, atol=1e-7)


def test_eval_cli_analyses_a_student_against_its_teacher(tiny_teacher, tiny_checkpoint, tmp_path):
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [
            sys.executable,
            "eval.py",
            "--model",
            str(tiny_checkpoint),
            "--teacher",
            str(tiny_teacher),
            "--task",
            "quickstart",
            "--out",
            str(tmp_path / "out"),
            "--max_seq_length",
            "24",
            "--pool_batches",
            "3",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert len(out["cka_heatmap"]) == 3 and 0 <= out["cka_diagonal_mean"] <= 1
    assert set(out["relation_differences"]) == {
        "inter_euclid",
        "inter_cos",
        "intra_euclid",
        "intra_cos",
    }
    assert set(out["restoration_rate"]) == {"precision", "recall", "f1", "agreement"}
    assert out["params"]["teacher"] > out["params"]["model"] > 0
    png = (tmp_path / "out" / "cka_heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    layers = np.asarray(out["layer_cka"])  # teacher 0..N_t x model 0..N_s
    assert layers.shape[0] > layers.shape[1] > 1 and np.isfinite(layers).all()
    assert (tmp_path / "out" / "layer_cka.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_cka_is_debiased_minibatch_cka_in_float64(tiny_teacher):
    """analysis.layer_cka on a real (tiny) BERT against NumPy: per batch, Song et al.'s
    unbiased HSIC of the flattened padding-zeroed hidden states, summed over batches."""
    from fsd_jax import analysis
    from fsd_jax.data import encode, load_examples
    from fsd_jax.models import BertForSequenceClassification, load_pretrained, load_tokenizer
    from fsd_jax.models.surgery import select_layers

    model, params = load_pretrained(tiny_teacher)
    cfg, sub = select_layers(model.config, params, "every:2")
    student = BertForSequenceClassification(cfg)
    data = encode(load_examples("quickstart", "dev"), load_tokenizer(tiny_teacher), 16)
    kw = {"batch_size": 8, "seq_len": 16, "num_batches": 3}
    got = analysis.layer_cka(
        analysis.layer_grams(model, params, data, **kw),
        analysis.layer_grams(student, sub, data, **kw),
    )

    def flat_states(m, p):
        out = []
        for feats in analysis.iterate_batches(data, 8, 16):
            o = m.apply({"params": p}, **analysis.model_inputs(feats))
            mask = feats["attention_mask"][..., None]
            out.append([np.asarray(h, np.float64) * mask for h in o.hidden_states])
            if len(out) == 3:
                break
        return [[h.reshape(8, -1) for h in b] for b in out]

    def hsic_u(x, y):
        k, g = x @ x.T, y @ y.T
        n = len(k)
        k, g = k - np.diag(np.diag(k)), g - np.diag(np.diag(g))
        one = np.ones(n)
        return (
            np.trace(k @ g)
            + one @ k @ one * (one @ g @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ g @ one
        ) / (n * (n - 3))

    t_b, s_b = flat_states(model, params), flat_states(student, sub)
    expected = np.zeros(got.shape)
    for i, j in np.ndindex(*got.shape):
        xy = sum(hsic_u(t[i], s[j]) for t, s in zip(t_b, s_b, strict=True))
        xx = sum(hsic_u(t[i], t[i]) for t in t_b)
        yy = sum(hsic_u(s[j], s[j]) for s in s_b)
        expected[i, j] = xy / np.sqrt(xx * yy)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)
    # the student keeps the teacher's embeddings: their CKA is 1
    np.testing.assert_allclose(got[0, 0], 1.0, rtol=1e-5)


def test_the_teachers_side_is_computed_once_and_matches_a_fresh_run(
    tiny_teacher, tiny_checkpoint, tmp_path, monkeypatch
):
    from fsd_jax import analysis

    kw = {"max_seq_length": 24, "num_batches": 2, "cache_dir": str(tmp_path / "cache")}
    analysis._TEACHER_SIDE.clear()
    analysis.analyze(tiny_teacher, tiny_teacher, "quickstart", tmp_path / "a", **kw)
    # a second student of the same teacher reads the memo: the teacher is not loaded again
    real_load = analysis.hidden_features
    calls = []
    monkeypatch.setattr(
        analysis, "hidden_features", lambda m, *a, **k: calls.append(m) or real_load(m, *a, **k)
    )
    memo = analysis.analyze(tiny_checkpoint, tiny_teacher, "quickstart", tmp_path / "b", **kw)
    assert len(calls) == 1  # the student's features only
    analysis._TEACHER_SIDE.clear()
    fresh = analysis.analyze(tiny_checkpoint, tiny_teacher, "quickstart", tmp_path / "c", **kw)
    for k in ("cka_heatmap", "layer_cka", "relation_differences", "restoration_rate", "params"):
        np.testing.assert_allclose(
            np.asarray(jax.tree.leaves(memo[k])), np.asarray(jax.tree.leaves(fresh[k]))
        )


def test_an_old_analysis_gets_its_ambiguous_restoration_rate_recomputed(tiny_teacher, tmp_path):
    from fsd_jax import analysis

    kw = {"max_seq_length": 24, "num_batches": 2, "cache_dir": str(tmp_path / "cache")}
    new = analysis.analyze(tiny_teacher, tiny_teacher, "quickstart", tmp_path / "a", **kw)
    assert new["format"] == analysis.ANALYSIS_FORMAT
    assert not analysis.refresh_restoration(tmp_path / "a", **kw)  # current format: untouched
    path = tmp_path / "a" / "analysis.json"
    on_disk = json.loads(path.read_text())
    # format 1 wrote 0 where a value was undefined: such a file is recomputed
    old = {**on_disk, "restoration_rate": {"precision": 0.0, "recall": 0.0, "f1": 0.0}}
    del old["format"]
    path.write_text(json.dumps(old))
    assert analysis.refresh_restoration(path.parent, **kw)
    again = json.loads(path.read_text())
    assert again["restoration_rate"] == on_disk["restoration_rate"]  # NaN stored as null
    assert again["restoration_rate"]["agreement"] == 1.0  # the teacher against itself
    assert again["cka_heatmap"] == on_disk["cka_heatmap"] and again["format"] == 2
    # any format-1 file gets the agreement it lacked (and the rate recomputed)
    wrong = {**on_disk, "restoration_rate": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3}}
    del wrong["format"]
    path.write_text(json.dumps(wrong))
    assert analysis.refresh_restoration(path.parent, **kw)
    assert json.loads(path.read_text()) == on_disk
