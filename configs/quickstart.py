"""The offline quickstart: the built-in synthetic sentiment task and the PyPI MiniLM teacher.

    python train.py --config configs/quickstart.py --workdir runs/quickstart

Fine-tunes the 6-layer teacher, builds its k-means memory, then trains 3-layer students without
distillation, with VKD and with FSD (ILG), and prints their dev accuracy side by side. Runs on 2
CPU cores in about 4.5 minutes. See ``fsd_jax/data/synthetic.py`` for what the task is.
"""

from ml_collections import ConfigDict

from configs import finetune, memory
from configs.distill import fsd_ilg, vkd


def get_config(arg: str | None = None) -> ConfigDict:
    c = finetune.get_config("quickstart")
    c.stage = "quickstart"
    c.student_layers = "first:3"
    c.data.max_seq_length = 32  # the synthetic sentences are at most 27 tokens
    c.train.checkpoint_every = 100
    # The teacher learns the task in one epoch; the shallow students need a larger step size
    # (6e-4 diverges) and two epochs.
    c.teacher_train = ConfigDict({"num_epochs": 1.0, "learning_rate": 1e-4})
    c.train.num_epochs = 2.0
    c.train.learning_rate = 3e-4
    c.memory = memory.get_config("quickstart").memory
    c.distill_methods = "vkd,fsd_ilg"  # run order of the objectives below
    c.distill = ConfigDict(
        {
            "vkd": vkd.get_config("quickstart").objective,
            "fsd_ilg": fsd_ilg.get_config("quickstart").objective,
        }
    )
    return c
