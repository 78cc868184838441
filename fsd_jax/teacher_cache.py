"""The teacher's outputs on the training set, computed once per run instead of every step.

The teacher runs in eval mode (no dropout) on fixed inputs, so its logits and hidden states are
the same in every epoch. Terms that read only those (KD, FSD-I/L/G, PKD, RKD; not the
attention-based ones) can take them from this cache: the step then runs the student alone,
which saves the teacher's forward pass on every step after the first epoch's worth.

Hidden states are stored ragged (real tokens only, float32) and padded per batch, so the padded
positions the step sees are zeros. Every cacheable term masks padding, so the losses match the
live teacher's up to float rounding (tests/test_teacher_cache.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.data import Encoded, iterate_batches
from fsd_jax.models import BertForSequenceClassification, BertOutput
from fsd_jax.train.step import model_inputs

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
) -> TeacherCache:
    """Run the teacher (eval mode) once over ``data`` in order and keep its logits and the
    hidden states ``layers`` (non-negative indices into ``hidden_states``)."""
    if min(data.lengths, default=0) > seq_len:
        raise ValueError(f"examples longer than data.max_seq_length={seq_len}")

    @jax.jit
    def forward(p, batch):
        out = teacher.apply({"params": p}, **model_inputs(batch))
        return out.logits.astype(jnp.float32), [
            out.hidden_states[i].astype(jnp.float32) for i in layers
        ]

    t0 = time.perf_counter()
    lengths = np.minimum(data.lengths, seq_len)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
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
    cache = TeacherCache(logits, hidden, offsets)
    log.info(
        "teacher cache: %d examples, layers %s, %.0f MB in %.1f s",
        len(data),
        list(layers),
        cache.nbytes / 2**20,
        time.perf_counter() - t0,
    )
    return cache


def cached_output(batch: Mapping[str, jax.Array], num_layers: int) -> BertOutput:
    """A teacher :class:`BertOutput` read from a batch that :meth:`TeacherCache.add_to_batch`
    filled: hidden states the cache lacks are None (no cacheable term reads them)."""
    hidden = tuple(batch.get(hidden_key(i)) for i in range(num_layers + 1))
    return BertOutput(batch[LOGITS], None, hidden, None)
