// Softmax over the last dimension with DeBERTa's two-sided mask: scores
// [groups, batch, seq, seq] (groups = heads), mask [batch, seq]. Element (i, j)
// is kept when both token i and token j are real; the others take -FLT_MAX
// (torch's masked_fill with finfo(float32).min) before the softmax, which is
// what transformers' DisentangledSelfAttention does. A padded query row has
// nothing kept: all its entries are equal, so it comes out uniform, not NaN.
//
// Backward: masked_fill passes no gradient to what it filled, so
//   dx_ij += kept_ij ? scale * p_ij * (dp_ij - sum_k p_ik dp_ik) : 0.
// Each row is one thread's, summed in double in column order: the result does
// not depend on the thread count.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 32768;  // elements per thread worth a wake-up

// s = softmax(scale * s + bias) in place, as attention.cpp's row softmax.
void softmax_row(int64_t n, float scale, const float* bias, float* s) {
  if (const vecmath::Kernels* simd = vecmath::simd()) {
    simd->softmax_row(n, scale, bias, s);
    return;
  }
  float max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = s[j] * scale + bias[j];
    max = std::max(max, s[j]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - max);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

}  // namespace

void CpuBackend::masked_softmax_forward(int64_t groups, int64_t batch, int64_t seq, float scale,
                                        const float* x, const int32_t* mask, float* probs) {
  const int64_t rows = groups * batch * seq;
  if (rows == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrain / seq);
  ThreadPool::instance().parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> bias(static_cast<size_t>(seq));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = (row / seq) % batch, i = row % seq;
      const int32_t* m = mask + b * seq;
      const float* from = x + row * seq;
      float* p = probs + row * seq;
      // A filled element enters as 0 * scale + (-FLT_MAX) = -FLT_MAX exactly.
      for (int64_t j = 0; j < seq; ++j) {
        const bool kept = m[i] != 0 && m[j] != 0;
        p[j] = kept ? from[j] : 0.0f;
        bias[j] = kept ? 0.0f : -FLT_MAX;
      }
      softmax_row(seq, scale, bias.data(), p);
    }
  });
}

void CpuBackend::masked_softmax_backward(int64_t groups, int64_t batch, int64_t seq, float scale,
                                         const float* probs, const float* dprobs,
                                         const int32_t* mask, float* dx) {
  const int64_t rows = groups * batch * seq;
  if (rows == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrain / seq);
  ThreadPool::instance().parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = (row / seq) % batch, i = row % seq;
      const int32_t* m = mask + b * seq;
      if (m[i] == 0) continue;  // a padded query: every element was filled
      const float* p = probs + row * seq;
      const float* dp = dprobs + row * seq;
      float* d = dx + row * seq;
      double dot = 0.0;
      for (int64_t j = 0; j < seq; ++j) dot += static_cast<double>(p[j]) * dp[j];
      const float rowsum = static_cast<float>(dot);
      for (int64_t j = 0; j < seq; ++j) {
        if (m[j] != 0) d[j] += scale * (p[j] * (dp[j] - rowsum));
      }
    }
  });
}

}  // namespace bertkit
