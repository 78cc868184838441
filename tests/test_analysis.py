"""Analyses of a student against its teacher (METHODS.md §2.9) against NumPy transcriptions."""

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
    assert set(out["restoration_rate"]) == {"precision", "recall", "f1"}
    assert out["params"]["teacher"] > out["params"]["model"] > 0
    png = (tmp_path / "out" / "cka_heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


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
    for k in ("cka_heatmap", "relation_differences", "restoration_rate", "params"):
        np.testing.assert_allclose(
            np.asarray(jax.tree.leaves(memo[k])), np.asarray(jax.tree.leaves(fresh[k]))
        )
