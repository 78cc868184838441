"""Analyses of a distilled student against its teacher (docs/methods.md §2.9; FSD paper §5).

- :func:`cka_heatmap`: linear CKA between the teacher's features on dev mini-batch i and the
  model's on batch j, over a pool of batches; the diagonal mean is the paper's Table 6.
- :func:`restoration_rate`: precision, recall and F1 of the model's predicted labels with the
  teacher's predictions as ground truth (macro-averaged for more than two classes).
- :func:`relation_differences`: Eq. 12–13, mean absolute difference between the model's and
  the teacher's inter-feature (sample × sample) and intra-feature (token × token) Euclidean
  distance and cosine matrices.
- :func:`layer_cka`: debiased minibatch CKA (Nguyen, Raghu & Kornblith 2021) between every
  teacher layer and every model layer over the pooled dev batches, embeddings included.
- :func:`param_count`.

Features are penultimate hidden states with padding zeroed, flattened per example (the FSD-L
form), at a fixed sequence length so that every batch has the same width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fsd_jax.cka import centered_gram, linear_cka
from fsd_jax.data import Encoded, iterate_batches
from fsd_jax.distances import squared_distances_from_gram
from fsd_jax.minibatch_cka import MinibatchCKA
from fsd_jax.models import BertForSequenceClassification, model_inputs

# 2: undefined restoration precision/recall/F1 are null (format 1 wrote 0), plus "agreement"
ANALYSIS_FORMAT = 2


def hidden_features(
    model: BertForSequenceClassification,
    params: Any,
    data: Encoded,
    *,
    batch_size: int,
    seq_len: int,
    layer: int = -2,
    num_batches: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(hidden (B, L, d) with padding zeroed, mask (B, L))`` for full dev batches in order.

    The last partial batch is dropped (CKA compares equal row counts).
    """

    @jax.jit
    def forward(p, batch):
        h = model.apply({"params": p}, **model_inputs(batch)).hidden_states[layer]
        return h.astype(jnp.float32) * batch["attention_mask"][..., None]

    out = []
    for batch in iterate_batches(data, batch_size, seq_len):
        if (batch["weights"] == 0).any():
            break
        out.append((np.asarray(forward(params, batch)), batch["attention_mask"]))
        if num_batches is not None and len(out) >= num_batches:
            break
    if not out:
        raise ValueError(
            f"no full batch of {batch_size} examples in {len(data)}: use a smaller batch size"
        )
    return out


def layer_grams(
    model: BertForSequenceClassification,
    params: Any,
    data: Encoded,
    *,
    batch_size: int,
    seq_len: int,
    num_batches: int | None = None,
) -> list[np.ndarray]:
    """Per full dev batch (in order, as :func:`hidden_features`): the U-centred B×B Grams of
    every hidden state (embeddings and each layer) flattened per example with padding zeroed,
    shape (N + 1, B, B): what :func:`layer_cka` needs of one network."""

    @jax.jit
    def grams(p, batch):
        out = model.apply({"params": p}, **model_inputs(batch))
        mask = batch["attention_mask"][..., None].astype(bool)
        flat = [
            jnp.where(mask, h.astype(jnp.float32), 0.0).reshape(h.shape[0], -1)
            for h in out.hidden_states
        ]
        return jnp.stack([centered_gram(f, unbiased=True) for f in flat])

    out = []
    for batch in iterate_batches(data, batch_size, seq_len):
        if (batch["weights"] == 0).any():
            break
        out.append(np.asarray(grams(params, batch)))
        if num_batches is not None and len(out) >= num_batches:
            break
    return out


def layer_cka(teacher_grams: Sequence[np.ndarray], model_grams: Sequence[np.ndarray]) -> np.ndarray:
    """(N_t + 1, N_s + 1) debiased minibatch CKA between each teacher layer (rows) and each
    model layer (columns) over the same batches (:func:`layer_grams` of each network)."""
    if len(teacher_grams) != len(model_grams) or not teacher_grams:
        raise ValueError(
            f"{len(teacher_grams)} teacher batches vs {len(model_grams)} model batches"
        )
    n_t, b = teacher_grams[0].shape[:2]
    state = MinibatchCKA.init(n_t, model_grams[0].shape[0])
    update = jax.jit(MinibatchCKA.update_grams)
    for k, g in zip(teacher_grams, model_grams, strict=True):
        state = update(state, jnp.asarray(k), jnp.asarray(g), b)
    return np.asarray(state.result(), np.float64)


def cka_heatmap(teacher: Sequence[np.ndarray], model: Sequence[np.ndarray]) -> np.ndarray:
    """(P, P) matrix: cell (i, j) = linear CKA(teacher batch i, model batch j), each (B, ...)
    flattened per example."""
    if len(teacher) != len(model):
        raise ValueError(f"{len(teacher)} teacher batches vs {len(model)} model batches")
    t = jnp.stack([jnp.asarray(x).reshape(x.shape[0], -1) for x in teacher])
    s = jnp.stack([jnp.asarray(x).reshape(x.shape[0], -1) for x in model])
    rows = jax.jit(jax.vmap(jax.vmap(linear_cka, in_axes=(None, 0)), in_axes=(0, None)))
    return np.asarray(rows(t, s), np.float64)


