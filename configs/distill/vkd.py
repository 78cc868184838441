"""VKD (Hinton KD): 0.5·CE + 0.5·KD(T = 5) (METHODS.md §1).

    python train.py --config configs/distill/vkd.py:rte --workdir runs/rte/vkd \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, vkd_terms())
