"""Training loop: resumption, checkpoints, weights of padded rows, optimiser, CLI errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_finetune_config

from fsd_jax.models import BertForSequenceClassification, init_params, load_pretrained
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.finetune import run_finetune
from fsd_jax.train.loop import ConfigMismatchError
from fsd_jax.train.optim import decay_mask, linear_schedule
from fsd_jax.train.step import supervised_objective

ROOT = Path(__file__).resolve().parents[1]


def _params(workdir):
    return load_pretrained(workdir)[1]


def test_interrupted_then_resumed_run_matches_uninterrupted(tiny_checkpoint, tmp_path):
    cfg = tiny_finetune_config(tiny_checkpoint, tmp_path / "cache")
    full = run_finetune(cfg, tmp_path / "full")
    assert full["steps"] == 8 and full["steps_this_run"] == 8

    def crash(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_finetune(cfg, tmp_path / "resumed", on_step=crash)
    steps = sorted(
        int(p.name) for p in (tmp_path / "resumed" / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps == [3]
    again = run_finetune(cfg, tmp_path / "resumed")
    assert again["steps_this_run"] == 5
    a, b = _params(tmp_path / "full"), _params(tmp_path / "resumed")
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)
    assert again["dev"] == full["dev"]
    # training moved the parameters
    start = load_pretrained(tiny_checkpoint, label_names=("negative", "positive"))[1]
    assert not np.allclose(a["classifier"]["kernel"], start["classifier"]["kernel"])
    # artefacts a user looks for
    results = json.loads((tmp_path / "full" / "results.json").read_text())
    assert {"task", "stage", "dev", "steps", "train_examples_per_s", "wall_time_s"} <= set(results)
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/loss" in x] == [2, 4, 6, 8]
    assert any("dev/accuracy" in x for x in lines)
    assert list((tmp_path / "full" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_with_other_settings_is_refused(tiny_checkpoint, tmp_path):
    cfg = tiny_finetune_config(tiny_checkpoint, tmp_path / "cache", max_steps=3)
    run_finetune(cfg, tmp_path / "run")
    changed = tiny_finetune_config(
        tiny_checkpoint, tmp_path / "cache", max_steps=3, learning_rate=5e-4
    )
    with pytest.raises(ConfigMismatchError, match=r"learning_rate: 0.001 -> 0.0005"):
        run_finetune(changed, tmp_path / "run")


def test_broken_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
    ck = Checkpointer(tmp_path / "ck", max_to_keep=3)
    state = {"w": jnp.arange(4.0), "step": jnp.array(0)}
    ck.save(1, state, {"n": 1})
    ck.save(2, {"w": jnp.arange(4.0) * 2, "step": jnp.array(2)}, {"n": 2})
    ck.close()
    for f in (tmp_path / "ck" / "2").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "meta" not in str(f):
            f.write_bytes(b"\x00garbage")
    ck = Checkpointer(tmp_path / "ck")
    with caplog.at_level("WARNING"):
        restored, meta, step = ck.restore_latest(state)
    assert step == 1 and meta == {"n": 1}
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(4.0))
    assert "unreadable" in caplog.text


def test_zero_weight_rows_do_not_change_the_gradient(tiny_config):
    model = BertForSequenceClassification(
        tiny_config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    params = init_params(model)
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(1, 120, (4, 8)).astype(np.int32),
        "attention_mask": np.ones((4, 8), np.int32),
        "token_type_ids": np.zeros((4, 8), np.int32),
        "labels": np.array([0, 1, 1, 0], np.int32),
        "weights": np.array([1, 1, 1, 0], np.float32),
    }
    small = {k: v[:3] for k, v in batch.items()}
    objective = supervised_objective(model)
    g_full = jax.grad(lambda p: objective(p, batch, jax.random.key(0))[0])(params)
    g_small = jax.grad(lambda p: objective(p, small, jax.random.key(0))[0])(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g_full, g_small)


def test_optimizer_schedule_and_decay_mask(tiny_config):
    sched = linear_schedule(1e-3, total_steps=10, warmup_steps=2)
    np.testing.assert_allclose(
        [sched(0), sched(1), sched(2), sched(6), sched(10)], [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9
    )
    mask = decay_mask(init_params(BertForSequenceClassification(tiny_config)))
    layer = mask["bert"]["encoder"]["layer_0"]
    assert layer["attention"]["self"]["query"]["kernel"] is True
    assert layer["attention"]["self"]["query"]["bias"] is False
    assert layer["output"]["LayerNorm"]["scale"] is False
    assert mask["bert"]["embeddings"]["word_embeddings"]["embedding"] is True


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "configs/finetune.py:nosuchtask"], "error: unknown task 'nosuchtask'"),
        (
            ["--config", "configs/finetune.py:rte", "--config.data.data_dir", "/no/such/dir"],
            "error: /no/such/dir: data directory not found",
        ),
        (
            [
                "--config",
                "configs/finetune.py:quickstart",
                "--config.model.name_or_path",
                "/no/model",
            ],
            "error: /no/model: not a directory holding a Hugging Face checkpoint",
        ),
        (
            ["--config", "configs/finetune.py:quickstart", "--config.model.layers", "first:9"],
            "error: layer spec 'first:9': source model has only 6 layers",
        ),
        (
            ["--config", "configs/distill/nosuch.py:rte"],
            "error: --config configs/distill/nosuch.py: no such file (configs in configs/distill:",
        ),
        (
            ["--config=configs/distill/tinybert.py:rte,bogus"],
            "error: --config configs/distill/tinybert.py:rte,bogus: tinybert variants ['bogus']",
        ),
    ],
)
def test_train_cli_errors_are_one_line(args, message, tmp_path, minilm_dir):
    res = _cli("train.py", *args, "--workdir", str(tmp_path / "w"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_eval_cli_writes_metrics_and_predictions(tiny_checkpoint, tmp_path):
    res = _cli(
        "eval.py",
        "--model",
        str(tiny_checkpoint),
        "--task",
        "quickstart",
        "--out",
        str(tmp_path / "out"),
        "--max_seq_length",
        "24",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert 0.0 <= metrics["dev"]["dev"]["accuracy"] <= 1.0
    rows = (tmp_path / "out" / "predictions_dev.tsv").read_text().splitlines()
    assert rows[0].startswith("index\tprediction\tlabel") and len(rows) == 501
    res = _cli("eval.py", "--model", str(tiny_checkpoint), "--task", "stsb")
    assert res.returncode == 2 and "task stsb needs 1" in res.stderr


def test_quickstart_stage_trains_teacher_and_student(tiny_checkpoint, tmp_path, capsys):
    from configs import quickstart
    from fsd_jax.train.stages import run

    cfg = quickstart.get_config()
    base = tiny_finetune_config(tiny_checkpoint, tmp_path / "cache", max_steps=4)
    cfg.model, cfg.data, cfg.train, cfg.progress = base.model, base.data, base.train, False
    cfg.student_layers = "first:1"
    cfg.teacher_train.num_epochs = 1.0
    cfg.memory.num_clusters = 4
    out = run(cfg, tmp_path / "qs")
    assert [r["layers"] for r in out["rows"]] == [2, 1, 1, 1]
    printed = capsys.readouterr().out
    for name in (
        "teacher (fine-tuned)",
        "student, no distillation",
        "student, VKD",
        "student, FSD-ILG",
    ):
        assert name in printed
    fsd = json.loads((tmp_path / "qs" / "student_fsd_ilg" / "results.json").read_text())
    assert fsd["teacher"] == str(tmp_path / "qs" / "teacher")
    assert {"fsd_intra", "fsd_local", "fsd_g", "kd", "ce"} <= set(fsd["train_metrics"])
    assert json.loads((tmp_path / "qs" / "results.json").read_text())["table"] == out["table"]
    assert (tmp_path / "qs" / "student_nokd" / "export" / "model.safetensors").is_file()
    # the same command again: every stage is finished, nothing is trained or rewritten
    files = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in (tmp_path / "qs").rglob("*")
        if p.is_file()
    }
    again = run(cfg, tmp_path / "qs")
    assert again["table"] == out["table"]
    after = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in (tmp_path / "qs").rglob("*")
        if p.is_file()
    }
    assert sorted(after) == sorted(files)
    assert [str(p) for p in files if files[p] != after[p]] == []


def test_bucketed_training_matches_full_padding(tiny_checkpoint, tmp_path):
    cfg = tiny_finetune_config(tiny_checkpoint, tmp_path / "cache", max_steps=4)
    cfg.model.name_or_path = str(tiny_checkpoint)
    full = run_finetune(cfg, tmp_path / "full")
    cfg.data.buckets = "8,16"
    bucketed = run_finetune(cfg, tmp_path / "bucketed")
    a, b = _params(tmp_path / "full"), _params(tmp_path / "bucketed")
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=2e-5), a, b)
    assert bucketed["dev"]["dev"]["accuracy"] == full["dev"]["dev"]["accuracy"]


def _fit_ten_steps(step, batches, ck, writer):
    """``fit`` over 10 steps of a fake train step, a checkpoint every 3 and one log at step 10."""
    import optax

    from fsd_jax.train.loop import Loop, fit
    from fsd_jax.train.state import TrainState

    loop = Loop(10, 10, ck, writer, {}, checkpoint_every=3, log_every=10, progress=False)
    fit(TrainState.create({"w": jnp.zeros(2)}, optax.sgd(0.1), 0), step, batches, loop)


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):

    from fsd_jax.train.loop import NonFiniteLossError
    from fsd_jax.train.writer import MetricWriter

    def step(state, batch):
        bad = state.step >= 3  # the loss turns NaN from the 4th step on
        return state.replace(step=state.step + 1), {"loss": jnp.where(bad, jnp.nan, 1.0)}

    def batches(epoch, start):
        for _ in range(start, 10):
            yield {"weights": np.ones(2, np.float32)}

    ck = Checkpointer(tmp_path / "ck")
    writer = MetricWriter(tmp_path, tensorboard=False)
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan in steps 1..6 \(checkpoint of step 3 kept\)"
    ):
        _fit_ten_steps(step, batches, ck, writer)  # log_every 10: caught before the step-6 save
    ck.wait()
    assert ck.manager.all_steps() == [3]
    ck.close()


def test_out_of_memory_is_one_line_naming_the_batch_and_keeps_the_checkpoint(
    tmp_path, capsys, tiny_config
):

    from fsd_jax import cli
    from fsd_jax.data import get_task
    from fsd_jax.train.evaluate import evaluate
    from fsd_jax.train.oom import OutOfMemoryError
    from fsd_jax.train.writer import MetricWriter

    oom = jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4831838208 bytes.\n"
        "BufferAssignment OOM Debugging.\n" + "allocation 0: size 4.50GiB\n" * 50
    )

    def step(state, batch):
        if int(state.step) == 4:  # as an allocation at the 5th step would
            raise oom
        return state.replace(step=state.step + 1), {"loss": jnp.ones(())}

    def batches(epoch, start):
        for _ in range(start, 10):
            yield {"input_ids": np.zeros((32, 128), np.int32), "weights": np.ones(32, np.float32)}

    ck = Checkpointer(tmp_path / "ck")

    def train(step=step):
        _fit_ten_steps(step, batches, ck, MetricWriter(tmp_path, tensorboard=False))

    with pytest.raises(OutOfMemoryError) as e:
        train()
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600
    assert msg.startswith("out of device memory at or before training step 5 (checkpoint of ")
    assert "step 3 kept) with batches of 32 x 128 (examples x tokens)" in msg
    assert "lower train.batch_size or data.max_seq_length" in msg
    ck.wait()
    assert ck.manager.all_steps() == [3]
    ck.close()
    # at the command line: one line, exit status 2
    ck = Checkpointer(tmp_path / "ck2")
    sigterm = signal.getsignal(signal.SIGTERM)  # run_cli sets its own
    try:
        assert cli.run_cli(train) == 2
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    ck.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: out of device memory"), err
    # a JAX error that is not about memory keeps its own type
    other = jax.errors.JaxRuntimeError("INTERNAL: something else")

    def broken(state, batch):
        raise other

    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        train(broken)

    # evaluation names its own batch option
    task = get_task("quickstart")

    def predict(params, batch):
        raise oom

    from fsd_jax.data.batching import Encoded

    n = 10
    data = Encoded(
        ids=np.ones(5 * n, np.int32),
        type_ids=np.zeros(5 * n, np.int32),
        offsets=np.arange(0, 5 * n + 1, 5),
        labels=np.zeros(n, np.int32),
    )
    model = BertForSequenceClassification(tiny_config)
    with pytest.raises(OutOfMemoryError, match=r"evaluating quickstart dev with batches of 8 x 24"):
        evaluate(
            model, None, task, {"dev": data}, 8, 24, predict=predict, batch_option="--batch_size"
        )


def test_missing_data_stops_a_run_before_any_model_is_loaded(tmp_path, monkeypatch):
    from configs import finetune, memory
    from configs.distill import vkd
    from fsd_jax.data import DataError
    from fsd_jax.train.distill import run_distill
    from fsd_jax.train.evaluate import evaluate_checkpoint
    from fsd_jax.train.teacher_memory import run_memory

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the data was checked")

    for name in ("finetune", "distill", "teacher_memory", "evaluate"):
        monkeypatch.setattr(f"fsd_jax.train.{name}.load_pretrained", no_model)
        monkeypatch.setattr(f"fsd_jax.train.{name}.load_tokenizer", no_model)
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    c = finetune.get_config("rte")
    c.data.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="nowhere: data directory not found"):
        run_finetune(c, tmp_path / "w")
    c = vkd.get_config("rte")
    c.data.data_dir, c.teacher = str(tmp_path), str(tmp_path / "teacher")
    with pytest.raises(DataError, match=r"RTE/dev\.tsv: file not found \(task rte, split dev\)"):
        run_distill(c, tmp_path / "w")
    c = memory.get_config("rte")
    c.data.data_dir, c.teacher = str(tmp_path), str(tmp_path / "teacher")
    with pytest.raises(DataError, match=r"RTE/dev\.tsv: file not found"):
        run_memory(c, tmp_path / "w")
    with pytest.raises(DataError, match=r"RTE/dev\.tsv: file not found"):
        evaluate_checkpoint(tmp_path / "model", "rte", tmp_path / "out", data_dir=str(tmp_path))
