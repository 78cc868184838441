"""MiniLM at fine-tuning: VKD + β·(L_AT + L_VR) on the last layers (docs/methods.md §5).
L_AT + L_VR unweighted is MiniLM's own loss; how the FSD paper weighted it against CE and KD is
unknown, so β = 1 is ours, not searched. α = 0.5, T = 5: the FSD scripts' defaults (§1). Teacher and student need the same number of heads.

    python train.py --config configs/distill/minilm.py:rte --workdir runs/rte/minilm \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "minilm": {"weight": 1.0}})
