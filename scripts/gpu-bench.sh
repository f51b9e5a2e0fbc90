#!/usr/bin/env bash
# The recipe benchmark on the lent GPU: bert-base-sized model (seeded random
# weights, identical for both libraries), rotten tomatoes tokenized on the
# developer machine (.device/rt_tokenized.json), bertkit vs the HF Trainer, bf16
# then fp32, the three freezing strategies. Results go to $OUT as they come.
# Then bertkit alone, bf16 full, with BERTKIT_ATTENTION=fused (BENCH_FUSED=0 skips it).
# usage (after scripts/gpu-check.sh built the CUDA addon): bash scripts/gpu-bench.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -c 'import accelerate' 2>/dev/null || pip install -q --no-deps --no-index .device/wheels/*.whl 2>&1 | tail -2
python3 -c 'import accelerate; print("accelerate", accelerate.__version__)'
python3 scripts/make_random_bert.py /tmp/bert-base-random .device/tokenizer | tail -1
export BERTKIT_ADDON_PATH="$PWD/${GPU_CHECK_BUILD:-build-gpu}/Release/cuda/bertkit_cuda.node"
node dist/scripts/bench.js --model /tmp/bert-base-random --tokenized .device/rt_tokenized.json --hf \
  --strategies "${BENCH_STRATEGIES:-full,head,index100}" --precision "${BENCH_PRECISIONS:-bf16,fp32}" \
  ${BENCH_MAX_STEPS:+--max-steps $BENCH_MAX_STEPS} --out "$OUT/recipe-gpu" 2>&1 | tee "$OUT/bench.log" | tail -30
# bertkit alone again with the flash-style attention kernels (BERTKIT_ATTENTION=fused),
# bf16 full fine-tuning: the speed and peak memory to weigh before making them CUDA's default.
if [ "${BENCH_FUSED:-1}" = 1 ]; then
  BERTKIT_ATTENTION=fused node dist/scripts/bench.js --model /tmp/bert-base-random --tokenized .device/rt_tokenized.json \
    --strategies full --precision bf16 ${BENCH_MAX_STEPS:+--max-steps $BENCH_MAX_STEPS} --out "$OUT/recipe-gpu-fused" 2>&1 \
    | tee "$OUT/bench-fused.log" | tail -6
fi
