"""The teacher cache: cached outputs equal the live teacher's, objectives give the same losses
and gradients with and without it, distillation with the cache ends where it would without."""

from __future__ import annotations

import importlib
import json

import jax
import numpy as np
import pytest
from conftest import tiny_finetune_config

from fsd_jax.data import Encoded, iterate_batches
from fsd_jax.data.batching import bucket_padding
from fsd_jax.models import BertForSequenceClassification, init_params, model_inputs
from fsd_jax.objective import make_distill_objective
from fsd_jax.teacher_cache import build_teacher_cache, cached_teacher, hidden_key
from fsd_jax.terms import cached_teacher_layers, parse_terms
from fsd_jax.train.distill import run_distill


def _data(n=11, vocab=120, seed=0) -> Encoded:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 20, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(1, vocab, offsets[-1]).astype(np.int32)
    types = (rng.random(offsets[-1]) < 0.3).astype(np.int8)
    return Encoded(ids, types, offsets, rng.integers(0, 2, n).astype(np.int32))


def _models(tiny_config):
    teacher = BertForSequenceClassification(tiny_config)
    student = BertForSequenceClassification(tiny_config.replace(num_hidden_layers=2))
    return teacher, init_params(teacher, 1), student, init_params(student, 2)


def test_cached_rows_are_the_teachers_outputs(tiny_config):
    teacher, t_params, _, _ = _models(tiny_config)
    data = _data()
    # built with one batching (buckets 8/16/24), read back in another (shuffled, length 24)
    cache = build_teacher_cache(
        teacher,
        t_params,
        data,
        (0, 2, 4),
        batch_size=4,
        seq_len=24,
        pad_to=bucket_padding("8,16", 24),
    )
    for batch in iterate_batches(data, 5, 24, shuffle=True, seed=3):
        got = cache.add_to_batch(batch)
        live = teacher.apply({"params": t_params}, **model_inputs(batch))
        real = batch["weights"] > 0
        np.testing.assert_allclose(got["teacher_logits"][real], live.logits[real], atol=2e-5)
        assert not got["teacher_logits"][~real].any()
        mask = batch["attention_mask"][..., None].astype(bool)
        for layer in (0, 2, 4):
            h = got[hidden_key(layer)]
            want = np.where(mask, np.asarray(live.hidden_states[layer]), 0.0)
            np.testing.assert_allclose(h, want, atol=2e-5)


@pytest.mark.parametrize(
    "terms",
    [
        {"ce": {"weight": 0.5}, "kd": {"weight": 0.5, "temperature": 5.0}},
        {"fsd_intra": {"weight": 2.0}, "fsd_local": {"weight": 3.0}, "kd": {"weight": 1.0}},
        {"pkd": {"weight": 10.0}},
        {"rkd_distance": {"weight": 1.0}, "rkd_angle": {"weight": 2.0, "teacher_layer": 3}},
    ],
    ids=["vkd", "fsd_il", "pkd", "rkd"],
)
def test_objective_with_the_cache_matches_the_live_teacher(tiny_config, terms):
    teacher, t_params, student, s_params = _models(tiny_config)
    parsed = parse_terms(terms)
    live = make_distill_objective(student, teacher, parsed)
    cached = make_distill_objective(
        student,
        teacher,
        parsed,
        teacher_outputs=cached_teacher(parsed, teacher.config, student.config),
    )
    data = _data()
    layers = cached_teacher_layers(parsed, teacher.config, student.config)
    cache = build_teacher_cache(teacher, t_params, data, layers, batch_size=8, seq_len=24)
    key = jax.random.key(0)
    params = {"student": s_params}
    for batch in iterate_batches(data, 6, 24, shuffle=True, pad_to=bucket_padding("12", 24)):
        with_cache = cache.add_to_batch(batch)
        (l0, (m0, _)), g0 = jax.value_and_grad(live, has_aux=True)(params, batch, key, t_params)
        (l1, (m1, _)), g1 = jax.value_and_grad(cached, has_aux=True)(params, with_cache, key, {})
        np.testing.assert_allclose(l1, l0, rtol=2e-5, atol=1e-6)
        for k in m0:
            np.testing.assert_allclose(m1[k], m0[k], rtol=2e-5, atol=1e-6)
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ({"minilm": {"weight": 1.0}}, "objective.minilm reads the teacher's attentions"),
        ({"tiny_hidden": {"weight": 1.0}}, "objective.tiny_hidden reads"),
        ({"kd": {"weight": 1.0, "faithful": True}}, "objective.kd.faithful=True"),
    ],
)
def test_uncacheable_terms_are_named(tiny_config, terms, message):
    teacher, _, student, _ = _models(tiny_config)
    with pytest.raises(ValueError, match=message):
        cached_teacher(parse_terms(terms), teacher.config, student.config)


