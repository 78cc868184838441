"""A Flax (linen) BERT that matches transformers' PyTorch ``BertForSequenceClassification``.

Parameter names mirror Hugging Face's module names (``layer.3`` becomes ``layer_3``) so that
checkpoint conversion (``fsd_jax.models.hf``) is a mechanical rename plus kernel transposes.

Besides logits and hidden states, the model can return per-layer attention intermediates that
MiniLM, TinyBERT and BERT-EMD distil (docs/methods.md §0, §5–§7). They are requested with static
Python flags, so a plain forward pass computes and returns nothing extra.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from fsd_jax.masking import key_mask_bias
from fsd_jax.models.config import BertConfig
from fsd_jax.models.dropout import Dropout

Dtype = Any
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: Any) -> dict[str, jax.Array]:
    """The keyword arguments of :class:`BertForSequenceClassification` taken from a batch dict."""
    return {k: batch[k] for k in MODEL_INPUTS}


@struct.dataclass
class AttentionIntermediates:
    """Per-layer attention tensors, each a tuple over layers 1..N of shape (B, h, L, L) or (B, h, L, d_h).

    ``scores`` are the scaled pre-softmax scores with the additive padding mask applied;
    ``probs`` are the softmax of ``scores`` (before attention dropout).
    """

    scores: tuple[jax.Array, ...]
    probs: tuple[jax.Array, ...]
    queries: tuple[jax.Array, ...]
    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]


@struct.dataclass
class BertOutput:
    """Model outputs.

    Attributes:
      logits: (B, num_labels) float32.
      pooled_output: (B, d) tanh-pooled [CLS] vector.
      hidden_states: tuple of N + 1 arrays (B, L, d): the embedding output, then each layer.
      attentions: per-layer attention intermediates, or None unless requested.
    """

    logits: jax.Array
    pooled_output: jax.Array | None  # None in outputs read from a teacher cache
    hidden_states: tuple[jax.Array, ...]
    attentions: AttentionIntermediates | None = None


def _activation(name: str):
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    return jax.nn.relu


class _TokenDense(nn.Dense):
    """``nn.Dense`` applied to the tokens as one (tokens, features) matrix.

    On a (B, L, E) input ``nn.Dense``'s weight gradient contracts two axes at once, which
    XLA:CPU runs 1.1–1.6× slower than the same product on the flattened (B·L, E) matrix
    (32 × 128 tokens, 384 ↔ 1536 features, docs/benchmarks.md, issue 34); the result is the same.
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        lead = inputs.shape[:-1]
        out = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
        return out.reshape(*lead, self.features)


class _Module(nn.Module):
    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def dense(self, features: int, name: str) -> nn.Dense:
        return _TokenDense(
            features,
            kernel_init=nn.initializers.normal(self.config.initializer_range),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def layer_norm(self, name: str = "LayerNorm") -> nn.LayerNorm:
        return nn.LayerNorm(
            epsilon=self.config.layer_norm_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )


class BertEmbeddings(_Module):
    @nn.compact
    def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)

        def embed(num: int, name: str) -> nn.Embed:
            return nn.Embed(
                num,
                cfg.hidden_size,
                embedding_init=init,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=name,
            )

        h = (
            embed(cfg.vocab_size, "word_embeddings")(input_ids)
            + embed(cfg.max_position_embeddings, "position_embeddings")(position_ids)
            + embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        )
        h = self.layer_norm()(h)
        return Dropout(cfg.hidden_dropout_prob)(h, deterministic=deterministic)


class BertSelfAttention(_Module):
    @nn.compact
    def __call__(self, h, mask_bias, deterministic: bool):
        cfg = self.config
        b, n, _ = h.shape
        heads, dh = cfg.num_attention_heads, cfg.head_dim

        def project(name: str) -> jax.Array:
            x = self.dense(cfg.hidden_size, name)(h)
            return x.reshape(b, n, heads, dh).transpose(0, 2, 1, 3)  # (B, h, L, dh)

        q, k, v = project("query"), project("key"), project("value")
        # Softmax in float32 whatever the compute dtype.
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32) / math.sqrt(dh)
        scores = scores + mask_bias
        probs = jax.nn.softmax(scores, axis=-1)
        dropped = Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
        context = jnp.einsum("bhqk,bhkd->bhqd", dropped.astype(self.dtype), v)
        context = context.transpose(0, 2, 1, 3).reshape(b, n, cfg.hidden_size)
        return context, (scores, probs, q, k, v)


