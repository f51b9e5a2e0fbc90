#!/usr/bin/env bash
# Makes sure a CUDA toolkit that can compile and link the CUDA variant is
# present, using PyPI wheels only (no GPU, no driver, no NVIDIA download site),
# and prints nvcc's path as its last line. Safe to run again: it installs
# nothing when a usable toolkit is already there. Quiet unless something fails.
#
#   scripts/build/install-cuda-toolkit.sh            # then: npm run build:cuda
#   BERTKIT_CUDA_WHEELS=13.2 scripts/...       # CUDA minor series of the wheels
#
# Why CUDA 13 wheels: nvidia-cuda-nvcc-cu12 ships only ptxas (no nvcc driver,
# cicc, fatbinary or nvlink), so CUDA 12 cannot compile from PyPI. The CUDA 13
# wheels (nvidia-cuda-nvcc, nvidia-nvvm, nvidia-cuda-crt, nvidia-cuda-runtime,
# nvidia-cublas, nvidia-cuda-cccl) together form a toolkit-shaped tree under
# site-packages/nvidia/cu13 that cmake/cuda.cmake finds through python3.
set -euo pipefail

py="${PYTHON:-python3}"

# A system toolkit with cuBLAS wins, as it does in cmake/cuda.cmake.
for candidate in "${CUDACXX:-}" "$(command -v nvcc 2>/dev/null || true)" /usr/local/cuda/bin/nvcc; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    root=$(cd "$(dirname "$(readlink -f "$candidate")")/.." && pwd)
    if [ -f "$root/include/cublas_v2.h" ] || [ -f "$root/targets/x86_64-linux/include/cublas_v2.h" ] ||
       [ -n "${CUBLAS_INCLUDE_DIR:-}" ]; then
      echo "$candidate"
      exit 0
    fi
  fi
done

if ! command -v "$py" >/dev/null 2>&1; then
  echo "install-cuda-toolkit: $py not found; install Python 3 with pip (apt-get install python3-pip)" >&2
  exit 1
fi

# Prints nvcc's path when every piece the build needs is installed, else nothing.
wheel_toolkit() {
  "$py" - <<'EOF' 2>/dev/null || true
import os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
for base in nvidia.__path__:
    root = os.path.join(base, "cu13")
    need = ["bin/nvcc", "nvvm/bin/cicc", "include/crt/host_config.h", "include/cuda_runtime.h",
            "include/cublas_v2.h", "include/cccl/nv/target", "lib/libcudart.so.13", "lib/libcublas.so.13"]
    if all(os.path.exists(os.path.join(root, p)) for p in need):
        print(os.path.join(root, "bin", "nvcc"))
        break
EOF
}

nvcc=$(wheel_toolkit)
if [ -z "$nvcc" ]; then
  # Stay on the minor series of a CUDA 13 runtime already installed (torch's, for
  # example) so this adds a compiler beside it instead of replacing it.
  series="${BERTKIT_CUDA_WHEELS:-}"
  if [ -z "$series" ]; then
    series=$("$py" -c 'import importlib.metadata as m; v = m.version("nvidia-cuda-runtime").split("."); print(".".join(v[:2]) if v[0] == "13" else "")' 2>/dev/null || true)
  fi
  series="${series:-13.2}"
  log=$(mktemp)
  set -- "nvidia-cuda-nvcc==${series}.*" "nvidia-nvvm==${series}.*" "nvidia-cuda-crt==${series}.*" \
         "nvidia-cuda-runtime==${series}.*" "nvidia-cublas>=13,<14" "nvidia-cuda-cccl>=13,<14"
  export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  if ! "$py" -m pip install --quiet --no-input "$@" >"$log" 2>&1; then
    if grep -q externally-managed "$log"; then
      "$py" -m pip install --quiet --no-input --break-system-packages "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    else
      cat "$log" >&2
      exit 1
    fi
  fi
  rm -f "$log"
  nvcc=$(wheel_toolkit)
  if [ -z "$nvcc" ]; then
    echo "install-cuda-toolkit: the CUDA ${series} wheels installed but nvidia/cu13 is incomplete" >&2
    exit 1
  fi
fi
# NCCL's header, for the data-parallel backend of the CUDA addon (libnccl.so.2
# itself is opened at run time, from the same wheel or a system install).
if ! "$py" -c 'import nvidia, os, sys; sys.exit(0 if any(os.path.exists(os.path.join(p, "nccl", "include", "nccl.h")) for p in nvidia.__path__) else 1)' 2>/dev/null; then
  export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
  log=$(mktemp)
  if ! "$py" -m pip install --quiet --no-input "nvidia-nccl-cu13" >"$log" 2>&1; then
    "$py" -m pip install --quiet --no-input --break-system-packages "nvidia-nccl-cu13" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  fi
  rm -f "$log"
fi
"$nvcc" --version >/dev/null
echo "$nvcc"
