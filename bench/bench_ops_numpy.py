#!/usr/bin/env python3
"""numpy side of `npm run bench:ops`: the same GEMM shapes and a few per-op
equivalents, timed the same way (warm-up, then the median of repetitions).

Run as `bench_ops_numpy.py --serve` by bench/bench-ops.ts: it reads one JSON
request per line on stdin and answers one JSON line on stdout, so the caller
can interleave its measurements with bertkit's. Requests:
  {"cmd": "info"}                              which numpy, BLAS and kernel set
  {"cmd": "gemm", "case": {...}, <timing>}     one GEMM shape (GFLOP/s)
  {"cmd": "op", "op": {...}, <timing>}         one per-op equivalent
where <timing> is warmup, budgetSeconds, minReps, maxReps. The caller sets
the thread count (OPENBLAS_NUM_THREADS etc.) and decides which OPENBLAS_*
variables this process sees; "info" reports what numpy ended up using.
"""
import json
import platform
import sys
import time

import numpy as np


def blas_info():
    info = {"numpy": np.__version__, "python": platform.python_version()}
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            info.update(
                blas=p.get("internal_api"),
                blas_version=p.get("version"),
                kernel=p.get("architecture"),
                threads=p.get("num_threads"),
                library=p.get("filepath"),
            )
    except ImportError:
        info["kernel"] = "unknown (threadpoolctl not installed)"
    return info


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "reps": reps}


def reps_for(seconds_per_call, budget_s, lo, hi):
    if seconds_per_call <= 0:
        return hi
    return int(max(lo, min(hi, budget_s / seconds_per_call)))


def gemm_case(case, rng):
    m, n, k, batch = case["m"], case["n"], case["k"], case["batch"]
    ta, tb = case["transA"], case["transB"]

    def mat(rows, cols):
        shape = (batch, rows, cols) if batch > 1 else (rows, cols)
        return rng.standard_normal(shape, dtype=np.float32)

    def t(x):
        return np.swapaxes(x, -1, -2)

    # Stored as bertkit stores them, so numpy hands BLAS the same transposes.
    a = mat(k, m) if ta else mat(m, k)
    b = mat(n, k) if tb else mat(k, n)
    out = np.empty((batch, m, n) if batch > 1 else (m, n), dtype=np.float32)
    opa = t(a) if ta else a
    opb = t(b) if tb else b
    return lambda: np.matmul(opa, opb, out=out)


def layernorm_fwd(rows, cols, rng):
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    g = np.ones(cols, np.float32)
    b = np.zeros(cols, np.float32)

    def run():
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * g + b

    return run


def attention_fwd(batch, seq, heads, head_dim, rng):
    q = rng.standard_normal((batch, heads, seq, head_dim), dtype=np.float32)
    k = rng.standard_normal((batch, heads, seq, head_dim), dtype=np.float32)
    v = rng.standard_normal((batch, heads, seq, head_dim), dtype=np.float32)
    mask = np.zeros((batch, 1, 1, seq), np.float32)
    scale = np.float32(1.0 / np.sqrt(head_dim))

    def run():
        s = np.matmul(q, np.swapaxes(k, -1, -2)) * scale + mask
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return np.matmul(s, v)

    return run


def gelu_tanh_fwd(n, rng):
    x = rng.standard_normal(n, dtype=np.float32)
    c = np.float32(np.sqrt(2.0 / np.pi))
    return lambda: 0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))


def adamw(n, rng):
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    m = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    lr, b1, b2, eps, wd, step = 2e-5, 0.9, 0.999, 1e-8, 0.01, 10

    def run():
        p[:] *= 1 - lr * wd
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v / (1 - b2**step)) + eps
        p[:] = p - (lr / (1 - b1**step)) * m / denom

    return run


def bias_add(rows, cols, rng):
    y = rng.standard_normal((rows, cols), dtype=np.float32)
    b = rng.standard_normal(cols, dtype=np.float32)

    def run():
        y[:] += b

    return run


def sum_rows(rows, cols, rng):
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    return lambda: x.sum(axis=0)


OPS = {
    "layernorm_forward": lambda s, rng: layernorm_fwd(s["rows"], s["cols"], rng),
    "attention_forward": lambda s, rng: attention_fwd(s["batch"], s["seq"], s["heads"], s["headDim"], rng),
    "gelu_tanh_forward": lambda s, rng: gelu_tanh_fwd(s["n"], rng),
    "adamw_step": lambda s, rng: adamw(s["n"], rng),
    "add_bias_rows": lambda s, rng: bias_add(s["rows"], s["cols"], rng),
    "sum_rows": lambda s, rng: sum_rows(s["rows"], s["cols"], rng),
}


def measure(fn, req):
    warmup = req.get("warmup", 2)
    probe = timed(fn, warmup, 1)["median_s"]
    reps = reps_for(probe, req.get("budgetSeconds", 0.5), req.get("minReps", 5), req.get("maxReps", 50))
    return timed(fn, 0, reps)


def answer(req, rng):
    if req["cmd"] == "info":
        return blas_info()
    if req["cmd"] == "gemm":
        case = req["case"]
        r = measure(gemm_case(case, rng), req)
        flops = 2.0 * case["m"] * case["n"] * case["k"] * case["batch"]
        r.update(id=case["id"], gflops=flops / r["median_s"] / 1e9)
        return r
    if req["cmd"] == "op":
        op = req["op"]
        r = measure(OPS[op["numpy"]](op["shape"], rng), req)
        r.update(id=op["id"])
        return r
    raise ValueError("unknown request " + json.dumps(req))


def main():
    if "--serve" not in sys.argv[1:]:
        sys.exit("usage: bench_ops_numpy.py --serve  (driven by bench/bench-ops.ts)")
    rng = np.random.default_rng(0)
    for line in sys.stdin:
        if line.strip():
            json.dump(answer(json.loads(line), rng), sys.stdout)
            sys.stdout.write("\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
