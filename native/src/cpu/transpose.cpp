// Swapping the two middle axes of a 4-D tensor: [outer, rows, cols, inner] ->
// [outer, cols, rows, inner]. DeBERTa's attention uses it to move heads in
// front of tokens ([batch·seq, heads, head_dim] -> [heads, batch·seq, head_dim])
// and to transpose its position-to-content scores (inner = 1).
#include <algorithm>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 32768;  // elements per thread worth a wake-up

// Visits every (o, r, c) block of `inner` floats once; fn(src_offset, dst_offset).
// Threads split the destination's (o, c) rows, so none writes where another does.
template <typename Fn>
void for_each_block(int64_t outer, int64_t rows, int64_t cols, int64_t inner, Fn fn) {
  const int64_t dst_rows = outer * cols;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, rows * inner));
  ThreadPool::instance().parallel_for(dst_rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t oc = begin; oc < end; ++oc) {
      const int64_t o = oc / cols, c = oc % cols;
      for (int64_t r = 0; r < rows; ++r) {
        fn(((o * rows + r) * cols + c) * inner, (oc * rows + r) * inner);
      }
    }
  });
}

}  // namespace

void CpuBackend::swap_axes_forward(int64_t outer, int64_t rows, int64_t cols, int64_t inner,
                                   const float* src, float* dst) {
  if (outer * rows * cols * inner == 0) return;
  for_each_block(outer, rows, cols, inner, [&](int64_t s, int64_t d) {
    std::copy(src + s, src + s + inner, dst + d);
  });
}

void CpuBackend::swap_axes_backward(int64_t outer, int64_t rows, int64_t cols, int64_t inner,
                                    const float* ddst, float* dsrc) {
  if (outer * rows * cols * inner == 0) return;
  // Each source element receives from exactly one destination element.
  for_each_block(outer, rows, cols, inner, [&](int64_t s, int64_t d) {
    for (int64_t i = 0; i < inner; ++i) dsrc[s + i] += ddst[d + i];
  });
}

}  // namespace bertkit
