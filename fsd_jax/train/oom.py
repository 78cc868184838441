"""Out of device memory as one line that names the batch and the ways out, not an XLA dump."""

from __future__ import annotations

import jax


class OutOfMemoryError(ValueError):
    """A step (or its compilation) ran out of device memory."""


def is_out_of_memory(e: BaseException) -> bool:
    """An XLA allocation failure (``RESOURCE_EXHAUSTED``), as any backend reports it."""
    text = str(e)
    return isinstance(e, jax.errors.JaxRuntimeError) and (
        "RESOURCE_EXHAUSTED" in text or "Out of memory" in text
    )


def out_of_memory_error(
    e: BaseException, what: str, shape: tuple[int, ...], size_option: str
) -> OutOfMemoryError:
    """One line: where memory ran out, for which batch, and the ways out."""
    first = next((x for x in str(e).splitlines() if x.strip()), "")[:200]
    batch = " x ".join(str(n) for n in shape) if shape else "?"
    return OutOfMemoryError(
        f"out of device memory {what} with batches of {batch} (examples x tokens): lower "
        f"{size_option} or data.max_seq_length (or data.buckets for shorter batches), use "
        f"model.dtype=bfloat16, or spread the batch over more devices (mesh.data) [{first}]"
    )
