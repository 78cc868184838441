"""What the benchmarks share: building a method's real compiled train step, timing steps."""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = [
    "vkd",
    "pkd",
    "rkd",
    "minilm",
    "fsd_i",
    "fsd_l",
    "fsd_il",
    "fsd_g",
    "fsd_ilg",
    "tinybert",
    "bert_emd",
    "lad",
]
# config argument per method ("one_stage": TinyBERT's terms in one step)
_CONFIG_ARG = {"tinybert": "{task},one_stage"}


def method_terms(method: str, task: str):
    from fsd_jax.terms import parse_terms

    arg = _CONFIG_ARG.get(method, "{task}").format(task=task)
    cfg = importlib.import_module(f"configs.distill.{method}").get_config(arg)
    return parse_terms(cfg.objective), cfg


def build_step(
    method: str,
    task: str,
    teacher: Any,
    teacher_params: Any,
    student: Any,
    student_params: Any,
    seq_len: int,
    dtype: Any = None,
    teacher_cache: bool = False,
) -> list:
    """``[step, state, step_args]`` for ``method``: the same sharded step ``train.py`` runs
    (with ``teacher_cache``, the step that reads the teacher's outputs from the batch)."""
    from fsd_jax.losses import memory_gram
    from fsd_jax.objective import init_objective_state, make_distill_objective
    from fsd_jax.terms import needs_memory
    from fsd_jax.train.optim import make_optimizer
    from fsd_jax.train.sharding import Sharder
    from fsd_jax.train.state import TrainState
    from fsd_jax.train.step import make_train_step

    terms, cfg = method_terms(method, task)
    from fsd_jax.teacher_cache import cached_teacher

    outputs = cached_teacher(terms, teacher.config, student.config) if teacher_cache else None
    objective = make_distill_objective(student, teacher, terms, teacher_outputs=outputs)
    t_args = {} if teacher_cache else teacher_params
    extra, aux = init_objective_state(terms, teacher.config, student.config, seq_len, seed=0)
    # the step donates its state: give each method its own copy of the student
    student_params = jax.tree.map(lambda x: jax.numpy.array(x, copy=True), student_params)
    params, args = {"student": student_params, **extra}, (t_args,)
    if needs_memory(terms):
        # a K = 100 memory of the right shape; its values do not change the cost
        k, d_t, d_s = 100, teacher.config.hidden_size, student.config.hidden_size
        params["memory"] = jax.random.normal(jax.random.key(2), (k, seq_len, d_s))
        t_mem = jax.random.normal(jax.random.key(1), (k, seq_len, d_t))
        args = (t_args, t_mem, memory_gram(t_mem))  # as train.py: its Gram computed once
    groups = dict(cfg.train.get("group_learning_rates") or {})
    tx = make_optimizer(5e-5, 1000, group_learning_rates=groups)
    sharder = Sharder.create()
    state = sharder.put_state(TrainState.create(params, tx, 0, aux=aux))
    args = sharder.put_args(args)
    return [sharder.jit_train_step(make_train_step(objective), state, args), state, args]


def time_interleaved(
    runners: dict[str, Callable[[int], Any]], steps: int, warmup: int = 2, block: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each runner; runners take turns each round so noise hits all alike.

    A runner ``f(i)`` does one step on batch ``i`` and blocks until it is done. With
    ``block > 1`` each turn is ``block`` calls of which the first is not timed: for
    millisecond kernels, where the previous runner's idle worker threads (PyTorch's OpenMP
    pool spins after a parallel region) would otherwise slow the first call of the next.
    """
    for f in runners.values():
        for i in range(warmup):
            f(i)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for i in range(steps):
        for k, f in runners.items():
            if block > 1:
                f(i)
            for _ in range(max(block - 1, 1)):
                t0 = time.perf_counter()
                f(i)
                times[k].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def jax_runner(entry: list, batches: Sequence[dict]) -> Callable[[int], None]:
    """Step ``entry = [step, state, args]`` in place on ``batches[i % len]``."""

    def run(i: int) -> None:
        entry[1], metrics = entry[0](entry[1], batches[i % len(batches)], *entry[2])
        # the whole step: the loss is ready before the optimiser update is, and an update
        # still running would be timed against the next runner
        jax.block_until_ready((entry[1], metrics))

    return run


def device_batches(batches: Sequence[dict]) -> list[dict]:
    """``batches`` without the example index the data pipeline adds (no device input)."""
    return [{k: v for k, v in b.items() if k != "index"} for b in batches]
