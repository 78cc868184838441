"""Build the FSD teacher memory: k-means over the fine-tuned teacher's penultimate features.

    python train.py --config configs/memory.py:rte --workdir runs/rte/memory \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data

K = 100 (300 for MNLI and QQP) unless ``--config.memory.num_clusters`` says otherwise; three
streamed Lloyd passes from K random training examples (docs/methods.md §2.5, clean mode).
"""

from ml_collections import ConfigDict, config_dict

from configs import finetune


def get_config(arg: str | None = None) -> ConfigDict:
    c = finetune.get_config(arg)
    c.stage = "memory"
    c.teacher = config_dict.placeholder(str)
    c.memory = ConfigDict()
    c.memory.num_clusters = 0  # 0: the task's default (100, or 300 for MNLI and QQP)
    c.memory.num_passes = 3
    c.memory.layer = -2  # penultimate hidden states
    c.memory.faithful = False  # True keeps padding positions in the features
    # Opt-in: a file for the teacher's features as a bf16 memmap (N × L·d × 2 bytes; 77 GB for
    # MNLI with BERT-base). Passes after the first, and later builds, read it instead of
    # running the teacher again. "" = recompute every pass.
    c.memory.feature_cache = ""
    return c
