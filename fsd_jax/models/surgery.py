"""Building a shallower student from a deeper BERT by choosing encoder layers.

Layers are numbered 1..N as in ``hidden_states`` (0 is the embedding output), so "layers 1–6"
in METHODS.md §0.2 is ``[1, 2, 3, 4, 5, 6]`` or ``6``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
