"""Stage ``distill``: train a student against a fine-tuned teacher with a configured objective."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from fsd_jax.data import get_task
from fsd_jax.models import load_pretrained, load_tokenizer
from fsd_jax.objective import make_distill_objective, needs_memory, parse_terms
from fsd_jax.train.run import dtype_of, parse_layers, train_and_evaluate
from fsd_jax.train.teacher_memory import load_memory


def run_distill(
    config: Any, workdir: str | Path, on_step: Callable[[int], None] | None = None
) -> dict:
    """Distil ``config.teacher`` into a student built from ``config.model`` (chosen layers).

    The teacher is a workdir from stage ``finetune`` or a fine-tuned HF directory; it runs in
    eval mode under ``stop_gradient`` inside the same compiled step as the student. Objectives
    with an ``fsd_g`` term also read ``config.teacher_memory`` (a workdir of stage ``memory``)
    and train a student memory, Normal(0, 1) at start (METHODS.md §2.5), kept out of the export.
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
    student, student_params = load_pretrained(
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
    params = {"student": student_params}
    step_args: tuple = (teacher_params,)
    extra = {
        "model": str(config.model.name_or_path),
        "teacher": str(config.teacher),
        "objective": {t.name: {"weight": t.weight, **t.options} for t in terms},
    }
    if needs_memory(terms):
        if not config.get("teacher_memory"):
            raise ValueError(
                "config.teacher_memory: the fsd_g term needs a memory built by "
                "stage 'memory' (its workdir)"
            )
        centroids, meta = load_memory(
            config.teacher_memory,
            hidden_size=teacher.config.hidden_size,
            seq_len=int(config.data.max_seq_length),
            task=task.name,
        )
        layer = next(t for t in terms if t.name == "fsd_g").options["teacher_layer"]
        if meta.get("layer", layer) != layer:
            raise ValueError(
                f"{config.teacher_memory}: memory built from teacher layer "
                f"{meta['layer']}, objective.fsd_g.teacher_layer is {layer}"
            )
        k, n, _ = centroids.shape
        key = jax.random.fold_in(jax.random.key(config.seed), 1)
        params["memory"] = jax.random.normal(key, (k, n, student.config.hidden_size), jnp.float32)
        step_args = (teacher_params, jnp.asarray(centroids))
        extra["teacher_memory"] = str(config.teacher_memory)
    return train_and_evaluate(
        config,
        workdir,
        task=task,
        tokenizer=tokenizer,
        model=student,
        params=params,
        objective=objective,
        step_args=step_args,
        on_step=on_step,
        extra_results=extra,
        model_params=lambda p: p["student"],
    )
