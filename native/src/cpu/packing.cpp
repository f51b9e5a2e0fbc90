// Gathers and scatters of whole rows, forward beside backward: what unpadded
// execution uses to move between a padded batch [batch * seq, cols] and its
// real tokens [tokens, cols], and to pick the first token of each sequence.
//
// Forward (a gather) parallelises over output rows: each writes its own row.
// Backward (a scatter-add) may see an index twice in general, so it
// parallelises over column blocks instead: every thread owns a slice of the
// columns of every row, and adds in index order, so no update is lost and the
// result does not depend on the thread count.
#include <algorithm>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

// Elements per task: well above the cost of waking a thread.
constexpr int64_t kGrain = 16384;

}  // namespace

void CpuBackend::gather_rows_forward(int64_t n, int64_t cols, int64_t /*src_rows*/, const int32_t* index,
                                     const float* src, float* dst, bool accumulate) {
  if (n == 0 || cols == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrain / cols);
  ThreadPool::instance().parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* s = src + static_cast<int64_t>(index[i]) * cols;
      float* d = dst + i * cols;
      if (accumulate) {
        for (int64_t c = 0; c < cols; ++c) d[c] += s[c];
      } else {
        std::copy(s, s + cols, d);
      }
    }
  });
}

void CpuBackend::gather_rows_backward(int64_t n, int64_t cols, int64_t /*src_rows*/, const int32_t* index,
                                      const float* ddst, float* dsrc) {
  if (n == 0 || cols == 0 || dsrc == nullptr) return;
  // Column blocks of 64 floats (a cache line's multiple), at least kGrain
  // elements of work each.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, n * kBlock));
  ThreadPool::instance().parallel_for(blocks, grain, [&](int64_t begin, int64_t end) {
    const int64_t c0 = begin * kBlock, c1 = std::min(cols, end * kBlock);
    for (int64_t i = 0; i < n; ++i) {
      const float* s = ddst + i * cols;
      float* d = dsrc + static_cast<int64_t>(index[i]) * cols;
      for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
    }
  });
}

}  // namespace bertkit
