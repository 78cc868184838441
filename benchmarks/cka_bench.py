"""Section ``cka`` of the benchmark suite (benchmarks/run.py): fsd-jax's CKA loss on the three
FSD shapes against the FSD code's formulation (explicit n×n centering matrices) in PyTorch at 1
and 2 threads, interleaved; the fraction of the machine's matmul rate each kernel reaches."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from common import median, time_interleaved
from torch_reference import reference_cka


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
