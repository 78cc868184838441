"""Sections ``steps``, ``cache``, ``torch`` and ``mfu`` of the benchmark suite (benchmarks/run.py):
each method's compiled train step against VKD's, live against cached teacher outputs, against
the same step in PyTorch eager, and its model FLOPs utilisation."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from common import build_step, device_batches, jax_runner, median, method_terms, time_interleaved
from torch_reference import make_torch_step

# dense bf16 peak FLOP/s per device kind (vendor datasheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
# the FSD-IL step timed against PyTorch: the weights change no step time
FSD_IL_TERMS = {"intra": 15.0, "local": 15.0}


def bench_steps(models, methods, batches, steps: int) -> dict:
    t, tp, s, sp, _ = models
    n = batches[0]["input_ids"].shape[1]
    entries = {m: build_step(m, "sst2", t, tp, s, sp, n) for m in methods}
    dev = device_batches(batches)
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
    return entry, device_batches(cached_batches)


def bench_cache(models, methods, batches, steps: int, live_entries: dict) -> dict:
    """Step time with the teacher's outputs read from a cache vs the live teacher, side by
    side (the cache's one-off build, a teacher pass over the training set, is not included)."""
    out: dict[str, Any] = {}
    for m in methods:
        entry, cached_batches = cached_entry(models, m, batches)
        times = time_interleaved(
            {
                "live": jax_runner(live_entries[m], device_batches(batches)),
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
    dev = device_batches(batches)
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
