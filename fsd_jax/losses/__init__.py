"""Distillation and supervised losses: pure functions of arrays (and masks), float32 inside.

Batch-level losses take optional per-example ``weights`` (B,); rows with weight 0 (the padded
last batch) do not count.
"""

from fsd_jax.losses.attention import attention_kl, minilm, value_relation_logits
from fsd_jax.losses.emd import emd_flow, transport_simplex, update_layer_weights
from fsd_jax.losses.fsd import (
    flatten_tokens,
    fsd_global,
    fsd_global_terms,
    fsd_intra,
    fsd_intra_reference,
    fsd_local,
    fsd_local_reference,
    memory_gram,
)
from fsd_jax.losses.intermediate import (
    attention_probs_mse,
    attention_scores_mse,
    hidden_cosine,
    hidden_mse,
    soft_cross_entropy,
    soft_cross_entropy_reference,
)
from fsd_jax.losses.lad import init_lad_gates, lad_aggregate
from fsd_jax.losses.logits import cross_entropy, kd, kd_reference, label_loss, mse, softmax_kl
from fsd_jax.losses.patient import pkd, pkd_teacher_layers
from fsd_jax.losses.reduction import weighted_mean
from fsd_jax.losses.relational import (
    angle_potential,
    pairwise_distances,
    rkd_angle,
    rkd_distance,
    smooth_l1,
)

__all__ = [
    "angle_potential",
    "attention_kl",
    "attention_probs_mse",
    "attention_scores_mse",
    "cross_entropy",
    "emd_flow",
    "flatten_tokens",
    "fsd_global",
    "fsd_global_terms",
    "fsd_intra",
    "fsd_intra_reference",
    "fsd_local",
    "fsd_local_reference",
    "hidden_cosine",
    "hidden_mse",
    "init_lad_gates",
    "kd",
    "kd_reference",
    "label_loss",
    "lad_aggregate",
    "memory_gram",
    "minilm",
    "mse",
    "pairwise_distances",
    "pkd",
    "pkd_teacher_layers",
    "rkd_angle",
    "rkd_distance",
    "smooth_l1",
    "soft_cross_entropy",
    "soft_cross_entropy_reference",
    "softmax_kl",
    "transport_simplex",
    "update_layer_weights",
    "value_relation_logits",
    "weighted_mean",
]
