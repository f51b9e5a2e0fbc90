#!/usr/bin/env bash
# The CUDA variant on a real GPU, as one command of well under 4 minutes:
#   1. build it with cmake-js and the machine's nvcc (boot.sh exports CUDACXX,
#      CUDAToolkit_ROOT, CUBLAS_INCLUDE_DIR, CUBLAS_LIBRARY_DIR);
#   2. probe the device;
#   3. the backend table (test/ops/backend_ops.ts, cases in test/ops/cases/):
#      every case on CUDA against the CPU backend and the float64 reference,
#      outputs NaN-poisoned, then out-of-memory handling, the TF32 switch, the
#      fused attention against the materialised one, and per-op timings at
#      BERT-base shapes (node dist/test/ops/backend_ops.js);
#   4. the tap op tests under the CUDA variant (each file runs its cpu and cuda
#      cases), then (4b) the model tests again with BERTKIT_ATTENTION=fused;
#   5. compute-sanitizer memcheck over the quick table, when the toolkit has it
#      and time is left.
# Logs go to $OUT (the device tool's folder), else ./gpu-check-out; a table of
# the steps is printed last. Exit status: 0 when the build, the device probe and
# the backend table pass (tap and memcheck results are reported).
#
# On the GPU machine, from the project root, with dist/ (npm run build:ts) carried and
# node_modules either carried or packed (92 MiB raw, 6.5 MiB packed without
# TypeScript, which neither the build nor tap needs at run time):
#   tar -cJf .device/node_modules.tar.xz --exclude=node_modules/typescript \
#       --exclude=node_modules/@typescript node_modules        # here, once
#   source .device/boot.sh && bash scripts/gpu/gpu-check.sh        # there; carry .device and dist
# Rehearsal where there is no GPU (the wheel toolkit builds; CUDA steps report why not):
#   GPU_CHECK_REHEARSAL=1 bash scripts/gpu/gpu-check.sh
# Knobs: GPU_CHECK_BUILD (build folder, default build-gpu), BERTKIT_CUDA_ARCHS
# (e.g. "90" to build only for H100/H200), GPU_CHECK_BUDGET (seconds, default 295:
# 235 before step 4b, the model tests through the fused attention, was added).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
BUILD="${GPU_CHECK_BUILD:-build-gpu}"
ADDON="$ROOT/$BUILD/Release/cuda/bertkit_cuda.node"
BUDGET="${GPU_CHECK_BUDGET:-295}"
REHEARSAL="${GPU_CHECK_REHEARSAL:-0}"
START=$(date +%s)
ROWS=()
STATUS=0

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(elapsed) )); }
say() { echo "[gpu-check +$(elapsed)s] $*"; }
row() { ROWS+=("$(printf '%-22s %-6s %5ss  %s' "$1" "$2" "$3" "$4")"); }
summary() {
  {
    echo
    echo "== gpu-check summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), total $(elapsed)s) =="
    [ -f "$OUT/gpu.txt" ] && sed 's/^/gpu: /' "$OUT/gpu.txt"
    printf '%-22s %-6s %6s  %s\n' step result time detail
    printf '%s\n' "${ROWS[@]}"
  } | tee "$OUT/summary.txt"
}

# ---- 0. what this machine is --------------------------------------------------
{
  echo "date: $(date -u)"; echo "node: $(node --version 2>&1)"; echo "cmake: $(cmake --version 2>&1 | head -n 1)"
  echo "nvcc: ${CUDACXX:-$(command -v nvcc || echo none)}"; "${CUDACXX:-nvcc}" --version 2>&1 | tail -n 2
  env | grep -E '^(CUDACXX|CUDAToolkit_ROOT|CUBLAS_INCLUDE_DIR|CUBLAS_LIBRARY_DIR|LD_LIBRARY_PATH|BERTKIT_)=' | sort
  nvidia-smi 2>&1 | head -n 20
} > "$OUT/env.txt" 2>&1
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>/dev/null ||
  echo "no nvidia-smi / no GPU" > "$OUT/gpu.txt"
say "gpu: $(head -n 1 "$OUT/gpu.txt")"

# ---- 1. build --------------------------------------------------------------------
PACKED="${GPU_CHECK_MODULES_TAR:-$ROOT/.device/node_modules.tar.xz}"
if [ ! -d "$ROOT/node_modules/cmake-js" ] && [ -f "$PACKED" ]; then
  say "unpacking $PACKED"
  tar -xJf "$PACKED" -C "$ROOT"
fi
CMAKE_JS="$ROOT/node_modules/cmake-js/bin/cmake-js"
if [ ! -f "$CMAKE_JS" ] || [ ! -d "$ROOT/node_modules/node-addon-api" ] || [ ! -d "$ROOT/node_modules/node-api-headers" ]; then
  row build FAIL 0 "node_modules lacks cmake-js / node-addon-api / node-api-headers (carry node_modules)"
  summary; exit 1
