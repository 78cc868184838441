"""The experiment grid: cells run once, a second run resumes without redoing them, searches
choose on one seed, records let a grid go on elsewhere, and the report aggregates mean ± std
over seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from ml_collections import ConfigDict

from fsd_jax.experiments import grid as grid_lib


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
    g.analysis_batches = 2
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
    # every cell analysed against the teacher; the analyses aggregate over seeds
    assert "analyses against the teacher" in md and "cka_quickstart.png" in md
    assert (tmp_path / "report" / "cka_quickstart.png").read_bytes()[:4] == b"\x89PNG"
    diag = [
        json.loads(
            (
                tmp_path
                / "grid"
                / "quickstart"
                / "fsd_ilg"
                / f"seed{s}"
                / "analysis"
                / "analysis.json"
            ).read_text()
        )["cka_diagonal_mean"]
        for s in (0, 1)
    ]
    a = out["analyses"]["quickstart"]
    np.testing.assert_allclose(
        a["fsd_ilg"]["cka_diagonal"][:2], [np.mean(diag), np.std(diag, ddof=1)]
    )
    assert a["vkd"]["speed_vs_vkd"][0] == 1.0 and a["nokd"]["examples_per_s"][0] > 0
    assert {"restoration_f1", "intra_cos", "inter_euclid"} <= set(a["nokd"])
    # parameter count of the exported student: the FSD-G student memory is not part of it
    assert a["fsd_ilg"]["params"][0] == a["vkd"]["params"][0] > 0

    # a second run finds every cell done and trains nothing
    def fail(*a, **k):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr("fsd_jax.train.distill.run_distill", fail)
    monkeypatch.setattr("fsd_jax.train.finetune.run_finetune", fail)
    monkeypatch.setattr("fsd_jax.analysis.analyze", fail)
    again = run(cfg, tmp_path / "grid")
    assert again["table"] == out["table"]
    assert again["analyses"] == out["analyses"]
    # a report of seed 1 alone leaves seed 0's finished cells out
    cfg.grid.seeds = "1"
    one = run(cfg, tmp_path / "grid")
    assert one["table"]["quickstart"]["vkd"]["accuracy"] == (seeds[1], 0.0, 1)
    assert one["analyses"]["quickstart"]["fsd_ilg"]["cka_diagonal"] == (diag[1], 0.0, 1)
    assert "| vkd | 1 |" in (tmp_path / "report" / "results.md").read_text()


def test_a_time_budget_stops_starting_cells_and_reports_what_is_missing(tiny_teacher, tmp_path):
    from fsd_jax.train.stages import run

    cfg = _config(tiny_teacher, tmp_path)
    cfg.grid.methods, cfg.grid.seeds, cfg.grid.analysis_batches = "nokd", "0", 0
    run(cfg, tmp_path / "grid")
    cfg.grid.methods, cfg.grid.max_hours = "nokd,vkd", 1e-9
    cfg.grid.report_throughput = False
    out = run(cfg, tmp_path / "grid")
    assert out["cells_not_run"] == 1 and not (tmp_path / "grid" / "quickstart" / "vkd").exists()
    assert set(out["table"]["quickstart"]) == {"teacher", "nokd"}
    md = (tmp_path / "report" / "results.md").read_text()
    assert "| vkd | 0 | not run yet" in md and "| nokd | 1 |" in md
    assert "params (M) |" in md and "examples/s" not in md
    # a task none of whose runs finished (not even the teacher) still gets its table
    cfg.grid.tasks = "quickstart,rte"
    out = run(cfg, tmp_path / "grid")
    md = (tmp_path / "report" / "results.md").read_text()
    assert "## rte\n\n| method | seeds | dev |" in md and "| vkd | 0 | not run yet |" in md


def test_a_search_stopped_part_way_records_its_finished_candidates(tmp_path):
    from fsd_jax.train.stages import run

    cfg = _config(tmp_path / "no_teacher_needed", tmp_path)
    cfg.grid.teacher_search = {"learning_rate": "1e-6,3e-3"}
    cfg.grid.records_dir = str(tmp_path / "records")
    cfg.grid.max_hours = 1e-9  # out of time: the second candidate is not started
    done = tmp_path / "grid" / "quickstart" / "teacher_search" / "learning_rate-1e-6"
    done.mkdir(parents=True)
    (done / "results.json").write_text(json.dumps({"dev": {"dev": {"score": 0.5}}}))
    out = run(cfg, tmp_path / "grid")
    assert out["cells_not_run"] == 6
    record = tmp_path / "records" / "quickstart" / "teacher_search" / "learning_rate-1e-6"
    assert json.loads((record / "results.json").read_text())["dev"]["dev"]["score"] == 0.5
    assert not (record.parent / "learning_rate-3e-3").exists()


def test_a_kept_no_kd_cell_is_analysed_again_against_a_changed_teacher(
    tiny_teacher, tmp_path, caplog
):
    from fsd_jax.train.stages import run

    cfg = _config(tiny_teacher, tmp_path)
    cfg.grid.methods, cfg.grid.seeds = "nokd", "0"
    run(cfg, tmp_path / "grid")
    record = tmp_path / "grid" / "quickstart" / "nokd" / "seed0" / "analysis" / "analysis.json"
    first = json.loads(record.read_text())
    # as if analysed against a teacher the grid no longer uses: the no-KD student itself
    # does not depend on the teacher and is kept, its analysis is not
    stale = {**first, "teacher": str(tmp_path / "old_teacher"), "cka_diagonal_mean": -1.0}
    record.write_text(json.dumps(stale))
    with caplog.at_level("WARNING"):
        out = run(cfg, tmp_path / "grid")
    again = json.loads(record.read_text())
    assert again["teacher"] == first["teacher"]
    assert again["cka_diagonal_mean"] == pytest.approx(first["cka_diagonal_mean"], abs=1e-6)
    assert out["analyses"]["quickstart"]["nokd"]["cka_diagonal"][0] == pytest.approx(
        first["cka_diagonal_mean"], abs=1e-6
    )
    assert "analysing it again" in caplog.text


def test_teacher_search_and_records_let_a_grid_go_on_without_its_workdir(
    tiny_teacher, tmp_path, monkeypatch, caplog
):
    import shutil

    from fsd_jax.train import distill, finetune
    from fsd_jax.train.stages import run

    cfg = _config(tiny_teacher, tmp_path)
    cfg.grid.methods, cfg.grid.seeds = "nokd,vkd", "0"
    cfg.grid.teacher_search = {"learning_rate": "1e-6,3e-3"}
    cfg.grid.records_dir = str(tmp_path / "records")
    first = run(cfg, tmp_path / "grid")
    # the search keeps the best dev score; the chosen teacher teaches the cells
    search = json.loads((tmp_path / "grid" / "quickstart" / "teacher_search.json").read_text())
    assert [c["train"] for c in search] == [{"learning_rate": "1e-6"}, {"learning_rate": "3e-3"}]
    best = [c for c in search if c.get("chosen")]
    assert len(best) == 1 and best[0]["score"] == max(c["score"] for c in search)
    teacher_dev = json.loads((Path(best[0]["dir"]) / "results.json").read_text())["dev"]
    assert first["table"]["quickstart"]["teacher"]["score"][0] == teacher_dev["dev"]["score"]
    assert "Teacher tuning" in (tmp_path / "report" / "results.md").read_text()
    cell = tmp_path / "grid" / "quickstart" / "vkd" / "seed0"
    assert json.loads((cell / "train_config.json").read_text())["teacher"] == best[0]["dir"]
    # a cell distilled from another teacher (the search changed since) is not silently reused
    kept = (cell / "results.json").read_text()
    other = next(c["dir"] for c in search if not c.get("chosen"))
    (cell / "results.json").write_text(json.dumps({**json.loads(kept), "teacher": other}))
    with pytest.raises(ValueError, match=r"vkd/seed0 was made from teacher .*move it away"):
        run(cfg, tmp_path / "grid")
    (cell / "results.json").write_text(kept)

    rec = tmp_path / "records" / "quickstart"
    search = json.loads((rec / "teacher_search.json").read_text())
    chosen = next(c["dir"] for c in search if c.get("chosen"))
    assert chosen.startswith("quickstart/teacher_search/learning_rate-")  # workdir-relative
    assert {p.parent.name for p in rec.glob("teacher_search/*/results.json")} == {
        "learning_rate-1e-6",
        "learning_rate-3e-3",
    }
    vkd = json.loads((rec / "vkd" / "seed0" / "results.json").read_text())
    assert vkd["teacher"] == chosen
    assert vkd["export"] == "quickstart/vkd/seed0/export"  # not the absolute workdir path
    assert first["table"]["quickstart"]["vkd"]["accuracy"][0] == vkd["dev"]["dev"]["accuracy"]
    assert (
        json.loads((rec / "nokd" / "seed0" / "analysis" / "analysis.json").read_text())["teacher"]
        == chosen
    )

    # the workdir is lost: the records alone give the same report, nothing is trained
    shutil.rmtree(tmp_path / "grid")
    calls = []
    real_finetune, real_distill = finetune.run_finetune, distill.run_distill

    def counted(name, fn):
        def wrapped(c, out):
            calls.append((name, Path(out).relative_to(tmp_path / "grid").as_posix()))
            return fn(c, out)

        return wrapped

    monkeypatch.setattr(finetune, "run_finetune", counted("finetune", real_finetune))
    monkeypatch.setattr(distill, "run_distill", counted("distill", real_distill))
    again = run(cfg, tmp_path / "grid")
    assert calls == []
    assert again["table"] == first["table"] and again["analyses"] == first["analyses"]

    # a new seed needs the teacher: only the chosen one is fine-tuned again, reproduces its
    # record, and teaches the new cell
    cfg.grid.seeds = "0,1"
    more = run(cfg, tmp_path / "grid")
    assert calls == [
        ("finetune", chosen),
        ("finetune", "quickstart/nokd/seed1"),
        ("distill", "quickstart/vkd/seed1"),
    ]
    assert more["table"]["quickstart"]["vkd"]["accuracy"][2] == 2
    assert (rec / "vkd" / "seed1" / "analysis" / "analysis.json").is_file()

    # a recorded no-KD cell analysed against another teacher cannot be analysed again (its
    # model went with the workdir): it is run again
    shutil.rmtree(tmp_path / "grid" / "quickstart" / "nokd")
    nokd = rec / "nokd" / "seed0" / "analysis" / "analysis.json"
    nokd.write_text(json.dumps({**json.loads(nokd.read_text()), "teacher": "old/teacher"}))
    calls.clear()
    with caplog.at_level("WARNING"):
        run(cfg, tmp_path / "grid")
    assert "running the cell again" in caplog.text
    assert calls == [("finetune", "quickstart/nokd/seed0")]  # seed 1 is recorded as it should
    assert json.loads(nokd.read_text())["teacher"] == chosen

    # a distilled cell recorded from another teacher is not silently reused
    vkd_record = rec / "vkd" / "seed0" / "results.json"
    vkd_record.write_text(json.dumps({**vkd, "teacher": "old/teacher"}))
    shutil.rmtree(tmp_path / "grid" / "quickstart" / "vkd")
    with pytest.raises(ValueError, match=r"record .*vkd/seed0 was made from teacher old/teacher"):
        run(cfg, tmp_path / "grid")
    vkd_record.write_text(json.dumps(vkd))

    # a teacher fine-tuned again that does not reproduce its record is refused
    shutil.rmtree(tmp_path / "grid")
    record = rec / Path(chosen).relative_to("quickstart") / "results.json"
    r = json.loads(record.read_text())
    r["dev"]["dev"]["score"] += 0.5
    record.write_text(json.dumps(r))
    cfg.grid.seeds = "0,1,2"
    with pytest.raises(ValueError, match=r"fine-tuned again scores .* not reproducible"):
        run(cfg, tmp_path / "grid")


def test_a_teacher_fine_tuned_again_leaves_its_matching_record_as_it_is(tmp_path):
    from fsd_jax.experiments.records import GridRecords

    records = GridRecords(tmp_path / "records", tmp_path / "grid")
    run = tmp_path / "grid" / "rte" / "teacher_search" / "learning_rate-3e-5"
    run.mkdir(parents=True)
    dev = {"dev": {"accuracy": 0.5668, "score": 0.5668}}
    (run / "results.json").write_text(json.dumps({"dev": dev, "wall_time_s": 100.0}))
    records.save_teacher(run)
    record = records.where(run) / "results.json"
    first = record.read_text()
    assert json.loads(first)["wall_time_s"] == 100.0
    # fine-tuned again elsewhere: same dev metrics, other wall time and train-metric digits
    again = {"dev": dev, "wall_time_s": 250.0, "train": {"grad_norm": 0.89031567}}
    (run / "results.json").write_text(json.dumps(again))
    records.save_teacher(run)
    assert record.read_text() == first
    # another dev score is refused and leaves the record alone too
    (run / "results.json").write_text(json.dumps({**again, "dev": {"dev": {"score": 0.6}}}))
    with pytest.raises(ValueError, match="not reproducible"):
        records.save_teacher(run)
    assert record.read_text() == first


def test_student_search_chooses_on_the_search_seed_and_sets_every_seed(
    tiny_teacher, tmp_path, monkeypatch, caplog
):
    from fsd_jax.train import distill, finetune
    from fsd_jax.train.stages import run

    cfg = _config(tiny_teacher, tmp_path)
    cfg.grid.methods, cfg.grid.seeds, cfg.grid.analysis_batches = "nokd,vkd", "0,1", 0
    cfg.grid.records_dir = str(tmp_path / "records")
    cfg.grid.student_search = {
        "*": {"train": {"learning_rate": "1e-6,3e-3"}},
        "vkd": {"objective": {"kd": {"weight": "0.5,2"}}},
    }
    run(cfg, tmp_path / "grid")
    task = tmp_path / "grid" / "quickstart"
    for method, n in (("nokd", 2), ("vkd", 4)):
        search = json.loads((task / method / "search.json").read_text())
        assert len(search) == n and len({tuple(c["settings"].items()) for c in search}) == n
        best = [c for c in search if c.get("chosen")]
        assert len(best) == 1 and best[0]["score"] == max(c["score"] for c in search)
        for c in search:  # every candidate ran with the search seed
            made = json.loads((Path(c["dir"]) / "train_config.json").read_text())
            assert made["seed"] == 0
            assert made["train"]["learning_rate"] == float(c["settings"]["train.learning_rate"])
        for seed in (0, 1):  # every seed's cell runs with the chosen settings
            cell = task / method / f"seed{seed}"
            made = json.loads((cell / "train_config.json").read_text())
            lr = float(best[0]["settings"]["train.learning_rate"])
            assert made["seed"] == seed and made["train"]["learning_rate"] == lr
            if method == "vkd":
                weight = float(best[0]["settings"]["objective.kd.weight"])
                assert made["objective"]["kd"]["weight"] == weight
            results = json.loads((cell / "results.json").read_text())
            assert results["student_search"] == best[0]["settings"]
            # the search seed's cell is the search's run of the chosen settings, copied
            reused = results.get("reused_search_run")
            chosen = Path(best[0]["dir"]).relative_to(task / method)
            assert reused == (str(chosen) if seed == 0 else None), (method, seed)
        seed0 = json.loads((task / method / "seed0" / "results.json").read_text())
        assert next(iter(seed0["dev"].values()))["score"] == best[0]["score"]
        # its results.json is a file of its own, not written through to the search run's
        assert "student_search" not in json.loads(
            (Path(best[0]["dir"]) / "results.json").read_text()
        )
        recorded = tmp_path / "records" / "quickstart" / method / "search.json"
        assert json.loads(recorded.read_text())[0]["dir"].startswith(f"quickstart/{method}/search/")
    report = (tmp_path / "report" / "results.md").read_text()
    assert "Student tuning, vkd" in report and "objective.kd.weight" in report
    # done: a second run trains nothing, from the records alone too
    import shutil

    def no_training(*a, **k):
        raise AssertionError("a finished grid trained again")

    monkeypatch.setattr(distill, "run_distill", no_training)
    monkeypatch.setattr(finetune, "run_finetune", no_training)
    shutil.rmtree(tmp_path / "grid" / "quickstart" / "vkd")
    # a record made with other weights than the config's (an earlier protocol) is kept, with a
    # warning naming the option
    record = tmp_path / "records" / "quickstart" / "vkd" / "seed1" / "results.json"
    made = json.loads(record.read_text())
    made["objective"]["kd"]["temperature"] = 7.0
    record.write_text(json.dumps(made))
    with caplog.at_level("WARNING", logger="fsd_jax.experiments.grid"):
        run(cfg, tmp_path / "grid")
    warned = [
        r.getMessage() for r in caplog.records if "other objective settings" in r.getMessage()
    ]
    assert len(warned) == 1 and "vkd/seed1" in warned[0] and "kd.temperature: 7.0" in warned[0]
    # cells made under a search are not silently reused by a grid without it
    cfg.grid.student_search = {}
    with pytest.raises(ValueError, match=r"nokd/seed0 was made with student settings"):
        run(cfg, tmp_path / "grid")


def test_teacher_search_tasks_must_be_tasks_of_the_grid(tmp_path):
    cfg = _config(tmp_path / "no_teacher_needed", tmp_path)
    cfg.grid.teacher_search_tasks = "quickstart,mrcp"
    with pytest.raises(ValueError, match=r"grid.teacher_search_tasks: mrcp not in grid.tasks"):
        grid_lib.run_grid(cfg, tmp_path / "grid")
    assert not (tmp_path / "grid").exists()


def test_a_search_run_is_reused_only_for_the_same_settings_and_seed(tmp_path):
    from fsd_jax.experiments.search import reuse_search_run

    cell = ConfigDict({"seed": 0, "train": {"learning_rate": 1e-4}, "progress": True})
    run = tmp_path / "search" / "lr-1e-4"  # the method's folder is tmp_path
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "state").write_bytes(b"weights")
    (run / "results.json").write_text(json.dumps({"dev": {"dev": {"score": 0.5}}}))
    made = ConfigDict({**cell.to_dict(), "progress": False})  # progress is not a setting
    (run / "train_config.json").write_text(made.to_json())
    scored = [{"settings": {"train.learning_rate": "1e-4"}, "dir": str(run), "chosen": True}]
    g = ConfigDict({"search_seed": 0})

    assert not reuse_search_run(g, scored, 1, tmp_path / "seed1", cell)  # another seed
    other = ConfigDict({**cell.to_dict(), "train": {"learning_rate": 3e-5}})
    assert not reuse_search_run(g, scored, 0, tmp_path / "seed0", other)  # other settings
    assert not (tmp_path / "seed0").exists()
    assert reuse_search_run(g, scored, 0, tmp_path / "seed0", cell)
    out = tmp_path / "seed0"
    assert (out / "checkpoints" / "state").read_bytes() == b"weights"
    results = json.loads((out / "results.json").read_text())
    assert results["student_search"] == {"train.learning_rate": "1e-4"}
    assert results["reused_search_run"] == "search/lr-1e-4"
    assert json.loads((run / "results.json").read_text()) == {"dev": {"dev": {"score": 0.5}}}
    assert not reuse_search_run(g, scored, 0, out, cell)  # done already


def test_plan_lists_the_runs_left_with_hours_from_the_done_ones(tmp_path):
    """grid.plan reads the workdir and the records only: what is left and how long it takes."""
    c = _config(tmp_path / "no_teacher_needed", tmp_path)
    g = c.grid
    g.methods, g.records_dir, g.plan = "nokd,fsd_i", str(tmp_path / "records"), True
    g.student_search = {"fsd_i": {"objective": {"fsd_intra": {"weight": "0.1,1"}}}}
    work, rec = tmp_path / "grid" / "quickstart", tmp_path / "records" / "quickstart"

    def done(root, rel, minutes):
        (root / rel).mkdir(parents=True)
        (root / rel / "results.json").write_text(json.dumps({"wall_time_s": 60.0 * minutes}))

    done(work, "teacher", 10)
    done(rec, "nokd/seed0", 2)  # in the records only: done all the same
    done(work, "fsd_i/search/objective.fsd_intra.weight-0.1", 4)
    from fsd_jax.train.stages import run

    plan = run(c, tmp_path / "grid")
    rows = {r["method"]: r for r in plan["rows"]}
    assert set(rows) == {"nokd", "fsd_i"}  # the teacher is done
    assert rows["nokd"]["runs_left"] == 1 and rows["nokd"]["minutes_per_run"] == 2.0
    # one candidate and seed 1 left; seed 0 will be a copy of the search's run
    assert (rows["fsd_i"]["runs_left"], rows["fsd_i"]["search_left"]) == (2, 1)
    assert rows["fsd_i"]["minutes_per_run"] == 4.0
    assert plan["runs_left"] == 3 and abs(plan["hours_left"] - 10 / 60) < 1e-9
    assert not (work / "nokd" / "seed1").exists()  # nothing ran
    # a search known from the records alone: its seed-0 cell has to run
    (rec / "fsd_i").mkdir()
    (work / "fsd_i" / "search").rename(rec / "fsd_i" / "search")
    plan = run(c, tmp_path / "grid")
    assert {r["method"]: r["runs_left"] for r in plan["rows"]}["fsd_i"] == 3
