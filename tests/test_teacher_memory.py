"""Stage memory (streamed k-means over teacher features) and FSD-G / FSD-ILG distillation."""

from __future__ import annotations

import importlib
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_finetune_config

from fsd_jax.data import encode, load_examples
from fsd_jax.kmeans import kmeans, sample_indices
from fsd_jax.models import load_pretrained, load_tokenizer
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.distill import run_distill
from fsd_jax.train.stages import run
from fsd_jax.train.teacher_memory import build_teacher_memory, load_memory


def _memory_config(teacher, tmp_path, k=6):
    from configs import memory

    cfg = memory.get_config("quickstart")
    base = tiny_finetune_config(teacher, tmp_path / "cache")
    cfg.data, cfg.train, cfg.progress = base.data, base.train, False
    cfg.teacher = str(teacher)
    cfg.memory.num_clusters = k
    return cfg


def test_streamed_memory_equals_in_memory_kmeans(tiny_teacher, tmp_path):
    model, params = load_pretrained(tiny_teacher)
    data = encode(load_examples("quickstart", "dev"), load_tokenizer(tiny_teacher), 24, tmp_path)
    cents, history = build_teacher_memory(
        model, params, data, num_clusters=5, seq_len=24, batch_size=64, num_passes=2, seed=3
    )
    assert cents.shape == (5, 24, 32) and len(history) == 2
    # the same computation with every feature in memory
    from fsd_jax.data import iterate_batches

    feats = np.concatenate(
        [
            np.asarray(
                (
                    model.apply(
                        {"params": params}, b["input_ids"], b["attention_mask"], b["token_type_ids"]
                    ).hidden_states[-2]
                    * b["attention_mask"][..., None]
                ).reshape(64, -1)
            )[b["weights"] > 0]
            for b in iterate_batches(data, 64, 24)
        ]
    )
    init = feats[sample_indices(len(feats), 5, 3)]
    ref = kmeans(jnp.asarray(feats), 5, key=jax.random.key(0), num_iters=2, init=init)
    np.testing.assert_allclose(
        cents.reshape(5, -1), np.asarray(ref.centroids), rtol=1e-4, atol=1e-4
    )


def test_memory_stage_then_fsd_g_and_ilg(tiny_teacher, tmp_path):
    res = run(_memory_config(tiny_teacher, tmp_path), tmp_path / "memory")
    meta = json.loads((tmp_path / "memory" / "memory.json").read_text())
    assert res["num_clusters"] == meta["num_clusters"] == 6 and meta["seq_len"] == 24
    assert meta["inertia_per_pass"][0] >= meta["inertia_per_pass"][-1]
    for method in ("fsd_g", "fsd_ilg"):
        cfg = importlib.import_module(f"configs.distill.{method}").get_config("quickstart")
        base = tiny_finetune_config(tiny_teacher, tmp_path / "cache", max_steps=3)
        cfg.data, cfg.train, cfg.progress = base.data, base.train, False
        cfg.teacher = cfg.model.name_or_path = str(tiny_teacher)
        cfg.teacher_memory = str(tmp_path / "memory")
        cfg.model.layers = "every:2"
        std = 1.0 if method == "fsd_g" else 0.02
        cfg.objective.fsd_g.memory_init_std = std
        out = run_distill(cfg, tmp_path / method)
        m = out["train_metrics"]
        assert {"fsd_g", "fsd_g/distance", "fsd_g/cosine", "fsd_g/memory_cka"} <= set(m)
        assert all(np.isfinite(v) for v in m.values())
        # the student memory is training state: checkpointed, not exported
        _, exported = load_pretrained(tmp_path / method)
        assert "memory" not in exported
        ckpt = Checkpointer(tmp_path / method / "checkpoints")
        state, _, _ = ckpt.restore_latest(None)
        ckpt.close()
        memory = np.asarray(state["params"]["memory"])
        assert memory.shape == (6, 24, 32)
        # 3 Adam steps at lr <= 5e-5 leave the start's scale
        assert abs(memory.std() / std - 1) < 0.1


