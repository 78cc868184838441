"""Stage ``distill``: train a student against a fine-tuned teacher with a configured objective."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from fsd_jax import losses
from fsd_jax.config_checks import check_config, check_sequence_length
from fsd_jax.data import check_task_files, get_task
from fsd_jax.disk_cache import teacher_outputs_store
from fsd_jax.models import load_pretrained, load_tokenizer
from fsd_jax.models.hf import has_trained_head
from fsd_jax.objective import init_objective_state, make_distill_terms, objective_of
from fsd_jax.teacher_cache import build_teacher_cache, cached_teacher
from fsd_jax.terms import cached_teacher_layers, needs_memory, parse_terms
from fsd_jax.train.balance import GradientBalance
from fsd_jax.train.loop import fit
from fsd_jax.train.step import make_train_step
from fsd_jax.train.teacher_memory import load_memory
from fsd_jax.train.training_run import TrainingRun, dtype_of, parse_layers

log = logging.getLogger(__name__)

# train fields a config may lack (older configs) that a phase may still set
_OPTIONAL_TRAIN = {"schedule", "group_learning_rates", "balance_every"}


def run_distill(
    config: Any, workdir: str | Path, on_step: Callable[[int], None] | None = None
) -> dict:
    """Distil ``config.teacher`` into a student built from ``config.model`` (chosen layers).

    The teacher is a workdir from stage ``finetune`` or a fine-tuned HF directory; it runs in
    eval mode under ``stop_gradient`` inside the same compiled step as the student. Objectives
    with an ``fsd_g`` term also read ``config.teacher_memory`` (a workdir of stage ``memory``)
    and train a student memory, Normal(0, 1) at start as in the reference (docs/methods.md §2.5;
    ``objective.fsd_g.memory_init_std`` scales it), kept out of the export.
    """
    check_config(config)
    if config.get("phases"):
        return run_phases(config, workdir, on_step)
    task = get_task(config.task)
    if not config.teacher:
        raise ValueError("config.teacher: path of the fine-tuned teacher (workdir or HF directory)")
    terms = parse_terms(config.objective)
    check_task_files(task, config.data.data_dir)
    teacher, teacher_params = load_pretrained(config.teacher, dtype=dtype_of(config.model.dtype))
    if not has_trained_head(config.teacher):
        log.warning(
            "%s: no classifier weights (a pre-trained, not fine-tuned, checkpoint): the teacher's "
            "logits come from a random head; fine-tune it with stage 'finetune' first",
            config.teacher,
        )
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
        hidden_size=config.model.get("hidden_size") or None,
        dtype=dtype_of(config.model.dtype),
        seed=config.seed,
    )
    for name, model in ((config.teacher, teacher), (config.model.name_or_path, student)):
        check_sequence_length(
            int(config.data.max_seq_length),
            model.config.max_position_embeddings,
            str(name),
            "data.max_seq_length",
        )
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ValueError(
            f"teacher vocabulary ({teacher.config.vocab_size}) differs from the "
            f"student's ({student.config.vocab_size}): they must share a tokenizer"
        )
    use_cache, cache_layers = _teacher_cache_plan(config, terms, teacher, student)
    teacher_outputs = cached_teacher(terms, teacher.config, student.config) if use_cache else None
    term_losses = make_distill_terms(student, teacher, terms, teacher_outputs=teacher_outputs)
    every = int(config.train.get("balance_every", 0))
    balance = GradientBalance(term_losses, tuple(t.name for t in terms), every) if every else None
    extra_params, aux = init_objective_state(
        terms, teacher.config, student.config, int(config.data.max_seq_length), config.seed
    )
    params = {"student": student_params, **extra_params}
    # with the cache the step never reads the teacher's parameters: keep them off the device
    step_args: tuple = ({} if use_cache else teacher_params,)
    extra = {
        "model": str(config.model.name_or_path),
        "teacher": str(config.teacher),
        "objective": {t.name: {"weight": t.weight, **t.options} for t in terms},
    }
    if needs_memory(terms):
        memory, memory_args = _memory(config, terms, task, teacher.config, student.config)
        params["memory"] = memory
        step_args = (*step_args, *memory_args)
        extra["teacher_memory"] = str(config.teacher_memory)

    run = TrainingRun.open(config, workdir, task, tokenizer, params, aux=aux)
    if run.finished is not None:
        return run.finished
    with run:
        step_args = run.sharder.put_args(step_args)
        transform = None
        if use_cache:
            t0 = time.perf_counter()
            store, store_max_bytes = teacher_outputs_store()
            cache = build_teacher_cache(
                teacher,
                teacher_params,
                run.train,
                cache_layers,
                batch_size=config.train.eval_batch_size,
                seq_len=int(config.data.max_seq_length),
                pad_to=run.pad_to,
                store=store,
                store_max_bytes=store_max_bytes,
            )
            extra["teacher_cache"] = {
                "layers": list(cache_layers),
                "megabytes": cache.nbytes / 2**20,
                "build_s": time.perf_counter() - t0,
            }
            transform = cache.add_to_batch
        objective = make_train_step(objective_of(term_losses))
        step = run.sharder.jit_train_step(objective, run.state, step_args)
        state, stats = fit(
            run.state,
            step,
            run.batches(transform),
            run.loop,
            step_args=step_args,
            on_step=on_step,
            probe=balance.probe(run.sharder, run.state, step_args) if balance else None,
            probe_every=balance.every if balance else 0,
        )
        metrics = run.evaluate(student, state.params["student"])
    stats.update(run.gradient_balance() if balance else {}, **extra)
    return run.finish(student, state.params["student"], tokenizer, metrics, stats)


def _memory(config, terms, task, teacher_config, student_config) -> tuple[jax.Array, tuple]:
    """The student memory at its start (Normal(0, std), the reference's init) and the step
    arguments of the teacher memory: its centroids and their Gram (computed once per run)."""
    if not config.get("teacher_memory"):
        raise ValueError(
            "config.teacher_memory: the fsd_g term needs a memory built by "
            "stage 'memory' (its workdir)"
        )
    options = next(t for t in terms if t.name == "fsd_g").options
    std = float(options["memory_init_std"])
    if not std > 0:
        raise ValueError(f"objective.fsd_g.memory_init_std={std}: expected a positive number")
    centroids, meta = load_memory(
        config.teacher_memory,
        hidden_size=teacher_config.hidden_size,
        seq_len=int(config.data.max_seq_length),
        task=task.name,
        teacher=config.teacher,
    )
    layer = options["teacher_layer"]
    if meta.get("layer", layer) != layer:
        raise ValueError(
            f"{config.teacher_memory}: memory built from teacher layer "
            f"{meta['layer']}, objective.fsd_g.teacher_layer is {layer}"
        )
    k, n, _ = centroids.shape
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    memory = std * jax.random.normal(key, (k, n, student_config.hidden_size), jnp.float32)
    on_device = jnp.asarray(centroids)
    return memory, (on_device, jax.jit(losses.memory_gram)(on_device))


def _teacher_cache_plan(config, terms, teacher, student) -> tuple[bool, tuple[int, ...]]:
    """(use the teacher cache, the hidden-state layers it holds) from ``config.teacher_cache``:
    ``off``; ``on`` (an error if a term cannot use it); ``auto`` (on when every term can)."""
    mode = config.get("teacher_cache") or "off"
    if mode not in ("off", "on", "auto"):
        raise ValueError(f"teacher_cache={mode!r}: expected 'off', 'on' or 'auto'")
    if mode == "off":
        return False, ()
    try:
        return True, cached_teacher_layers(terms, teacher.config, student.config)
    except ValueError:
        if mode == "on":
            raise
        return False, ()


# what <workdir>/results.json keeps of each phase (throughput: the grid's examples/s column)
_PHASE_SUMMARY = (
    "dev",
    "steps",
    "train_metrics",
    "objective",
    "epochs",
    "train_examples",
    "train_examples_per_s",
    "gradient_balance",
)


def run_phases(
    config: Any, workdir: str | Path, on_step: Callable[[int], None] | None = None
) -> dict:
    """Distil in consecutive phases (TinyBERT's intermediate, then prediction stage).

    ``config.phases`` maps phase names, in order, to overrides: ``objective`` (replaces the
    objective) and ``train`` (fields of ``config.train``). Phase i runs in ``<workdir>/<name>``;
    later phases start from the previous phase's student (all its layers). A finished phase
    is not run again, so a re-run resumes where it stopped. The last phase's results and model
    become ``<workdir>/results.json`` and ``<workdir>/export``.
    """
    workdir = Path(workdir)
    base = config.to_dict()
    phases = base.pop("phases")
    done: dict[str, dict] = {}
    previous: Path | None = None
    for name, overrides in phases.items():
        unknown = sorted(set(overrides) - {"objective", "train"})
        if unknown:
            raise ValueError(f"phases.{name}: unknown keys {unknown}; expected objective, train")
        d = copy.deepcopy(base)
        d["objective"] = overrides.get("objective") or d["objective"]
        bad = sorted(set(overrides.get("train") or {}) - set(d["train"]) - _OPTIONAL_TRAIN)
        if bad:
            raise ValueError(f"phases.{name}.train: unknown fields {bad}")
        d["train"].update(overrides.get("train") or {})
        if previous is not None:
            d["model"]["name_or_path"], d["model"]["layers"] = str(previous), None
        phase_dir = workdir / name
        finished = phase_dir / "results.json"
        if finished.is_file():
            done[name] = json.loads(finished.read_text())
        else:
            done[name] = run_distill(ConfigDict(d), phase_dir, on_step)
        previous = phase_dir
    last = dict(done[name])
    last["phases"] = {k: {key: r.get(key) for key in _PHASE_SUMMARY} for k, r in done.items()}
    if last.get("export"):
        tmp = workdir / ".export.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(last["export"], tmp)
        shutil.rmtree(workdir / "export", ignore_errors=True)
        tmp.rename(workdir / "export")
        last["export"] = str(workdir / "export")
    (workdir / "results.json").write_text(json.dumps(last, indent=2, default=str))
    return last
