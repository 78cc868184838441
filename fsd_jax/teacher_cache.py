"""The teacher's outputs on the training set, computed once per run instead of every step.

The teacher runs in eval mode (no dropout) on fixed inputs, so its logits and hidden states are
the same in every epoch. Terms that read only those (KD, FSD-I/L/G, PKD, RKD; not the
attention-based ones) can take them from this cache: the step then runs the student alone,
which saves the teacher's forward pass on every step after the first epoch's worth.

Hidden states are stored ragged (real tokens only, float32) and padded per batch, so the padded
positions the step sees are zeros. Every cacheable term masks padding, so the losses match the
live teacher's up to float rounding (tests/test_teacher_cache.py).

With a ``store`` directory the outputs are also kept on disk, one file per array, under a key of
everything they depend on (teacher config and parameters, token ids, batching): the other runs
of an experiment grid with the same teacher and data (every seed, and methods reading the same
layers) load them instead of running the teacher again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.data import Encoded, iterate_batches
from fsd_jax.models import BertConfig, BertForSequenceClassification, BertOutput, model_inputs
from fsd_jax.terms import Term, cached_teacher_layers

log = logging.getLogger(__name__)

LOGITS = "teacher_logits"


def hidden_key(layer: int) -> str:
    """Batch key of the cached teacher hidden state ``layer`` (0 = embeddings)."""
    return f"teacher_hidden_{layer}"


@dataclasses.dataclass(frozen=True)
class TeacherCache:
    """Teacher outputs of every training example: ``logits`` (N, C) and, per hidden-state
    layer, the real tokens' states ``hidden[layer]`` (T, d) with example i at
    ``offsets[i]:offsets[i + 1]`` (the :class:`~fsd_jax.data.Encoded` offsets)."""

    logits: np.ndarray
    hidden: Mapping[int, np.ndarray]
    offsets: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.logits.nbytes + sum(h.nbytes for h in self.hidden.values())

    def add_to_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch`` plus ``teacher_logits`` (B, C) and ``teacher_hidden_<l>`` (B, L, d), rows
        gathered by ``batch["index"]`` (padding rows, index −1, and padded tokens are zeros)."""
        index = batch["index"]
        b, seq_len = batch["input_ids"].shape
        real = index >= 0
        out = dict(batch)
        logits = np.zeros((b, self.logits.shape[1]), np.float32)
        logits[real] = self.logits[index[real]]
        out[LOGITS] = logits
        for layer, states in self.hidden.items():
            h = np.zeros((b, seq_len, states.shape[1]), np.float32)
            for row in np.flatnonzero(real):
                lo, hi = self.offsets[index[row]], self.offsets[index[row] + 1]
                n = min(hi - lo, seq_len)
                h[row, :n] = states[lo : lo + n]
            out[hidden_key(layer)] = h
        return out


def build_teacher_cache(
    teacher: BertForSequenceClassification,
    params: object,
    data: Encoded,
    layers: tuple[int, ...],
    *,
    batch_size: int,
    seq_len: int,
    pad_to: Callable[[int], int] | None = None,
    store: str | os.PathLike | None = None,
    store_max_bytes: int | None = None,
) -> TeacherCache:
    """Run the teacher (eval mode) once over ``data`` in order and keep its logits and the
    hidden states ``layers`` (non-negative indices into ``hidden_states``).

    With ``store``, arrays already on disk for this teacher and data are loaded and only the
    missing ones computed (then saved, atomically); past ``store_max_bytes`` the least recently
    used entries of ``store`` are deleted.
    """
    if min(data.lengths, default=0) > seq_len:
        raise ValueError(f"examples longer than data.max_seq_length={seq_len}")
    t0 = time.perf_counter()
    lengths = np.minimum(data.lengths, seq_len)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    entry = None
    if store is not None:
        entry = Path(store) / _key(teacher, params, data, batch_size, seq_len, pad_to)
        try:
            entry.mkdir(parents=True, exist_ok=True)
            os.utime(entry)  # least recently used goes first
        except OSError as e:  # an unusable store costs the reuse, not the run
            log.warning("teacher cache: not kept on disk, %s (%s)", entry, e)
            entry = None
    logits = _load(entry, "logits")
    hidden = {i: h for i in layers if (h := _load(entry, f"hidden_{i}")) is not None}
    missing = tuple(i for i in layers if i not in hidden)
    if logits is None or missing:
        computed, new = _run_teacher(
            teacher, params, data, missing, offsets, batch_size, seq_len, pad_to
        )
        if logits is None:
            logits = computed
            _save(entry, "logits", logits)
        for i, h in new.items():
            hidden[i] = h
            _save(entry, f"hidden_{i}", h)
        if entry is not None and store is not None and store_max_bytes is not None:
            _evict(Path(store), store_max_bytes, keep=entry)
    cache = TeacherCache(logits, {i: hidden[i] for i in layers}, offsets)
    log.info(
        "teacher cache: %d examples, layers %s, %.0f MB in %.1f s%s",
        len(data),
        list(layers),
        cache.nbytes / 2**20,
        time.perf_counter() - t0,
        f" ({len(layers) - len(missing)} of {len(layers)} layers from {entry})" if entry else "",
    )
    return cache


