"""Stage ``quickstart``: the offline demo on the built-in synthetic task.

Fine-tunes the 6-layer MiniLM teacher, then trains 3-layer students (its first three layers)
without distillation and with each objective of ``config.distill`` (VKD and FSD-IL), evaluates
every model and prints a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fsd_jax.train import stages


def _sub_config(config: Any, stage: str = "finetune", **changes: Any) -> Any:
    sub = config.copy_and_resolve_references()
    sub.unlock()
    sub.stage = stage
    for key in ("distill", "distill_methods", "student_layers", "teacher_train"):
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


def run_quickstart(config: Any, workdir: str | Path) -> dict:
    workdir = Path(workdir)
    student = {"model.layers": config.student_layers}
    runs = [
        (
            "teacher (fine-tuned)",
            "teacher",
            _sub_config(config, **{f"train.{k}": v for k, v in config.teacher_train.items()}),
        ),
        ("student, no distillation", "student_nokd", _sub_config(config, **student)),
    ]
    for method in [m.strip() for m in config.distill_methods.split(",") if m.strip()]:
        if method not in config.distill:
            raise ValueError(f"distill_methods: {method!r} has no objective in config.distill")
        sub = _sub_config(
            config,
            "distill",
            **student,
            teacher=str(workdir / "teacher"),
            objective=config.distill[method].to_dict(),
        )
        runs.append((f"student, {method.upper().replace('_', '-')}", f"student_{method}", sub))
    rows = []
    for name, sub_dir, sub in runs:
        print(f"\n== {name}: {workdir / sub_dir}", flush=True)
        res = stages.run(sub, workdir / sub_dir)
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
    out = {"task": config.task, "stage": "quickstart", "rows": rows, "table": table}
    (workdir / "results.json").write_text(json.dumps(out, indent=2))
    return out
