"""FSD-I: VKD + β·L_I on the penultimate layers, β = 30 (the FSD scripts' default,
METHODS.md §2.3, §2.6). The paper's per-task β was found by grid search and is not known.

    python train.py --config configs/distill/fsd_i.py:rte --workdir runs/rte/fsd_i \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "fsd_intra": {"weight": 30.0}})
