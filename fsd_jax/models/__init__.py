"""Flax BERT and Hugging Face checkpoint conversion."""

from fsd_jax.models.bert import (
    AttentionIntermediates,
    BertForSequenceClassification,
    BertOutput,
    init_params,
    model_inputs,
)
from fsd_jax.models.config import BertConfig
from fsd_jax.models.hf import (
    load_pretrained,
    load_tokenizer,
    resolve_checkpoint_dir,
    save_pretrained,
)
from fsd_jax.models.surgery import resolve_layers, select_layers

__all__ = [
    "AttentionIntermediates",
    "BertConfig",
    "BertForSequenceClassification",
    "BertOutput",
    "init_params",
    "load_pretrained",
    "load_tokenizer",
    "model_inputs",
    "resolve_checkpoint_dir",
    "resolve_layers",
    "save_pretrained",
    "select_layers",
]
