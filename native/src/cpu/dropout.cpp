// Dropout, fp32, forward and backward.
//
// Offsets: the mask of a call keyed by (seed, offset) uses Philox blocks
// offset, offset + 1, ..., offset + ceil(n / 4) - 1, because one Philox4x32-10
// block yields four draws and element i takes lane i % 4 of block i / 4 (see
// philox_uniform in philox.h). A caller that wants a fresh mask next time must
// therefore advance its offset by ceil(n / 4), not by n, and by ceil(n / 4)
// of the probs tensor for attention dropout (lib/tensor/random.ts does this).
// Backward is called with the same (seed, offset) as forward and regenerates
// the mask instead of storing it.
//
// Both directions multiply by a factor of 0 or 1/(1-p), as torch does
// (input * noise), rather than selecting 0: a dropped NaN or inf stays NaN,
// so a diverging run is not hidden by the mask.
//
// With AVX2 or AVX-512 the mask comes from vecmath.h's dropout_apply, which
// runs Philox on 4 or 8 counters at once (about 10x faster) and draws the
// identical mask.
#include <algorithm>

#include "bertkit/philox.h"
#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

// Elements per parallel task: well above the cost of waking a thread.
constexpr int64_t kGrainBlocks = 4096;

float keep_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }

// Calls fn(i, factor) for every element i in [0, n): factor is `scale` for a
// kept element and 0 for a dropped one. Each Philox block is computed once for
// its four elements; philox_keep would recompute it per element (about 3x
// slower). The draw -> keep rule must stay exactly philox_uniform(...) >= p;
// test/ops/dropout.test.ts pins it against an independent JavaScript port.
template <typename Fn>
void for_each_factor(int64_t n, float p, uint64_t seed, uint64_t offset, const Fn& fn) {
  const float scale = keep_scale(p);
  const int64_t blocks = (n + 3) / 4;
  ThreadPool::instance().parallel_for(blocks, kGrainBlocks, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const uint64_t counter = offset + static_cast<uint64_t>(blk);
      const Philox4 r = philox4x32_10(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
                                      0u, 0u, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
      const int64_t first = blk * 4;
      const int lanes = static_cast<int>(std::min<int64_t>(4, n - first));
      for (int lane = 0; lane < lanes; ++lane) {
        const float u = static_cast<float>(r.v[lane] >> 8) * (1.0f / 16777216.0f);
        fn(first + lane, u >= p ? scale : 0.0f);
      }
    }
  });
}

// y = x * factor (or y += ...) through the vector kernel, split on block
// boundaries so each thread starts on a whole Philox block.
bool simd_apply(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x, float* y, bool accumulate) {
  const vecmath::Store store = accumulate ? vecmath::Store::Add : vecmath::Store::Write;
  const vecmath::Kernels* simd = vecmath::simd();
  if (!simd) return false;
  const float scale = keep_scale(p);
  ThreadPool::instance().parallel_for((n + 3) / 4, kGrainBlocks, [=](int64_t begin, int64_t end) {
    const int64_t first = begin * 4, count = std::min(end * 4, n) - first;
    simd->dropout_apply(seed, offset, static_cast<uint64_t>(first), count, p, scale, x + first, y + first, store);
  });
  return true;
}

// The rows variant: row r of x / y draws the elements row_index[r] * cols + c
// of the padded tensor it came from. Rows are the unit of work; a row's draws
// are a contiguous range of flat indices, which dropout_apply (or the scalar
// loop) takes from any starting element.
void apply_rows(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset, const int32_t* row_index,
                const float* x, float* y, vecmath::Store store) {
  const bool accumulate = store == vecmath::Store::Add, write_sum = store == vecmath::Store::WriteSum;
  const float scale = keep_scale(p);
  const vecmath::Kernels* simd = vecmath::simd();
  const int64_t grain = std::max<int64_t>(1, kGrainBlocks * 4 / std::max<int64_t>(cols, 1));
  ThreadPool::instance().parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint64_t first = static_cast<uint64_t>(row_index[r]) * static_cast<uint64_t>(cols);
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      if (p == 0.0f) {
        for (int64_t c = 0; c < cols; ++c) yr[c] = accumulate ? yr[c] + xr[c] : write_sum ? 0.0f + xr[c] : xr[c];
      } else if (simd) {
        simd->dropout_apply(seed, offset, first, cols, p, scale, xr, yr, store);
      } else {
        for (int64_t c = 0; c < cols; ++c) {
          const float f = philox_keep(seed, offset, first + static_cast<uint64_t>(c), p) ? scale : 0.0f;
          const float v = xr[c] * f;
          yr[c] = accumulate ? yr[c] + v : write_sum ? 0.0f + v : v;
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::dropout_rows_forward(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                      const int32_t* row_index, const float* x, float* y) {
  apply_rows(rows, cols, p, seed, offset, row_index, x, y, vecmath::Store::Write);
}

void CpuBackend::dropout_rows_backward(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                       const int32_t* row_index, const float* dy, float* dx) {
  apply_rows(rows, cols, p, seed, offset, row_index, dy, dx, vecmath::Store::Add);
}

void CpuBackend::dropout_rows_backward_write(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                             const int32_t* row_index, const float* dy, float* dx) {
  apply_rows(rows, cols, p, seed, offset, row_index, dy, dx, vecmath::Store::WriteSum);
}

void CpuBackend::dropout_forward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                                 float* y) {
  if (p == 0.0f) {
    copy(y, x, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  if (simd_apply(n, p, seed, offset, x, y, false)) return;
  for_each_factor(n, p, seed, offset, [&](int64_t i, float factor) { y[i] = x[i] * factor; });
}

void CpuBackend::dropout_backward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                                  float* dx) {
  if (p == 0.0f) {
    ThreadPool::instance().parallel_for(n, kGrainBlocks * 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) dx[i] += dy[i];
    });
    return;
  }
  if (simd_apply(n, p, seed, offset, dy, dx, true)) return;
  for_each_factor(n, p, seed, offset, [&](int64_t i, float factor) { dx[i] += dy[i] * factor; });
}

}  // namespace bertkit
