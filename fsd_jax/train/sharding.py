"""One sharded train step for 1 CPU, 1 GPU, 8 GPUs or a TPU pod.

A 2-D mesh ``("data", "model")``: batches are split along ``data``; parameters and optimiser
state are replicated, or split along ``model`` on their last axis when it divides evenly (a
simple parameter sharding for models that do not fit one device). The step is one jitted
program with explicit in/out shardings; XLA inserts the collectives, so batch-level losses
(FSD local, RKD, memory terms) see the global batch and results do not depend on the device
count.

Axes are ``AxisType.Auto``: jax 0.10's ``jax.make_mesh`` default (Explicit) breaks the
embedding gather in the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


class ShardedStep:
    """``step(state, numpy_batch, *step_args)``: puts the batch on the mesh, then runs
    ``jitted`` (kept as an attribute for compile counting and cost analysis)."""

    def __init__(self, jitted: Any, put_batch: Callable[[Any], Any]):
        self.jitted = jitted
        self.put_batch = put_batch

    def __call__(self, state: Any, batch: Any, *args: Any) -> Any:
        return self.jitted(state, self.put_batch(batch), *args)


@dataclasses.dataclass(frozen=True)
class Sharder:
    """Places state and batches on a ``("data", "model")`` mesh and jits steps over it."""

    mesh: Mesh

    @classmethod
    def create(cls, data: int = -1, model: int = 1, devices: Any = None) -> Sharder:
        """A mesh over ``devices`` (default: all); ``data=-1`` uses every device left."""
        devices = list(jax.devices() if devices is None else devices)
        if model < 1 or len(devices) % model:
            raise ValueError(
                f"mesh.model={model}: must be >= 1 and divide the device count ({len(devices)})"
            )
        if data == -1:
            data = len(devices) // model
        if data < 1 or data * model != len(devices):
            raise ValueError(
                f"mesh.data={data} x mesh.model={model} != {len(devices)} devices "
                "(use mesh.data=-1 for all devices)"
            )
        mesh = jax.make_mesh(
            (data, model),
            ("data", "model"),
            axis_types=(AxisType.Auto, AxisType.Auto),
            devices=devices,
        )
        return cls(mesh)

    @classmethod
    def from_config(cls, config: Any) -> Sharder:
        m = config.get("mesh") or {}
        return cls.create(int(m.get("data", -1)), int(m.get("model", 1)))

    @property
    def data_size(self) -> int:
        return self.mesh.shape["data"]

    @property
    def model_size(self) -> int:
        return self.mesh.shape["model"]

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def leaf_sharding(self, x: Any) -> NamedSharding:
        """Split the last axis of matrices over ``model`` when it divides; else replicate."""
        shape = np.shape(x)
        if self.model_size > 1 and len(shape) >= 2 and shape[-1] % self.model_size == 0:
            return NamedSharding(self.mesh, P(*([None] * (len(shape) - 1)), "model"))
        return self.replicated()

    def state_shardings(self, state: Any) -> Any:
        return jax.tree.map(self.leaf_sharding, state)

    def put_state(self, state: Any) -> Any:
        return jax.device_put(state, self.state_shardings(state))

    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("data"))

    def check_batch_size(self, batch_size: int, what: str = "train.batch_size") -> None:
        if batch_size % self.data_size:
            raise ValueError(
                f"{what}={batch_size}: must be a multiple of the data-parallel size "
                f"({self.data_size} devices; set mesh.data to use fewer)"
            )

    def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """The global batch as arrays split along ``data`` (rows of this process on each host)."""
        sharding = self.batch_sharding()
        if jax.process_count() == 1:
            return {k: jax.device_put(v, sharding) for k, v in batch.items()}
        # every process holds the same global batch; each device takes its own rows, whatever
        # the order of devices in the mesh
        return {
            k: jax.make_array_from_callback(v.shape, sharding, _rows_of(v))
            for k, v in batch.items()
        }

    def gather(self, x: jax.Array) -> np.ndarray:
        """A (possibly multi-host) array as one NumPy array on this host."""
        if jax.process_count() == 1:
            return np.asarray(x)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    def predict_fn(self, predict: Callable) -> Callable:
        """Wrap a jitted ``predict(params, batch)``: batches split along ``data``."""
        return lambda params, batch: self.gather(predict(params, self.put_batch(batch)))

    def jit_train_step(self, train_step: Callable, state: Any, step_args: tuple) -> Callable:
        """``step(state, numpy_batch, *step_args)``: the jitted, sharded, state-donating step."""
        state_sh = self.state_shardings(state)
        return self._jit(train_step, state, step_args, (state_sh, self.replicated()), donate=True)

    def jit_probe(self, probe: Callable, state: Any, step_args: tuple) -> Callable:
        """``probe(state, numpy_batch, *step_args)`` jitted as the train step is, without
        donating the state; its outputs replicated (e.g. the gradient-balance probe)."""
        return self._jit(probe, state, step_args, self.replicated(), donate=False)

    def _jit(self, fn: Callable, state: Any, step_args: tuple, out: Any, donate: bool) -> Callable:
        args_sh = tuple(jax.tree.map(lambda _: self.replicated(), a) for a in step_args)
        jitted = jax.jit(
            fn,
            in_shardings=(self.state_shardings(state), self.batch_sharding(), *args_sh),
            out_shardings=out,
            donate_argnums=0 if donate else (),
        )
        return ShardedStep(jitted, self.put_batch)

    def put_args(self, step_args: tuple) -> tuple:
        """Step constants (teacher parameters, teacher memory), replicated once up front."""
        return tuple(jax.device_put(a, self.replicated()) for a in step_args)


def _rows_of(v: np.ndarray) -> Callable[[Any], np.ndarray]:
    return lambda index: v[index]


def initialize_multihost(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run (``jax.distributed.initialize``): one process per host, each
    feeding its own rows of every global batch.

    Arguments left as None come from the cluster (TPU pods, SLURM, Open MPI, Kubernetes:
    JAX's auto-detection) or, for the coordinator, ``JAX_COORDINATOR_ADDRESS``. CPU devices
    talk through gloo, so a CPU cluster (or several processes on one machine) runs the same
    program as GPUs and TPUs. SIGTERM then goes to JAX's preemption service, which makes every
    process stop at the same step (:func:`preemption_point`).
    """
    if jax.distributed.is_initialized():
        return
    # CPU collectives across processes need an implementation; the default has none
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"multihost: {e} (pass --coordinator_address, --num_processes and --process_id, "
            "or run under a cluster JAX detects: TPU pod, SLURM, Open MPI, Kubernetes)"
        ) from None


def is_primary() -> bool:
    """True on the process that writes the workdir's logs, results and export (process 0);
    checkpoints are written by every process together."""
    return jax.process_index() == 0


def preemption_point(step: int) -> bool:
    """In a multi-process run: True on every process at the same step once any of them got
    SIGTERM (JAX's preemption service); always False in a single process."""
    if jax.process_count() == 1:
        return False
    from jax.experimental import multihost_utils

    return multihost_utils.reached_preemption_sync_point(step)
