"""GLUE registry, TSV and hub sources, tokenisation and batching."""

from __future__ import annotations

import numpy as np
import pytest

from fsd_jax.data import (
    TASKS,
    DataError,
    encode,
    examples_from_dataset,
    get_task,
    iterate_batches,
    load_examples,
    read_tsv,
    synthetic,
)

# (train rows, dev rows, dev label counts) of the original GLUE files
REAL_COUNTS = {
    "cola": (8551, 1043, {0: 322, 1: 721}),
    "sst2": (67349, 872, {0: 428, 1: 444}),
    "mrpc": (3668, 408, {0: 129, 1: 279}),
    "rte": (2490, 277, {0: 146, 1: 131}),
    "wnli": (635, 71, {0: 40, 1: 31}),
}


def test_registry_has_all_nine_glue_tasks():
    glue = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert glue <= set(TASKS)
    assert get_task("SST-2") is get_task("sst2")
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").splits == ("train", "dev_matched", "dev_mismatched")
    with pytest.raises(ValueError, match="unknown task 'glu'"):
        get_task("glu")


@pytest.mark.parametrize("task", sorted(REAL_COUNTS))
def test_real_glue_row_and_label_counts(glue_dir, task):
    n_train, n_dev, dev_counts = REAL_COUNTS[task]
    train = load_examples(task, "train", glue_dir)
    dev = load_examples(task, "dev", glue_dir)
    assert len(train) == n_train and len(dev) == n_dev
    values, counts = np.unique(dev.labels, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == dev_counts
    assert (train.text_b is None) == (not get_task(task).is_pair)
    assert all(train.text_a) and "\ufeff" not in train.text_a[0]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_errors_name_file_line_and_cause(tmp_path):
    rte = get_task("rte")
    with pytest.raises(DataError, match=r"missing\.tsv: file not found"):
        read_tsv(rte, tmp_path / "missing.tsv")
    p = _write(
        tmp_path,
        "ragged.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tentailment\n",
    )
    with pytest.raises(
        DataError, match=r"ragged\.tsv:3: expected 4 tab-separated columns, found 3"
    ):
        read_tsv(rte, p)
    p = _write(tmp_path, "label.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(DataError, match=r"label\.tsv:2: unknown label 'maybe'"):
        read_tsv(rte, p)
    p = _write(tmp_path, "empty.tsv", "")
    with pytest.raises(DataError, match=r"empty\.tsv: empty file"):
        read_tsv(rte, p)
    p = _write(tmp_path, "header.tsv", "index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(DataError, match=r"header\.tsv: no examples"):
        read_tsv(rte, p)
    p = _write(tmp_path, "cols.tsv", "index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(DataError, match=r"cols\.tsv:1: header has no column 'sentence1'"):
        read_tsv(rte, p)
    p = _write(
        tmp_path,
        "score.tsv",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
        "sentence1\tsentence2\tscore\n0\tg\tf\ty\t0\ts\ts\ta\tb\thigh\n",
    )
    with pytest.raises(DataError, match=r"score\.tsv:2: label 'high' is not a number"):
        read_tsv(get_task("stsb"), p)
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_examples("rte", "test", tmp_path)
    with pytest.raises(DataError, match="data directory not found"):
        load_examples("rte", "train", tmp_path / "nowhere")


def test_bad_rows_can_be_skipped(tmp_path):
    p = _write(
        tmp_path,
        "train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tbroken\n2\tc\td\tnot_entailment\n",
    )
    ex = read_tsv(get_task("rte"), p, on_bad_row="skip")
    assert ex.text_a == ("a", "c") and ex.labels.tolist() == [0, 1]


def test_quirky_layouts(tmp_path):
    # CoLA: no header; quotes are literal characters (no quoting in GLUE files)
    p = _write(tmp_path, "cola.tsv", 'gj04\t1\t\t"Quoted" start.\ngj04\t0\t*\tBad one.\n')
    ex = read_tsv(get_task("cola"), p)
    assert ex.text_a == ('"Quoted" start.', "Bad one.") and ex.labels.tolist() == [1, 0]
    # MNLI: gold label is a named column; dev files carry more annotator columns than train
    header = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tgold_label"
    )
    row = "0\t1\t2\tg\tp\tp\tp\tp\tA man.\tA person.\tneutral\tneutral\tcontradiction"
    d = tmp_path / "MNLI"
    d.mkdir()
    (d / "dev_matched.tsv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    ex = load_examples("mnli", "dev_matched", tmp_path)
    assert ex.labels.tolist() == [2] and ex.text_b == ("A person.",)
    assert load_examples("mnli", "dev", tmp_path).split == "dev_matched"


def test_hub_source_gives_the_same_examples_as_tsv(glue_dir, monkeypatch):
    datasets = pytest.importorskip("datasets")
    local = load_examples("rte", "dev", glue_dir)
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
            "idx": datasets.Value("int32"),
        }
    )
    hub_like = datasets.Dataset.from_dict(
        {
            "sentence1": list(local.text_a),
            "sentence2": list(local.text_b),
            "label": local.labels.tolist(),
            "idx": list(range(len(local))),
        },
        features=features,
    )
    calls = []

    def fake_load(path, name, split):
        calls.append((path, name, split))
        return hub_like

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    hub = load_examples("rte", "dev")
    assert calls == [("nyu-mll/glue", "rte", "validation")]
    assert hub.text_a == local.text_a and hub.text_b == local.text_b
    np.testing.assert_array_equal(hub.labels, local.labels)
    assert hub.labels.dtype == local.labels.dtype

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"nyu-mll/glue/rte:validation: could not load"):
        load_examples("rte", "dev")
    bad = hub_like.cast_column("label", datasets.ClassLabel(names=["yes", "no"]))
    with pytest.raises(DataError, match="label names"):
        examples_from_dataset(get_task("rte"), bad, "dev", "hub")


def test_quickstart_files_are_the_generator_output(tmp_path):
    synthetic.write(tmp_path)
    for split in ("train", "dev"):
        assert (tmp_path / f"{split}.tsv").read_text() == (
            synthetic.BUILTIN_DIR / f"{split}.tsv"
        ).read_text()
    ex = load_examples("quickstart", "train")
    assert len(ex) == synthetic.SIZES["train"]
    assert 0.4 < ex.labels.mean() < 0.6


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


def test_encode_pairs_truncates_and_caches(tokenizer, tmp_path):
    task = get_task("rte")
    from fsd_jax.data import Examples

    ex = Examples(
        task,
        "train",
        ("a cat sat", "word " * 50),
        ("on a mat", "short"),
        np.array([0, 1], np.int32),
        "test",
    )
    enc = encode(ex, tokenizer, max_length=16, cache_dir=tmp_path)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    first = enc.ids[enc.offsets[0] : enc.offsets[1]]
    assert first[0] == cls and (first == sep).sum() == 2
    types = enc.type_ids[enc.offsets[0] : enc.offsets[1]]
    assert types.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert enc.lengths.tolist() == [9, 16]
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = encode(ex, tokenizer, max_length=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.ids, enc.ids)
    other = encode(ex, tokenizer, max_length=12, cache_dir=tmp_path)
    assert other.lengths.tolist() == [9, 12] and len(list(tmp_path.glob("*.npz"))) == 2


def test_batches_keep_every_example_once_and_resume(tokenizer, tmp_path):
    ex = load_examples("quickstart", "dev")
    enc = encode(ex, tokenizer, max_length=32, cache_dir=tmp_path)
    batches = list(iterate_batches(enc, 64, 32, shuffle=True, seed=3, epoch=1))
    assert len(batches) == 8  # 500 = 7 * 64 + 52: the last batch is kept, padded
    last = batches[-1]
    assert last["input_ids"].shape == (64, 32)
    assert last["weights"].sum() == 52 and (last["index"][52:] == -1).all()
    assert (last["attention_mask"][52:] == 0).all()
    seen = np.concatenate([b["index"][b["weights"] > 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(500))
    for b in batches:
        valid = b["weights"] > 0
        np.testing.assert_array_equal(b["labels"][valid], enc.labels[b["index"][valid]])
    resumed = list(iterate_batches(enc, 64, 32, shuffle=True, seed=3, epoch=1, start_batch=5))
    for a, b in zip(resumed, batches[5:], strict=True):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    other_epoch = next(iterate_batches(enc, 64, 32, shuffle=True, seed=3, epoch=2))
    assert not np.array_equal(other_epoch["index"], batches[0]["index"])


def test_bucket_padding_picks_the_smallest_fitting_length(tokenizer, tmp_path):
    from fsd_jax.data import bucket_padding

    pad = bucket_padding("16,8", 32)
    assert [pad(n) for n in (1, 8, 9, 16, 17, 32)] == [8, 8, 16, 16, 32, 32]
    assert bucket_padding("", 32) is None
    with pytest.raises(ValueError, match="data.buckets='8,x'"):
        bucket_padding("8,x", 32)
    enc = encode(load_examples("quickstart", "dev"), tokenizer, max_length=32, cache_dir=tmp_path)
    full = list(iterate_batches(enc, 64, 32))
    bucketed = list(iterate_batches(enc, 64, 32, pad_to=bucket_padding("8,16,24", 32)))
    for a, b in zip(full, bucketed, strict=True):
        n = b["input_ids"].shape[1]
        assert n in (8, 16, 24, 32) and a["attention_mask"][:, n:].sum() == 0
        assert b["attention_mask"].sum(1).max() > (n - 8 if n > 8 else 0)
        np.testing.assert_array_equal(a["input_ids"][:, :n], b["input_ids"])
