"""Stage ``memory``: k-means centroids of the teacher's features over the training set (§2.5).

Features (the flattened penultimate hidden states, padding zeroed by default) are streamed
through the teacher batch by batch; one Lloyd iteration per pass accumulates per-centroid sums on
the device, so the N × (L·d) feature matrix is never held anywhere.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from fsd_jax.config_checks import check_config, check_sequence_length
from fsd_jax.data import Encoded, check_task_files, get_task, iterate_batches, make_batch
from fsd_jax.kmeans import StreamingLloyd, sample_indices
from fsd_jax.models import BertForSequenceClassification, load_pretrained, load_tokenizer
from fsd_jax.train.training_run import load_splits

log = logging.getLogger(__name__)

MEMORY_FILE = "memory.npz"
META_FILE = "memory.json"


def default_num_clusters(task: str) -> int:
    """K = 300 for MNLI and QQP, 100 otherwise (docs/methods.md §2.5)."""
    return 300 if task in ("mnli", "qqp") else 100


def _cached_features(cache: Path, expected: dict) -> np.memmap | None:
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file() and json.loads(meta.read_text()) == expected:
        return np.memmap(cache, dtype=np.uint16, mode="r", shape=tuple(expected["shape"]))
    return None


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
    feature_cache: str | Path | None = None,
) -> tuple[np.ndarray, list[float]]:
    """Centroids (K, seq_len, d) of ``hidden_states[layer]`` over ``data``, and inertia per pass.

    Initialised from K distinct training examples chosen by ``seed``; ``num_passes`` streamed
    Lloyd iterations; empty clusters re-seeded with far points.

    ``feature_cache`` (opt-in, a file path): the first pass writes the features to disk as a
    bfloat16 memmap (N × L·d × 2 bytes) and later passes, or later builds with the same teacher
    and settings, read it instead of running the teacher. With a cache every pass clusters the
    bf16-rounded features, so cached and uncached passes agree.
    """

    @jax.jit
    def features(batch):
        out = model.apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        h = out.hidden_states[layer].astype(jnp.float32)
        if mask_padding:
            h = h * batch["attention_mask"][..., None]
        h = h.reshape(h.shape[0], -1)
        return h.astype(jnp.bfloat16).astype(jnp.float32) if feature_cache else h

    d = model.config.hidden_size
    n, width = len(data), seq_len * d
    cache = Path(feature_cache) if feature_cache else None
    expected = {
        "shape": [n, width],
        "layer": layer,
        "mask_padding": mask_padding,
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "checksum": float(sum(float(jnp.sum(x)) for x in jax.tree.leaves(params))),
    }
    stored = _cached_features(cache, expected) if cache else None

    def bf16_rows(rows: np.ndarray) -> jax.Array:
        return jnp.asarray(np.asarray(rows).view(ml_dtypes.bfloat16)).astype(jnp.float32)

    def from_cache():
        for lo in range(0, n, batch_size):
            rows = stored[lo : lo + batch_size]
            w = np.zeros(batch_size, np.float32)
            w[: len(rows)] = 1.0
            pad = np.zeros((batch_size - len(rows), width), np.uint16)
            yield bf16_rows(np.concatenate([rows, pad])), w

    init_idx = sample_indices(n, num_clusters, seed)
    if stored is not None:
        init = bf16_rows(stored[init_idx])
    else:
        init = jnp.concatenate(
            [
                features(make_batch(data, chunk, len(chunk), seq_len))
                for chunk in np.array_split(init_idx, max(1, len(init_idx) // batch_size))
            ]
        )
    lloyd = StreamingLloyd(init)
    writer = None
    if cache is not None and stored is None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        writer = np.memmap(tmp, dtype=np.uint16, mode="w+", shape=(n, width))
    for _ in range(num_passes):
        if stored is not None:
            for feats, w in from_cache():
                lloyd.add(feats, w)
        else:
            for batch in iterate_batches(data, batch_size, seq_len):
                feats = features(batch)
                lloyd.add(feats, batch["weights"])
                if writer is not None:
                    valid = batch["weights"] > 0
                    bits = np.asarray(feats.astype(jnp.bfloat16)).view(np.uint16)
                    writer[batch["index"][valid]] = bits[valid]
        lloyd.finish_pass()
        if writer is not None:  # the first pass filled the cache: read it from now on
            assert cache is not None  # a writer exists only for a cache file
            writer.flush()
            del writer
            writer = None
            tmp.replace(cache)
            cache.with_suffix(".json").write_text(json.dumps(expected))
            stored = _cached_features(cache, expected)
    return np.asarray(lloyd.centroids).reshape(num_clusters, seq_len, d), lloyd.history


def run_memory(config: Any, workdir: str | Path) -> dict:
    """Build the teacher memory for ``config.task`` into ``workdir`` (memory.npz + memory.json)."""
    check_config(config)
    workdir = Path(workdir)
    task = get_task(config.task)
    if not config.teacher:
        raise ValueError("config.teacher: path of the fine-tuned teacher (workdir or HF directory)")
    m = config.memory
    k = m.num_clusters or default_num_clusters(task.name)
    seq_len = int(config.data.max_seq_length)
    check_task_files(task, config.data.data_dir)
    settings = {
        "task": task.name,
        "teacher": str(config.teacher),
        "teacher_weights": _weights_identity(config.teacher),
        "num_clusters": k,
        "seq_len": seq_len,
        "layer": m.layer,
        "mask_padding": not m.faithful,
        "num_passes": m.num_passes,
        "seed": config.seed,
        "feature_cache": m.get("feature_cache") or None,
    }
    done = _finished(workdir, settings)
    if done is not None:
        return done
    teacher, params = load_pretrained(config.teacher)
    check_sequence_length(
        seq_len, teacher.config.max_position_embeddings, str(config.teacher), "data.max_seq_length"
    )
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
        feature_cache=m.get("feature_cache") or None,
    )
    seconds = time.perf_counter() - t0
    meta = {
        **settings,
        "hidden_size": teacher.config.hidden_size,
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


def _weights_identity(checkpoint: str | Path) -> list | None:
    """(size, modification time) of a teacher's weights file: a re-trained teacher differs."""
    from fsd_jax.models.hf import resolve_checkpoint_dir

    try:
        st = (Path(resolve_checkpoint_dir(checkpoint)) / "model.safetensors").stat()
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns]


