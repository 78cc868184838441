"""Training state: a pytree that jit, orbax and sharding all handle."""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Step counter, trainable params, optimiser state and the dropout key.

    ``params`` is whatever the objective trains (a student's params, later also extra tables
    such as a student memory); ``aux`` holds non-trainable state that the step updates.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    aux: Any = struct.field(default_factory=dict)
    tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation, seed: int, aux: Any = None):
        return cls(
            step=jax.numpy.zeros((), jax.numpy.int32),
            params=params,
            opt_state=tx.init(params),
            # raw uint32 key data: checkpointable as a plain array
            rng=jax.random.key_data(jax.random.key(seed)),
            aux=aux if aux is not None else {},
            tx=tx,
        )

    def apply_gradients(self, grads: Any, rng: jax.Array, aux: Any | None = None) -> TrainState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            rng=rng,
            aux=self.aux if aux is None else aux,
        )
