#!/usr/bin/env bash
# Installs the packed bertkit the way users do, into fresh apps (npm's default
# layout), and runs scripts/build/install-check/smoke.js (a few Trainer steps of a
# tiny BERT through require('bertkit')) in each:
#   1. no compiler: PATH holds node, npm and a shell only (no cc, c++, cmake,
#      make, python3, node-gyp); the prebuilt addons must be used, CPU and CUDA
#   2. --ignore-scripts: the prebuilt loads anyway
#   3. compilers present, no prebuilt in the tarball: built from source, with
#      cmake-js found where npm hoisted it
#   4. --ignore-scripts and no prebuilt: the first op says which platform
#      lacks a binary and the command that builds it
#   5. no compiler and no prebuilt: the install fails with one line naming
#      what is missing and the fix
# and the CPU prebuilt on CPUs without AVX-512 / AVX2 (qemu-user emulating a
# Nehalem and a Haswell) picks the kernels it can run.
# Run from the repository root after `npm run prebuild` (dist/ built). Prints
# one "install-check: ... ok|FAILED" line per check and the install times.
set -uo pipefail
root=$(pwd)
[ -f prebuilds/linux-x64/bertkit.napi.node ] || { echo "install-check: run npm run prebuild first"; exit 1; }
[ -f dist/lib/index.js ] || { echo "install-check: build dist/ first (npx tsc -p tsconfig.json)"; exit 1; }
work=$(mktemp -d /tmp/bertkit-install-XXXXXX)
failures=0
passes=0
ok() { echo "install-check: $1 ok"; passes=$((passes + 1)); }
bad() { echo "install-check: $1 FAILED${2:+: $2}"; failures=$((failures + 1)); }

