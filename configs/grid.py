"""The experiment grid of issue 7: methods × tasks × seeds on real GLUE, one command.

    python train.py --config configs/grid.py --workdir runs/grid \
        --config.grid.report_dir docs/results_grid

Runs (or resumes) every cell: the MiniLM teacher fine-tuned once per task, its k-means memory once
per task when FSD-G/ILG are in the grid, then each method with each seed on a 3-layer student
(teacher layers 1–3), all with the same budget (3 epochs, L = 128, exact bucketing), final-epoch
model (no dev-based checkpoint picking). Each finished cell is analysed against its teacher (CKA
heat map over ``analysis_batches`` dev batches, restoration rate, relation differences). Writes
results.md / results.csv / results.png (mean ± std over seeds) and cka_<task>.png into
``grid.report_dir``. ``--config.grid.tasks mrpc --config.grid.seeds 0`` for a slice; a cell that
finished is never run again. ``grid.teacher_search`` (fields of ``config.train`` → comma-separated
values) fine-tunes one teacher per combination and keeps the best dev score.
"""

from pathlib import Path

from ml_collections import ConfigDict

SHORT_BUCKETS = "24,32,40,48,64,80,96,112,128"
METHODS = "nokd,vkd,pkd,rkd,minilm,fsd_i,fsd_l,fsd_g,fsd_il,fsd_ilg,tinybert,bert_emd,lad"


def get_config(arg=None):
    c = ConfigDict()
    c.stage = "grid"
    c.progress = True
    c.grid = ConfigDict(
        {
            # where the runs' configs are read from (finetune.py, memory.py, distill/<method>.py)
            "configs_dir": str(Path(__file__).resolve().parent),
            "tasks": "rte,mrpc,cola,wnli",
            "methods": METHODS,
            "seeds": "0,1,2",
            "student_layers": "first:3",
            "title": "fsd-jax results: MiniLM teacher (6 layers) → 3-layer student",
            "report_dir": "",
            # results and analyses of every finished run (KB), the report's source; a recorded
            # cell is not run again even without the workdir: commit them to go on elsewhere
            "records_dir": "",
            "preamble_file": "",  # Markdown put under the title of results.md
            "analysis_batches": 8,  # dev batches in each cell's CKA pool; 0: no analyses
            "max_hours": 0.0,  # > 0: start no new cell or teacher after this long (run again)
            # True: print what is left to run and an estimate of its hours, run nothing
            "plan": False,
            # examples/s columns: only meaningful when every cell had the machine to itself
            "report_throughput": True,
            "teacher_search": {},  # e.g. {"learning_rate": "3e-5,5e-5,1e-4", "num_epochs": "3,5"}
            # comma-separated tasks that get the search ("": all); the others: <task>/teacher
            "teacher_search_tasks": "",
            # per method name ("*": every method), config fields → comma-separated values, each
            # combination run with search_seed and the best dev score used for every seed;
            # e.g. {"*": {"train": {"learning_rate": "3e-5,4e-5,5e-5,6e-5"}}} (FSD paper
            # §4.3.1), "fsd_il": {"objective": {"fsd_intra": {"weight": "1e-3,1e-2,0.1,1"}}}
            "student_search": {},
            "search_seed": 0,
            # every run (teacher, memory, students)
            "common": {
                "data": {"data_dir": "../shared/glue_data", "buckets": "48,64,80,96,112,128"}
            },
            # every run of one task, after common: short-sentence tasks get short buckets
            # (CoLA: mean padded length 27 instead of 48 at batch 32; same results)
            "common_per_task": {
                "cola": {"data": {"buckets": SHORT_BUCKETS}},
                "sst2": {"data": {"buckets": SHORT_BUCKETS}},
            },
            "teacher": {},
            "memory": {},  # e.g. {"memory": {"num_clusters": 100}}
            "teacher_per_task": {},
            # every student; methods whose reference budget differs get the same 3 epochs
            "student": {"train": {"num_epochs": 3.0}},
            # per task, after "student" (e.g. {"mrpc": {"model": {"layers": "first:5"}}}): what
            # common_per_task cannot say, since that also reaches the task's teacher
            "student_per_task": {},
            # every distilled student: teacher outputs computed once per run where the terms
            # allow (same losses up to float rounding, ~27 % less step time; docs/benchmarks.md)
            "distill": {"teacher_cache": "auto"},
            "methods_overrides": {
                "tinybert": {"phases": {"intermediate": {"train": {"num_epochs": 3.0}}}}
            },
        }
    )
    return c
