"""Metrics to a JSONL file and TensorBoard event files in the workdir."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class MetricWriter:
    """Appends ``{"step": s, "time": t, ...}`` lines to ``metrics.jsonl``; mirrors to TensorBoard.

    ``enabled=False`` (the other processes of a multi-process run) writes nothing.
    """

    def __init__(self, workdir: str | Path, tensorboard: bool = True, enabled: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def write(self, step: int, scalars: dict[str, Any], prefix: str = "") -> None:
        if self._jsonl is None:
            return
        clean = {f"{prefix}{k}": float(v) for k, v in scalars.items()}
        row = {"step": int(step), "time": time.time(), **clean}
        self._jsonl.write(
            json.dumps(
                {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in row.items()
                }
            )
            + "\n"
        )
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(k, v, int(step))

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
