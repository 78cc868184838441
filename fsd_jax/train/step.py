"""The jitted train step, parameterised by an objective."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from fsd_jax.losses import label_loss
from fsd_jax.models import BertForSequenceClassification, model_inputs

Batch = Mapping[str, jax.Array]
# objective(params, batch, dropout_key, *step_args, aux=state) -> (loss, (metrics, new_state)):
# metrics are scalars to log; step_args are constants of the step such as the teacher's
# parameters; state is what the objective carries from step to step (EMD's layer weights)
Objective = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def supervised_objective(model: BertForSequenceClassification) -> Objective:
    """Cross-entropy with the gold label (MSE for a one-output regression head)."""

    def objective(params, batch, key, *, aux=None):
        out = model.apply(
            {"params": params}, **model_inputs(batch), deterministic=False, rngs={"dropout": key}
        )
        loss = label_loss(out.logits, batch["labels"], batch["weights"])
        return loss, ({"loss": loss, "ce": loss}, aux or {})

    return objective


def step_keys(state) -> tuple[jax.Array, jax.Array]:
    """(the state's next rng, this step's dropout key): what the train step draws from
    ``state.rng``, so that a probe of the step (gradient balance) sees the same dropout."""
    rng, key = jax.random.split(jax.random.wrap_key_data(state.rng))
    return rng, key


def make_train_step(objective: Objective) -> Callable:
    """``train_step(state, batch, *step_args) -> (state, metrics)``: one optimiser step.

    ``step_args`` (e.g. the teacher's parameters) are passed to the objective and get no
    gradient; the objective gets ``aux=state.aux`` and its returned state is stored in the
    train state. Pure; jit it (the caller chooses shardings and buffer donation).
    """

    def train_step(state, batch, *step_args):
        rng, key = step_keys(state)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (_, (metrics, aux)), grads = grad_fn(state.params, batch, key, *step_args, aux=state.aux)
        metrics = dict(metrics)
        metrics["grad_norm"] = jnp.sqrt(
            sum(jnp.sum(g.astype(jnp.float32) ** 2) for g in jax.tree.leaves(grads))
        )
        return state.apply_gradients(grads, jax.random.key_data(rng), aux), metrics

    return train_step


def make_predict_fn(model: BertForSequenceClassification) -> Callable:
    """Jitted ``predict(params, batch) -> logits`` in eval mode."""

    @jax.jit
    def predict(params, batch):
        return model.apply({"params": params}, **model_inputs(batch)).logits

    return predict