fi
ARCH_ARG=()
[ -n "${BERTKIT_CUDA_ARCHS:-}" ] && ARCH_ARG=("--CDBERTKIT_CUDA_ARCHS=${BERTKIT_CUDA_ARCHS}")
say "building the CUDA variant in $BUILD (log: $OUT/build.log)"
s=$(date +%s)
timeout --kill-after=10 150 node "$CMAKE_JS" compile --out "$BUILD" --CDBERTKIT_CUDA=on "${ARCH_ARG[@]}" \
  > "$OUT/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q 'unsupported GNU version\|unsupported host compiler' "$OUT/build.log"; then
  # The machine's gcc is newer than its nvcc accepts: one retry telling nvcc to allow it.
  say "host compiler refused by nvcc; retrying with -allow-unsupported-compiler"
  timeout --kill-after=10 150 node "$CMAKE_JS" compile --out "$BUILD" --CDBERTKIT_CUDA=on "${ARCH_ARG[@]}" \
    --CDBERTKIT_CUDA_FLAGS=-allow-unsupported-compiler > "$OUT/build-retry.log" 2>&1
  rc=$?
  cat "$OUT/build-retry.log" >> "$OUT/build.log"
fi
if [ $rc -ne 0 ] || [ ! -f "$ADDON" ]; then
  tail -n 40 "$OUT/build.log"
  row build FAIL $(( $(date +%s) - s )) "rc=$rc, see build.log"
  summary; exit 1
fi
row build ok $(( $(date +%s) - s )) "$(grep -o 'nvcc [0-9.]* ([^)]*)' "$OUT/build.log" | head -n 1)"
grep 'bertkit:' "$OUT/build.log" | sed 's/^/  /'
ldd "$ADDON" > "$OUT/ldd.txt" 2>&1
grep -E 'cublas|cudart' "$OUT/ldd.txt" | sed 's/^/  /'

# ---- 2. probe ---------------------------------------------------------------------
BERTKIT_ADDON_PATH="$ADDON" node -e '
  const a = require(process.env.BERTKIT_ADDON_PATH)
  const p = a.probeDevice(1)
  console.log(JSON.stringify(p))
  process.exit(p.ok ? 0 : 3)' > "$OUT/probe.txt" 2>&1
