"""Tokenisation (cached on disk) and fixed-shape batches with a per-example weight mask."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fsd_jax.data.glue import Examples
from fsd_jax.disk_cache import cache_root

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def default_cache_dir() -> Path:
    return cache_root() / "tokens"


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Token ids of a split, stored ragged: example i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _fingerprint(examples: Examples, tokenizer: Any, max_length: int) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # a call with truncation=True stores that setting in the backend: not part of identity
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(repr(tokenizer).encode())
    h.update(f"{max_length}|{examples.task.name}|{examples.split}|".encode())
    for texts in (examples.text_a, examples.text_b or ()):
        h.update("\x00".join(texts).encode())
        h.update(b"\x01")
    h.update(examples.labels.tobytes())
    return h.hexdigest()[:24]


def encode(
    examples: Examples,
    tokenizer: Any,
    max_length: int,
    cache_dir: str | os.PathLike | None = None,
) -> Encoded:
    """Tokenise with the checkpoint's (fast) tokenizer: ``[CLS] a [SEP] b [SEP]``, truncated.

    Results are cached under ``cache_dir`` (default ``$FSD_JAX_CACHE/tokens`` or
    ``~/.cache/fsd_jax/tokens``), keyed by texts, labels, tokenizer and ``max_length``.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    file = cache / f"{_fingerprint(examples, tokenizer, max_length)}.npz"
    if file.is_file():
        try:
            with np.load(file) as z:
                return Encoded(z["ids"], z["type_ids"], z["offsets"], z["labels"])
        except (OSError, ValueError, KeyError):
            log.warning("%s: unreadable token cache, re-tokenising", file)
    enc = tokenizer(
        list(examples.text_a),
        list(examples.text_b) if examples.text_b is not None else None,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=True,
        return_attention_mask=False,
    )
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), np.int64, len(examples))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    result = Encoded(
        np.concatenate([np.asarray(x, np.int32) for x in enc["input_ids"]]),
        np.concatenate([np.asarray(x, np.int8) for x in enc["token_type_ids"]]),
        offsets,
        examples.labels,
    )
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, ids=result.ids, type_ids=result.type_ids, offsets=offsets, labels=result.labels
            )
        os.replace(tmp, file)
    except OSError as e:  # a read-only home must not stop training
        log.warning("token cache not written to %s: %s", cache, e)
    return result


def num_batches(num_examples: int, batch_size: int) -> int:
    return math.ceil(num_examples / batch_size)


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Example order of one epoch: a permutation determined by (seed, epoch) alone."""
    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def make_batch(
    data: Encoded, index: np.ndarray, batch_size: int, seq_len: int, pad_id: int = 0
) -> Batch:
    """Pad the examples ``index`` into a (batch_size, seq_len) batch.

    Rows past ``len(index)`` are padding rows with weight 0 and ``index`` -1; they keep the
    shape static so that the last partial batch needs no second compiled step.
    """
    n = len(index)
    ids = np.full((batch_size, seq_len), pad_id, np.int32)
    types = np.zeros((batch_size, seq_len), np.int32)
    mask = np.zeros((batch_size, seq_len), np.int32)
    for row, i in enumerate(index):
        lo, hi = data.offsets[i], data.offsets[i + 1]
        length = min(hi - lo, seq_len)
        ids[row, :length] = data.ids[lo : lo + length]
        types[row, :length] = data.type_ids[lo : lo + length]
        mask[row, :length] = 1
    labels = np.zeros((batch_size,), data.labels.dtype)
    labels[:n] = data.labels[index]
    weights = np.zeros((batch_size,), np.float32)
    weights[:n] = 1.0
    full_index = np.full((batch_size,), -1, np.int32)
    full_index[:n] = index
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "labels": labels,
        "weights": weights,
        "index": full_index,
    }


def bucket_padding(
    buckets: str | tuple[int, ...] | None, seq_len: int
) -> Callable[[int], int] | None:
    """``pad_to`` for :func:`iterate_batches`: the smallest bucket length that fits the batch.

    ``buckets`` is e.g. ``"32,64,128"``; ``seq_len`` is always a bucket, so no example is cut
    shorter than without bucketing. None or empty: pad every batch to ``seq_len``.
    """
    if not buckets:
        return None
    if isinstance(buckets, str):
        try:
            values = [int(x) for x in buckets.split(",") if x.strip()]
        except ValueError:
            raise ValueError(
                f"data.buckets={buckets!r}: expected lengths like '32,64,128'"
            ) from None
    else:
        values = list(buckets)
    if any(v < 1 for v in values):
        raise ValueError(f"data.buckets={buckets!r}: lengths must be positive")
    sizes = sorted({v for v in values if v < seq_len} | {seq_len})
    return lambda longest: next(b for b in sizes if b >= longest)


def iterate_batches(
    data: Encoded,
    batch_size: int,
    seq_len: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    start_batch: int = 0,
    pad_to: Callable[[int], int] | None = None,
) -> Iterator[Batch]:
    """Batches of one epoch, from batch ``start_batch`` on (for resuming mid-epoch).

    ``pad_to(longest)`` may pick a shorter padded length per batch (length bucketing);
    by default every batch is padded to ``seq_len``.
    """
    order = epoch_order(len(data), seed, epoch, shuffle)
    lengths = data.lengths
    for b in range(start_batch, num_batches(len(data), batch_size)):
        index = order[b * batch_size : (b + 1) * batch_size]
        length = seq_len if pad_to is None else pad_to(int(lengths[index].max()))
        yield make_batch(data, index, batch_size, length)
