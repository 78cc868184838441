"""FSD-I: VKD + β·L_I on the penultimate layers (docs/methods.md §2.3, §2.6).

Weights and where they come from:
- α = 0.5, T = 5 (``base.py``): the FSD scripts' argparse defaults (maroo-sky/FSD
  ``glue_with_cka_i.py``:797-799; docs/methods.md §1, §2.11).
- β = 30: the same script's argparse default (:797-799), not a tuned value; the paper tuned β
  per task by grid search and does not publish it (§2.8). On real CoLA at β = 30 the term's
  gradient is hundreds of times the CE gradient's on the embeddings and lower layers
  (docs/gradient_balance.md); ``grid.student_search`` searches it (configs/grid.py).
- ``--config.objective.fsd_intra.faithful=True``: the reference's loss (padding counted).

    python train.py --config configs/distill/fsd_i.py:rte --workdir runs/rte/fsd_i \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "fsd_intra": {"weight": 30.0}})
