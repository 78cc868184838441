"""Stage ``memory``: k-means centroids of the teacher's features over the training set (§2.5).

Features (the flattened penultimate hidden states, padding zeroed by default) are streamed
through the teacher batch by batch; one Lloyd iteration per pass accumulates per-centroid sums on
the device, so the N × (L·d) feature matrix is never held anywhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.data import Encoded, get_task, iterate_batches, make_batch
from fsd_jax.memory import StreamingLloyd, sample_indices
from fsd_jax.models import BertForSequenceClassification, load_pretrained, load_tokenizer
from fsd_jax.train.run import load_splits

MEMORY_FILE = "memory.npz"
META_FILE = "memory.json"


def default_num_clusters(task: str) -> int:
    """K = 300 for MNLI and QQP, 100 otherwise (METHODS.md §2.5)."""
    return 300 if task in ("mnli", "qqp") else 100


def build_teacher_memory(
    model: BertForSequenceClassification,
    params: Any,
    data: Encoded,
    *,
    num_clusters: int,
    seq_len: int,
    layer: int = -2,
    batch_size: int = 64,
    num_passes: int = 3,
    seed: int = 0,
    mask_padding: bool = True,
) -> tuple[np.ndarray, list[float]]:
    """Centroids (K, seq_len, d) of ``hidden_states[layer]`` over ``data``, and inertia per pass.

    Initialised from K distinct training examples chosen by ``seed``; ``num_passes`` streamed
    Lloyd iterations; empty clusters re-seeded with far points.
    """

    @jax.jit
    def features(batch):
        out = model.apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        h = out.hidden_states[layer].astype(jnp.float32)
        if mask_padding:
            h = h * batch["attention_mask"][..., None]
        return h.reshape(h.shape[0], -1)

    init_idx = sample_indices(len(data), num_clusters, seed)
    init = np.concatenate(
        [
            np.asarray(features(make_batch(data, chunk, len(chunk), seq_len)))
            for chunk in np.array_split(init_idx, max(1, len(init_idx) // batch_size))
        ]
    )
    lloyd = StreamingLloyd(jnp.asarray(init))
    for _ in range(num_passes):
        for batch in iterate_batches(data, batch_size, seq_len):
            lloyd.add(features(batch), batch["weights"])
        lloyd.finish_pass()
    d = model.config.hidden_size
    return np.asarray(lloyd.centroids).reshape(num_clusters, seq_len, d), lloyd.history


def run_memory(config: Any, workdir: str | Path) -> dict:
    """Build the teacher memory for ``config.task`` into ``workdir`` (memory.npz + memory.json)."""
    workdir = Path(workdir)
    task = get_task(config.task)
    if not config.teacher:
        raise ValueError("config.teacher: path of the fine-tuned teacher (workdir or HF directory)")
    m = config.memory
    k = m.num_clusters or default_num_clusters(task.name)
    seq_len = int(config.data.max_seq_length)
    teacher, params = load_pretrained(config.teacher)
    train, _ = load_splits(config, task, load_tokenizer(config.teacher))
    t0 = time.perf_counter()
    centroids, history = build_teacher_memory(
        teacher,
        params,
        train,
        num_clusters=k,
        seq_len=seq_len,
        layer=m.layer,
        batch_size=config.train.eval_batch_size,
        num_passes=m.num_passes,
        seed=config.seed,
        mask_padding=not m.faithful,
    )
    seconds = time.perf_counter() - t0
    meta = {
        "task": task.name,
        "teacher": str(config.teacher),
        "num_clusters": k,
        "seq_len": seq_len,
        "hidden_size": teacher.config.hidden_size,
        "layer": m.layer,
        "mask_padding": not m.faithful,
        "num_passes": m.num_passes,
        "seed": config.seed,
        "train_examples": len(train),
        "inertia_per_pass": history,
        "build_seconds": seconds,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{MEMORY_FILE}.tmp.npz"
    np.savez(tmp, centroids=centroids.astype(np.float32))
    tmp.replace(workdir / MEMORY_FILE)
    (workdir / META_FILE).write_text(json.dumps(meta, indent=2))
    return {"stage": "memory", **meta, "path": str(workdir / MEMORY_FILE)}


def load_memory(
    path: str | Path, *, hidden_size: int, seq_len: int, task: str | None = None
) -> tuple[np.ndarray, dict]:
    """Centroids and metadata of a built memory (a workdir of stage ``memory`` or the file).

    Raises ValueError naming the mismatch when it was built for another teacher width, a shorter
    sequence length or another task.
    """
    path = Path(path)
    file = path / MEMORY_FILE if path.is_dir() else path
    meta_file = file.with_name(META_FILE)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no teacher memory (run stage 'memory' first)")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    with np.load(file) as z:
        centroids = z["centroids"]
    if centroids.ndim != 3 or centroids.shape[2] != hidden_size:
        raise ValueError(
            f"{file}: memory of shape {centroids.shape} does not fit a teacher "
            f"of width {hidden_size} (expected (K, L, {hidden_size}))"
        )
    if centroids.shape[1] < seq_len:
        raise ValueError(
            f"{file}: memory built for sequence length {centroids.shape[1]}, "
            f"training uses {seq_len}"
        )
    if task is not None and meta.get("task") not in (None, task):
        raise ValueError(f"{file}: memory built for task {meta['task']}, training on {task}")
    return centroids, meta
