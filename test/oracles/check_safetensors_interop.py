#!/usr/bin/env python3
"""Checks that files written by bertkit's writeSafetensors load in the
reference implementation with the values torch itself would produce.

    npx tsc -p tsconfig.json          # builds dist/lib/hub/safetensors.js
    pip install safetensors torch numpy
    python3 test/oracles/check_safetensors_interop.py

npm test cannot run this (it must not need Python); the opposite direction
(Python writes, bertkit reads) is covered there by the committed fixture
test/fixtures/safetensors/python_written.safetensors.

For every tensor the float32 source values travel to Node as raw bit
patterns, Node writes F32/F16/BF16/I32, Python loads the file with
safetensors.torch.load_file and with safe_open, and compares the result
bit for bit with torch's own cast of the same float32 values (any NaN
matches any NaN: torch's own casts disagree on NaN payloads).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODULE = os.path.join(ROOT, "dist", "lib", "hub", "safetensors.js")

WRITER = r"""
const st = require(process.argv[1])
const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'))
const tensors = spec.tensors.map((t) => {
  const bits = Uint32Array.from(t.bits)
  const data = t.dtype === 'I32' ? new Int32Array(bits.buffer) : new Float32Array(bits.buffer)
  // Half of the tensors go through the lazy data path.
  return [t.name, { dtype: t.dtype, shape: t.shape, data: t.lazy ? () => data : data }]
})
st.writeSafetensors(spec.path, tensors, spec.metadata)
"""

TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32}
INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.int32: torch.int32}


def edge_values():
    u = 2.0**-24
    return np.array(
        [1 + 2.0**-11, 1 + 3 * 2.0**-11, 65504, 65519, 65520, -65520, 70000, u / 2, u * 0.75, u * 1.5, u * 2.5,
         2.0**-14 - u / 2, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 3.4028234663852886e38, -3.4028234663852886e38,
         3.3895313892515355e38, 1e-45, 5.877471754111438e-39, 0.0, -0.0, np.inf, -np.inf, np.nan],
        dtype=np.float32,
    )


def make_cases(rng):
    # Uniform random bit patterns reach every exponent, subnormals, infinities and NaN payloads.
    random_bits = rng.integers(0, 2**32, size=50_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = (rng.standard_normal(3 * 1000) * 0.02).astype(np.float32)
    cases = []
    for dtype in ("F32", "F16", "BF16"):
        cases.append((f"bert.edge.{dtype.lower()}", dtype, [edge_values().size], edge_values()))
        cases.append((f"bert.random_bits.{dtype.lower()}", dtype, [100, 500], random_bits))
        cases.append((f"bert.encoder.layer.0.weight.{dtype.lower()}", dtype, [3, 1000], normal))
    # Odd element counts leave later tensors misaligned for their dtype: the reference must still load them.
    cases.append(("odd.f16", "F16", [3], np.array([1, 2, 3], dtype=np.float32)))
    cases.append(("after_odd.f32", "F32", [2, 2], np.array([1.5, -2.5, 3.25, 0], dtype=np.float32)))
    cases.append(("ids", "I32", [5], np.array([0, -1, 2**31 - 1, -(2**31), 42], dtype=np.int32).view(np.float32)))
    cases.append(("scalar", "F32", [], np.array([7.25], dtype=np.float32)))
    cases.append(("empty", "F16", [0, 4], np.zeros(0, dtype=np.float32)))
    cases.append(("10", "BF16", [2], np.array([0.1, -0.2], dtype=np.float32)))
    return cases


def expected_tensor(dtype, shape, values):
    if dtype == "I32":
        return torch.from_numpy(values.view(np.int32).copy()).reshape(shape)
    return torch.from_numpy(values.copy()).to(TORCH_DTYPE[dtype]).reshape(shape)


def same_bits(actual, expected):
    if actual.dtype != expected.dtype or list(actual.shape) != list(expected.shape):
        return f"dtype/shape {actual.dtype}{list(actual.shape)} != {expected.dtype}{list(expected.shape)}"
    a = actual.reshape(-1)
    e = expected.reshape(-1)
    if a.is_floating_point():
        both_nan = torch.isnan(a) & torch.isnan(e)
        differ = (a.view(INT_VIEW[a.dtype]) != e.view(INT_VIEW[e.dtype])) & ~both_nan
    else:
        differ = a != e
    n = int(differ.sum())
    if n:
        i = int(differ.nonzero()[0])
        return f"{n} elements differ, first at {i}: {a[i].item()!r} != {e[i].item()!r}"
    return None


def main():
    if not os.path.exists(MODULE):
        sys.exit(f"{MODULE} is missing: run `npx tsc -p tsconfig.json` first")
    rng = np.random.default_rng(20240611)
    cases = make_cases(rng)
    metadata = {"format": "pt", "written_by": "bertkit", "unicode": "ünïcode ✓"}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        spec = {
            "path": path,
            "metadata": metadata,
            "tensors": [
                {"name": name, "dtype": dtype, "shape": shape, "bits": values.view(np.uint32).tolist(), "lazy": i % 2 == 1}
                for i, (name, dtype, shape, values) in enumerate(cases)
            ],
        }
        subprocess.run(["node", "-e", WRITER, MODULE], input=json.dumps(spec).encode(), check=True, cwd=ROOT)
        leftovers = [f for f in os.listdir(tmp) if f != "model.safetensors"]
        if leftovers:
            failures.append(f"temporary files left behind: {leftovers}")

        loaded = load_file(path)
        if set(loaded) != {c[0] for c in cases}:
            failures.append(f"names differ: {sorted(set(loaded) ^ {c[0] for c in cases})}")
        with safe_open(path, framework="pt") as f:
            if f.metadata() != metadata:
                failures.append(f"metadata {f.metadata()} != {metadata}")
            lazy = {name: f.get_tensor(name) for name in f.keys()}
        for name, dtype, shape, values in cases:
            expected = expected_tensor(dtype, shape, values)
            for how, got in (("load_file", loaded.get(name)), ("safe_open", lazy.get(name))):
                problem = "missing" if got is None else same_bits(got, expected)
                if problem:
                    failures.append(f"{name} ({dtype}, {how}): {problem}")
        count = sum(int(np.prod(c[2])) for c in cases)
        size = os.path.getsize(path)

    if failures:
        print("FAIL")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print(f"OK: {len(cases)} tensors ({count} elements, {size} bytes; F32, F16, BF16, I32) written by bertkit "
          f"load in safetensors {__import__('safetensors').__version__} / torch {torch.__version__} "
          "bit-identical to torch's casts, through load_file and safe_open, metadata intact")


if __name__ == "__main__":
    main()
