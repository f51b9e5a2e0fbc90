#!/usr/bin/env bash
# Data parallel on a GPU, for a lent GPU machine (one GPU is enough: a NCCL
# group of world size 1 still goes through every NCCL call bertkit makes —
# unique id through the rendezvous store, non-blocking communicator init,
# all-reduce / broadcast / all-gather / barrier on the comm stream, events,
# the watch thread). Well under 2 minutes once the CUDA addon is built.
#   1. where NCCL is found (the addon opens libnccl.so.2 at run time);
#   2. the collectives on CUDA tensors (world size 1: results are the inputs);
#   3. the Trainer: 20 steps of the 1-layer BERT on cuda through a NCCL group
#      of one against the same run without any process group (dataset order):
#      losses must agree (they run the same kernels; 1e-6 relative).
# Usage, from the project root with dist/ built and the CUDA addon at
# build/Release/cuda/bertkit_cuda.node (or BERTKIT_ADDON_PATH set; gpu-check.sh
# builds it into build-gpu/):  bash scripts/gpu/gpu-nccl-check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
ADDON="${BERTKIT_ADDON_PATH:-}"
for candidate in "$ROOT/build-gpu/Release/cuda/bertkit_cuda.node" "$ROOT/build/Release/cuda/bertkit_cuda.node"; do
  [ -z "$ADDON" ] && [ -f "$candidate" ] && ADDON=$candidate
done
[ -n "$ADDON" ] || { echo "gpu-nccl-check: no CUDA addon (build it: BERTKIT_CUDA=on npm run build:native, or scripts/gpu/gpu-check.sh)"; exit 1; }
export BERTKIT_ADDON_PATH="$ADDON" BERTKIT_DEVICE=cuda
status=0
port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

echo "== 1. NCCL lookup" | tee "$OUT/nccl.txt"
node -e 'const a = require(process.env.BERTKIT_ADDON_PATH); const { ncclLibraryDirs } = require("./dist/lib/distributed/process_group.js");
  console.log("ncclCompiled:", a.ncclCompiled, "|", a.ncclStatus(ncclLibraryDirs()), "|", JSON.stringify(a.probeDevice(1)))' 2>&1 | tee -a "$OUT/nccl.txt"

echo "== 2. collectives on cuda, world size 1" | tee -a "$OUT/nccl.txt"
res=$(RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$(port) DEVICE=cuda SCENARIO=ops timeout 120 node dist/test/distributed/workers/collectives.js 2>&1)
echo "$res" | tee -a "$OUT/nccl.txt"
echo "$res" | grep -q '"sum":\[1,0,0,0.0010000000474974513\],"max":\[0,1\],"min":\[0,0\],"broadcast":\[0,1,2\],"allGather":\[\[0,0\]\],"coalescedAvg":\[1,2,0\],"queued":\[1,1\]' &&
  echo "collectives: PASS" | tee -a "$OUT/nccl.txt" || { echo "collectives: FAIL" | tee -a "$OUT/nccl.txt"; status=1; }

echo "== 3. Trainer through a NCCL group of one vs no group (cuda, dataset order)" | tee -a "$OUT/nccl.txt"
d1=$(mktemp -d) d2=$(mktemp -d)
plain=$(RANK= WORLD_SIZE= MASTER_ADDR= MASTER_PORT= BATCH=8 SAMPLING=sequential OUT_DIR=$d1 timeout 200 node dist/test/distributed/workers/train_tiny.js 2>&1 | grep '^RESULT')
group=$(RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$(port) BATCH=8 SAMPLING=sequential OUT_DIR=$d2 timeout 200 node dist/test/distributed/workers/train_tiny.js 2>&1 | grep '^RESULT')
echo "plain: ${plain:0:300}" | tee -a "$OUT/nccl.txt"
echo "nccl:  ${group:0:300}" | tee -a "$OUT/nccl.txt"
A="$plain" B="$group" node -e '
  const a = JSON.parse(process.env.A.slice(7)), b = JSON.parse(process.env.B.slice(7))
  if (a.error || b.error) { console.log("trainer: FAIL", a.error || b.error); process.exit(1) }
  const worst = a.losses.reduce((w, x, i) => Math.max(w, Math.abs(x - b.losses[i]) / Math.abs(x)), 0)
  console.log(`trainer: ${worst <= 1e-6 && b.globalStep === 20 ? "PASS" : "FAIL"} (20 steps, worst loss difference ${worst.toExponential(2)}, eval loss ${a.evalLoss} vs ${b.evalLoss})`)
  process.exit(worst <= 1e-6 ? 0 : 1)' 2>&1 | tee -a "$OUT/nccl.txt" || status=1
rm -rf "$d1" "$d2"
exit $status
