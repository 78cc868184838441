"""Run two distillation steps on several meshes and save each one's metrics and parameters:
``python tests/helpers/sharded_step.py OUT_DIR DATAxMODEL [DATAxMODEL ...]`` writes
``OUT_DIR/DATAxMODEL.npz`` per mesh, each over the first DATA*MODEL devices of this process.

tests/test_sharding.py runs it with 8 host devices (one process: the three meshes share its
start-up and the eager initialisation) and compares the results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from fsd_jax.models import BertConfig, BertForSequenceClassification, init_params
from fsd_jax.objective import init_objective_state, make_distill_objective
from fsd_jax.terms import parse_terms
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.sharding import Sharder
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import make_train_step

TERMS = {
    "ce": {"weight": 0.5},
    "kd": {"weight": 0.5, "temperature": 2.0},
    "fsd_intra": {"weight": 2.0},
    "fsd_local": {"weight": 2.0},
    "rkd_distance": {"weight": 1.0},
    "rkd_angle": {"weight": 1.0},
    "minilm": {"weight": 1.0},
    "fsd_g": {"weight": 0.1},
    "emd": {"weight": 0.1},
    "lad": {"weight": 0.1},
}


def main(out: Path, data_axis: int, model_axis: int) -> None:
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        label_names=("a", "b"),
    )
    teacher = BertForSequenceClassification(cfg)
    student = BertForSequenceClassification(cfg.replace(num_hidden_layers=2))
    terms = parse_terms(TERMS)
    b, n, k = 16, 12, 4
    extra, aux = init_objective_state(terms, teacher.config, student.config, n, seed=0)
    params = {"student": init_params(student, 2), **extra}
    params["memory"] = jax.random.normal(jax.random.key(5), (k, n, 32))
    teacher_memory = jax.random.normal(jax.random.key(6), (k, n, 32))
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, n + 1, b)
    mask = (np.arange(n)[None] < lengths[:, None]).astype(np.int32)
    batch = {
        "input_ids": (rng.integers(1, 100, (b, n)) * mask).astype(np.int32),
        "attention_mask": mask,
        "token_type_ids": np.zeros((b, n), np.int32),
        "labels": rng.integers(0, 2, b).astype(np.int32),
        "weights": np.r_[np.ones(b - 3), np.zeros(3)].astype(np.float32),
    }
    sharder = Sharder.create(data_axis, model_axis, jax.devices()[: data_axis * model_axis])
    tx = make_optimizer(1e-3, 10, group_learning_rates={"gates": 1e-4})
    state = sharder.put_state(TrainState.create(params, tx, seed=0, aux=aux))
    args = sharder.put_args((init_params(teacher, 1), teacher_memory))
    step = sharder.jit_train_step(
        make_train_step(make_distill_objective(student, teacher, terms)), state, args
    )
    saved = {}
    for i in range(2):
        state, metrics = step(state, batch, *args)
        saved |= {f"step{i}/{k}": np.asarray(v) for k, v in metrics.items()}
    flat = traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
    saved |= {f"param/{k}": np.asarray(v) for k, v in flat.items()}
    flat = traverse_util.flatten_dict(jax.device_get(state.aux), sep="/")
    saved |= {f"aux/{k}": np.asarray(v) for k, v in flat.items()}
    saved["devices"] = np.array(sharder.mesh.size)
    np.savez(out, **saved)


if __name__ == "__main__":
    for spec in sys.argv[2:]:
        data, model = (int(x) for x in spec.split("x"))
        main(Path(sys.argv[1]) / f"{spec}.npz", data, model)
