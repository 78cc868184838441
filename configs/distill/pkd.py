"""PKD-Skip: (1 − α)·CE + α·KD(T) + β·L_PT, α = 0.7, β = 500, T = 10 (docs/methods.md §3; the
example configuration of the PKD repository, intersun/PKD-for-BERT-Model-Compression
``src/argument_parser.py``). PKD's α weights the soft term. Its KL averaged
over classes as well (reduction 'mean'); fsd-jax's KD averages over examples only, so the
reference's soft weight corresponds to α / V here: set it with --config.objective.kd.weight.

    python train.py --config configs/distill/pkd.py:rte --workdir runs/rte/pkd \
        --config.teacher runs/rte/teacher --config.data.data_dir ../shared/glue_data
"""

from configs.distill.base import get_base


def get_config(arg=None):
    return get_base(
        arg,
        {
            "ce": {"weight": 0.3},
            "kd": {"weight": 0.7, "temperature": 10.0},
            "pkd": {"weight": 500.0, "mapping": "skip", "normalize": True, "full_sequence": False},
        },
    )
