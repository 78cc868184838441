"""FSD-G: VKD + β·L_G with β = 30, γ_m = 0.5 (the FSD-G script's defaults, METHODS.md §2.5–2.6).
Needs the teacher memory from stage ``memory``.

    python train.py --config configs/distill/fsd_g.py:rte --workdir runs/rte/fsd_g \
        --config.teacher runs/rte/teacher --config.teacher_memory runs/rte/memory \
        --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "fsd_g": {"weight": 30.0, "gamma_m": 0.5}})
