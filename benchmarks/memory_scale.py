"""Teacher-memory build at growing N: time and peak memory must not grow with N (§2.5).

    python benchmarks/memory_scale.py --sizes 5000,20000,80000 --dim 3072 --clusters 100 \
        --out memory_scale.json

Each size runs in its own process (so its peak RSS is its own): batches of synthetic "teacher
features" (B × D, drawn on the device from a key, i.e. what the teacher forward would hand over)
stream through one Lloyd pass of ``fsd_jax.kmeans.StreamingLloyd``. The full problem (MNLI:
393k examples × 98,304 features, K = 300) is ~1.2e16 flops per pass, days on this 2-core CPU;
the proxy keeps K and the streaming structure and shrinks D.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one(n: int, dim: int, clusters: int, batch: int, passes: int) -> dict:
    import jax
    import jax.numpy as jnp

    from fsd_jax.kmeans import StreamingLloyd

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    centres = jax.random.normal(jax.random.key(0), (clusters, dim)) * 3.0

    @jax.jit
    def features(i):
        k1, k2 = jax.random.split(jax.random.fold_in(jax.random.key(1), i))
        owner = jax.random.randint(k1, (batch,), 0, clusters)
        return centres[owner] + jax.random.normal(k2, (batch, dim))

    lloyd = StreamingLloyd(features(10**6)[:clusters])
    steps = -(-n // batch)
    t0 = time.perf_counter()
    for _ in range(passes):
        for i in range(steps):
            w = jnp.arange(batch) < (n - i * batch)
            lloyd.add(features(i), w.astype(jnp.float32))
        lloyd.finish_pass()
    jax.block_until_ready(lloyd.centroids)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": n,
        "dim": dim,
        "clusters": clusters,
        "batch": batch,
        "passes": passes,
        "seconds": seconds,
        "seconds_per_pass": seconds / passes,
        "peak_rss_mib": peak / 1024,
        "rss_after_imports_mib": base / 1024,
        "state_mib": 2 * clusters * dim * 4 / 2**20,
        "features_if_held_mib": n * dim * 4 / 2**20,
        "inertia": lloyd.history,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="5000,20000,80000")
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.one, a.dim, a.clusters, a.batch, a.passes)))
        return
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--dim",
            str(a.dim),
            "--clusters",
            str(a.clusters),
            "--batch",
            str(a.batch),
            "--passes",
            str(a.passes),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"N={n:>8}  {r['seconds_per_pass']:8.1f} s/pass  peak RSS {r['peak_rss_mib']:7.0f} MiB"
            f"  (features would take {r['features_if_held_mib']:8.0f} MiB)",
            flush=True,
        )
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
