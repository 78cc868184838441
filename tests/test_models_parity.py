"""The Flax BERT against transformers' PyTorch BERT on the real all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import numpy as np
import pytest

from fsd_jax.models import load_pretrained, save_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    ("The cat sat on the mat.", "A cat was sitting on a mat."),
    ("Stocks fell sharply on Monday after the announcement.", "Markets rose."),
    ("Short one.", None),
]


def _encode(tokenizer, max_length=32):
    a = [s for s, _ in SENTENCES]
    b = [t if t is not None else "" for _, t in SENTENCES]
    enc = tokenizer(
        a, b, padding="max_length", truncation=True, max_length=max_length, return_tensors="np"
    )
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


def test_hidden_states_and_attentions_match_pytorch(minilm_dir, tokenizer):
    ids, mask, types = _encode(tokenizer)
    assert (mask == 0).any(), "the batch must contain padding"
    model, params = load_pretrained(minilm_dir)
    out = model.apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types, output_attentions=True
    )

    ref_model = transformers.BertModel.from_pretrained(str(minilm_dir), attn_implementation="eager")
    ref_model.eval()
    with torch.no_grad():
        ref = ref_model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(types),
            output_hidden_states=True,
            output_attentions=True,
        )
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    valid = mask.astype(bool)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states, strict=True):
        diff = np.abs(np.asarray(ours) - theirs.numpy())[valid]
        assert diff.max() <= 1e-4, diff.max()
    for ours, theirs in zip(out.attentions.probs, ref.attentions, strict=True):
        # rows of real query tokens, columns of real keys
        q = valid[:, None, :, None] & valid[:, None, None, :]
        diff = np.abs(np.asarray(ours) - theirs.numpy())
        assert diff[np.broadcast_to(q, diff.shape)].max() <= 1e-5
    pooled = np.abs(np.asarray(out.pooled_output) - ref.pooler_output.numpy())
    assert pooled.max() <= 1e-4


def test_exported_classifier_loads_in_transformers(minilm_dir, tokenizer, tmp_path):
    ids, mask, types = _encode(tokenizer)
    model, params = load_pretrained(minilm_dir, label_names=["no", "maybe", "yes"], seed=3)
    out_dir = save_pretrained(tmp_path / "export", model, params, tokenizer=tokenizer)
    ours = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types).logits

    ref_model = transformers.AutoModelForSequenceClassification.from_pretrained(str(out_dir))
    ref_model.eval()
    assert type(ref_model).__name__ == "BertForSequenceClassification"
    assert ref_model.config.id2label == {0: "no", 1: "maybe", 2: "yes"}
    with torch.no_grad():
        theirs = ref_model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(types),
        ).logits.numpy()
    assert np.abs(np.asarray(ours) - theirs).max() <= 1e-4
    # and the export reads back into Flax bit for bit
    model2, params2 = load_pretrained(out_dir)
    again = model2.apply({"params": params2}, ids, attention_mask=mask, token_type_ids=types).logits
    np.testing.assert_array_equal(np.asarray(again), np.asarray(ours))
    reloaded_tok = transformers.AutoTokenizer.from_pretrained(str(out_dir))
    assert reloaded_tok("hello world")["input_ids"] == tokenizer("hello world")["input_ids"]


def test_regression_head_exports_as_regression(minilm_dir, tmp_path):
    model, params = load_pretrained(minilm_dir, num_labels=1)
    out_dir = save_pretrained(tmp_path / "reg", model, params)
    cfg = transformers.AutoConfig.from_pretrained(str(out_dir))
    assert cfg.num_labels == 1 and cfg.problem_type == "regression"