def test_pkd_and_penultimate_layers(tiny_config):
    teacher, _, student, _ = _models(tiny_config)
    terms = parse_terms({"pkd": {"weight": 1.0}, "fsd_intra": {"weight": 1.0}})
    # 4 → 2 layers: PKD-skip reads teacher layer 2; the penultimate state is index 3 of 0..4
    assert cached_teacher_layers(terms, teacher.config, student.config) == (2, 3)


def _config(method, tiny_teacher, tmp_path, cache):
    cfg = importlib.import_module(f"configs.distill.{method}").get_config("quickstart")
    base = tiny_finetune_config(tiny_teacher, tmp_path / "cache", max_steps=6)
    cfg.data, cfg.train, cfg.progress = base.data, base.train, False
    cfg.data.buckets = "12,16"
    cfg.teacher = cfg.model.name_or_path = str(tiny_teacher)
    cfg.model.layers = "every:2"
    cfg.teacher_cache = cache
    return cfg


def test_distillation_with_the_cache_ends_where_the_live_run_does(tiny_teacher, tmp_path):
    from fsd_jax.models import load_pretrained

    live = run_distill(_config("fsd_il", tiny_teacher, tmp_path, "off"), tmp_path / "live")
    cached = run_distill(_config("fsd_il", tiny_teacher, tmp_path, "on"), tmp_path / "cached")
    assert "teacher_cache" not in live
    assert cached["teacher_cache"]["layers"] == [3] and cached["teacher_cache"]["build_s"] > 0
    saved = json.loads((tmp_path / "cached" / "results.json").read_text())
    assert saved["teacher_cache"]["megabytes"] > 0
    _, p_live = load_pretrained(tmp_path / "live")
    _, p_cached = load_pretrained(tmp_path / "cached")
    for a, b in zip(jax.tree.leaves(p_live), jax.tree.leaves(p_cached), strict=True):
        np.testing.assert_allclose(a, b, atol=5e-5)
    np.testing.assert_allclose(
        cached["train_metrics"]["loss"], live["train_metrics"]["loss"], rtol=1e-4
    )


def test_auto_falls_back_and_on_refuses(tiny_teacher, tmp_path):
    res = run_distill(_config("minilm", tiny_teacher, tmp_path, "auto"), tmp_path / "auto")
    assert "teacher_cache" not in res
    with pytest.raises(ValueError, match="objective.minilm reads the teacher's attentions"):
        run_distill(_config("minilm", tiny_teacher, tmp_path, "on"), tmp_path / "on")
    with pytest.raises(ValueError, match="teacher_cache='sometimes'"):
        run_distill(_config("vkd", tiny_teacher, tmp_path, "sometimes"), tmp_path / "bad")


def test_checkpoints_from_before_the_option_still_resume():
    from types import SimpleNamespace

    from fsd_jax.train.loop import ConfigMismatchError, restore

    def checkpointer(fingerprint):
        meta = {"fingerprint": fingerprint}
        return SimpleNamespace(directory="ck", restore_latest=lambda s: ("restored", meta, 7))

    old = {"train.learning_rate": 5e-5}  # written before teacher_cache existed
    assert restore(checkpointer(old), "fresh", {**old, "teacher_cache": "off"}) == "restored"
    with pytest.raises(ConfigMismatchError, match="teacher_cache: 'off' -> 'on'"):
        restore(checkpointer(old), "fresh", {**old, "teacher_cache": "on"})


