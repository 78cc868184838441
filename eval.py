"""Evaluate a model on a GLUE task's dev split(s).

    python eval.py --model runs/rte/teacher --task rte --data_dir ../shared/glue_data

``--model`` is a training workdir, a Hugging Face directory or a hub id. Writes
``metrics.json`` and ``predictions_<split>.tsv`` into ``--out`` (default ``<model>/eval_<task>``
for a directory, else ``eval_<task>``). With ``--teacher DIR`` it also writes ``analysis.json``
(CKA heat-map diagonal mean, restoration rate, relation differences, parameter counts) and
``cka_heatmap.png`` (docs/methods.md §2.9).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import app, flags

from fsd_jax import cli

_MODEL = flags.DEFINE_string("model", None, "Workdir, HF directory or hub id.", required=True)
_TASK = flags.DEFINE_string("task", None, "GLUE task (rte, mrpc, sst2, ...).", required=True)
_DATA = flags.DEFINE_string("data_dir", None, "Local glue_data directory (default: the hub).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_LEN = flags.DEFINE_integer("max_seq_length", None, "Default: the workdir's, else 128.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Evaluation batch size.")
_TEACHER = flags.DEFINE_string(
    "teacher",
    None,
    "Also analyse the model against this teacher (CKA heat map, restoration "
    "rate, relation differences, parameter counts).",
)
_POOL = flags.DEFINE_integer("pool_batches", 8, "Dev mini-batches in the CKA heat map pool.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks for input errors.")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()

    def run():
        from fsd_jax.train.evaluate import evaluate_checkpoint

        model = Path(_MODEL.value)
        out = _OUT.value or (
            model / f"eval_{_TASK.value}" if model.is_dir() else f"eval_{_TASK.value}"
        )
        metrics = evaluate_checkpoint(
            _MODEL.value,
            _TASK.value,
            out,
            data_dir=_DATA.value,
            max_seq_length=_LEN.value,
            batch_size=_BATCH.value,
        )
        print(json.dumps(metrics, indent=2))
        print(f"wrote {out}/metrics.json and predictions", file=sys.stderr)
        if _TEACHER.value:
            from fsd_jax.analysis import analyze

            train_cfg = model / "train_config.json"
            length = _LEN.value or (
                json.loads(train_cfg.read_text())["data"]["max_seq_length"]
                if train_cfg.is_file()
                else 128
            )
            res = analyze(
                _MODEL.value,
                _TEACHER.value,
                _TASK.value,
                out,
                data_dir=_DATA.value,
                max_seq_length=length,
                num_batches=_POOL.value,
            )
            summary = {k: res[k] for k in ("cka_diagonal_mean", "relation_differences")}
            summary["restoration_rate"] = res.get("restoration_rate")
            print(json.dumps(summary, indent=2))
            print(f"wrote {out}/analysis.json and cka_heatmap.png", file=sys.stderr)

    return cli.run_cli(run, debug=_DEBUG.value)


if __name__ == "__main__":
    sys.exit(app.run(main))
