"""The training loop shared by every stage: resume, steps, logging, checkpoints."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from fsd_jax.interrupt import Interrupted, stop_requests
from fsd_jax.train.checkpoint import Checkpointer
from fsd_jax.train.oom import is_out_of_memory, out_of_memory_error
from fsd_jax.train.sharding import preemption_point
from fsd_jax.train.state import TrainState
from fsd_jax.train.writer import MetricWriter

log = logging.getLogger(__name__)

BatchFn = Callable[[int, int], Iterator[dict[str, np.ndarray]]]


class ConfigMismatchError(ValueError):
    """The workdir holds a run made with a different configuration."""


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; nothing after the last good checkpoint is kept."""


def _stop_at(
    step: int,
    state: TrainState,
    sums: dict | None,
    count: int,
    checkpointer: Checkpointer,
    fingerprint: dict,
    signum: int,
    bar: Any,
) -> None:
    """Checkpoint ``state`` at ``step`` (unless that step is saved already) and raise
    :class:`Interrupted`."""
    bar.close()
    if step not in checkpointer.manager.all_steps():
        if sums is not None:  # never checkpoint a diverged state
            _check_finite(float(sums["loss"]), step - count + 1, step, checkpointer)
        checkpointer.save(step, state, {"fingerprint": fingerprint})
    checkpointer.wait()
    raise Interrupted(signum, step, checkpointer.directory)


def _check_finite(window_loss: float, first: int, last: int, checkpointer: Checkpointer) -> None:
    if np.isfinite(window_loss):
        return
    good = checkpointer.manager.latest_step()
    kept = f"checkpoint of step {good} kept" if good is not None else "no checkpoint written"
    raise NonFiniteLossError(
        f"training loss is {window_loss} in steps {first}..{last} ({kept}): lower "
        "train.learning_rate, check the inputs for NaN, or the loss weights"
    )


# settings added after checkpoints were written without them: a checkpoint that lacks one
# was made with this value
ADDED_SETTINGS = {"teacher_cache": "off"}


def _with_term_defaults(fingerprint: dict) -> dict:
    """Objective options a config left out, filled with their defaults: a checkpoint written
    before the configs listed every option (or with an option added since) still resumes."""
    from fsd_jax.terms import with_defaults

    named = {
        k.split(".")[1] for k in fingerprint if k.startswith("objective.") and k.count(".") == 2
    }
    out = dict(fingerprint)
    for name, options in with_defaults({n: {} for n in named}).items():
        for opt, value in options.items():
            out.setdefault(f"objective.{name}.{opt}", value)
    return out


def restore(checkpointer: Checkpointer, state: TrainState, fingerprint: dict) -> TrainState:
    """``state`` from the newest readable checkpoint, or ``state`` itself if there is none.

    Raises ConfigMismatchError when the checkpoint came from a run whose settings differ in
    anything that changes training (``fingerprint``).
    """
    found = checkpointer.restore_latest(state)
    if found is None:
        return state
    restored, meta, step = found
    old = _with_term_defaults({**ADDED_SETTINGS, **meta.get("fingerprint", {})})
    new = _with_term_defaults(fingerprint)
    diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigMismatchError(
            f"{checkpointer.directory}: checkpoint at step {step} was made with other settings "
            f"({detail}); use a new --workdir or restore the settings"
        )
    log.info("resuming from %s step %d", checkpointer.directory, step)
    return restored


@dataclass(frozen=True)
class Loop:
    """How long a run trains (``total_steps``; epochs of ``steps_per_epoch``), where its state
    and logs go, and how often."""

    steps_per_epoch: int
    total_steps: int
    checkpointer: Checkpointer
    writer: MetricWriter
    fingerprint: dict  # the settings a resumed run must share (checked by :func:`restore`)
    checkpoint_every: int = 500
    log_every: int = 50
    progress: bool = True
    desc: str = "train"