def _run_teacher(teacher, params, data, layers, offsets, batch_size, seq_len, pad_to):
    @jax.jit
    def forward(p, batch):
        out = teacher.apply({"params": p}, **model_inputs(batch))
        return out.logits.astype(jnp.float32), [
            out.hidden_states[i].astype(jnp.float32) for i in layers
        ]

    lengths = np.diff(offsets)
    d = teacher.config.hidden_size
    hidden = {i: np.zeros((int(offsets[-1]), d), np.float32) for i in layers}
    logits = np.zeros((len(data), teacher.config.num_labels), np.float32)
    for batch in iterate_batches(data, batch_size, seq_len, pad_to=pad_to):
        lg, hs = jax.device_get(forward(params, batch))
        rows = np.flatnonzero(batch["index"] >= 0)
        logits[batch["index"][rows]] = lg[rows]
        for layer, h in zip(layers, hs, strict=True):
            for row in rows:
                i = batch["index"][row]
                hidden[layer][offsets[i] : offsets[i + 1]] = h[row, : lengths[i]]
    return logits, hidden


def _key(teacher, params, data, batch_size, seq_len, pad_to) -> str:
    """A digest of what the outputs depend on; the batching is in it because the padded length
    of a batch changes its float rounding."""
    h = hashlib.sha256()
    h.update(repr((teacher.config, str(teacher.dtype), batch_size, seq_len)).encode())
    h.update(repr([pad_to(n) if pad_to else seq_len for n in range(1, seq_len + 1)]).encode())
    for a in (data.ids, data.type_ids, data.offsets):
        h.update(np.ascontiguousarray(a).tobytes())
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return h.hexdigest()[:32]


def _load(entry: Path | None, name: str) -> np.ndarray | None:
    if entry is None or not (entry / f"{name}.npy").is_file():
        return None
    try:
        return np.load(entry / f"{name}.npy")
    except (OSError, ValueError) as e:  # a damaged file is recomputed, never trusted
        log.warning("teacher cache: ignoring %s (%s)", entry / f"{name}.npy", e)
        return None


def _save(entry: Path | None, name: str, array: np.ndarray) -> None:
    if entry is None:
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=entry, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, entry / f"{name}.npy")
    except OSError as e:  # a full disk costs the reuse, not the run
        log.warning("teacher cache: could not save %s (%s)", entry / f"{name}.npy", e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _evict(store: Path, max_bytes: int, keep: Path) -> None:
    entries = sorted((p for p in store.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    sizes = {p: sum(f.stat().st_size for f in p.glob("*.npy")) for p in entries}
    total = sum(sizes.values())
    for p in entries:
        if total <= max_bytes:
            break
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)
            total -= sizes[p]


def cached_output(batch: Mapping[str, jax.Array], num_layers: int) -> BertOutput:
    """A teacher :class:`BertOutput` read from a batch that :meth:`TeacherCache.add_to_batch`
    filled: hidden states the cache lacks are None (no cacheable term reads them)."""
    hidden = tuple(batch.get(hidden_key(i)) for i in range(num_layers + 1))
    return BertOutput(batch[LOGITS], None, cast(tuple[jax.Array, ...], hidden), None)


def cached_teacher(
    terms: tuple[Term, ...], teacher: BertConfig, student: BertConfig
) -> Callable[[object, Mapping[str, jax.Array]], BertOutput]:
    """``teacher_outputs`` for :func:`fsd_jax.objective.make_distill_objective` that reads the
    teacher's outputs from the batch instead of running it (the teacher parameters go unused);
    ValueError naming the term when one of ``terms`` cannot use a cache."""
    cached_teacher_layers(terms, teacher, student)

    def teacher_outputs(teacher_params: object, batch: Mapping[str, jax.Array]) -> BertOutput:
        return cached_output(batch, teacher.num_hidden_layers)

    return teacher_outputs
