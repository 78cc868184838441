"""FSD (ILG): VKD + γ_i·L_I + γ_l·L_L + γ_g·L_G with γ_i = γ_l = 15 (as FSD-IL), γ_g = 1e-3 and
γ_m = 0.5 (METHODS.md §2.6; why γ_g is small: see ``fsd_g.py``). Users of the reference script's
(ε, σ, γ, β) get explicit weights from ``fsd_jax.terms.weights_from_reference``.

    python train.py --config configs/distill/fsd_ilg.py:rte --workdir runs/rte/fsd_ilg \
        --config.teacher runs/rte/teacher --config.teacher_memory runs/rte/memory \
        --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(
        arg,
        {
            **vkd_terms(),
            "fsd_intra": {"weight": 15.0},
            "fsd_local": {"weight": 15.0},
            "fsd_g": {"weight": 1e-3, "gamma_m": 0.5},
        },
    )
