"""FSD-IL (FSD without the memory term): VKD + γ_i·L_I + γ_l·L_L (METHODS.md §2.6).

Weights come from the reference script's parameters through
``fsd_jax.terms.weights_from_reference(ε, σ = 0, γ, β)``: ε = 60, γ = 0.5 give
γ_i = γ_l = 15, so the structure terms together weigh as much as FSD-I's or FSD-L's β = 30.

    python train.py --config configs/distill/fsd_il.py:rte --workdir runs/rte/fsd_il \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms
from fsd_jax.terms import weights_from_reference


def get_config(arg=None):
    fsd = weights_from_reference(epsilon=60.0, sigma=0.0, gamma=0.5, beta=0.0)
    return get_base(arg, {**vkd_terms(), **fsd})
