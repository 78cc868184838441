"""VKD (Hinton KD): 0.5·CE + 0.5·KD(T = 5) (docs/methods.md §1). α = 0.5 and T = 5 are the FSD
scripts' argparse defaults (maroo-sky/FSD ``glue_with_cka_i.py``:797-799; the repository has no
VKD script: VKD is any FSD script with the FSD weight 0); the paper's VKD grid is not published.

    python train.py --config configs/distill/vkd.py:rte --workdir runs/rte/vkd \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, vkd_terms())
