"""Mixed precision: bf16 compute with float32 parameters, optimiser state and losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.models import BertConfig, BertForSequenceClassification, init_params
from fsd_jax.objective import make_distill_objective
from fsd_jax.terms import parse_terms
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.sharding import Sharder
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import make_train_step

TERMS = {
    "ce": {"weight": 0.5},
    "kd": {"weight": 0.5, "temperature": 2.0},
    "fsd_intra": {"weight": 1.0},
    "fsd_local": {"weight": 1.0},
    "fsd_g": {"weight": 0.1},
}


def _step(dtype):
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        label_names=("a", "b"),
    )
    teacher = BertForSequenceClassification(cfg, dtype=dtype)
    student = BertForSequenceClassification(cfg.replace(num_hidden_layers=1), dtype=dtype)
    objective = make_distill_objective(student, teacher, parse_terms(TERMS))
    params = {
        "student": init_params(student, 2),
        "memory": jax.random.normal(jax.random.key(5), (3, 10, 32)),
    }
    rng = np.random.default_rng(0)
    mask = (np.arange(10)[None] < np.array([10, 6, 8, 4])[:, None]).astype(np.int32)
    batch = {
        "input_ids": (rng.integers(1, 100, (4, 10)) * mask).astype(np.int32),
        "attention_mask": mask,
        "token_type_ids": np.zeros((4, 10), np.int32),
        "labels": np.array([0, 1, 1, 0], np.int32),
        "weights": np.ones(4, np.float32),
    }
    sharder = Sharder.create()
    state = sharder.put_state(TrainState.create(params, make_optimizer(1e-3, 10), 0))
    args = sharder.put_args(
        (init_params(teacher, 1), jax.random.normal(jax.random.key(6), (3, 10, 32)))
    )
    step = sharder.jit_train_step(make_train_step(objective), state, args)
    return step(state, batch, *args)


def test_bf16_compute_keeps_float32_state_and_losses():
    state, metrics = _step(jnp.bfloat16)
    leaves = jax.tree.leaves((state.params, state.opt_state))
    assert all(x.dtype in (jnp.float32, jnp.int32) for x in leaves)
    assert all(v.dtype == jnp.float32 and np.isfinite(v) for v in metrics.values())
    _, reference = _step(jnp.float32)
    for k in TERMS:
        np.testing.assert_allclose(metrics[k], reference[k], rtol=0.1, atol=0.02, err_msg=k)
