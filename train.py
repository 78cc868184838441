"""Train with fsd-jax: ``python train.py --config configs/<file>.py[:arg] --workdir DIR``.

Stages (``config.stage``): ``finetune`` (teacher or plain student), ``memory`` (the teacher's
k-means memory for FSD-G), ``distill`` (a student from a teacher) and ``quickstart`` (the offline
demo). Running again on the same workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from fsd_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", "configs/finetune.py", "Config file (:arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks for input errors.")
_SHOW = flags.DEFINE_bool(
    "show_config",
    False,
    "Print every field of the chosen config (with the overrides given) as --config.<field> "
    "<value> and exit; each can be set on the command line.",
)
# one process per host (config.multihost); unset values come from the cluster (TPU pod, SLURM,
# Open MPI, Kubernetes) or JAX_COORDINATOR_ADDRESS
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process run: host:port of process 0's coordinator."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process run: how many processes.", lower_bound=1
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process run: this process's index.", lower_bound=0
)


# What each stage prints when it finishes (the quickstart prints its own table).
_SUMMARY_KEYS = {
    "finetune": ("task", "stage", "dev", "steps", "train_examples_per_s"),
    "distill": ("task", "stage", "dev", "steps", "train_examples_per_s"),
    "memory": ("task", "stage", "num_clusters", "train_examples", "build_seconds", "path"),
    "grid": ("stage", "report", "runs_left", "hours_left"),  # the last two: grid.plan
}


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _SHOW.value:
        print(cli.config_fields(_CONFIG.value))
        return 0
    cli.setup()
    workdir = _WORKDIR.value

    def run():
        import jax

        from fsd_jax.train import stages

        config = _CONFIG.value

        if not workdir:
            raise ValueError("--workdir is required")
        launch = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        if config.get("multihost"):
            from fsd_jax.train.sharding import initialize_multihost

            initialize_multihost(*launch)
        elif any(v is not None for v in launch):
            raise ValueError(
                "--coordinator_address, --num_processes and --process_id need "
                "--config.multihost=True"
            )
        results = stages.run(config, workdir)
        keys = _SUMMARY_KEYS.get(config.stage)
        if keys and jax.process_index() == 0:
            print(json.dumps({k: results[k] for k in keys if k in results}, indent=2))

    return cli.run_cli(run, debug=_DEBUG.value)


if __name__ == "__main__":
    # a missing config file or a get_config() that rejects its argument is a one-line error,
    # not the traceback ml_collections prints while parsing flags
    sys.argv[:] = cli.check_config_flag(
        sys.argv, "config", "configs/distill", "configs/finetune.py"
    )
    sys.exit(app.run(main))
