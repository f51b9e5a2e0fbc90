#!/usr/bin/env bash
# A seconds-long rehearsal of the recipe benchmark (lib/cli/bench.ts with --hf,
# bench/bench_hf_trainer.py) on whatever device is there: a 2-layer random BERT
# with the MiniLM tokenizer fixture, 96 random rows of 5-40 tokens, 6 steps,
# 3 runs per library, padding to a multiple of 8, warm-up on both sides. It checks
# that both sides run with every fairness switch and that the table comes out; its
# times mean nothing. Needs torch, transformers and accelerate (and peft for lora).
# usage: bash bench/bench-smoke.sh [extra bench flags, e.g. --no-warmup --precision bf16]
set -euo pipefail
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 bench/make_random_bert.py "$TMP/model" test/fixtures/tokenizer/minilm-uncased \
  --layers 2 --hidden 64 --heads 4 --intermediate 128 | tail -n 1
python3 - "$TMP/data.json" <<'PY'
import json, random, sys
rng = random.Random(0)
def split(n):
    ids = [[101] + [rng.randrange(1000, 30000) for _ in range(rng.randrange(3, 39))] + [102] for _ in range(n)]
    return {"input_ids": ids, "labels": [rng.randrange(2) for _ in range(n)]}
json.dump({"train": split(96), "test": split(40)}, open(sys.argv[1], "w"))
PY
[ -f dist/lib/cli/main.js ] || npx tsc -p tsconfig.json
node dist/lib/cli/main.js bench --model "$TMP/model" --tokenized "$TMP/data.json" --hf --strategies full,head \
  --precision fp32 --max-steps 6 --runs 3 --pad-to-multiple-of 8 --threads 1 --out "$TMP/recipe" "$@"
python3 - "$TMP/recipe.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
bad = [x for x in r if x.get("error")]
assert not bad, bad
for lib in ("bertkit", "transformers"):
    mine = [x for x in r if x["library"] == lib]
    assert len(mine) == 6, (lib, len(mine))
    assert all(x["steps"] == 6 for x in mine), lib
print(f"smoke ok: {len(r)} runs, both libraries, 6 steps each")
PY
