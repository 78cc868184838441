"""FSD (ILG): VKD + γ_i·L_I + γ_l·L_L + γ_g·L_G (METHODS.md §2.6).

Weights from the reference script's parameters via
``fsd_jax.objective.weights_from_reference(ε = 60, σ = 0.5, γ = 0.5, β = 0.5)``:
γ_i = γ_l = 7.5, γ_g = 30, γ_m = 0.5 (our choice; the paper's per-task values are unknown).

    python train.py --config configs/distill/fsd_ilg.py:rte --workdir runs/rte/fsd_ilg \
        --config.teacher runs/rte/teacher --config.teacher_memory runs/rte/memory \
        --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms
from fsd_jax.objective import weights_from_reference


def get_config(arg=None):
    w = weights_from_reference(epsilon=60.0, sigma=0.5, gamma=0.5, beta=0.5)
    return get_base(
        arg,
        {
            **vkd_terms(),
            "fsd_intra": {"weight": w["fsd_intra"]},
            "fsd_local": {"weight": w["fsd_local"]},
            "fsd_g": {"weight": w["fsd_global"], "gamma_m": w["gamma_m"]},
        },
    )
