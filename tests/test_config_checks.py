"""Config values are checked once, at start-up, each bad one named in one line; overrides that
name no option say which options are close; NaN logits in evaluation are an error, not a score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsd_jax.cli import check_overrides, load_config
from fsd_jax.config_checks import check_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    p
    for d in (ROOT / "configs", ROOT / "configs" / "distill")
    for p in sorted(d.glob("[!_]*.py"))
    if "def get_config" in p.read_text()
]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_passes_the_checks(path):
    check_config(load_config(path))


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("train.learning_rate", 0.0, r"train.learning_rate=0.0: must be a number > 0"),
        ("train.learning_rate", -1e-4, r"train.learning_rate=-0.0001: must be a number > 0"),
        ("train.learning_rate", float("nan"), r"train.learning_rate=nan"),
        ("train.checkpoint_every", 0, r"train.checkpoint_every=0: must be an integer >= 1"),
        ("train.log_every", 0, r"train.log_every=0"),
        ("train.batch_size", 0, r"train.batch_size=0"),
        ("train.eval_batch_size", -2, r"train.eval_batch_size=-2"),
        ("train.warmup_ratio", 1.0, r"train.warmup_ratio=1.0: must be a number in \[0, 1\)"),
        ("train.max_grad_norm", -1.0, r"train.max_grad_norm=-1.0"),
        ("data.max_seq_length", 0, r"data.max_seq_length=0: must be an integer >= 2"),
        ("train.num_epochs", 0.0, r"train.num_epochs=0.0: must be > 0 \(or set train.max_steps\)"),
    ],
)
def test_a_bad_value_is_named_with_what_it_must_be(option, value, message):
    config = load_config(ROOT / "configs" / "finetune.py", "rte")
    section, key = option.split(".")
    config[section][key] = value
    with pytest.raises(ValueError, match=message) as e:
        check_config(config)
    assert "\n" not in str(e.value)


def test_every_problem_is_reported_at_once():
    config = load_config(ROOT / "configs" / "finetune.py", "rte")
    config.train.learning_rate = 0.0
    config.data.max_seq_length = 0
    with pytest.raises(ValueError, match="learning_rate.*; data.max_seq_length"):
        check_config(config)


def test_unknown_overrides_name_the_closest_options_and_booleans_take_the_space_form():
    config = load_config(ROOT / "configs" / "finetune.py", "rte")
    spec = "configs/finetune.py:rte"
    for wrong, near in (
        ("train.lr", "train.learning_rate"),
        ("train.batchsize", "train.batch_size"),
        ("modle.layers", "model.layers"),
    ):
        with pytest.raises(ValueError, match=f"has no option {wrong}; closest: {near}"):
            check_overrides(["train.py", f"--config.{wrong}", "1"], config, "config", spec)
    argv = ["train.py", "--config.export", "False", "--config.train.batch_size", "8"]
    assert check_overrides(argv, config, "config", spec) == [
        "train.py",
        "--config.export=False",
        "--config.train.batch_size",
        "8",
    ]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_command_line_says_it_in_one_line(tmp_path):
    work = str(tmp_path / "w")
    res = _cli("train.py", "--config", "configs/finetune.py:rte", "--workdir", work,
               "--config.train.lr", "1e-4")  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: --config.train.lr: configs/finetune.py:rte has no option train.lr; closest: "
        "train.learning_rate, train.log_every, train.schedule"
    ]
    # the space form of a boolean is accepted, and a zero learning rate is refused
    res = _cli("train.py", "--config", "configs/finetune.py:quickstart", "--workdir", work,
               "--config.export", "False", "--config.train.learning_rate", "0")  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == (
        "error: train.learning_rate=0.0: must be a number > 0"
    )
    assert not (tmp_path / "w" / "checkpoints").exists()
    res = _cli("eval.py", "--model", work, "--task", "quickstart", "--batch_size", "0")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == "error: --batch_size=0: must be an integer >= 1"


def test_a_sequence_longer_than_the_models_positions_is_refused(tiny_checkpoint, tmp_path):
    from conftest import tiny_finetune_config

    from fsd_jax.train.evaluate import evaluate_checkpoint
    from fsd_jax.train.finetune import run_finetune

    config = tiny_finetune_config(tiny_checkpoint, tmp_path / "cache")
    config.data.max_seq_length = 65  # the tiny model has 64 positions
    with pytest.raises(ValueError, match=r"data.max_seq_length=65: .* has 64 positions"):
        run_finetune(config, tmp_path / "w")
    assert not (tmp_path / "w" / "checkpoints").exists()
    with pytest.raises(ValueError, match=r"--max_seq_length=65: .* has 64 positions"):
        evaluate_checkpoint(tiny_checkpoint, "quickstart", tmp_path / "e", max_seq_length=65)


def test_nan_logits_in_evaluation_are_an_error_not_a_score(tiny_config):
    from fsd_jax.data import get_task
    from fsd_jax.data.batching import Encoded
    from fsd_jax.models import BertForSequenceClassification, init_params
    from fsd_jax.train.evaluate import NonFiniteLogitsError, evaluate

    model = BertForSequenceClassification(tiny_config)
    params = init_params(model)
    bad = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
    n, length = 6, 8
    data = Encoded(
        ids=np.ones(n * length, np.int32),
        type_ids=np.zeros(n * length, np.int32),
        offsets=np.arange(0, n * length + 1, length),
        labels=np.zeros((n,), np.int32),
    )
    task = get_task("rte")
    metrics, _ = evaluate(model, params, task, {"dev": data}, batch_size=4, seq_len=8)
    assert np.isfinite(metrics["dev"]["accuracy"])
    with pytest.raises(NonFiniteLogitsError, match=r"rte dev: 6 of 6 examples have non-finite"):
        evaluate(model, bad, task, {"dev": data}, batch_size=4, seq_len=8)


def test_a_teacher_without_a_trained_head_is_warned_about(tiny_teacher, tmp_path, caplog):
    import importlib
    import shutil

    from conftest import tiny_finetune_config
    from safetensors.numpy import load_file, save_file

    from fsd_jax.models.hf import has_trained_head
    from fsd_jax.train.distill import run_distill

    raw = tmp_path / "raw_teacher"
    shutil.copytree(tiny_teacher, raw)
    weights = load_file(raw / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")},
              raw / "model.safetensors")  # fmt: skip
    assert has_trained_head(tiny_teacher) and not has_trained_head(raw)
    sys.path.insert(0, str(ROOT))
    cfg = importlib.import_module("configs.distill.vkd").get_config("quickstart")
    base = tiny_finetune_config(raw, tmp_path / "cache", max_steps=1)
    cfg.data, cfg.train, cfg.progress, cfg.tensorboard = base.data, base.train, False, False
    cfg.teacher = cfg.model.name_or_path = str(raw)
    cfg.export = False
    with caplog.at_level("WARNING"):
        run_distill(cfg, tmp_path / "student")
    assert "no classifier weights (a pre-trained, not fine-tuned, checkpoint)" in caplog.text


def test_show_config_lists_every_field_with_its_value_and_the_overrides():
    res = _cli("train.py", "--config", "configs/distill/fsd_il.py:cola", "--show_config",
               "--config.objective.fsd_intra.weight", "0.5")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert "--config.objective.fsd_intra.weight 0.5" in lines  # the override
    assert "--config.objective.fsd_local.weight 0.025" in lines  # the config's value
    assert "--config.train.balance_every 200" in lines and "--config.task 'cola'" in lines
    from flax import traverse_util

    from configs.distill import fsd_il

    fields = traverse_util.flatten_dict(fsd_il.get_config("cola").to_dict(), sep=".")
    assert len(lines) == len(fields)