def _finished(workdir: Path, settings: dict) -> dict | None:
    """The stage's result when ``workdir`` already holds a memory built with ``settings``."""
    meta_file, memory = workdir / META_FILE, workdir / MEMORY_FILE
    if not (meta_file.is_file() and memory.is_file()):
        return None
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return None
    if settings["teacher_weights"] is None or any(meta.get(k) != v for k, v in settings.items()):
        return None
    log.info("%s is finished (a memory built with these settings); nothing to do", workdir)
    return {"stage": "memory", **meta, "path": str(memory)}


def load_memory(
    path: str | Path,
    *,
    hidden_size: int,
    seq_len: int,
    task: str | None = None,
    teacher: str | Path | None = None,
) -> tuple[np.ndarray, dict]:
    """Centroids and metadata of a built memory (a workdir of stage ``memory`` or the file).

    Raises ValueError naming the mismatch when it was built for another teacher width, a shorter
    sequence length, another task, or from other teacher weights than ``teacher``'s (its weights
    file's size and modification time, as recorded when the memory was built).
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
    built_from = meta.get("teacher_weights")
    if teacher is not None and built_from is not None:
        current = _weights_identity(teacher)
        if current is not None and list(current) != list(built_from):
            raise ValueError(
                f"{file}: memory built from teacher {meta.get('teacher')} (weights of "
                f"{built_from[0]} bytes), config.teacher {teacher} has other weights "
                f"({current[0]} bytes, or re-written since): rebuild it with stage 'memory' "
                "for this teacher (a copied teacher keeps its identity with cp -p)"
            )
    return centroids, meta