def diagonal_mean(matrix: np.ndarray) -> float:
    return float(np.mean(np.diag(matrix)))


def restoration_rate(
    teacher_predictions: np.ndarray, model_predictions: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Precision, recall and F1 of the model's labels against the teacher's (docs/methods.md §2.9),
    and their agreement (the fraction of equal labels).

    Binary tasks score class 1 as positive; more classes are macro-averaged (over the classes
    where the value is defined). A value with a zero denominator is NaN, not 0: a teacher and a
    student that both predict only class 0 agree perfectly, and reporting P = R = 0 would say
    the opposite.
    """
    from sklearn.metrics import precision_recall_fscore_support

    if num_classes < 2:
        raise ValueError("restoration rate needs a classification task (STS-B has none)")
    average = "binary" if num_classes == 2 else "macro"
    p, r, f, _ = precision_recall_fscore_support(
        teacher_predictions,
        model_predictions,
        average=average,
        labels=None if average == "binary" else list(range(num_classes)),
        zero_division=np.nan,
    )
    agree = float(np.mean(np.asarray(teacher_predictions) == np.asarray(model_predictions)))
    return {"precision": float(p), "recall": float(r), "f1": float(f), "agreement": agree}


def _distances(x: np.ndarray) -> np.ndarray:
    return np.sqrt(squared_distances_from_gram(x @ np.swapaxes(x, -1, -2)))


def _cosines(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    u = x / np.maximum(n, 1e-12)
    return u @ np.swapaxes(u, -1, -2)


def relation_differences(
    teacher: np.ndarray, model: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    """Eq. 12–13 on one batch of (B, L, d) features (padding zeroed) with mask (B, L).

    inter: mean over pairs (a, b) of | rel(f_s^a, f_s^b) − rel(f_t^a, f_t^b) | on flattened
    features; intra: the same over token pairs of each example's real tokens, averaged over
    examples; rel = Euclidean distance or cosine. Float64.
    """
    t = np.asarray(teacher, np.float64)
    s = np.asarray(model, np.float64)
    b = t.shape[0]
    tf, sf = t.reshape(b, -1), s.reshape(b, -1)
    out = {
        "inter_euclid": float(np.abs(_distances(sf) - _distances(tf)).mean()),
        "inter_cos": float(np.abs(_cosines(sf) - _cosines(tf)).mean()),
    }
    e, c = [], []
    for i in range(b):
        n = int(mask[i].sum())
        ti, si = t[i, :n], s[i, :n]
        e.append(np.abs(_distances(si) - _distances(ti)).mean())
        c.append(np.abs(_cosines(si) - _cosines(ti)).mean())
    out["intra_euclid"] = float(np.mean(e))
    out["intra_cos"] = float(np.mean(c))
    return out


def param_count(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def plot_heatmap(
    matrix: np.ndarray,
    path: str | Path,
    title: str,
    *,
    axes: tuple[str, str] = ("model batch", "teacher batch"),
    subtitle: str | None = None,
) -> Path:
    """Save a heat map PNG (teacher on rows, model on columns: batches, or layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=120)
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if subtitle is None:
        subtitle = f"diagonal mean {diagonal_mean(matrix):.3f}"
    ax.set_title(f"{title}\n{subtitle}", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# the teacher's side of the last analysis: (vocabulary size, parameter count, encoded dev split,
# dev features, dev predictions), keyed by the teacher checkpoint and the analysis settings
_TEACHER_SIDE: dict[tuple, tuple] = {}


def _identity(path: str | Path) -> tuple:
    """A checkpoint's identity for the memo: its directory and weights' modification time."""
    from fsd_jax.models.hf import resolve_checkpoint_dir

    directory = Path(resolve_checkpoint_dir(path))
    weights = directory / "model.safetensors"
    return str(directory.resolve()), weights.stat().st_mtime_ns if weights.is_file() else None


def analyze(
    model_path: str | Path,
    teacher_path: str | Path,
    task_name: str,
    out_dir: str | Path,
    *,
    data_dir: str | None = None,
    max_seq_length: int = 128,
    batch_size: int = 32,
    num_batches: int = 8,
    cache_dir: str | None = None,
) -> dict:
    """Every analysis of ``model_path`` against ``teacher_path`` on the task's first dev split.

    Writes ``analysis.json``, ``cka_heatmap.png`` and ``layer_cka.png`` into ``out_dir`` and
    returns the JSON.
    """
    from fsd_jax.data import get_task
    from fsd_jax.models import load_pretrained

    task = get_task(task_name)
    split = next(iter(task.dev_splits))
    model, params = load_pretrained(model_path)
    kw = {"batch_size": batch_size, "seq_len": max_seq_length, "num_batches": num_batches}
    vocab, t_count, data, t_feats, t_grams, t_preds = _teacher_side(
        teacher_path, task, data_dir, max_seq_length, cache_dir, kw
    )
    if model.config.vocab_size != vocab:
        raise ValueError(f"{model_path} and {teacher_path} use different vocabularies")
    m_feats = hidden_features(model, params, data, **kw)
    heat = cka_heatmap([f for f, _ in t_feats], [f for f, _ in m_feats])
    layers = layer_cka(t_grams, layer_grams(model, params, data, **kw))
    rel = [
        relation_differences(t, m, mask) for (t, mask), (m, _) in zip(t_feats, m_feats, strict=True)
    ]
    result: dict[str, Any] = {
        "format": ANALYSIS_FORMAT,
        "model": str(model_path),
        "teacher": str(teacher_path),
        "task": task.name,
        "split": split,
        "pool": {"batches": len(t_feats), "batch_size": batch_size, "seq_len": max_seq_length},
        "cka_diagonal_mean": diagonal_mean(heat),
        "cka_heatmap": heat.tolist(),
        "relation_differences": {k: float(np.mean([r[k] for r in rel])) for k in rel[0]},
        # rows: teacher hidden states 0 (embeddings) .. N_t; columns: the model's 0 .. N_s
        "layer_cka": layers.tolist(),
        "params": {"model": param_count(params), "teacher": t_count},
    }
    if t_preds is not None:
        m_preds = _predictions(task, model, params, data, max_seq_length)
        result["restoration_rate"] = restoration_rate(t_preds, m_preds, task.num_labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(str(model_path)).name
    plot_heatmap(heat, out / "cka_heatmap.png", f"teacher vs {name}")
    plot_heatmap(
        layers,
        out / "layer_cka.png",
        f"teacher vs {name}",
        axes=("model layer (0 = embeddings)", "teacher layer"),
        subtitle=f"debiased minibatch CKA over {len(t_grams)} dev batches",
    )
    _write_json(out / "analysis.json", result)
    return result


def _teacher_side(
    teacher_path: str | Path,
    task: Any,
    data_dir: str | None,
    max_seq_length: int,
    cache_dir: str | None,
    kw: dict,
) -> tuple:
    """(vocab size, parameter count, encoded dev data, pooled features, per-layer Grams,
    predictions or None) of the teacher: the same for every student of a task, so computed
    once."""
    from fsd_jax.data import encode, load_examples
    from fsd_jax.models import load_pretrained, load_tokenizer

    split = next(iter(task.dev_splits))
    key = (_identity(teacher_path), task.name, data_dir, max_seq_length, *sorted(kw.items()))
    if key not in _TEACHER_SIDE:
        teacher, t_params = load_pretrained(teacher_path)
        data = encode(
            load_examples(task, split, data_dir),
            load_tokenizer(teacher_path),
            max_seq_length,
            cache_dir,
        )
        preds = None
        if not teacher.config.is_regression:
            preds = _predictions(task, teacher, t_params, data, max_seq_length)
        _TEACHER_SIDE.clear()
        _TEACHER_SIDE[key] = (
            teacher.config.vocab_size,
            param_count(t_params),
            data,
            hidden_features(teacher, t_params, data, **kw),
            layer_grams(teacher, t_params, data, **kw),
            preds,
        )
    return _TEACHER_SIDE[key]


def _predictions(
    task: Any, model: BertForSequenceClassification, params: Any, data: Encoded, seq_len: int
) -> np.ndarray:
    """The model's labels on ``data`` (what the restoration rate compares)."""
    from fsd_jax.metrics import predictions_from_logits
    from fsd_jax.train.evaluate import predict_logits

    return predictions_from_logits(task, predict_logits(model, params, data, 128, seq_len))


def _write_json(path: Path, obj: dict) -> None:
    """JSON with NaN written as null (undefined restoration values), replaced atomically."""
    import json
    import math

    def clean(x: Any) -> Any:
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(obj), indent=2))
    tmp.replace(path)


def refresh_restoration(
    analysis_dir: str | Path,
    *,
    data_dir: str | None = None,
    max_seq_length: int = 128,
    batch_size: int = 32,
    num_batches: int = 8,
    cache_dir: str | None = None,
) -> bool:
    """Bring an ``analysis.json`` written before format 2 up to date: format 1 wrote 0 for an
    undefined precision/recall and had no agreement, so the restoration rate is recomputed
    (from the model's and teacher's dev predictions only; the CKA and relation analyses are
    unchanged). Returns whether the file was rewritten."""
    import json

    from fsd_jax.data import get_task
    from fsd_jax.models import load_pretrained

    path = Path(analysis_dir) / "analysis.json"
    a = json.loads(path.read_text())
    rate = a.get("restoration_rate")
    if a.get("format", 1) >= ANALYSIS_FORMAT or not rate:
        return False
    task = get_task(a["task"])
    kw = {"batch_size": batch_size, "seq_len": max_seq_length, "num_batches": num_batches}
    _, _, data, _, _, t_preds = _teacher_side(
        a["teacher"], task, data_dir, max_seq_length, cache_dir, kw
    )
    model, params = load_pretrained(a["model"])
    m_preds = _predictions(task, model, params, data, max_seq_length)
    a["restoration_rate"] = restoration_rate(t_preds, m_preds, task.num_labels)
    a["format"] = ANALYSIS_FORMAT
    _write_json(path, a)
    return True
