#!/bin/bash
# The gradient-balance study of docs/gradient_balance.md: a CoLA teacher (MiniLM, lr 5e-5,
# 3 epochs, short buckets), then 150-step students probed every 25 steps: FSD-IL with
# γ_i = γ_l = 15 (the earlier config) and 0.025 (the reference ILG script's ε = 0.1), and VKD.
# Run from the repository root: bash benchmarks/gradient_balance_cola.sh [WORKDIR]
set -e
W=${1:-runs/gradient_balance_cola}
COMMON="--config.data.data_dir ../shared/glue_data --config.data.buckets 24,32,40,48,64,80,96,112,128 --config.progress=False --config.tensorboard=False"
python train.py --config configs/finetune.py:cola --workdir $W/teacher --config.train.learning_rate 5e-5 --config.train.num_epochs 3 $COMMON
for v in "il15 15.0" "il_ref 0.025"; do set -- $v
python train.py --config configs/distill/fsd_il.py:cola --workdir $W/$1 --config.teacher $W/teacher \
  --config.objective.fsd_intra.weight $2 --config.objective.fsd_local.weight $2 \
  --config.train.max_steps 150 --config.train.balance_every 25 --config.export=False --config.teacher_cache auto $COMMON
done
python train.py --config configs/distill/vkd.py:cola --workdir $W/vkd --config.teacher $W/teacher \
  --config.train.max_steps 150 --config.train.balance_every 25 --config.export=False --config.teacher_cache auto $COMMON
echo DONE
