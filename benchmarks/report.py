"""Printing the benchmark suite's results (``benchmarks/run.py``)."""

from __future__ import annotations

from typing import Any


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def print_report(out: dict) -> None:
    """The suite's results as text (the JSON holds the same numbers)."""
    m = out["machine"]
    print(
        f"fsd-jax benchmarks  {out['date']}  {m['backend']} ({m['device']}) x{m['device_count']}"
        f"  host CPU: {m.get('cpu', 'unknown')}"
    )
    print(
        f"teacher {out['teacher']}, student {out['student_layers']}, B={out['batch_size']}, "
        f"L={out['seq_len']}, {out['dtype']}, {out['timed_steps']} timed steps"
    )
    if "cka" in out:
        c = out["cka"]
        print(
            f"\nCKA loss vs reference ({c['reference']}; ms, medians; XLA f32 matmul "
            f"{c['matmul_rate_gflops']:.0f} GFLOP/s)"
        )
        print(
            "  shape   jax fwd  val+grad  (teacher Gram given)  ref fwd 1t/2t  "
            "ref val+grad 1t/2t  ref/jax val+grad (given)"
        )
        for name, r in c["rows"].items():
            ms = r["ms"]
            print(
                f"  {name:<7} {ms['jax_forward']:7.2f} {ms['jax_value_and_grad']:9.2f} "
                f"{ms['jax_value_and_grad_teacher_gram_given']:12.2f}  "
                f"{ms['reference_forward_1t']:10.2f}/{ms['reference_forward_2t']:<6.2f} "
                f"{_fmt(ms.get('reference_value_and_grad_1t'), '.2f'):>9}/"
                f"{_fmt(ms.get('reference_value_and_grad_2t'), '.2f'):<8} "
                f"{r['reference_over_jax_value_and_grad']:6.2f} "
                f"({r['reference_over_jax_value_and_grad_teacher_gram_given']:.2f})"
            )
    if "steps" in out:
        print("\nstep time per method (ratio to VKD, same run)")
        for name, r in out["steps"]["rows"].items():
            print(
                f"  {name:<9} {r['median_step_s']:7.3f} s  {r['examples_per_s']:7.1f} ex/s  "
                f"{r['step_time_over_vkd']:.3f}"
            )
    if "cache" in out:
        print("\nteacher outputs from the cache vs the live teacher (step time, same run)")
        for name, r in out["cache"].items():
            print(
                f"  {name:<9} live {r['live_step_s']:7.3f} s  cached {r['cached_step_s']:7.3f} s"
                f"  {r['cached_over_live_step_time']:.3f}"
            )
    if "torch" in out:
        e = out["torch"]["examples_per_s"]
        print("\nJAX vs PyTorch eager at its faster thread count (examples/s)")
        for k in ("vkd", "fsd_il"):
            print(
                f"  {k:<7} jax {e['jax_' + k]:7.1f}  torch {e['torch_' + k]:7.1f}  "
                f"ratio {out['torch']['jax_over_torch_' + k]:.3f}   teacher cached: jax "
                f"{e['jax_' + k + '_cached']:7.1f}  ratio {out['torch']['jax_cached_over_torch_' + k]:.3f}"
            )
    if "bucketing" in out:
        r = out["bucketing"]
        print(
            f"\nbucketing on SST-2 ({r['batches']} batches): full {r['full_padding_s']:.2f} s, "
            f"bucketed {r['bucketed_s']:.2f} s, speed-up {r['speedup']:.2f}x"
        )
    for k, why in out["skipped"].items():
        print(f"skipped {k}: {why}")
    print("\nratios: " + ", ".join(f"{k}={_fmt(v)}" for k, v in out["ratios"].items()))
    print(f"wall time {out['wall_time_s']:.0f} s")
