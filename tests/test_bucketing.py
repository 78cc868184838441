"""Exact length bucketing: every masked loss gives the same value and gradient whether a batch
is padded to its bucket or to the full length (FSD-G included: centroids are compared on the
batch's valid positions), and the step compiles once per bucket, never again after warm-up."""

from __future__ import annotations

import jax
import numpy as np

from fsd_jax.data import bucket_padding, iterate_batches
from fsd_jax.data.batching import Encoded
from fsd_jax.models import BertConfig, BertForSequenceClassification, init_params
from fsd_jax.objective import init_objective_state, make_distill_objective
from fsd_jax.terms import parse_terms
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.sharding import Sharder
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import make_train_step

FULL = 24
TERMS = {
    "ce": {"weight": 0.5},
    "kd": {"weight": 0.5, "temperature": 2.0},
    "fsd_intra": {"weight": 1.0},
    "fsd_local": {"weight": 1.0},
    "rkd_distance": {"weight": 1.0},
    "rkd_angle": {"weight": 1.0},
    "minilm": {"weight": 1.0},
    "pkd": {"weight": 1.0, "full_sequence": True},
    "fsd_g": {"weight": 1.0},
    "tiny_att": {"weight": 1.0},
    "tiny_hidden": {"weight": 1.0, "mapping": "mean"},
    "tiny_emb": {"weight": 1.0},
    "emd": {"weight": 1.0},
    "lad": {"weight": 1.0},
}


# The terms that carry state from step to step (EMD's layer weights in aux, LAD's gates, the
# FSD-G memory): a dtype or weak type changing across steps would compile the step again.
STATEFUL = ("ce", "kd", "fsd_intra", "fsd_g", "emd", "lad")


def _setup(names=tuple(TERMS)):
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,  # dropout masks depend on the padded shape
        attention_probs_dropout_prob=0.0,
        label_names=("a", "b"),
    )
    teacher = BertForSequenceClassification(cfg)
    student = BertForSequenceClassification(cfg.replace(num_hidden_layers=2))
    terms = parse_terms({k: TERMS[k] for k in names})
    extra, aux = init_objective_state(terms, teacher.config, student.config, FULL, seed=0)
    params = {"student": init_params(student, 2), **extra}
    params["memory"] = jax.random.normal(jax.random.key(5), (4, FULL, 32))
    teacher_memory = jax.random.normal(jax.random.key(6), (4, FULL, 32))
    objective = make_distill_objective(student, teacher, terms)
    return objective, params, aux, init_params(teacher, 1), teacher_memory


def _batch(n):
    rng = np.random.default_rng(0)
    lengths = np.array([16, 9, 12, 5, 16, 3])
    mask = (np.arange(n)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(1, 100, (6, FULL))[:, :n] * mask
    return {
        "input_ids": ids.astype(np.int32),
        "attention_mask": mask,
        "token_type_ids": np.zeros((6, n), np.int32),
        "labels": np.array([0, 1, 1, 0, 1, 0], np.int32),
        "weights": np.array([1, 1, 1, 1, 1, 0], np.float32),
    }


def test_bucketed_batch_equals_fully_padded_batch():
    objective, params, aux, tp, tm = _setup()

    def run(n):
        fn = jax.value_and_grad(
            lambda p: objective(p, _batch(n), jax.random.key(0), tp, tm, aux=aux), has_aux=True
        )
        (_, (metrics, new_aux)), grads = jax.jit(fn)(params)
        return metrics, new_aux, grads

    short, long = run(16), run(FULL)
    assert set(short[0]) >= {f"fsd_g/{k}" for k in ("distance", "cosine", "memory_cka")}
    for k in short[0]:
        np.testing.assert_allclose(short[0][k], long[0][k], rtol=2e-5, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(short[1:]), jax.tree.leaves(long[1:]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_step_compiles_once_per_bucket():
    objective, params, aux, tp, tm = _setup(STATEFUL)
    rng = np.random.default_rng(1)
    # batches of 8 in order: two of short examples, two up to 16 tokens, one up to 24
    lengths = np.r_[rng.integers(3, 9, 16), rng.integers(9, 17, 16), rng.integers(17, 25, 8)]
    n = len(lengths)
    ids = np.concatenate([rng.integers(1, 100, length) for length in lengths]).astype(np.int32)
    data = Encoded(
        ids=ids,
        type_ids=np.zeros_like(ids),
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        labels=rng.integers(0, 2, n).astype(np.int32),
    )
    pad_to = bucket_padding("8,16", FULL)
    sharder = Sharder.create()
    state = sharder.put_state(TrainState.create(params, make_optimizer(1e-3, 100), 0, aux=aux))
    args = sharder.put_args((tp, tm))
    step = sharder.jit_train_step(make_train_step(objective), state, args)
    seen = set()
    for epoch in range(3):
        for batch in iterate_batches(data, 8, FULL, pad_to=pad_to, epoch=epoch):
            seen.add(batch["input_ids"].shape[1])
            state, _ = step(state, batch, *args)
    assert seen == {8, 16, 24}
    # one program per bucket length, however many batches of it came
    assert step.jitted._cache_size() == len(seen)
