"""Faults: a training process stopped by SIGINT, SIGTERM or SIGKILL at a random moment resumes to
exactly the parameters of an uninterrupted run; a finished workdir run again is left as it is; a damaged
newest checkpoint is replaced by the resumed run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
from conftest import finetune_command

from fsd_jax.models import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


def _cmd(checkpoint: Path, workdir: Path, cache: Path, steps: int = 160) -> list[str]:
    return finetune_command(checkpoint, workdir, cache, steps, every=20)


def _checkpoint_steps(workdir: Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _snapshot(workdir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``workdir``: (modification time in ns, contents)."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(workdir.rglob("*"))
        if p.is_file()
    }


def _assert_finished_and_untouched(cmd: list[str], workdir: Path) -> None:
    before = _snapshot(workdir)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "is finished" in again.stderr, again.stderr[-2000:]
    assert "Traceback" not in again.stderr
    after = _snapshot(workdir)
    assert sorted(after) == sorted(before)
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"a re-run of a finished workdir changed {changed}"


def _start_and_signal(cmd: list[str], workdir: Path, after: int, signum: int, rng) -> tuple:
    """Start ``cmd``, send ``signum`` once a checkpoint of step >= ``after`` exists."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(s >= after for s in _checkpoint_steps(workdir)):
            break
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside a later step or checkpoint write
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_signals_then_resume_match_an_uninterrupted_run(tiny_checkpoint, tmp_path):
    """Ctrl-C (SIGINT) and SIGTERM checkpoint the current step and exit 130 / 143 with one line;
    SIGKILL loses only the steps after the last checkpoint; each resume continues, and the
    final parameters are those of a run never interrupted."""
    rng = random.Random(os.getpid())
    work, cache = tmp_path / "interrupted", tmp_path / "cache"
    cmd = _cmd(tiny_checkpoint, work, cache)
    for signum, after in ((signal.SIGINT, 20), (signal.SIGTERM, 60)):
        code, err = _start_and_signal(cmd, work, after, signum, rng)
        assert code == 128 + signum, err[-2000:]
        assert "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        name = signal.Signals(signum).name
        assert last.startswith(f"interrupted by {name} at step "), last
        assert "run the same command again to resume" in last
        stopped = int(last.split(" at step ")[1].split(":")[0])
        assert stopped >= after and stopped in _checkpoint_steps(work)
        assert not (work / "results.json").exists()
    code, err = _start_and_signal(cmd, work, stopped + 20, signal.SIGKILL, rng)
    assert code == -signal.SIGKILL, "the run ended before it could be killed"
    killed_after = max(_checkpoint_steps(work))
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    results = json.loads((work / "results.json").read_text())
    assert results["steps"] == 160 and results["steps_this_run"] == 160 - killed_after
    whole = subprocess.run(
        _cmd(tiny_checkpoint, tmp_path / "whole", cache), cwd=ROOT, capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = load_pretrained(work)[1]
    b = load_pretrained(tmp_path / "whole")[1]
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)
    # the README's resume command once more, on the finished workdir
    _assert_finished_and_untouched(cmd, work)


def test_ctrl_c_outside_training_is_one_line(tmp_path):
    """A signal while no step runs (as while data loads or a step compiles; here sent from
    inside ``main``) leaves the last checkpoint as it was and says so in one line."""
    cmd = [
        sys.executable,
        "-c",
        "import os, signal, sys; from fsd_jax import cli; "
        "sys.exit(cli.run_cli(lambda: os.kill(os.getpid(), signal.SIGTERM)))",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    code, err = res.returncode, res.stderr
    assert code == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == [
        "interrupted by SIGTERM: run the same command again to resume from the last checkpoint "
        "(nothing was being trained)"
    ]


def test_a_damaged_newest_checkpoint_is_replaced_by_the_resumed_run(tiny_checkpoint, tmp_path):
    work, cache = tmp_path / "run", tmp_path / "cache"
    cmd = _cmd(tiny_checkpoint, work, cache, steps=40)
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert _checkpoint_steps(work) == [20, 40]
    reference = load_pretrained(work)[1]
    # damage every array file of the newest checkpoint, as a disk fault or a bad copy would
    damaged = [p for p in (work / "checkpoints" / "40").rglob("*") if p.is_file()]
    for p in damaged:
        if p.suffix != ".json" and p.stat().st_size > 64:
            p.write_bytes(b"\0" * p.stat().st_size)
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint" in resumed.stderr and "unreadable" in resumed.stderr
    assert "Traceback" not in resumed.stderr and "Event loop is closed" not in resumed.stderr
    results = json.loads((work / "results.json").read_text())
    assert results["steps"] == 40 and results["steps_this_run"] == 20  # from step 20
    again = load_pretrained(work)[1]
    jax.tree.map(
        lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), again, reference
    )
    assert _checkpoint_steps(work) == [20, 40]
    # the replaced step reads back: the next run finds the workdir finished
    _assert_finished_and_untouched(cmd, work)


