"""On-disk caches under one root: tokenised datasets, XLA's compiled programs, teacher outputs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Compiled train steps of a MiniLM-sized model are a few MB each; a grid over several tasks and
# length buckets stays well under this, and JAX evicts the least recently used entries past it.
COMPILATION_CACHE_MAX_BYTES = 2 * 1024**3


def cache_root() -> Path:
    """``$FSD_JAX_CACHE``, by default ``~/.cache/fsd_jax``."""
    return Path(os.environ.get("FSD_JAX_CACHE", Path.home() / ".cache" / "fsd_jax"))


_OFF = ("off", "0", "false", "no", "none")


def teacher_outputs_store() -> tuple[Path | None, int]:
    """(directory, size limit in bytes) for teacher outputs kept between runs
    (:func:`fsd_jax.teacher_cache.build_teacher_cache`): ``$FSD_JAX_TEACHER_OUTPUTS``, by default
    ``$FSD_JAX_CACHE/teacher_outputs``, ``off`` for none; the limit is
    ``$FSD_JAX_TEACHER_OUTPUTS_MAX_GB`` (default 20)."""
    setting = os.environ.get("FSD_JAX_TEACHER_OUTPUTS", "")
    raw = os.environ.get("FSD_JAX_TEACHER_OUTPUTS_MAX_GB", "20")
    try:
        limit = int(float(raw) * 1024**3)
    except ValueError:
        raise ValueError(f"FSD_JAX_TEACHER_OUTPUTS_MAX_GB={raw!r}: expected a number") from None
    if setting.lower() in _OFF:
        return None, limit
    return (Path(setting) if setting else cache_root() / "teacher_outputs"), limit


def enable_compilation_cache(min_compile_seconds: float = 1.0) -> Path | None:
    """Keep XLA's compiled programs on disk so that a run with the same shapes skips compiling.

    Every cell of an experiment grid (and every resumed run) compiles the same train and eval
    steps, one per length bucket; on a CPU that is minutes per run. The directory is
    ``$FSD_JAX_COMPILE_CACHE``, by default ``$FSD_JAX_CACHE/xla``; ``FSD_JAX_COMPILE_CACHE=off``
    turns it off, and a directory set with JAX's own ``JAX_COMPILATION_CACHE_DIR`` is left as it
    is. A cached program is the same binary, so results do not change. The command-line tools
    call this; library code never changes JAX's global configuration by itself.

    Returns the directory in use, or None when off.
    """
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    setting = os.environ.get("FSD_JAX_COMPILE_CACHE", "")
    if setting.lower() in _OFF:
        return None
    path = Path(setting) if setting else cache_root() / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("compilation cache off: cannot create %s (%s)", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    # a size limit also makes JAX lock the directory, so parallel runs can share it
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
    return path
