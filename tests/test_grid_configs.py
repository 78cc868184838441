"""The grid's cell configs: method specs, overrides, the configs directory, per-task settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from ml_collections import ConfigDict

from fsd_jax.experiments import grid as grid_lib
from fsd_jax.experiments import search


def test_method_specs_and_overrides(tmp_path):

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
    assert (c.stage, c.model.layers) == ("finetune", "first:3") and "teacher_cache" not in c
    assert grid_lib.cell_config(g, "rte", "vkd", 1, Path("/t")).teacher_cache == "auto"
    g.student = {"train": {"nope": 1}}

    with pytest.raises(ValueError, match="grid override train.nope: no such field"):
        grid_lib.cell_config(g, "rte", "vkd", 0, Path("/t"))


def test_cell_configs_come_from_the_grids_configs_dir_from_any_directory(tmp_path, monkeypatch):

    from configs import grid

    g = grid.get_config().grid
    monkeypatch.chdir(tmp_path)  # not the checkout: the files are found through configs_dir
    c = grid_lib.cell_config(g, "rte", "pkd", 0, tmp_path)
    assert c.stage == "distill" and "pkd" in c.objective
    g.configs_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"grid: no config .*distill/pkd.py"):
        grid_lib.cell_config(g, "rte", "pkd", 0, tmp_path)
    g.configs_dir = ""
    with pytest.raises(ValueError, match="grid.configs_dir"):
        grid_lib.cell_config(g, "rte", "nokd", 0, tmp_path)


def test_teacher_search_tasks_limits_the_search_to_the_named_tasks(tmp_path):
    g = ConfigDict(
        {"teacher_search": {"learning_rate": "1e-5,2e-5"}, "teacher_search_tasks": "rte"}
    )
    rte = grid_lib.teacher_dirs(g, "rte", tmp_path)
    assert [c for c, _ in rte] == [{"learning_rate": "1e-5"}, {"learning_rate": "2e-5"}]
    assert all(d.parent == tmp_path / "rte" / "teacher_search" for _, d in rte)
    assert grid_lib.teacher_dirs(g, "mrpc", tmp_path) == [({}, tmp_path / "mrpc" / "teacher")]
    g.teacher_search_tasks = ""  # every task searches
    assert len(grid_lib.teacher_dirs(g, "mrpc", tmp_path)) == 2
    assert search.teacher_candidates({"learning_rate": "1e-6,3e-3", "max_steps": "2,4"}) == [
        {"learning_rate": "1e-6", "max_steps": "2"},
        {"learning_rate": "1e-6", "max_steps": "4"},
        {"learning_rate": "3e-3", "max_steps": "2"},
        {"learning_rate": "3e-3", "max_steps": "4"},
    ]


def test_common_per_task_reaches_every_run_of_that_task_only(tmp_path):
    from configs import grid

    g = grid.get_config().grid
    cola = grid_lib.cell_config(g, "cola", "vkd", 0, tmp_path)
    mrpc = grid_lib.cell_config(g, "mrpc", "vkd", 0, tmp_path)
    assert cola.data.buckets == grid.SHORT_BUCKETS
    assert mrpc.data.buckets == g.common.data.buckets != grid.SHORT_BUCKETS
    g.common_per_task = {"mrpc": {"data": {"buckets": "64,128"}}}
    assert grid_lib.cell_config(g, "mrpc", "nokd", 1, tmp_path).data.buckets == "64,128"
    assert (
        grid_lib.cell_config(g, "cola", "nokd", 1, tmp_path).data.buckets == "48,64,80,96,112,128"
    )


def test_student_search_ties_a_field_to_a_searched_one():
    g = ConfigDict(
        {
            "student_search": {
                "*": {"train": {"learning_rate": "1e-4,2e-4"}},
                "fsd_il": {
                    "objective": {
                        "fsd_intra": {"weight": "1e-3,0.1"},
                        "fsd_local": {"weight": "=objective.fsd_intra.weight"},
                    }
                },
            }
        }
    )
    found = search.student_candidates(g, "fsd_il")
    pairs = [
        (c["train.learning_rate"], c["objective.fsd_intra.weight"], c["objective.fsd_local.weight"])
        for c in found
    ]
    assert pairs == [
        ("1e-4", "1e-3", "1e-3"),
        ("1e-4", "0.1", "0.1"),
        ("2e-4", "1e-3", "1e-3"),
        ("2e-4", "0.1", "0.1"),
    ]
    assert search.student_candidates(g, "vkd") == [
        {"train.learning_rate": "1e-4"},
        {"train.learning_rate": "2e-4"},
    ]
    g.student_search.fsd_il.objective.fsd_local.weight = "=objective.fsd_intra.wieght"
    with pytest.raises(ValueError, match=r"fsd_local.weight = '=objective.fsd_intra.wieght'"):
        search.student_candidates(g, "fsd_il")


def test_student_per_task_sets_that_tasks_students_and_a_record_of_another_depth_is_refused(
    tmp_path,
):
    from configs import grid
    from fsd_jax.experiments.cell_checks import _depth, check_student_depth

    g = grid.get_config().grid
    g.student_per_task = {"mrpc": {"model": {"layers": "first:5"}}}
    mrpc = grid_lib.cell_config(g, "mrpc", "vkd", 0, tmp_path)
    assert mrpc.model.layers == "first:5"
    assert grid_lib.cell_config(g, "mrpc", "nokd", 0, tmp_path).model.layers == "first:5"
    assert grid_lib.cell_config(g, "cola", "vkd", 0, tmp_path).model.layers == "first:3"
    check_student_depth({"num_layers": 5}, tmp_path, mrpc)
    check_student_depth({}, tmp_path, mrpc)  # a record without the field: nothing to compare
    with pytest.raises(ValueError, match=r"3-layer student.*now has 5 layers"):
        check_student_depth({"num_layers": 3}, tmp_path / "mrpc" / "vkd" / "seed0", mrpc)
    assert [_depth(s) for s in ("first:3", "last:2", "4", "2,4,6", [1, 2], "every:2", None)] == [
        3,
        2,
        4,
        3,
        2,
        None,
        None,
    ]
    g.student_per_task = {"mrpc": {"model": {"layerz": "first:5"}}}
    with pytest.raises(ValueError, match=r"student_per_task\.mrpc\.model\.layerz"):
        grid_lib.cell_config(g, "mrpc", "vkd", 0, tmp_path)