# ---- the two tarballs ------------------------------------------------------------
mkdir -p "$work/with" "$work/without"
npm pack --ignore-scripts --silent --pack-destination "$work/with" >/dev/null || { echo "install-check: npm pack failed"; exit 1; }
mv prebuilds "$work/prebuilds.aside"
npm pack --ignore-scripts --silent --pack-destination "$work/without" >/dev/null
pack_status=$?
mv "$work/prebuilds.aside" prebuilds
[ $pack_status -eq 0 ] || { echo "install-check: npm pack (without prebuilds) failed"; exit 1; }
tgz_with=$(ls "$work"/with/*.tgz)
tgz_without=$(ls "$work"/without/*.tgz)
echo "install-check: tarball $(basename "$tgz_with"): $(stat -c %s "$tgz_with") bytes packed, $(tar -tzf "$tgz_with" | wc -l) files; without prebuilds: $(stat -c %s "$tgz_without") bytes"

# ---- a PATH with no build tools ------------------------------------------------------
nobuild="$work/nobuild-bin"
mkdir -p "$nobuild"
for tool in node npm npx sh bash env cat ls mkdir rm cp mv tar gzip uname grep sed dirname basename readlink chmod ln sort head tail tr wc; do
  p=$(command -v "$tool") && ln -s "$(readlink -f "$p")" "$nobuild/$tool"
done
# npm and npx are scripts that locate their own code relative to where they are.
ln -sf "$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js" "$nobuild/npm"
ln -sf "$(dirname "$(readlink -f "$(command -v npx)")")/npx-cli.js" "$nobuild/npx"
for tool in cc c++ gcc g++ clang clang++ cmake make python3 node-gyp nvcc; do
  if PATH="$nobuild" command -v "$tool" >/dev/null 2>&1; then echo "install-check: the sandbox PATH still has $tool"; exit 1; fi
done

new_app() {
  local dir="$work/$1"
  mkdir -p "$dir" && cp scripts/build/install-check/smoke.js "$dir/" && (cd "$dir" && npm init -y >/dev/null)
  echo "$dir"
}

timed_install() {  # dir, PATH, npm args...; prints the seconds taken
  local dir=$1 path=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$dir" && PATH="$path" npm install --no-audit --no-fund --loglevel=error "$@" >"$dir/install.log" 2>&1)
  local status=$?
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }' >"$dir/install.seconds"
  return $status
}

# ---- 1. no compiler, prebuilt ----------------------------------------------------------
app=$(new_app no-compiler)
if timed_install "$app" "$nobuild" "$tgz_with"; then
  echo "install-check: no-compiler install took $(cat "$app/install.seconds") s"
  [ -d "$app/node_modules/bertkit/build" ] && bad "no-compiler: nothing compiled" "node_modules/bertkit/build exists"
  out=$(cd "$app" && PATH="$nobuild" node smoke.js 2>&1)
  if grep -q "smoke ok.*addon cuda (prebuilt)" <<<"$out" && grep -q "using the CPU: cuda: no NVIDIA driver found" <<<"$out"; then
    ok "no-compiler: CUDA prebuilt loads without a GPU, says why, trains on the CPU"
  else bad "no-compiler: CUDA prebuilt" "$out"; fi
  out=$(cd "$app" && PATH="$nobuild" BERTKIT_DEVICE=cpu node smoke.js 2>&1)
  grep -q "smoke ok.*addon cpu (prebuilt)" <<<"$out" && ok "no-compiler: CPU prebuilt trains" || bad "no-compiler: CPU prebuilt" "$out"
  out=$(cd "$app" && PATH="$nobuild" npx bertkit doctor 2>&1)
  grep -q "prebuilt binary" <<<"$out" && grep -q "cuBLAS:" <<<"$out" && ok "no-compiler: bertkit doctor" || bad "no-compiler: bertkit doctor" "$out"
  v=$(cd "$app" && PATH="$nobuild" npx bertkit --version 2>&1)
  [ "$v" = "$(node -p "require('./package.json').version")" ] && ok "no-compiler: bertkit --version ($v)" || bad "bertkit --version" "$v"
else
  bad "no-compiler install" "$(tail -20 "$app/install.log")"
fi

# ---- 1b. the CPU prebuilt on CPUs without AVX-512 or AVX2 (emulated by qemu-user) ----------------
if [ -d "$work/no-compiler/node_modules/bertkit" ]; then
  if command -v qemu-x86_64 >/dev/null; then
    node_bin=$(readlink -f "$(command -v node)")
    for cpu in Nehalem:scalar Haswell:AVX2; do
      model=${cpu%%:*} want=${cpu##*:}
      out=$(cd "$work/no-compiler" && BERTKIT_DEVICE=cpu timeout 600 qemu-x86_64 -cpu "$model" "$node_bin" -e \
        'const bk = require("bertkit"); console.log("kernels", JSON.stringify(bk.loadNative().addon.inspectRuntime().cpu)); require("./smoke.js")' 2>&1)
      if grep -q "kernels.*built-in $want" <<<"$out" && grep -q "smoke ok.*addon cpu (prebuilt)" <<<"$out"; then
        ok "cpu-without-avx512: the CPU prebuilt on an emulated $model picks $want kernels and trains"
      else bad "cpu-without-avx512 ($model)" "$out"; fi
    done
  else
    bad "cpu-without-avx512" "qemu-x86_64 is not installed (apt-get install qemu-user)"
  fi
fi

# ---- 2. --ignore-scripts, prebuilt -------------------------------------------------------
app=$(new_app ignore-scripts)
if timed_install "$app" "$nobuild" --ignore-scripts "$tgz_with"; then
  out=$(cd "$app" && PATH="$nobuild" node smoke.js 2>&1)
  grep -q "smoke ok.*(prebuilt)" <<<"$out" && ok "ignore-scripts: prebuilt loads, trains ($(cat "$app/install.seconds") s install)" || bad "ignore-scripts" "$out"
else
  bad "ignore-scripts install" "$(tail -20 "$app/install.log")"
fi

# ---- 3. compilers, no prebuilt: source build as a dependency ----------------------------------
app=$(new_app from-source)
if BERTKIT_CUDA=off timed_install "$app" "$PATH" "$tgz_without"; then
  echo "install-check: from-source install (CPU addon compiled) took $(cat "$app/install.seconds") s"
  [ -f "$app/node_modules/.bin/cmake-js" ] && [ ! -d "$app/node_modules/bertkit/node_modules/cmake-js" ] || echo "install-check: note: cmake-js was not hoisted here"
  out=$(cd "$app" && node smoke.js 2>&1)
  grep -q "smoke ok.*addon cpu (source)" <<<"$out" && ok "from-source: built with the hoisted cmake-js, trains" || bad "from-source" "$out"
else
  bad "from-source install" "$(tail -30 "$app/install.log")"
fi

# ---- 4. --ignore-scripts, no prebuilt: a clear error -------------------------------------------
app=$(new_app no-binary)
if timed_install "$app" "$PATH" --ignore-scripts "$tgz_without"; then
  out=$(cd "$app" && node smoke.js 2>&1)
  if grep -q "no native addon for linux-x64" <<<"$out" && grep -q "npm rebuild bertkit" <<<"$out"; then
    ok "no-binary: the error names the platform and the build command"
  else bad "no-binary message" "$out"; fi
else
  bad "no-binary install" "$(tail -20 "$app/install.log")"
fi

# ---- 5. no compiler, no prebuilt: the install fails clearly ----------------------------------------
app=$(new_app hopeless)
if timed_install "$app" "$nobuild" "$tgz_without"; then
  bad "hopeless: the install should have failed"
else
  log=$(cat "$app/install.log")
  if grep -q "no C++ compiler on PATH" <<<"$log" && grep -q "bertkit: fix: install one" <<<"$log"; then
    ok "hopeless: fails in $(cat "$app/install.seconds") s naming the missing compiler and the fix"
  else bad "hopeless message" "$(tail -20 "$app/install.log")"; fi
fi

rm -rf "$work"
echo "install-check: $passes passed, $failures failed"
[ $failures -eq 0 ]
