#!/usr/bin/env bash
# The recipe benchmark on the lent GPU: bert-base-sized model (seeded random
# weights, identical for both libraries), rotten tomatoes tokenized on the
# developer machine (.device/rt_tokenized.json), bertkit vs the HF Trainer.
# Both sides as a competent user would run them (lib/cli/bench.ts, bench/bench_hf_trainer.py):
# untimed warm-up at every shape on both sides, HF with cuDNN attention off, each
# configuration BENCH_RUNS times (default 3) alternating which library goes first,
# medians with the min-max spread. Results go to $OUT as they come.
# Then bertkit alone, bf16 full, with BERTKIT_ATTENTION=fused (BENCH_FUSED=0 skips it).
# Knobs: BENCH_STRATEGIES (default full; full,head,index100 for all three),
# BENCH_PRECISIONS (bf16,fp32), BENCH_RUNS (3), BENCH_PAD (e.g. 8: pad_to_multiple_of on
# both sides), BENCH_MAX_STEPS, BENCH_EXTRA (more bench flags, e.g. "--no-warmup
# --hf-cudnn-sdpa on --hf-nan-inf-filter off" to measure what each switch is worth).
# 36 runs (3 strategies x 2 precisions x 2 libraries x 3) take longer than one 10-minute
# device command: split them over calls.
# usage (after scripts/gpu/gpu-check.sh built the CUDA addon): bash scripts/gpu/gpu-bench.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -c 'import accelerate' 2>/dev/null || pip install -q --no-deps --no-index .device/wheels/*.whl 2>&1 | tail -2
python3 -c 'import accelerate; print("accelerate", accelerate.__version__)'
python3 bench/make_random_bert.py /tmp/bert-base-random .device/tokenizer | tail -1
export BERTKIT_ADDON_PATH="$PWD/${GPU_CHECK_BUILD:-build-gpu}/Release/cuda/bertkit_cuda.node"
node dist/bench/bench.js --model /tmp/bert-base-random --tokenized .device/rt_tokenized.json --hf \
  --strategies "${BENCH_STRATEGIES:-full}" --precision "${BENCH_PRECISIONS:-bf16,fp32}" --runs "${BENCH_RUNS:-3}" \
  ${BENCH_PAD:+--pad-to-multiple-of $BENCH_PAD} ${BENCH_MAX_STEPS:+--max-steps $BENCH_MAX_STEPS} ${BENCH_EXTRA:-} \
  --out "$OUT/recipe-gpu" 2>&1 | tee "$OUT/bench.log" | tail -30
# bertkit alone again with the flash-style attention kernels (BERTKIT_ATTENTION=fused),
# bf16 full fine-tuning: the speed and peak memory to weigh before making them CUDA's default.
if [ "${BENCH_FUSED:-1}" = 1 ]; then
  BERTKIT_ATTENTION=fused node dist/bench/bench.js --model /tmp/bert-base-random --tokenized .device/rt_tokenized.json \
    --strategies full --precision bf16 --runs "${BENCH_RUNS:-3}" ${BENCH_PAD:+--pad-to-multiple-of $BENCH_PAD} \
    ${BENCH_MAX_STEPS:+--max-steps $BENCH_MAX_STEPS} --out "$OUT/recipe-gpu-fused" 2>&1 \
    | tee "$OUT/bench-fused.log" | tail -6
fi
