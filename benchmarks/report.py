"""Printing the benchmark suite's results (``benchmarks/run.py``)."""

from __future__ import annotations

from typing import Any


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def print_report(out: dict) -> None:
    """The suite's results as text (the JSON holds the same numbers)."""
    m = out["machine"]
    print(f"fsd-jax benchmarks  {out['date']}  {m['backend']} ({m['device']}) x{m['device_count']}")
    print(
        f"teacher {out['teacher']}, student {out['student_layers']}, B={out['batch_size']}, "
        f"L={out['seq_len']}, {out['dtype']}, {out['timed_steps']} timed steps"
    )
    if "cka" in out:
        print(f"\nCKA vs reference ({out['cka']['reference']})")
        for name, r in out["cka"]["rows"].items():
            print(
                f"  {name:<26} jax {r['jax_ms']:8.2f} ms  ref {r['reference_ms']:8.2f} ms  "
                f"ref/jax {r['reference_over_jax']:6.2f}"
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
        print("\nJAX vs PyTorch eager (examples/s)")
        for k in ("vkd", "fsd_il"):
            print(
                f"  {k:<7} jax {e['jax_' + k]:7.1f}  torch {e['torch_' + k]:7.1f}  "
                f"ratio {out['torch']['jax_over_torch_' + k]:.3f}"
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
