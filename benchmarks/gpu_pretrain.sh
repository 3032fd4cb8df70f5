#!/usr/bin/env bash
# The one-shot GPU pretraining of issue 10 (schedule and size), from the repository root on a lent H100/H200:
#     bash benchmarks/gpu_pretrain.sh "$OUT"
# Needs the 938-scan corpus in .gpu_data/abide1_aal116 (ABIDE-I never enters the repository: copy
# ../shared/data/abide1_aal116 there, ignored by git, and carry it) and, where `datasets` is missing, its wheels in
# .whl (carried too). Four runs side by side, the authors' recipe (batch 64, lr 3e-4, 10 warm-up epochs, then
# constant) for up to 2000 epochs, stopped after TRAIN_S seconds; see benchmarks/gpu_pretrain.py.
# SMOKE=1 runs it at tiny size on any machine (checks the script, measures nothing).
set -u
OUT="${1:-runs/gpu_pretrain_out}"
mkdir -p "$OUT"
source benchmarks/gpu_env.sh
DATA=.gpu_data/abide1_aal116
if [ "${SMOKE:-0}" = "1" ]; then
  P1=tiny; P2=tiny; N1=smoke-a; N2=smoke-b; ARGS=(--smoke --train-seconds 45 --threads-per-run 1 --parallel-screens 2 --threads 1 --screen-seconds 150 --max-file-mib 0.5 -- --max_steps 30)
else
  P1=small; P2=base; N1=small; N2=base; ARGS=(--train-seconds "${TRAIN_S:-350}" --screen-seconds "${SCREEN_S:-120}" -- --tf32 true)
fi
$PY benchmarks/gpu_pretrain.py --out "$OUT" --work runs/gpu_pretrain --data "$DATA,devfmri" \
  --run "$N1-paper-s0:$P1::0" --run "$N2-paper-s0:$P2::0" --run "$N1-drop50-s0:$P1:pfc_drop_ratio=0.5:0" \
  --run "$N1-paper-s1:$P1::1" --eval "abide=$DATA:diagnosis:site" --eval devfmri "${ARGS[@]}"
