"""orbax checkpoints of the train state, with fallback to an older one if the latest is broken.

orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact. A step found unreadable on restore is replaced
when the resumed run reaches it again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves ``(state, meta)`` every so often and restores the newest readable one."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2):
        self.directory = Path(directory).resolve()
        self.unreadable: set[int] = set()  # steps restore_latest could not read
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False) -> None:
        if step in self.unreadable:  # a damaged copy of this step: make room for a good one
            self.manager.delete(step)
            self.unreadable.discard(step)
            log.warning("replacing unreadable checkpoint %s/%d", self.directory, step)
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})
            ),
            force=force,
        )

    def restore_latest(self, target: Any) -> tuple[Any, dict, int] | None:
        """The newest checkpoint that reads back, as ``(state, meta, step)``; None if none.

        A checkpoint that fails to read (truncated, corrupted) is skipped with a warning.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                    ),
                )
            except Exception as e:  # orbax raises many types for damaged files
                self.unreadable.add(step)
                log.warning(
                    "checkpoint %s/%d is unreadable (%s: %s); trying an older one",
                    self.directory,
                    step,
                    type(e).__name__,
                    str(e).splitlines()[0][:200],
                )
                continue
            return restored["state"], dict(restored["meta"] or {}), step
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
