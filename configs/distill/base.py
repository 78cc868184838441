"""Shared settings of the distillation configs (docs/methods.md §0.2), with the hard-label /
soft-label split of VKD: ``α·CE + (1 − α)·KD(T)``, α = 0.5, T = 5 (the FSD scripts' defaults).

Each method file adds its terms; the student is the first half of the pre-trained checkpoint
(``first:3`` of the 6-layer MiniLM; use ``--config.model.layers first:6`` for BERT-base).
"""

from ml_collections import ConfigDict, config_dict

from configs import finetune
from fsd_jax.terms import with_defaults

ALPHA = 0.5
TEMPERATURE = 5.0


def get_base(task: str | None, terms: dict) -> ConfigDict:
    c = finetune.get_config(task)
    c.stage = "distill"
    c.teacher = config_dict.placeholder(str)  # workdir of stage finetune, or an HF directory
    c.teacher_memory = config_dict.placeholder(str)  # workdir of stage memory (FSD-G terms)
    # teacher outputs computed once per run instead of every step (KD/FSD/PKD/RKD terms):
    # "off", "on" (error if a term cannot use it) or "auto" (on when every term can)
    c.teacher_cache = "off"
    c.model.layers = "first:3"
    c.train.learning_rate = 5e-5
    # gradient balance: per term and layer, the norm of the weighted term's gradient and its
    # cosine with the CE gradient, at step 1 and every N steps (one forward and one backward
    # pass per term on those steps only; 0: off); medians in results.json
    c.train.balance_every = 200
    c.objective = ConfigDict(with_defaults(terms))
    return c


def vkd_terms(alpha: float = ALPHA, temperature: float = TEMPERATURE) -> dict:
    return {"ce": {"weight": alpha}, "kd": {"weight": 1.0 - alpha, "temperature": temperature}}
