"""Stage ``quickstart``: the offline demo on the built-in synthetic task.

Fine-tunes the 6-layer MiniLM teacher, builds its k-means memory when an objective needs one,
then trains 3-layer students (its first three layers) without distillation and with each
objective of ``config.distill`` (VKD and FSD-ILG), evaluates every model and prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fsd_jax.terms import needs_memory, parse_terms
from fsd_jax.train.distill import run_distill
from fsd_jax.train.finetune import run_finetune
from fsd_jax.train.teacher_memory import run_memory

_QUICKSTART_ONLY = ("distill", "distill_methods", "student_layers", "teacher_train")
_STAGES = {"finetune": run_finetune, "memory": run_memory, "distill": run_distill}


def _sub_config(config: Any, stage: str = "finetune", **changes: Any) -> Any:
    sub = config.copy_and_resolve_references()
    sub.unlock()
    sub.stage = stage
    for key in _QUICKSTART_ONLY:
        del sub[key]
    for dotted, value in changes.items():
        node = sub
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    sub.lock()
    return sub


def format_table(rows: list[dict]) -> str:
    header = f"{'model':<28} {'layers':>6} {'dev accuracy':>12} {'train ex/s':>10} {'time (s)':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['name']:<28} {r['layers']:>6} {r['score']:>12.4f} "
            f"{r['examples_per_s']:>10.1f} {r['wall_time_s']:>8.1f}"
        )
    return "\n".join(lines)


def _plan(config: Any, workdir: Path) -> list[tuple[str | None, str, Any]]:
    """(name, sub-directory, config) of every run, in order; name None = not a table row."""
    teacher = str(workdir / "teacher")
    student = {"model.layers": config.student_layers}
    methods = [m.strip() for m in config.distill_methods.split(",") if m.strip()]
    for m in methods:
        if m not in config.distill:
            raise ValueError(f"distill_methods: {m!r} has no objective in config.distill")
    plan: list[tuple[str | None, str, Any]] = [
        (
            "teacher (fine-tuned)",
            "teacher",
            _sub_config(config, **{f"train.{k}": v for k, v in config.teacher_train.items()}),
        )
    ]
    memory = any(needs_memory(parse_terms(config.distill[m].to_dict())) for m in methods)
    if memory:
        plan.append((None, "memory", _sub_config(config, "memory", teacher=teacher)))
    plan.append(("student, no distillation", "student_nokd", _sub_config(config, **student)))
    for m in methods:
        extra = {"teacher_memory": str(workdir / "memory")} if memory else {}
        plan.append(
            (
                f"student, {m.upper().replace('_', '-')}",
                f"student_{m}",
                _sub_config(
                    config,
                    "distill",
                    **student,
                    teacher=teacher,
                    objective=config.distill[m].to_dict(),
                    **extra,
                ),
            )
        )
    return plan


def run_quickstart(config: Any, workdir: str | Path) -> dict:
    workdir = Path(workdir)
    rows, memory = [], None
    for name, sub_dir, sub in _plan(config, workdir):
        print(f"\n== {name or 'teacher memory (k-means)'}: {workdir / sub_dir}", flush=True)
        res = _STAGES[sub.stage](sub, workdir / sub_dir)
        if name is None:
            memory = res
            continue
        dev = next(iter(res["dev"].values()))
        rows.append(
            {
                "name": name,
                "workdir": str(workdir / sub_dir),
                "layers": res["num_layers"],
                "score": dev["score"],
                "dev": res["dev"],
                "examples_per_s": res["train_examples_per_s"],
                "wall_time_s": res["wall_time_s"],
            }
        )
    table = format_table(rows)
    print(f"\nQuickstart on the built-in synthetic task ({config.task}), dev split:\n{table}")
    if memory is not None:
        print(
            f"teacher memory: K = {memory['num_clusters']} centroids of "
            f"{memory['seq_len']}×{memory['hidden_size']} features, "
            f"built in {memory['build_seconds']:.1f} s"
        )
    out = {
        "task": config.task,
        "stage": "quickstart",
        "rows": rows,
        "table": table,
        "memory": memory,
    }
    text = json.dumps(out, indent=2)
    path = workdir / "results.json"
    if not (path.is_file() and path.read_text() == text):  # a finished quickstart: left as it is
        path.write_text(text)
    return out
