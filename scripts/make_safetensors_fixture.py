#!/usr/bin/env python3
"""Writes test/fixtures/safetensors/python_written.safetensors with the
reference `safetensors` package, so the TypeScript reader is tested against
files the real thing produces (and its F16/BF16 rounding against torch's).

    pip install safetensors torch numpy
    python3 scripts/make_safetensors_fixture.py

The values are fixed in this script and repeated in
test/hub/safetensors.test.ts; change both together. Reruns give the same
tensors, but the file's bytes may differ: safetensors keeps the metadata in a
Rust HashMap, whose key order varies from run to run.
"""
import math
import os
import sys

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "safetensors", "python_written.safetensors")

nan, inf = math.nan, math.inf

# Float32 values with the edge cases a reader must get right.
F32 = [0.0, -0.0, 1.0, -2.5, 3.4028234663852886e38, 1.401298464324817e-45, 1.1754943508222875e-38, inf, -inf, nan]

# Exactly representable in float16, so the decoded values are known without rounding:
# normals, the largest finite, the smallest normal and subnormal, signed zero, specials.
F16_EXACT = [1.0, -2.0, 0.5, 65504.0, 2.0**-14, 2.0**-24, 3 * 2.0**-24, -(2.0**-24), 0.333251953125, -0.0, inf, -inf, nan]

# Exactly representable in bfloat16.
BF16_EXACT = [1.0, -2.0, 0.5, 3.3895313892515355e38, 2.0**-126, 2.0**-133, -0.0, 1.0078125, inf, -inf, nan]


def f16_rounding_cases():
    """float32 inputs whose float16 rounding is easy to get wrong: ties to even,
    overflow to infinity, subnormals, and carries from subnormal to normal."""
    u = 2.0**-24  # float16 subnormal unit
    return [
        1 + 2.0**-11,  # tie -> 1.0 (even)
        1 + 3 * 2.0**-11,  # tie -> 1 + 2^-9 (even)
        1 + 2.0**-11 + 2.0**-20,  # just above the tie -> up
        -(1 + 2.0**-11),
        65504.0, 65519.0, 65520.0, 70000.0, -65520.0,  # 65520 is the tie between max finite and infinity
        u / 2,  # tie between 0 and the smallest subnormal -> 0
        u * 0.75,  # -> smallest subnormal
        u * 1.5,  # tie between 1u and 2u -> 2u
        u * 2.5,  # tie -> 2u
        2.0**-14 - u / 2,  # tie between largest subnormal and smallest normal -> normal (even)
        2.0**-14 - u,  # largest subnormal, exact
        2.0**-30, -(2.0**-30),  # underflow to signed zero
        1e-45, 3.4028234663852886e38,  # float32 subnormal and max
        0.1, -0.2, 0.3, 3.14159265, 1e-3, 1e4, -12345.678,
        inf, -inf, nan, 0.0, -0.0,
    ]


def bf16_rounding_cases():
    return [
        1 + 2.0**-8,  # tie -> 1.0
        1 + 3 * 2.0**-8,  # tie -> 1 + 2^-6
        1 + 2.0**-8 + 2.0**-20,  # above the tie -> up
        -(1 + 3 * 2.0**-8),
        3.4028234663852886e38,  # rounds up to infinity
        3.3895313892515355e38,  # largest finite bfloat16, exact
        1e-45, 1.1754943508222875e-38, 5.877471754111438e-39,  # subnormals and the smallest normal
        0.1, -0.2, 0.3, 3.14159265, 1e-3, 1e4, -12345.678,
        inf, -inf, nan, 0.0, -0.0,
    ]


def main():
    g = torch.Generator().manual_seed(1234)
    f16_src = torch.cat([torch.tensor(f16_rounding_cases(), dtype=torch.float32), torch.randn(16, generator=g) * 100])
    bf16_src = torch.cat([torch.tensor(bf16_rounding_cases(), dtype=torch.float32), torch.randn(16, generator=g) * 100])
    tensors = {
        "f32": torch.tensor(F32, dtype=torch.float32).reshape(2, 5),
        "f16_exact": torch.tensor(F16_EXACT, dtype=torch.float16),
        "bf16_exact": torch.tensor(BF16_EXACT, dtype=torch.bfloat16),
        "f16_source": f16_src,
        "f16_rounded": f16_src.to(torch.float16),
        "bf16_source": bf16_src,
        "bf16_rounded": bf16_src.to(torch.bfloat16),
        "i64": torch.tensor([[0, -1, 2**31 - 1], [-(2**31), 42, 7]], dtype=torch.int64),
        "i32": torch.tensor([5, -6, 2**31 - 1], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True], dtype=torch.bool),
        "f64": torch.tensor([0.1, -1e300, 1e-300, 1.0], dtype=torch.float64),
        "scalar": torch.tensor(7.25, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"format": "pt", "source": "scripts/make_safetensors_fixture.py"})
    os.chmod(OUT, 0o644)  # save_file creates it owner-only; the tests may run as another user
    size = os.path.getsize(OUT)
    print(f"wrote {os.path.normpath(OUT)} ({size} bytes)")
    if size > 10_000:
        sys.exit("fixture grew past 10 KB")


if __name__ == "__main__":
    main()
