"""Train with fsd-jax: ``python train.py --config configs/<file>.py[:arg] --workdir DIR``.

Stages (``config.stage``): ``finetune`` (teacher or plain student) and ``quickstart`` (the
offline demo). Running again on the same workdir resumes from its latest checkpoint.
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


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup()
    config = _CONFIG.value
    workdir = _WORKDIR.value

    def run():
        from fsd_jax.train import stages

        if not workdir:
            raise ValueError("--workdir is required")
        results = stages.run(config, workdir)
        if config.stage not in ("quickstart",):
            print(
                json.dumps(
                    {
                        k: results[k]
                        for k in ("task", "stage", "dev", "steps", "train_examples_per_s")
                    },
                    indent=2,
                )
            )

    return cli.run_cli(run, debug=_DEBUG.value)


if __name__ == "__main__":
    sys.exit(app.run(main))