# ------------------------------------------------------------------ a corpus of bad inputs
def _tsv(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _bytes(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _stsb_rows(*rows):
    return "index\tsentence1\tsentence2\tscore\n" + "".join(r + "\n" for r in rows)


def _rte_rows(*rows):
    return "index\tsentence1\tsentence2\tlabel\n" + "".join(r + "\n" for r in rows)


def _bad_inputs(tmp_path):
    """(description, callable, message regex): each must raise a user error naming the cause."""
    import types

    from fsd_jax.data import bucket_padding, get_task, load_examples, read_tsv
    from fsd_jax.losses import transport_simplex
    from fsd_jax.mapping import layer_mapping
    from fsd_jax.models import BertConfig
    from fsd_jax.models.surgery import narrow, resolve_layers
    from fsd_jax.terms import parse_terms
    from fsd_jax.train.optim import make_optimizer
    from fsd_jax.train.sharding import Sharder
    from fsd_jax.train.training_run import dtype_of, parse_layers

    rte, stsb = get_task("rte"), get_task("stsb")
    small = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=2, num_attention_heads=2)
    return [
        (
            "ragged row",
            lambda: read_tsv(
                rte, _tsv(tmp_path, "a.tsv", _rte_rows("0\ta\tb\tentailment", "1\ta"))
            ),
            r"a\.tsv:3: expected 4 tab-separated columns, found 2",
        ),
        (
            "unknown label",
            lambda: read_tsv(rte, _tsv(tmp_path, "b.tsv", _rte_rows("0\ta\tb\tperhaps"))),
            r"b\.tsv:2: unknown label 'perhaps'",
        ),
        ("empty file", lambda: read_tsv(rte, _tsv(tmp_path, "c.tsv", "")), r"c\.tsv: empty file"),
        (
            "header only",
            lambda: read_tsv(rte, _tsv(tmp_path, "d.tsv", _rte_rows())),
            r"d\.tsv: no examples",
        ),
        (
            "wrong header",
            lambda: read_tsv(rte, _tsv(tmp_path, "e.tsv", "index\tpremise\tlabel\n0\ta\tx\n")),
            r"e\.tsv:1: header has no column",
        ),
        (
            "non-UTF-8 byte",
            lambda: read_tsv(
                rte,
                _bytes(
                    tmp_path,
                    "f.tsv",
                    _rte_rows("0\ta\tb\tentailment", "1\tcaf\xe9\tb\tentailment").encode("latin1"),
                ),
            ),
            r"f\.tsv:3: byte 0xe9 is not UTF-8",
        ),
        (
            "STS-B score nan",
            lambda: read_tsv(stsb, _tsv(tmp_path, "g.tsv", _stsb_rows("0\ta\tb\tnan"))),
            r"g\.tsv:2: label 'nan': stsb scores must be in \[0, 5\]",
        ),
        (
            "STS-B score 1e30",
            lambda: read_tsv(
                stsb, _tsv(tmp_path, "h.tsv", _stsb_rows("0\ta\tb\t1", "1\ta\tb\t1e30"))
            ),
            r"h\.tsv:3: label '1e30': stsb scores must be in \[0, 5\]",
        ),
        (
            "every sentence empty",
            lambda: read_tsv(
                rte, _tsv(tmp_path, "i.tsv", _rte_rows("0\t\tb\tentailment", "1\t \tc\tentailment"))
            ),
            r"i\.tsv: every row has an empty sentence \(first: line 2\)",
        ),
        ("unknown task", lambda: get_task("glue9"), "unknown task 'glue9'"),
        ("unknown split", lambda: load_examples("rte", "test", tmp_path), "unknown split 'test'"),
        (
            "missing data dir",
            lambda: load_examples("rte", "train", tmp_path / "nope"),
            "data directory not found",
        ),
        ("unknown term", lambda: parse_terms({"fsd_x": {"weight": 1}}), "objective.fsd_x"),
        (
            "unknown option",
            lambda: parse_terms({"kd": {"weight": 1, "temp": 2}}),
            r"objective.kd: unknown options \['temp'\]",
        ),
        ("no weight", lambda: parse_terms({"kd": {}}), "objective.kd: missing 'weight'"),
        ("layer spec", lambda: resolve_layers("first:9", 6), "source model has only 6 layers"),
        ("layer list", lambda: parse_layers("2,x"), "expected e.g. '2,4,6'"),
        (
            "mapping range",
            lambda: layer_mapping("explicit", 6, 3, layers="1,2,9"),
            r"teacher layers \[9\] out of range 1..6",
        ),
        (
            "mapping depth",
            lambda: layer_mapping("uniform", 6, 4),
            "teacher depth must be a multiple",
        ),
        ("buckets", lambda: bucket_padding("32,abc", 128), "data.buckets='32,abc'"),
        ("dtype", lambda: dtype_of("float8"), "model.dtype='float8'"),
        ("schedule", lambda: make_optimizer(1e-3, 10, schedule="cosine"), "train.schedule"),
        (
            "narrow width",
            lambda: narrow(small, {}, 5),
            "model.hidden_size=5: must be in 1..8 and a multiple of the 2 attention heads",
        ),
        (
            "data axis",
            lambda: Sharder(
                mesh=types.SimpleNamespace(shape={"data": 4, "model": 1})
            ).check_batch_size(6),
            r"train.batch_size=6: must be a multiple of the data-parallel size \(4 devices",
        ),
        (
            "transport totals",
            lambda: transport_simplex(np.ones((2, 2)), np.ones(2), np.ones(2) * 2),
            "total supply 2.0 != total demand 4.0",
        ),
    ]


def test_bad_inputs_give_one_line_errors(tmp_path):
    from fsd_jax.cli import USER_ERRORS

    cases = _bad_inputs(tmp_path)
    assert len(cases) >= 20
    import re

    for name, fn, pattern in cases:
        try:
            fn()
        except USER_ERRORS as e:
            msg = str(e)
            assert re.search(pattern, msg), f"{name}: {msg!r}"
            assert "\n" not in msg, f"{name}: not one line: {msg!r}"
        else:
            raise AssertionError(f"{name}: no error")


def test_rows_with_an_empty_sentence_are_counted_in_a_warning(tmp_path, caplog):
    from fsd_jax.data import get_task, read_tsv

    rows = _rte_rows("0\ta\tb\tentailment", "1\t\tb\tentailment", "2\ta\t\tentailment")
    with caplog.at_level("WARNING"):
        ex = read_tsv(get_task("rte"), _tsv(tmp_path, "e.tsv", rows))
    assert len(ex.labels) == 3
    assert "2 of 3 rows have an empty sentence (first: line 3)" in caplog.text


def test_degenerate_but_valid_inputs_give_finite_results():
    from fsd_jax import losses
    from fsd_jax.cka import cka_loss, linear_cka

    rng = np.random.default_rng(0)
    one_t, one_s = rng.normal(size=(1, 5, 4)), rng.normal(size=(1, 5, 4))
    mask1 = np.ones((1, 5))
    for fn in (losses.fsd_local, losses.fsd_intra):  # a batch of one
        assert np.isfinite(fn(one_t, one_s, mask1))
    assert np.isfinite(losses.rkd_distance(one_t[:, 0], one_s[:, 0]))
    assert np.isfinite(losses.rkd_angle(one_t[:, 0], one_s[:, 0]))
    t, s = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])  # an all-padding row
    w = np.array([1.0, 0.0, 1.0])
    for fn in (losses.fsd_intra, losses.fsd_local, losses.hidden_mse, losses.hidden_cosine):
        assert np.isfinite(fn(t, s, mask, w)), fn.__name__
    const = np.ones((6, 3))
    assert float(linear_cka(const, rng.normal(size=(6, 2)))) == 0.0
    assert np.isfinite(cka_loss(const, const))
