#!/usr/bin/env bash
# The one-shot GPU benchmark (issue 9 items 2, 4, 5): run from the repository root on a lent H100/H200 as
#     bash benchmarks/gpu_run.sh "$OUT"
# Reports (JSON + Markdown, each naming the GPU) land in the given folder; copy them to benchmarks/results/gpu_*.
# Device auto (cuda when present). Sized to finish in about 6-8 minutes on an H100; every report is rewritten
# after each case, so a run cut short keeps what it measured. SMOKE=1 runs the same cases at tiny sizes on any
# device (a check of the script itself, not a measurement; without torch.compile, whose CPU build takes minutes).
set -u
OUT="${1:-benchmarks/results}"
mkdir -p "$OUT"
NOTE="${NOTE:-one-shot GPU run}"
if [ "${SMOKE:-0}" = "1" ]; then
  P_BASE=tiny; P_LARGE=tiny; P_REF=tiny; REF_BATCH=4; B=4; COMPILE=""; STEPS="--steps 1 --warmup 1"; PFC="--scans 8 --timepoints 40"; SDPA_B=2
else
  P_BASE=base; P_LARGE=large; P_REF=small; REF_BATCH="${REF_BATCH:-64}"; B=256; COMPILE="--compile"; STEPS="--steps 10 --warmup 3"; PFC=""; SDPA_B=512
fi
B="${BATCH:-$B}"
BENCH="python benchmarks/benchmark_pretraining.py"

# 1. SDPA kernel report (head dims 20/10/5 at R = 100, bf16 and fp32, with/without attention dropout)
#    + base at batch 256: bf16 autocast + fused AdamW, eager and torch.compile; fp32 for the anchor comparison.
$BENCH --presets "$P_BASE" --batch-sizes "$B" --precision bf16,fp32 --fused-adamw --sdpa-report \
  --sdpa-batch "$SDPA_B" $STEPS --note "$NOTE" --json "$OUT/gpu_base.json" --md "$OUT/gpu_base.md"
$BENCH --presets "$P_BASE" --batch-sizes "$B" --precision bf16 --fused-adamw $COMPILE \
  $STEPS --note "$NOTE; torch.compile" --json "$OUT/gpu_base_compile.json" --md "$OUT/gpu_base_compile.md"
# 2. large at batch 256, bf16: peak memory with and without activation checkpointing (target: within 40 GiB).
$BENCH --presets "$P_LARGE" --batch-sizes "$B" --precision bf16 --fused-adamw $STEPS --note "$NOTE" \
  --json "$OUT/gpu_large.json" --md "$OUT/gpu_large.md"
$BENCH --presets "$P_LARGE" --batch-sizes "$B" --precision bf16 --fused-adamw --gradient-checkpointing $STEPS \
  --note "$NOTE; activation checkpointing" --json "$OUT/gpu_large_ckpt.json" --md "$OUT/gpu_large_ckpt.md"
# 3. ours beside the per-scan reference step on the GPU (nilearn FC per scan on the host CPU), small, batch 64.
$BENCH --presets "$P_REF" --batch-sizes "$REF_BATCH" --precision bf16 --fused-adamw --reference \
  --steps 3 --warmup 1 --note "$NOTE" --json "$OUT/gpu_reference.json" --md "$OUT/gpu_reference.md"
# 4. pFC views: batched torch on the GPU vs nilearn per scan (CPU).
python benchmarks/benchmark_pfc.py --device cuda $PFC --note "$NOTE" --json "$OUT/gpu_pfc.json" \
  --md "$OUT/gpu_pfc.md" 2>/dev/null || python benchmarks/benchmark_pfc.py $PFC --note "$NOTE (no CUDA: CPU)" \
  --json "$OUT/gpu_pfc.json" --md "$OUT/gpu_pfc.md"