def test_checkpoints_from_before_configs_listed_every_term_option_still_resume():
    from types import SimpleNamespace

    from configs.distill import fsd_g
    from fsd_jax.train.loop import ConfigMismatchError, restore
    from fsd_jax.train.training_run import fingerprint

    def checkpointer(fp):
        return SimpleNamespace(
            directory="ck", restore_latest=lambda s: ("restored", {"fingerprint": fp}, 7)
        )

    now = fingerprint(fsd_g.get_config("rte"))
    assert now["objective.fsd_g.memory_init_std"] == 1.0  # every option is in the config
    # a checkpoint whose config named only the options it changed
    old = {k: v for k, v in now.items() if k not in ("objective.fsd_g.memory_init_std",)}
    old = {k: v for k, v in old.items() if not k.startswith("objective.kd.faithful")}
    assert restore(checkpointer(old), "fresh", now) == "restored"
    changed = {**now, "objective.fsd_g.memory_init_std": 0.02}
    with pytest.raises(ConfigMismatchError, match="memory_init_std: 1.0 -> 0.02"):
        restore(checkpointer(old), "fresh", changed)


def test_outputs_kept_on_disk_are_reused_and_only_missing_layers_computed(
    tiny_config, tmp_path, monkeypatch, caplog
):
    import fsd_jax.teacher_cache as tc

    teacher, t_params, _, _ = _models(tiny_config)
    data = _data()
    kw = dict(batch_size=4, seq_len=24, pad_to=bucket_padding("8,16", 24), store=tmp_path)
    fresh = build_teacher_cache(teacher, t_params, data, (0, 2, 4), **{**kw, "store": None})
    asked = []
    run = tc._run_teacher
    monkeypatch.setattr(tc, "_run_teacher", lambda *a: asked.append(a[3]) or run(*a))
    build_teacher_cache(teacher, t_params, data, (2,), **kw)
    again = build_teacher_cache(teacher, t_params, data, (0, 2, 4), **kw)
    assert asked == [(2,), (0, 4)]  # layer 2 and the logits came from disk the second time
    entry = next(tmp_path.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [
        "hidden_0.npy",
        "hidden_2.npy",
        "hidden_4.npy",
        "logits.npy",
    ]
    np.testing.assert_array_equal(again.logits, fresh.logits)
    for layer in (0, 2, 4):
        np.testing.assert_array_equal(again.hidden[layer], fresh.hidden[layer])
    build_teacher_cache(teacher, t_params, data, (0, 2, 4), **kw)
    assert len(asked) == 2  # everything on disk: the teacher does not run
    # a damaged file is recomputed with a warning, not trusted
    (entry / "hidden_4.npy").write_bytes(b"\x93NUMPY broken")
    with caplog.at_level("WARNING"):
        fixed = build_teacher_cache(teacher, t_params, data, (0, 4), **kw)
    assert asked[-1] == (4,) and "ignoring" in caplog.text
    np.testing.assert_array_equal(fixed.hidden[4], fresh.hidden[4])
    # other teacher parameters, other batching: other entries
    other = jax.tree.map(lambda x: x * 1.01, t_params)
    build_teacher_cache(teacher, other, data, (0,), **kw)
    build_teacher_cache(teacher, t_params, data, (0,), **{**kw, "batch_size": 3})
    assert len(list(tmp_path.iterdir())) == 3


def test_disk_store_evicts_least_recently_used_entries(tiny_config, tmp_path):
    import os

    teacher, t_params, _, _ = _models(tiny_config)
    kw = dict(batch_size=4, seq_len=24, store=tmp_path)
    entries = []
    for seed in range(3):
        build_teacher_cache(teacher, t_params, _data(seed=seed), (0, 1), **kw)
        new = [p for p in tmp_path.iterdir() if p not in entries]
        entries += new
        os.utime(new[0], (1e9 + seed, 1e9 + seed))  # distinct, ordered use times
    size = sum(f.stat().st_size for f in entries[0].glob("*.npy"))
    # room for two entries: the oldest goes when a fourth is written, the one in use stays
    build_teacher_cache(
        teacher, t_params, _data(seed=3), (0, 1), **kw, store_max_bytes=int(2.5 * size)
    )
    left = set(tmp_path.iterdir())
    assert entries[0] not in left and entries[1] not in left and entries[2] in left
    assert len(left) == 2


def test_an_unusable_store_warns_and_the_run_goes_on(tiny_config, tmp_path, caplog):
    teacher, t_params, _, _ = _models(tiny_config)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with caplog.at_level("WARNING"):
        cache = build_teacher_cache(
            teacher, t_params, _data(), (1,), batch_size=4, seq_len=24, store=blocked
        )
    assert "not kept on disk" in caplog.text
    assert cache.hidden[1].shape[1] == tiny_config.hidden_size
