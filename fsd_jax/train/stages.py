"""Dispatch from ``config.stage`` to the stage that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(config: Any, workdir: str | Path) -> dict:
    stage = config.get("stage")
    if stage == "finetune":
        from fsd_jax.train.finetune import run_finetune

        return run_finetune(config, workdir)
    if stage == "distill":
        from fsd_jax.train.distill import run_distill

        return run_distill(config, workdir)
    if stage == "memory":
        from fsd_jax.train.teacher_memory import run_memory

        return run_memory(config, workdir)
    if stage == "grid" and config.grid.get("plan"):
        from fsd_jax.experiments.plan import print_plan

        return print_plan(config, workdir)
    if stage == "grid":
        from fsd_jax.experiments.grid import run_grid

        return run_grid(config, workdir)
    if stage == "quickstart":
        from fsd_jax.train.quickstart import run_quickstart

        return run_quickstart(config, workdir)
    raise ValueError(
        f"config.stage={stage!r}: expected 'finetune', 'distill', 'memory', 'grid' or 'quickstart'"
    )
