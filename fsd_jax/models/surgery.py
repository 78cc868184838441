"""Building a smaller student from a BERT: choosing encoder layers, narrowing the width.

Layers are numbered 1..N as in ``hidden_states`` (0 is the embedding output), so "layers 1–6"
in docs/methods.md §0.2 is ``[1, 2, 3, 4, 5, 6]`` or ``6``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from fsd_jax.models.config import BertConfig

LayerSpec = int | str | Sequence[int]


def resolve_layers(spec: LayerSpec, num_layers: int) -> tuple[int, ...]:
    """1-based layer numbers for a layer specification.

    Args:
      spec: ``k`` or ``"first:k"`` (layers 1..k), ``"last:k"`` (the last k), ``"every:k"``
        (k, 2k, ... up to N, LAD's "even" choice), or an explicit list such as ``[2, 4, 6]``.
      num_layers: depth of the source model.

    Raises:
      ValueError: naming the specification when it does not fit ``num_layers``.
    """
    if isinstance(spec, str):
        kind, _, arg = spec.partition(":")
        if kind.isdigit() and not arg:
            kind, arg = "first", kind
        if kind not in ("first", "last", "every") or not arg.isdigit() or int(arg) < 1:
            raise ValueError(
                f"layer spec {spec!r}: expected 'first:K', 'last:K', 'every:K' or a list of layers"
            )
        k = int(arg)
        if kind == "every":
            layers = tuple(range(k, num_layers + 1, k))
            if not layers:
                raise ValueError(f"layer spec {spec!r}: source model has only {num_layers} layers")
            return layers
        if k > num_layers:
            raise ValueError(f"layer spec {spec!r}: source model has only {num_layers} layers")
        return (
            tuple(range(1, k + 1))
            if kind == "first"
            else tuple(range(num_layers - k + 1, num_layers + 1))
        )
    if isinstance(spec, int):
        return resolve_layers(f"first:{spec}", num_layers)
    layers = tuple(int(x) for x in spec)
    bad = [x for x in layers if not 1 <= x <= num_layers]
    if not layers or bad:
        raise ValueError(
            f"layers {list(layers)}: each must be in 1..{num_layers} (the source model's depth)"
        )
    return layers


def select_layers(
    config: BertConfig, params: Mapping[str, Any], spec: LayerSpec
) -> tuple[BertConfig, dict]:
    """Config and params of a model keeping only the chosen encoder layers, renumbered from 0.

    Embeddings, pooler and classifier are kept as they are.
    """
    layers = resolve_layers(spec, config.num_hidden_layers)
    bert = dict(params["bert"])
    encoder = bert["encoder"]
    bert["encoder"] = {f"layer_{i}": encoder[f"layer_{j - 1}"] for i, j in enumerate(layers)}
    out = dict(params)
    out["bert"] = bert
    return config.replace(num_hidden_layers=len(layers)), out


def narrow(
    config: BertConfig,
    params: Mapping[str, Any],
    hidden_size: int,
    intermediate_size: int | None = None,
) -> tuple[BertConfig, dict]:
    """A narrower BERT initialised by weight selection from a wider one.

    Keeps the first ``hidden_size`` dimensions of the residual stream everywhere, the first
    ``hidden_size / heads`` dimensions of every attention head (the head count is kept, so
    attention maps stay comparable with the source's) and the first ``intermediate_size``
    feed-forward units (default: the source's ratio). Xu et al., "Initializing Models with
    Larger Ones", ICLR 2024. The result is a student whose width differs from its teacher's:
    TinyBERT-style losses then compare hidden states through a learned W_h.
    """
    heads = config.num_attention_heads
    if not 0 < hidden_size <= config.hidden_size or hidden_size % heads:
        raise ValueError(
            f"model.hidden_size={hidden_size}: must be in 1..{config.hidden_size} and a multiple "
            f"of the {heads} attention heads"
        )
    ratio = config.intermediate_size / config.hidden_size
    inter = intermediate_size or round(ratio * hidden_size)
    if not 0 < inter <= config.intermediate_size:
        raise ValueError(
            f"model.intermediate_size={inter}: must be in 1..{config.intermediate_size}"
        )
    old_head = config.hidden_size // heads
    new_head = hidden_size // heads
    head_dims = np.concatenate([np.arange(new_head) + j * old_head for j in range(heads)])
    h = np.arange(hidden_size)

    def cut(path: tuple[str, ...], x: Any) -> Any:
        x = np.asarray(x)
        name = "/".join(path)
        if "classifier" in path:
            return x[:hidden_size] if x.ndim == 2 else x
        if "embeddings" in path and path[-1] == "embedding":
            return x[:, :hidden_size]
        if any(p in path for p in ("query", "key", "value")):
            return x[:hidden_size][:, head_dims] if x.ndim == 2 else x[head_dims]
        if "attention" in path and "output" in path and "dense" in path:
            return x[head_dims][:, h] if x.ndim == 2 else x[:hidden_size]
        if "intermediate" in path:
            return x[:hidden_size, :inter] if x.ndim == 2 else x[:inter]
        if "output" in path and "dense" in path:  # feed-forward output
            return x[:inter, :hidden_size] if x.ndim == 2 else x[:hidden_size]
        if x.ndim == 2:  # pooler
            return x[:hidden_size, :hidden_size]
        if x.ndim == 1:  # LayerNorm scales and biases, pooler bias
            return x[:hidden_size]
        raise ValueError(f"narrow: unexpected parameter {name} {x.shape}")

    flat = traverse_util.flatten_dict(params)
    out = traverse_util.unflatten_dict({k: cut(k, v) for k, v in flat.items()})
    return config.replace(hidden_size=hidden_size, intermediate_size=inter), out
