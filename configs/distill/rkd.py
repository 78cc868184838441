"""RKD on flattened penultimate features: VKD + λ_D·L_D + λ_A·L_A with λ_D = 1, λ_A = 2 (the
RKD README's example ``--dist_ratio 1 --angle_ratio 2``, lenscloth/RKD; their argparse
defaults are 0; FSD's grid values are unknown, docs/methods.md §4). α = 0.5, T = 5: the FSD
scripts' defaults (§1).

    python train.py --config configs/distill/rkd.py:rte --workdir runs/rte/rkd \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(
        arg, {**vkd_terms(), "rkd_distance": {"weight": 1.0}, "rkd_angle": {"weight": 2.0}}
    )
