#!/bin/bash
# docs/student_setup.md: the undistilled 3-layer student (the grid's: pre-trained MiniLM layers
# 1-3, seed 0) at higher learning rates and more epochs than the grid's 5e-5 x 3 epochs.
# Run from the repository root: bash benchmarks/student_setup.sh [WORKDIR]
W=${1:-runs/student_setup}
for v in "cola 1e-4 5 24,32,40,48,64,80,96,112,128" "cola 2e-4 5 24,32,40,48,64,80,96,112,128" "mrpc 1e-4 5 48,64,80,96,112,128" \
  "mrpc 1e-4 10 48,64,80,96,112,128" "mrpc 2e-4 5 48,64,80,96,112,128" \
  "mrpc 1e-4 5 48,64,80,96,112,128 every:2" "mrpc 1e-4 5 48,64,80,96,112,128 first:3 0.1" \
  "mrpc 1e-4 5 48,64,80,96,112,128 first:4" "mrpc 1e-4 5 48,64,80,96,112,128 first:5"; do set -- $v
L=${5:-first:3} WU=${6:-0.0}
python train.py --config configs/finetune.py:$1 --workdir $W/$1_lr$2_ep$3_${L/:/}_wu$WU --config.model.layers $L \
  --config.train.learning_rate $2 --config.train.num_epochs $3 --config.train.warmup_ratio $WU \
  --config.data.data_dir ../shared/glue_data \
  --config.data.buckets $4 --config.progress=False --config.tensorboard=False --config.export=False
done
echo DONE
