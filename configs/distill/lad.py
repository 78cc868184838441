"""LAD (docs/methods.md §8): ``w_hard·CE + w_soft·T²·KL + μ·(1/N_s)·Σ_i MSE(H_s^i, A_{ik})`` with the
gated teacher aggregates A trained jointly with the student; the gates have their own AdamW
(``train.group_learning_rates.gates``). Per-task settings from the reference's 6-layer scripts
(lr / gate lr / epochs / warm-up / T / soft, hard / μ); other tasks use MRPC's.

    python train.py --config configs/distill/lad.py:rte --workdir runs/rte/lad \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data

Differences from the reference: the student keeps its teacher-initialised embeddings (the
reference leaves them random, docs/methods.md §9 item 24); LayerNorm statistics of the gates use
real tokens only (``--config.objective.lad.faithful=True`` for all L·d entries).
"""

from ml_collections import ConfigDict

from configs.distill.base import get_base

# task: (lr, gate lr, epochs, warm-up, T, w_soft, w_hard, mu)
SETTINGS = {
    "mnli": (1e-4, 5e-7, 4.0, 0.1, 10.0, 0.5, 0.5, 500.0),
    "mrpc": (7e-4, 5e-6, 20.0, 0.1, 10.0, 0.5, 0.5, 500.0),
    "qnli": (1e-4, 1e-6, 4.0, 0.1, 10.0, 0.5, 0.5, 1000.0),
    "qqp": (5e-4, 5e-7, 5.0, 0.1, 10.0, 0.7, 0.3, 1000.0),
    "rte": (7e-4, 3e-5, 10.0, 0.1, 10.0, 0.5, 0.5, 1000.0),
    "sst2": (1e-4, 1e-6, 20.0, 0.3, 20.0, 0.5, 0.5, 1000.0),
}


def get_config(arg=None):
    lr, gate_lr, epochs, warmup, t, soft, hard, mu = SETTINGS.get(arg or "", SETTINGS["mrpc"])
    c = get_base(
        arg,
        {
            "ce": {"weight": hard},
            "kd": {"weight": soft, "temperature": t},
            "lad": {"weight": mu, "mapping": "uniform"},
        },
    )
    c.train.learning_rate = lr
    c.train.group_learning_rates = ConfigDict({"gates": gate_lr})
    c.train.num_epochs = epochs
    c.train.warmup_ratio = warmup
    c.train.weight_decay = 0.01
    return c
