"""FSD (ILG): VKD + γ_i·L_I + γ_l·L_L + γ_g·L_G (docs/methods.md §2.6), weights from the
reference ILG script's parameters through ``fsd_jax.terms.weights_from_reference(ε, σ, γ, β)``:
- ε = 0.1: the argparse default of maroo-sky/FSD ``glue_with_cka_ilg.py`` (:871-875, §2.11).
- γ = 0.5: not given by the reference (placeholder default [0]); ours, as in ``fsd_il.py``.
- σ = 0.01: not given by the reference (its default σ = 5 gives negative weights, §9 item 14);
  ours, not searched, so that γ_g = ε·σ = 1e-3, the weight of ``fsd_g.py`` (see there why the
  global term needs a small weight). Then γ_i = γ_l = ε(1−σ)/4 = 0.02475.
- γ_m = β = 0.5: the ILG script passes γ_m as ``--beta`` whose default is a placeholder; 0.5 is
  ``glue_with_cka_g.py``'s default ``--gamma`` (:893-896).
- α = 0.5, T = 5 (``base.py``): the FSD scripts' argparse defaults (§1).

Earlier versions used γ_i = γ_l = 15 (ours), with which the committed records of
docs/results.md were made. ``grid.student_search`` searches the weights per task; each term's
``faithful=True`` runs the reference's loss.

    python train.py --config configs/distill/fsd_ilg.py:rte --workdir runs/rte/fsd_ilg \
        --config.teacher runs/rte/teacher --config.teacher_memory runs/rte/memory \
        --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms
from fsd_jax.terms import weights_from_reference


def get_config(arg=None):
    fsd = weights_from_reference(epsilon=0.1, sigma=0.01, gamma=0.5, beta=0.5)
    return get_base(arg, {**vkd_terms(), **fsd})
