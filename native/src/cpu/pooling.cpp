// Masked max pooling of the CPU backend (the "max" classification head): per
// feature, the maximum of h [batch, seq, dim] over each row's unpadded tokens,
// and the token it came from, which backward sends the gradient to.
//
// The choice, per (b, d), scanning s = 0, 1, ... over tokens with mask != 0:
// take the first token; then replace the best with a value that is larger,
// or that is NaN while the best is not. So the first index wins ties and the
// first NaN wins over everything (torch's max propagates NaN). The CUDA
// kernel makes the same comparisons in the same order: the results match bit
// for bit.
#include <algorithm>
#include <cmath>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 32768;  // elements per thread worth a wake-up

}  // namespace

void CpuBackend::masked_max_pool_forward(int64_t batch, int64_t seq, int64_t dim, const float* h,
                                         const int32_t* mask, float* out, int32_t* argmax) {
  if (batch * dim == 0) return;
  // One batch row per task: its tokens are walked in order, a whole [dim] row
  // of h at a time (contiguous reads), updating the running best of every
  // feature. Rows are independent, so the thread count changes nothing.
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, seq * dim));
  ThreadPool::instance().parallel_for(batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* best = out + b * dim;
      int32_t* at = argmax + b * dim;
      std::fill(at, at + dim, -1);
      for (int64_t s = 0; s < seq; ++s) {
        if (mask[b * seq + s] == 0) continue;
        const float* row = h + (b * seq + s) * dim;
        for (int64_t d = 0; d < dim; ++d) {
          const float v = row[d];
          if (at[d] < 0 || v > best[d] || (std::isnan(v) && !std::isnan(best[d]))) {
            best[d] = v;
            at[d] = static_cast<int32_t>(s);
          }
        }
      }
      // No token in the row: nothing was chosen (argmax stays -1); out gets a
      // finite 0 rather than whatever the buffer held.
      for (int64_t d = 0; d < dim; ++d) {
        if (at[d] < 0) best[d] = 0.0f;
      }
    }
  });
}

void CpuBackend::masked_max_pool_backward(int64_t batch, int64_t seq, int64_t dim, const int32_t* argmax,
                                          const float* dout, float* dh) {
  if (dh == nullptr || batch * dim == 0) return;
  // Each (b, d) adds into its own element dh[b, argmax[b, d], d]: distinct d
  // or distinct b, so no two updates meet and the order does not matter.
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, dim));
  ThreadPool::instance().parallel_for(batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t s = argmax[b * dim + d];
        if (s < 0 || s >= seq) continue;  // an empty row's -1, or a value that is no token
        dh[(b * seq + s) * dim + d] += dout[b * dim + d];
      }
    }
  });
}

}  // namespace bertkit