rc=$?
if [ $rc -eq 0 ]; then
  row probe ok 0 "$(sed -n 's/.*"description":"\([^"]*\)".*/\1/p' "$OUT/probe.txt" | cut -c1-90)"
else
  row probe FAIL 0 "$(head -c 160 "$OUT/probe.txt")"
  [ "$REHEARSAL" = 1 ] || STATUS=1
fi
say "probe: $(cat "$OUT/probe.txt")"

# ---- 3. the backend table: CUDA against the CPU and float64, device checks, timings ----
TABLE="$ROOT/dist/test/ops/backend_ops.js"
EXTRA=()
[ "$REHEARSAL" = 1 ] && EXTRA=(--allow-rehearsal)
if [ ! -f "$TABLE" ]; then
  row backend-ops FAIL 0 "no $TABLE (run npm run build first and carry dist)"
  STATUS=1
else
  say "backend table, CUDA against the CPU (log: $OUT/backend-ops.txt)"
  s=$(date +%s)
  BERTKIT_ADDON_PATH="$ADDON" timeout --kill-after=5 180 node "$TABLE" --json "$OUT/backend-ops.json" "${EXTRA[@]}" \
    > "$OUT/backend-ops.txt" 2>&1
  rc=$?
  grep -E '^(FAIL|REHEARSAL)' "$OUT/backend-ops.txt" | head -n 30
  last=$(tail -n 1 "$OUT/backend-ops.txt")
  if [ $rc -eq 0 ]; then
    row backend-ops ok $(( $(date +%s) - s )) "$last"
  else
    row backend-ops FAIL $(( $(date +%s) - s )) "rc=$rc: $last"
    STATUS=1
  fi
  grep '^TIME' "$OUT/backend-ops.txt" | while read -r line; do echo "  $line"; done
fi

# ---- 4. the tap op tests under the CUDA variant ---------------------------------------
TAP="$ROOT/node_modules/tap/dist/esm/run.mjs"
shopt -s nullglob
# Op tests run their cpu and cuda cases; the model, trainer, autograd and optimizer tests run
# on the default device, which is the GPU under the CUDA variant (whole BERT against transformers'
# golden fixtures: logits 1e-5, every gradient 1e-4; bf16/fp16 autocast; training and resume).
# The Trainer files include trainer_parity: 20 steps against transformers' Trainer (fp32).
CANDIDATES=("$ROOT"/dist/test/ops/*.test.js "$ROOT"/dist/test/tensor/*.test.js "$ROOT"/dist/test/optim/*.test.js \
  "$ROOT"/dist/test/models/*.test.js "$ROOT"/dist/test/train/trainer*.test.js)
# A compiled test whose source is gone (a carried dist/ built before a rename) is stale: never run it.
TESTS=()
for f in "${CANDIDATES[@]}"; do
  src="$ROOT/test/${f#"$ROOT"/dist/test/}"
  if [ -f "${src%.js}.ts" ]; then TESTS+=("$f"); else say "skipping stale $f (no ${src%.js}.ts)"; fi
done
if [ ! -f "$TAP" ]; then
  row "tap ops (cuda)" SKIP 0 "node_modules/tap not carried"
elif [ ${#TESTS[@]} -eq 0 ]; then
  row "tap ops (cuda)" SKIP 0 "no dist/test/ops/*.test.js (run npm run build:ts first and carry dist)"
elif [ "$(left)" -lt 40 ]; then
  row "tap ops (cuda)" SKIP 0 "only $(left)s of the budget left"
else
  limit=$(( $(left) - 30 )); [ $limit -gt 150 ] && limit=150
  say "tap op tests under the CUDA variant, ${limit}s at most (log: $OUT/tap.log)"
  s=$(date +%s)
  BERTKIT_ADDON_PATH="$ADDON" timeout --kill-after=5 "$limit" node "$TAP" -R tap --timeout="$limit" "${TESTS[@]}" \
    > "$OUT/tap.log" 2>&1
  rc=$?
  grep -E '^not ok' "$OUT/tap.log" > "$OUT/tap-failed-files.txt"
  grep -E '^\s+not ok' "$OUT/tap.log" | sed 's/^ *//' > "$OUT/tap-failures.txt"
  counts=$(grep -E '^# \{ total' "$OUT/tap.log" | tail -n 1 | sed 's/^# //')
  row "tap ops (cuda)" "$([ $rc -eq 0 ] && echo ok || echo fail)" $(( $(date +%s) - s )) \
    "rc=$rc ${counts:-no summary (timed out?)}; failing files: $(sed -n 's/^not ok [0-9]* - dist\/test\/\([a-z_/]*\).*/\1/p' "$OUT/tap-failed-files.txt" | tr '\n' ' ')"
fi

# ---- 4b. the model tests again with the fused attention kernels -------------------------------
# BERTKIT_ATTENTION=fused makes attention() use flashAttentionForward/Backward (CUDA's default is
# still the materialised op): whole BERT, RoBERTa, DistilBERT against transformers' golden fixtures
# through the fused kernels. The op-level fused checks ran in steps 3 and 4.
MODEL_TESTS=("$ROOT"/dist/test/models/*.test.js)
if [ ! -f "$TAP" ] || [ ${#MODEL_TESTS[@]} -eq 0 ]; then
  row "tap models (fused)" SKIP 0 "no tap or no dist/test/models"
elif [ "$(left)" -lt 35 ]; then
  row "tap models (fused)" SKIP 0 "only $(left)s of the budget left"
else
  limit=$(( $(left) - 25 )); [ $limit -gt 60 ] && limit=60
  say "model tests with BERTKIT_ATTENTION=fused, ${limit}s at most (log: $OUT/tap-fused.log)"
  s=$(date +%s)
  BERTKIT_ATTENTION=fused BERTKIT_ADDON_PATH="$ADDON" timeout --kill-after=5 "$limit" node "$TAP" -R tap --timeout="$limit" \
    "${MODEL_TESTS[@]}" > "$OUT/tap-fused.log" 2>&1
  rc=$?
  grep -E '^\s+not ok' "$OUT/tap-fused.log" | sed 's/^ *//' > "$OUT/tap-fused-failures.txt"
  counts=$(grep -E '^# \{ total' "$OUT/tap-fused.log" | tail -n 1 | sed 's/^# //')
  row "tap models (fused)" "$([ $rc -eq 0 ] && echo ok || echo fail)" $(( $(date +%s) - s )) \
    "rc=$rc ${counts:-no summary (timed out?)}"
fi

# ---- 5. compute-sanitizer memcheck over the quick table ------------------------------
SAN=$(command -v compute-sanitizer || ls "${CUDAToolkit_ROOT:-/usr/local/cuda}"/bin/compute-sanitizer 2>/dev/null || true)
if [ "$REHEARSAL" = 1 ] || [ -z "$SAN" ]; then
  row memcheck SKIP 0 "$([ -z "$SAN" ] && echo 'no compute-sanitizer' || echo rehearsal)"
elif [ "$(left)" -lt 25 ]; then
  row memcheck SKIP 0 "only $(left)s of the budget left"
else
  limit=$(( $(left) - 10 )); [ $limit -gt 60 ] && limit=60
  say "memcheck, ${limit}s at most (log: $OUT/memcheck.txt)"
  s=$(date +%s)
  # API errors are expected (the out-of-memory check asks for 1 TB on purpose).
  BERTKIT_ADDON_PATH="$ADDON" timeout --kill-after=5 "$limit" "$SAN" --tool memcheck --report-api-errors no \
    node "$TABLE" --quick > "$OUT/memcheck.txt" 2>&1
  rc=$?
  errs=$(grep -E 'ERROR SUMMARY' "$OUT/memcheck.txt" | tr '\n' ' ')
  verdict=ok
  [ -z "$errs" ] && verdict=fail
  echo "$errs" | grep -qE 'SUMMARY: [1-9]' && verdict=fail
  row memcheck "$verdict" $(( $(date +%s) - s )) "rc=$rc ${errs:-no summary (timed out?)}"
fi

summary
exit $STATUS
