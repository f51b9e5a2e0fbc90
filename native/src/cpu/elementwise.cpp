// Elementwise helpers and reductions of the CPU backend.
//
// Loops are plain indexed loops over contiguous floats so -O3 vectorises them.
// Pointers are not marked __restrict__: the Node-API layer lets several of these
// ops run in place (axpby with x == y, mul with out == a), which is safe because
// every element is read before it is written at the same index.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "column_sums.h"
#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

// Below this many elements a loop costs less than waking a worker thread.
constexpr int64_t kGrain = 32768;

// Reductions sum fixed blocks of this many elements, then add the block sums in
// block order. The block layout depends only on n, so the result is the same
// for every thread count, not merely deterministic for one.
constexpr int64_t kReduceBlock = 8192;

// Sum of x[0..n) in double. Eight independent lanes let the compiler keep the
// adds in vector registers (a single accumulator would serialise them); double
// lanes make the error negligible next to the float result.
template <typename Term>
double lane_sum(const float* x, int64_t n, Term term) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(static_cast<double>(x[i + l]));
  }
  for (; i < n; ++i) lanes[0] += term(static_cast<double>(x[i]));
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

template <typename Term>
double blocked_sum(int64_t n, const float* x, Term term) {
  int64_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  ThreadPool::instance().parallel_for(blocks, kGrain / kReduceBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      int64_t begin = b * kReduceBlock;
      int64_t len = std::min(kReduceBlock, n - begin);
      partial[static_cast<size_t>(b)] = lane_sum(x + begin, len, term);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

void CpuBackend::fill(float* x, int64_t n, float value) {
  // Buffers past a few MB (the word embeddings' gradient: 47 MB for MiniLM,
  // 89 MB for bert-base, zeroed every step) are not read back from cache
  // anyway: stream them.
  const vecmath::Kernels* simd = vecmath::simd();
  if (simd && n >= (int64_t{1} << 20)) {
    ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
      simd->fill_stream(end - begin, value, x + begin);
    });
    return;
  }
  ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] = value;
  });
}

void CpuBackend::axpby(int64_t n, float alpha, const float* x, float beta, float* y) {
  ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    // beta == 0 must not read y: 0 * NaN would leak stale NaN/inf into the result.
    if (beta == 0.0f) {
      for (int64_t i = begin; i < end; ++i) y[i] = alpha * x[i];
    } else {
      for (int64_t i = begin; i < end; ++i) y[i] = alpha * x[i] + beta * y[i];
    }
  });
}

void CpuBackend::mul(int64_t n, const float* a, const float* b, float* out) {
  ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = a[i] * b[i];
  });
}

