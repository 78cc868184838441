"""The experiment grid: cells run once, a second run resumes without redoing them, and the
report aggregates mean ± std over seeds."""

from __future__ import annotations

import csv

import numpy as np

from fsd_jax import grid as grid_lib


def _config(teacher, tmp_path):
    from configs import grid

    c = grid.get_config()
    c.progress = False
    g = c.grid
    g.tasks = "quickstart"
    g.methods = "nokd,vkd,fsd_ilg"
    g.seeds = "0,1"
    g.student_layers = "every:2"
    g.report_dir = str(tmp_path / "report")
    tiny = {
        "data": {"max_seq_length": 24, "cache_dir": str(tmp_path / "cache"), "data_dir": None},
        "model": {"name_or_path": str(teacher)},
        "train": {"max_steps": 3, "batch_size": 16, "eval_batch_size": 64, "learning_rate": 1e-3},
        "tensorboard": False,
    }
    g.common = tiny
    g.student = {"train": {"max_steps": 2}}
    g.methods_overrides = {}
    return c


def test_grid_runs_resumes_and_reports(tiny_teacher, tmp_path, monkeypatch):
    from fsd_jax.train.stages import run

    cfg = _config(tiny_teacher, tmp_path)
    cfg.grid.memory = {"memory": {"num_clusters": 3, "num_passes": 1}}
    out = run(cfg, tmp_path / "grid")
    table = out["table"]["quickstart"]
    assert set(table) == {"teacher", "nokd", "vkd", "fsd_ilg"}
    assert table["vkd"]["accuracy"][2] == 2  # two seeds
    for name in ("vkd", "fsd_ilg"):
        assert (tmp_path / "grid" / "quickstart" / name / "seed1" / "results.json").is_file()
    assert (tmp_path / "grid" / "quickstart" / "memory" / "memory.npz").is_file()
    # the cells' accuracies aggregate to the reported mean and std
    accs = [
        float(r["mean"])
        for r in csv.DictReader((tmp_path / "report" / "results.csv").open())
        if r["method"] == "vkd" and r["metric"] == "accuracy"
    ]
    import json

    seeds = [
        json.loads(
            (tmp_path / "grid" / "quickstart" / "vkd" / f"seed{s}" / "results.json").read_text()
        )["dev"]["dev"]["accuracy"]
        for s in (0, 1)
    ]
    np.testing.assert_allclose(accs, [np.mean(seeds)])
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| vkd | 2 |" in md and "±" in md
    assert (tmp_path / "report" / "results.png").read_bytes()[:4] == b"\x89PNG"

    # a second run finds every cell done and trains nothing
    def fail(*a, **k):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr("fsd_jax.train.distill.run_distill", fail)
    monkeypatch.setattr("fsd_jax.train.finetune.run_finetune", fail)
    again = run(cfg, tmp_path / "grid")
    assert again["table"] == out["table"]


def test_method_specs_and_overrides(tmp_path):
    from pathlib import Path

    from configs import grid

    assert grid_lib.method_name("tinybert:kl+one_stage") == "tinybert-kl-one_stage"
    assert grid_lib.method_name("vkd") == "vkd"
    g = grid.get_config().grid
    c = grid_lib.cell_config(g, "mrpc", "tinybert:kl+one_stage", 2, Path("/t"))
    assert c.objective.tiny_att.loss == "kl_probs" and "phases" not in c
    assert (c.seed, c.teacher, c.train.num_epochs, c.data.buckets) == (
        2,
        "/t",
        3.0,
        "48,64,80,96,112,128",
    )
    c = grid_lib.cell_config(g, "mrpc", "tinybert", 0, Path("/t"))
    assert c.phases.intermediate.train.num_epochs == 3.0
    c = grid_lib.cell_config(g, "rte", "nokd", 1, Path("/t"))
    assert (c.stage, c.model.layers) == ("finetune", "first:3")
    g.student = {"train": {"nope": 1}}
    import pytest

    with pytest.raises(ValueError, match="grid override train.nope: no such field"):
        grid_lib.cell_config(g, "rte", "vkd", 0, Path("/t"))
