"""BERT hyper-parameters, read from and written to Hugging Face ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The subset of ``transformers.BertConfig`` that the Flax BERT needs.

    ``label_names`` holds one name per output; a single output means regression.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    label_names: tuple[str, ...] = ("LABEL_0", "LABEL_1")

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r}: expected one of {_ACTIVATIONS}")
        if not self.label_names:
            raise ValueError("label_names must name at least one output")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes: Any) -> BertConfig:
        return dataclasses.replace(self, **changes)

    def with_num_labels(self, num_labels: int) -> BertConfig:
        if num_labels == self.num_labels:
            return self
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        return self.replace(label_names=tuple(f"LABEL_{i}" for i in range(num_labels)))

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> BertConfig:
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"{source}: model_type={model_type!r}, fsd-jax only handles 'bert'")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{source}: only absolute position embeddings are supported")
        fields = {f.name for f in dataclasses.fields(cls)} - {"label_names"}
        kwargs = {k: d[k] for k in fields if k in d and d[k] is not None}
        if "classifier_dropout" in d:
            kwargs["classifier_dropout"] = d["classifier_dropout"]
        id2label = d.get("id2label")
        if id2label:
            names = [id2label[k] for k in sorted(id2label, key=int)]
            kwargs["label_names"] = tuple(names)
        elif d.get("num_labels"):
            kwargs["label_names"] = tuple(f"LABEL_{i}" for i in range(int(d["num_labels"])))
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """A ``config.json`` that transformers reads as BertForSequenceClassification."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.pop("label_names")
        d.update(
            model_type="bert",
            architectures=["BertForSequenceClassification"],
            position_embedding_type="absolute",
            num_labels=self.num_labels,
            id2label={str(i): n for i, n in enumerate(self.label_names)},
            label2id={n: i for i, n in enumerate(self.label_names)},
            problem_type="regression" if self.is_regression else "single_label_classification",
        )
        return d