class _DenseResidualNorm(_Module):
    """HF's ``BertSelfOutput`` / ``BertOutput``: dense, dropout, residual, LayerNorm."""

    @nn.compact
    def __call__(self, x, residual, deterministic: bool):
        x = self.dense(self.config.hidden_size, "dense")(x)
        x = Dropout(self.config.hidden_dropout_prob)(x, deterministic=deterministic)
        return self.layer_norm()(x + residual)


class BertAttention(_Module):
    @nn.compact
    def __call__(self, h, mask_bias, deterministic: bool):
        context, inter = BertSelfAttention(self.config, self.dtype, self.param_dtype, name="self")(
            h, mask_bias, deterministic
        )
        out = _DenseResidualNorm(self.config, self.dtype, self.param_dtype, name="output")(
            context, h, deterministic
        )
        return out, inter


class _DenseAct(_Module):
    """HF's ``BertIntermediate`` (dense + activation) and ``BertPooler`` (dense + tanh)."""

    features: int = 0
    activation: str = "gelu"

    @nn.compact
    def __call__(self, x):
        x = self.dense(self.features, "dense")(x)
        return jnp.tanh(x) if self.activation == "tanh" else _activation(self.activation)(x)


class BertLayer(_Module):
    @nn.compact
    def __call__(self, h, mask_bias, deterministic: bool):
        cfg = self.config
        attn_out, inter = BertAttention(cfg, self.dtype, self.param_dtype, name="attention")(
            h, mask_bias, deterministic
        )
        inner = _DenseAct(
            cfg,
            self.dtype,
            self.param_dtype,
            cfg.intermediate_size,
            cfg.hidden_act,
            name="intermediate",
        )(attn_out)
        out = _DenseResidualNorm(cfg, self.dtype, self.param_dtype, name="output")(
            inner, attn_out, deterministic
        )
        return out, inter


class BertEncoder(_Module):
    @nn.compact
    def __call__(self, h, mask_bias, deterministic: bool, output_attentions: bool):
        hidden, inters = [h], []
        for i in range(self.config.num_hidden_layers):
            h, inter = BertLayer(self.config, self.dtype, self.param_dtype, name=f"layer_{i}")(
                h, mask_bias, deterministic
            )
            hidden.append(h)
            if output_attentions:
                inters.append(inter)
        attentions = None
        if output_attentions:
            attentions = AttentionIntermediates(*(tuple(x) for x in zip(*inters, strict=True)))
        return tuple(hidden), attentions


class BertModel(_Module):
    """Embeddings, encoder and tanh pooler."""

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        deterministic: bool = True,
        output_attentions: bool = False,
    ):
        cfg = self.config
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        mask_bias = key_mask_bias(attention_mask)

        h = BertEmbeddings(cfg, self.dtype, self.param_dtype, name="embeddings")(
            input_ids, token_type_ids, position_ids, deterministic
        )
        hidden, attentions = BertEncoder(cfg, self.dtype, self.param_dtype, name="encoder")(
            h, mask_bias, deterministic, output_attentions
        )
        pooled = _DenseAct(
            cfg, self.dtype, self.param_dtype, cfg.hidden_size, "tanh", name="pooler"
        )(hidden[-1][:, 0])
        return hidden, pooled, attentions


class BertForSequenceClassification(_Module):
    """BERT with a dropout + linear head on the pooled output (one output = regression).

    ``apply({"params": p}, input_ids, attention_mask=..., token_type_ids=...)`` returns a
    :class:`BertOutput`. Pass ``deterministic=False`` and ``rngs={"dropout": key}`` to train.
    """

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        deterministic: bool = True,
        output_attentions: bool = False,
    ) -> BertOutput:
        cfg = self.config
        hidden, pooled, attentions = BertModel(cfg, self.dtype, self.param_dtype, name="bert")(
            input_ids,
            attention_mask,
            token_type_ids,
            deterministic=deterministic,
            output_attentions=output_attentions,
        )
        rate = cfg.hidden_dropout_prob if cfg.classifier_dropout is None else cfg.classifier_dropout
        x = Dropout(rate)(pooled, deterministic=deterministic)
        logits = self.dense(cfg.num_labels, "classifier")(x).astype(jnp.float32)
        return BertOutput(logits, pooled, hidden, attentions)


def init_params(model: BertForSequenceClassification, seed: int = 0, seq_len: int = 8) -> dict:
    """Random parameters (BERT's Normal(0, initializer_range) init) for ``model``."""
    ids = jnp.zeros((1, seq_len), jnp.int32)
    return jax.jit(model.init)(jax.random.key(seed), ids)["params"]