def test_memory_mismatches_are_named(tiny_teacher, tmp_path):
    run(_memory_config(tiny_teacher, tmp_path, k=3), tmp_path / "memory")
    with pytest.raises(ValueError, match="does not fit a teacher of width 48"):
        load_memory(tmp_path / "memory", hidden_size=48, seq_len=24)
    with pytest.raises(ValueError, match="built for sequence length 24, training uses 64"):
        load_memory(tmp_path / "memory", hidden_size=32, seq_len=64)
    with pytest.raises(ValueError, match="built for task quickstart, training on rte"):
        load_memory(tmp_path / "memory", hidden_size=32, seq_len=24, task="rte")
    with pytest.raises(FileNotFoundError, match="no teacher memory"):
        load_memory(tmp_path / "nothing", hidden_size=32, seq_len=24)
    # the same teacher loads; other weights (here: a copy written anew) do not
    load_memory(tmp_path / "memory", hidden_size=32, seq_len=24, teacher=tiny_teacher)
    other = tmp_path / "other_teacher"
    shutil.copytree(tiny_teacher, other, copy_function=shutil.copy)  # a new modification time
    with pytest.raises(ValueError, match=r"memory built from teacher .* has other weights"):
        load_memory(tmp_path / "memory", hidden_size=32, seq_len=24, teacher=other)
    cfg = importlib.import_module("configs.distill.fsd_g").get_config("quickstart")
    cfg.teacher = cfg.model.name_or_path = str(tiny_teacher)
    cfg.data.max_seq_length = 24  # within the tiny teacher's 64 positions
    with pytest.raises(ValueError, match="config.teacher_memory: the fsd_g term needs a memory"):
        run_distill(cfg, tmp_path / "x")
    base = tiny_finetune_config(tiny_teacher, tmp_path / "cache", max_steps=1)
    cfg.data, cfg.train, cfg.progress = base.data, base.train, False
    cfg.teacher_memory = str(tmp_path / "memory")
    cfg.objective.fsd_g.memory_init_std = 0.0
    with pytest.raises(ValueError, match="memory_init_std=0.0: expected a positive number"):
        run_distill(cfg, tmp_path / "x")


def test_feature_cache_is_written_once_and_reused(tiny_teacher, tmp_path, monkeypatch):
    model, params = load_pretrained(tiny_teacher)
    data = encode(load_examples("quickstart", "dev"), load_tokenizer(tiny_teacher), 24, tmp_path)
    kw = dict(num_clusters=4, seq_len=24, batch_size=64, num_passes=2, seed=1)
    cache = tmp_path / "feats" / "teacher.bin"
    first, _ = build_teacher_memory(model, params, data, feature_cache=cache, **kw)
    assert cache.is_file() and cache.stat().st_size == len(data) * 24 * 32 * 2
    calls = []
    original = model.apply
    monkeypatch.setattr(
        type(model), "apply", lambda self, *a, **k: calls.append(1) or original(*a, **k)
    )
    again, _ = build_teacher_memory(model, params, data, feature_cache=cache, **kw)
    assert not calls  # the teacher did not run: every pass read the cache
    np.testing.assert_array_equal(again, first)
    monkeypatch.undo()
    plain, _ = build_teacher_memory(model, params, data, **kw)
    np.testing.assert_allclose(first, plain, rtol=2e-2, atol=2e-2)  # bf16-rounded features
    other = jax.tree.map(lambda x: x * 1.01, params)  # another teacher: the cache is rebuilt
    rebuilt, _ = build_teacher_memory(model, other, data, feature_cache=cache, **kw)
    assert not np.array_equal(rebuilt, first)


def test_memory_stage_from_the_command_line(tiny_teacher, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config",
            "configs/memory.py:quickstart",
            "--workdir",
            str(tmp_path / "memory"),
            "--config.teacher",
            str(tiny_teacher),
            "--config.data.max_seq_length",
            "24",
            "--config.data.cache_dir",
            str(tmp_path / "cache"),
            "--config.memory.num_clusters",
            "3",
            "--config.memory.num_passes",
            "1",
            "--config.progress=False",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["stage"] == "memory" and summary["num_clusters"] == 3
    assert (tmp_path / "memory" / "memory.npz").is_file()