def fit(
    state: TrainState,
    train_step: Callable,
    batches: BatchFn,
    loop: Loop,
    *,
    step_args: tuple = (),
    on_step: Callable[[int], None] | None = None,
    probe: Callable[..., dict[str, float]] | None = None,
    probe_every: int = 0,
) -> tuple[TrainState, dict[str, Any]]:
    """Run ``train_step`` from ``state.step`` to ``loop.total_steps``.

    The data order depends only on the step (epoch = step // steps_per_epoch), so a resumed
    run sees exactly the batches the interrupted one would have. Metrics are summed on the
    device and fetched every ``log_every`` steps, so the loop does not wait on the device.
    ``probe(state, batch, *step_args) -> scalars`` (the gradient balance) runs before the first
    step of a run from scratch and before every step whose number is a multiple of
    ``probe_every``, on that step's state and batch; its scalars go to the writer under
    ``balance/`` at that step number, and its time is left out of the throughput.

    Returns:
      The final state and statistics: throughput (examples/s excludes the first, compiling
      step) and ``train_metrics``, the mean of every logged metric over the last log window.
    """
    steps_per_epoch, total_steps = loop.steps_per_epoch, loop.total_steps
    checkpointer, writer, fingerprint = loop.checkpointer, loop.writer, loop.fingerprint
    start = int(state.step)
    step = start
    sums: dict[str, jax.Array] | None = None
    count = 0
    examples = 0.0
    t0 = time.perf_counter()
    t_first = None
    probe_s = 0.0
    last: dict[str, float] = {}
    bar = tqdm(
        total=total_steps,
        initial=start,
        desc=loop.desc,
        disable=not loop.progress,
        dynamic_ncols=True,
    )
    multiprocess = jax.process_count() > 1
    shape: tuple[int, ...] = ()
    try:
        with stop_requests(multiprocess) as stop:
            while step < total_steps:
                epoch, offset = divmod(step, steps_per_epoch)
                for batch in batches(epoch, offset):
                    if "input_ids" in batch:
                        shape = tuple(np.shape(batch["input_ids"]))
                    if probe is not None and (
                        step == 0 or (probe_every > 0 and (step + 1) % probe_every == 0)
                    ):
                        jax.block_until_ready(state.step)
                        t_probe = time.perf_counter()
                        writer.write(step + 1, probe(state, batch, *step_args), prefix="balance/")
                        if t_first is not None:
                            probe_s += time.perf_counter() - t_probe
                    state, metrics = train_step(state, batch, *step_args)
                    step += 1
                    if t_first is None:
                        jax.block_until_ready(state.step)
                        t_first = time.perf_counter()
                    else:
                        examples += float(batch["weights"].sum())
                    sums = (
                        metrics if sums is None else jax.tree.map(lambda a, b: a + b, sums, metrics)
                    )
                    count += 1
                    bar.update(1)
                    if step % loop.log_every == 0 or step == total_steps:
                        means = {k: float(v) / count for k, v in jax.device_get(sums).items()}
                        _check_finite(means["loss"], step - count + 1, step, checkpointer)
                        means["epoch"] = step / steps_per_epoch
                        writer.write(step, means, prefix="train/")
                        last = means
                        bar.set_postfix(loss=f"{means['loss']:.4f}")
                        sums, count = None, 0
                    if step % loop.checkpoint_every == 0 and step < total_steps:
                        if sums is not None:  # never checkpoint a diverged state
                            _check_finite(float(sums["loss"]), step - count + 1, step, checkpointer)
                        checkpointer.save(step, state, {"fingerprint": fingerprint})
                    if on_step is not None:
                        on_step(step)
                    # several processes stop together, at the step JAX's preemption service
                    # agrees on once any of them was signalled
                    stopping = preemption_point(step) if multiprocess else bool(stop)
                    if stopping and step < total_steps:
                        signum = stop[0] if stop else signal.SIGTERM
                        _stop_at(step, state, sums, count, checkpointer, fingerprint, signum, bar)
                    if step >= total_steps:
                        break
        if step > start:  # else the state came from the checkpoint of total_steps itself
            checkpointer.save(total_steps, state, {"fingerprint": fingerprint}, force=True)
        checkpointer.wait()
        jax.block_until_ready(state.params)
    except jax.errors.JaxRuntimeError as e:
        if not is_out_of_memory(e):
            raise
        bar.close()
        good = checkpointer.manager.latest_step()
        kept = f"checkpoint of step {good} kept" if good is not None else "no checkpoint written"
        # asynchronous dispatch: the failing step is the next or one of the few before it
        raise out_of_memory_error(
            e, f"at or before training step {step + 1} ({kept})", shape, "train.batch_size"
        ) from None
    bar.close()
    end = time.perf_counter()
    steady = end - t_first - probe_s if t_first is not None else 0.0
    stats = {
        "steps": total_steps,
        "steps_this_run": total_steps - start,
        "wall_time_s": end - t0,
        **({"probe_s": probe_s} if probe is not None else {}),
        "train_examples_per_s": examples / steady if steady > 0 else float("nan"),
        "train_metrics": last,
    }
    cache_size = getattr(getattr(train_step, "jitted", None), "_cache_size", None)
    if cache_size is not None:  # one program per bucket length; more means recompilation
        stats["compiled_step_shapes"] = int(cache_size())
    return state, stats
