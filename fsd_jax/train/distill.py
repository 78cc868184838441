"""Stage ``distill``: train a student against a fine-tuned teacher with a configured objective."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsd_jax.data import get_task
from fsd_jax.models import load_pretrained, load_tokenizer
from fsd_jax.objective import make_distill_objective, parse_terms
from fsd_jax.train.run import dtype_of, parse_layers, train_and_evaluate


def run_distill(
    config: Any, workdir: str | Path, on_step: Callable[[int], None] | None = None
) -> dict:
    """Distil ``config.teacher`` into a student built from ``config.model`` (chosen layers).

    The teacher is a workdir from stage ``finetune`` or a fine-tuned HF directory; it runs in
    eval mode under ``stop_gradient`` inside the same compiled step as the student.
    """
    task = get_task(config.task)
    if not config.teacher:
        raise ValueError("config.teacher: path of the fine-tuned teacher (workdir or HF directory)")
    terms = parse_terms(config.objective)
    teacher, teacher_params = load_pretrained(config.teacher, dtype=dtype_of(config.model.dtype))
    labels = task.label_names or ("score",)
    if teacher.config.num_labels != len(labels):
        raise ValueError(
            f"{config.teacher}: teacher has {teacher.config.num_labels} outputs, "
            f"task {task.name} needs {len(labels)}"
        )
    tokenizer = load_tokenizer(config.model.name_or_path)
    student, params = load_pretrained(
        config.model.name_or_path,
        label_names=labels,
        layers=parse_layers(config.model.layers),
        dtype=dtype_of(config.model.dtype),
        seed=config.seed,
    )
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(
            f"teacher vocabulary ({teacher.config.vocab_size}) differs from the "
            f"student's ({student.config.vocab_size}): they must share a tokenizer"
        )
    objective = make_distill_objective(student, teacher, terms)
    return train_and_evaluate(
        config,
        workdir,
        task=task,
        tokenizer=tokenizer,
        model=student,
        params=params,
        objective=objective,
        step_args=(teacher_params,),
        on_step=on_step,
        extra_results={
            "model": str(config.model.name_or_path),
            "teacher": str(config.teacher),
            "objective": {t.name: {"weight": t.weight, **t.options} for t in terms},
        },
    )
