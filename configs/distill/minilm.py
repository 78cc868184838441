"""MiniLM at fine-tuning: VKD + β·(L_AT + L_VR) on the last layers, β = 1 (how the FSD paper
weighted it is unknown, METHODS.md §5). Teacher and student need the same number of heads.

    python train.py --config configs/distill/minilm.py:rte --workdir runs/rte/minilm \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "minilm": {"weight": 1.0}})
