"""Faults: a training process killed with SIGKILL at a random moment resumes to exactly the
parameters of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from fsd_jax.models import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


def _cmd(checkpoint: Path, workdir: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "train.py",
        "--config",
        "configs/finetune.py:quickstart",
        "--workdir",
        str(workdir),
        "--config.model.name_or_path",
        str(checkpoint),
        "--config.data.max_seq_length",
        "24",
        "--config.data.cache_dir",
        str(cache),
        "--config.train.batch_size",
        "16",
        "--config.train.max_steps",
        "300",
        "--config.train.checkpoint_every",
        "20",
        "--config.train.log_every",
        "20",
        "--config.train.learning_rate",
        "1e-3",
        "--config.progress=False",
        "--config.tensorboard=False",
    ]


def _checkpoint_steps(workdir: Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_checkpoint, tmp_path):
    rng = random.Random(os.getpid())
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(tiny_checkpoint, killed, tmp_path / "cache"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = rng.choice([20, 40, 60])
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(s >= target for s in _checkpoint_steps(killed)):
            break
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside a later step or checkpoint write
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "results.json").exists()
    resumed = subprocess.run(
        _cmd(tiny_checkpoint, killed, tmp_path / "cache"), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = json.loads((killed / "results.json").read_text())
    assert results["steps"] == 300 and results["steps_this_run"] <= 300 - target  # resumed
    whole = subprocess.run(
        _cmd(tiny_checkpoint, tmp_path / "whole", tmp_path / "cache"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = load_pretrained(killed)[1]
    b = load_pretrained(tmp_path / "whole")[1]
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)
