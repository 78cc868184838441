"""RKD on flattened penultimate features: VKD + λ_D·L_D + λ_A·L_A with λ_D = 1, λ_A = 2 (the
RKD README's example; FSD's grid values are unknown, METHODS.md §4).

    python train.py --config configs/distill/rkd.py:rte --workdir runs/rte/rkd \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(
        arg, {**vkd_terms(), "rkd_distance": {"weight": 1.0}, "rkd_angle": {"weight": 2.0}}
    )