namespace {

// The bias loops are adds only (no product a compiler could contract into an
// FMA), so the x86-64-v3/v4 clones (floats_to_bf16 below explains them) give
// the baseline loop's bits, 8 or 16 floats at a time instead of SSE2's 4.
#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && __GNUC__ >= 12))
#define BERTKIT_ADD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BERTKIT_ADD_CLONES
#endif

BERTKIT_ADD_CLONES
void add_bias_range(int64_t r0, int64_t r1, int64_t cols, const float* __restrict bias, float* __restrict y) {
  for (int64_t r = r0; r < r1; ++r) {
    float* __restrict row = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

// acc[c] += x[r, c0 + c] over the rows, in row order, for c < width.
BERTKIT_ADD_CLONES
void sum_rows_into(int64_t rows, int64_t cols, const float* x, float* out, bool accumulate) {
  // column_sums.h: each column summed over the rows in order, whatever the
  // thread count; written as 0 + total, the bits of a zero-filled out.
  for_column_ranges(rows, cols, kGrain, out, !accumulate, [&](int64_t r, int64_t c0, int64_t width) {
    const float* row = x + r * cols + c0;
    if (r + 1 < rows) prefetch_floats(row + cols, width);
    return row;
  });
}

}  // namespace

void CpuBackend::add_bias_rows(int64_t rows, int64_t cols, const float* bias, float* y) {
  if (cols == 0) return;
  int64_t grain_rows = std::max<int64_t>(1, kGrain / cols);
  ThreadPool::instance().parallel_for(rows, grain_rows, [&](int64_t r0, int64_t r1) {
    add_bias_range(r0, r1, cols, bias, y);
  });
}

void CpuBackend::sum_rows(int64_t rows, int64_t cols, const float* x, float* out) {
  sum_rows_into(rows, cols, x, out, true);
}

void CpuBackend::sum_rows_write(int64_t rows, int64_t cols, const float* x, float* out) {
  sum_rows_into(rows, cols, x, out, false);
}

void CpuBackend::sum(int64_t n, const float* x, float* out) {
  double total = blocked_sum(n, x, [](double v) { return v; });
  out[0] = static_cast<float>(static_cast<double>(out[0]) + total);
}

void CpuBackend::sum_squares(int64_t n, const float* x, float* out) {
  double total = blocked_sum(n, x, [](double v) { return v * v; });
  out[0] = static_cast<float>(static_cast<double>(out[0]) + total);
}

namespace {

// float32 -> bfloat16, round to nearest even, NaN kept quiet: float_to_bf16
// (dtype.h) without the branch, so the compiler vectorises it. Under
// autocast every Linear casts its input and, once per step, its weight, so
// this runs over tens of millions of elements a step. Built also for
// x86-64-v3 / v4 where the toolchain offers function multiversioning
// (attention.cpp explains the clones); every clone gives the same bits.
#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && __GNUC__ >= 12))
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void floats_to_bf16(int64_t n, const float* __restrict src, uint16_t* __restrict dst) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, src + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (u >> 16) | 0x40u;
    dst[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  }
}

}  // namespace

void CpuBackend::cast(int64_t n, DType src_dtype, const void* src, DType dst_dtype, void* dst) {
  auto run = [n](auto convert) {
    ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) convert(i);
    });
  };
  const float* f32_src = static_cast<const float*>(src);
  float* f32_dst = static_cast<float*>(dst);
  const uint16_t* u16_src = static_cast<const uint16_t*>(src);
  uint16_t* u16_dst = static_cast<uint16_t*>(dst);

  if (src_dtype == DType::F32 && dst_dtype == DType::F32) {
    if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  } else if (src_dtype == DType::F32 && dst_dtype == DType::F16) {
    run([&](int64_t i) { u16_dst[i] = float_to_half(f32_src[i]); });
  } else if (src_dtype == DType::F32 && dst_dtype == DType::BF16) {
    ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
      floats_to_bf16(end - begin, f32_src + begin, u16_dst + begin);
    });
  } else if (src_dtype == DType::F16 && dst_dtype == DType::F32) {
    run([&](int64_t i) { f32_dst[i] = half_to_float(u16_src[i]); });
  } else if (src_dtype == DType::BF16 && dst_dtype == DType::F32) {
    run([&](int64_t i) { f32_dst[i] = bf16_to_float(u16_src[i]); });
  } else if (src_dtype == DType::I32 && dst_dtype == DType::F32) {
    const int32_t* i32_src = static_cast<const int32_t*>(src);
    // int -> float rounds to nearest even above 2^24, as torch's .float() does.
    run([&](int64_t i) { f32_dst[i] = static_cast<float>(i32_src[i]); });
  } else {
    throw Error(std::string("cannot cast ") + dtype_name(src_dtype) + " to " + dtype_name(dst_dtype));
  }
}

void CpuBackend::cast_sum_rows(int64_t rows, int64_t cols, const float* x, DType dst_dtype, void* dst, float* sums,
                               bool write_sums) {
  if (dst_dtype != DType::BF16 && dst_dtype != DType::F16) {
    throw Error(std::string("cast_sum_rows: cannot cast float32 to ") + dtype_name(dst_dtype));
  }
  if (cols == 0) return;
  uint16_t* out = static_cast<uint16_t*>(dst);
  // sum_rows_into's walk (column_sums.h), each row segment cast on the way:
  // the sums get sum_rows' bits, dst the cast's.
  for_column_ranges(rows, cols, kGrain, sums, write_sums, [&](int64_t r, int64_t c0, int64_t width) {
    const float* row = x + r * cols + c0;
    if (r + 1 < rows) prefetch_floats(row + cols, width);
    uint16_t* to = out + r * cols + c0;
    if (dst_dtype == DType::BF16) {
      floats_to_bf16(width, row, to);
    } else {
      for (int64_t c = 0; c < width; ++c) to[c] = float_to_half(row[c]);
    }
    return row;
  });
}

void CpuBackend::slice_rows_forward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                                    int64_t count, const float* src, float* dst) {
  if (cols == 0) return;
  int64_t grain_rows = std::max<int64_t>(1, kGrain / cols);
  ThreadPool::instance().parallel_for(batch * count, grain_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t b = r / count, j = r % count;
      const float* from = src + (b * src_rows + start + j) * cols;
      std::memcpy(dst + r * cols, from, static_cast<size_t>(cols) * sizeof(float));
    }
  });
}

void CpuBackend::slice_rows_backward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                                     int64_t count, const float* ddst, float* dsrc) {
  if (cols == 0) return;
  int64_t grain_rows = std::max<int64_t>(1, kGrain / cols);
  // Each destination row receives exactly one source row, so threads never collide.
  ThreadPool::instance().parallel_for(batch * count, grain_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t b = r / count, j = r % count;
      float* to = dsrc + (b * src_rows + start + j) * cols;
      const float* from = ddst + r * cols;
      for (int64_t c = 0; c < cols; ++c) to[c] += from[c];
    }
  });
}

}  // namespace bertkit
