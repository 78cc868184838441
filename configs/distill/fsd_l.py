"""FSD-L: VKD + β·L_L (docs/methods.md §2.4, §2.6).

Weights and where they come from:
- α = 0.5, T = 5 (``base.py``): the FSD scripts' argparse defaults (§1, §2.11).
- β = 30: the argparse default of maroo-sky/FSD ``glue_with_cka_l.py`` (:647-649), not a tuned
  value (the paper's per-task β is not published, §2.8); searched by ``grid.student_search``.
- Layers: the penultimate pair, as the paper's text says; that script flattens the *last*
  layers (hidden_states[12] vs [6], :255-256): ``--config.objective.fsd_local.teacher_layer -1
  --config.objective.fsd_local.student_layer -1`` runs it so, and
  ``--config.objective.fsd_local.faithful=True`` counts padding as the reference does.

    python train.py --config configs/distill/fsd_l.py:rte --workdir runs/rte/fsd_l \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base, vkd_terms


def get_config(arg=None):
    return get_base(arg, {**vkd_terms(), "fsd_local": {"weight": 30.0}})
