"""FSD-L: VKD + β·L_L on the penultimate layers, β = 30 (the FSD scripts' default,
METHODS.md §2.4, §2.6).

    python train.py --config configs/distill/fsd_l.py:rte --workdir runs/rte/fsd_l \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "fsd_local": {"weight": 30.0}})
