"""A/B of the models' Dense layout (issue 34): ``nn.Dense`` on (B, L, E) tokens against the
flattened-token ``_TokenDense`` the models use, in the same process, interleaved, beside
PyTorch eager at 2 threads.

    python benchmarks/token_dense_ab.py --steps 8 --methods vkd,fsd_il
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
from common import build_step, device_batches, jax_runner, median, time_interleaved
from run import _default_teacher, load_models, synthetic_batches
from step_bench import FSD_IL_TERMS
from torch_reference import make_torch_step

from fsd_jax.models import bert


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--methods", default="vkd,fsd_il")
    a = p.parse_args()
    methods = a.methods.split(",")
    models = load_models(_default_teacher(), "first:3", jax.numpy.float32)
    batches = synthetic_batches(32, 128, models[0].config.vocab_size)
    dev = device_batches(batches)
    token_dense = bert._TokenDense
    runners = {}
    try:
        for label, cls in (("nn.Dense", nn.Dense), ("_TokenDense", token_dense)):
            bert._TokenDense = cls  # the class the models build, while their steps compile
            for m in methods:
                run = jax_runner(build_step(m, "sst2", *models[:4], 128), dev)
                run(0)
                runners[f"{m} {label}"] = run
    finally:
        bert._TokenDense = token_dense
    step = make_torch_step(models, FSD_IL_TERMS)
    for m in methods:
        runners[f"{m} torch 2t"] = lambda i, f=(m != "vkd"): step(batches[i % len(batches)], f, 2)
    for k, v in time_interleaved(runners, a.steps).items():
        print(f"{k:24s} {median(v) * 1e3:8.1f} ms  (steps: {[round(x * 1e3) for x in v]})")


if __name__ == "__main__":
    main()
