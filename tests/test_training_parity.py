"""Fine-tuning steps against PyTorch: the same student, batches and schedule must train alike.

The forward pass is checked in test_models_parity.py; this checks what a training run adds on
top of it (cross-entropy, its gradient through the whole model, global-norm clipping, AdamW with
decoupled weight decay and its no-decay groups, linear warm-up and decay), against
transformers' ``BertForSequenceClassification`` trained by ``torch.optim.AdamW`` with
``get_linear_schedule_with_warmup``, the way the transformers ``Trainer`` trains it. With those
equal, two runs that differ only in their random streams (classifier initialisation, dropout,
data order) differ by seed noise, not by method.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsd_jax.models import load_pretrained
from fsd_jax.models.hf import state_dict_from_params
from fsd_jax.train.optim import make_optimizer
from fsd_jax.train.state import TrainState
from fsd_jax.train.step import make_train_step, supervised_objective

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PAIRS = [
    ("The cat sat on the mat.", "A cat was sitting on a mat.", 1),
    ("Stocks fell sharply on Monday after the announcement.", "Markets rose.", 0),
    ("He said the deal was off.", "The deal is off, he said.", 1),
    ("Rain is expected tomorrow in the north.", "The museum opens at nine.", 0),
    ("Revenue rose 5 percent in the quarter.", "Quarterly revenue was up 5 %.", 1),
    ("She won the race easily.", "She lost the race.", 0),
]
LR, STEPS, WARMUP, WEIGHT_DECAY, CLIP = 1e-4, 4, 1, 0.1, 1.0


def _batches(tokenizer):
    """STEPS batches of 3 pairs (padded, so masking is exercised), cycling through PAIRS."""
    out = []
    for step in range(STEPS):
        rows = [PAIRS[(3 * step + i) % len(PAIRS)] for i in range(3)]
        enc = tokenizer(
            [a for a, _, _ in rows],
            [b for _, b, _ in rows],
            padding="max_length",
            max_length=32,
            truncation=True,
            return_tensors="np",
        )
        out.append(
            {
                "input_ids": enc["input_ids"].astype(np.int32),
                "attention_mask": enc["attention_mask"].astype(np.int32),
                "token_type_ids": enc["token_type_ids"].astype(np.int32),
                "labels": np.array([y for _, _, y in rows], np.int32),
                "weights": np.ones(3, np.float32),
            }
        )
    return out


def _torch_run(minilm_dir, start: dict[str, np.ndarray], batches) -> tuple[dict, list[float]]:
    config = transformers.BertConfig.from_pretrained(
        str(minilm_dir),
        num_hidden_layers=3,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = transformers.BertForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(
        {k: torch.tensor(v) for k, v in start.items()}, strict=False
    )
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    model.train()
    groups = {WEIGHT_DECAY: [], 0.0: []}  # the Trainer's: no decay on biases and LayerNorm
    for n, p in model.named_parameters():
        groups[0.0 if n.endswith("bias") or "LayerNorm" in n else WEIGHT_DECAY].append(p)
    opt = torch.optim.AdamW(
        [{"params": ps, "weight_decay": wd} for wd, ps in groups.items()],
        lr=LR,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    sched = transformers.get_linear_schedule_with_warmup(opt, WARMUP, STEPS)
    losses = []
    for b in batches:
        out = model(
            input_ids=torch.tensor(b["input_ids"], dtype=torch.long),
            attention_mask=torch.tensor(b["attention_mask"], dtype=torch.long),
            token_type_ids=torch.tensor(b["token_type_ids"], dtype=torch.long),
            labels=torch.tensor(b["labels"], dtype=torch.long),
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(out.loss.detach()))
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}, losses


def test_fine_tuning_steps_match_pytorch(minilm_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    batches = _batches(tokenizer)
    model, params = load_pretrained(minilm_dir, num_labels=2, layers=3, seed=0)
    model = model.clone(
        config=model.config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    start = state_dict_from_params(params)

    tx = make_optimizer(
        LR, STEPS, warmup_steps=WARMUP, weight_decay=WEIGHT_DECAY, max_grad_norm=CLIP
    )
    state = TrainState.create(params, tx, seed=0)
    step = jax.jit(make_train_step(supervised_objective(model)))
    ours_losses = []
    for b in batches:
        state, metrics = step(state, {k: jnp.asarray(v) for k, v in b.items()})
        ours_losses.append(float(metrics["loss"]))
    ours = state_dict_from_params(state.params)
    theirs, theirs_losses = _torch_run(minilm_dir, start, batches)

    np.testing.assert_allclose(ours_losses, theirs_losses, rtol=1e-4)
    for name, value in ours.items():
        delta_ours = value - start[name]
        delta_theirs = theirs[name] - start[name]
        scale = np.abs(delta_theirs).max()
        assert scale > 0.0, f"{name} was not trained"
        if name.endswith("attention.self.key.bias"):
            # q·(k + b) shifts a query's scores by a constant, which softmax ignores: the true
            # gradient is 0, so both updates are rounding noise, far below one step of LR
            assert max(scale, np.abs(delta_ours).max()) < 1e-2 * LR, (name, scale)
            continue
        # each tensor's update relative to its largest entry: Adam divides by sqrt(v), so
        # float rounding in small gradient entries is amplified and absolute tolerances mislead
        err = np.abs(delta_ours - delta_theirs).max() / scale
        assert err < 1e-2, (name, err)
        assert np.corrcoef(delta_ours.ravel(), delta_theirs.ravel())[0, 1] > 0.9999, name
