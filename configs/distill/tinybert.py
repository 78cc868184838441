"""TinyBERT-style task distillation and the variants of the loss study (docs/methods.md §6).

``get_config("task[,variant...]")``. Default: two phases as in TinyBERT's ``task_distill.py``:
``intermediate`` (L_attn on masked pre-softmax scores + L_hidn through W_h + L_emb, uniform
mapping m ↔ 2m for 6 → 3 layers, constant lr 5e-5, 10 epochs) then ``prediction`` (soft
cross-entropy to the teacher at T = 1, lr 3e-5, 10 % warm-up, 3 epochs), each phase in its own
sub-directory of the workdir. Variants (comma-separated, combinable):

- ``kl``: attention loss = row-wise KL between attention distributions (instead of score MSE);
- ``random`` / ``mean``: random (seeded, sorted) or block-mean layer mapping instead of uniform;
- ``reweighted``: w_att = 0.2, w_rep = 1.0 (the study re-weights the two losses; its values
  are unknown, so these are ours);
- ``one_stage``: a single run with all four terms (w_pred = 1).

    python train.py --config configs/distill/tinybert.py:mrpc,kl --workdir runs/mrpc/tinybert_kl \
        --config.teacher runs/mrpc/teacher --config.data.data_dir ../shared/glue_data

Weight decay 0.01 (not bias / LayerNorm) as in the reference; no data augmentation; the final
model is reported (the reference keeps the best dev checkpoint, docs/methods.md §9 item 21).
"""

from ml_collections import ConfigDict

from configs.distill.base import get_base
from fsd_jax.terms import with_defaults

VARIANTS = ("kl", "random", "mean", "reweighted", "one_stage")


def get_config(arg=None):
    parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
    task = parts[0] if parts and parts[0] not in VARIANTS else None
    variants = set(parts[1:] if task else parts)
    unknown = sorted(variants - set(VARIANTS))
    if unknown:
        raise ValueError(f"tinybert variants {unknown}: expected some of {', '.join(VARIANTS)}")
    mapping = "random" if "random" in variants else "mean" if "mean" in variants else "uniform"
    w_att, w_rep = (0.2, 1.0) if "reweighted" in variants else (1.0, 1.0)
    intermediate = {
        "tiny_att": {
            "weight": w_att,
            "mapping": mapping,
            "loss": "kl_probs" if "kl" in variants else "mse_scores",
        },
        "tiny_hidden": {"weight": w_rep, "mapping": mapping},
        "tiny_emb": {"weight": w_rep},
    }
    prediction = {"tiny_pred": {"weight": 1.0, "temperature": 1.0}}
    c = get_base(task, {**intermediate, **prediction})
    c.train.weight_decay = 0.01
    if "one_stage" in variants:
        return c
    c.phases = ConfigDict(
        {
            "intermediate": {
                "objective": with_defaults(intermediate),
                "train": {"schedule": "constant", "num_epochs": 10.0, "learning_rate": 5e-5},
            },
            "prediction": {
                "objective": with_defaults(prediction),
                "train": {"learning_rate": 3e-5, "warmup_ratio": 0.1, "num_epochs": 3.0},
            },
        }
    )
    return c
