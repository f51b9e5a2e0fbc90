// Softmax over the last dimension with DeBERTa's two-sided mask, with the
// semantics of cpu/softmax.cpp (read its header): scores [groups, batch, seq,
// seq], mask [batch, seq]; (i, j) kept when tokens i and j are both real, the
// rest set to -FLT_MAX before the softmax; no gradient to what was filled.
// One warp per row, sums in double.
#include <cfloat>
#include <climits>

#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

constexpr int kRowsPerBlock = cuda::kThreads / cuda::kWarpSize;  // one warp per row

__global__ void masked_softmax_forward_kernel(int64_t rows, int64_t batch, int64_t seq, float scale, const float* x,
                                              const int32_t* mask, float* probs) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together
  const int64_t b = (row / seq) % batch, i = row % seq;
  const int32_t* m = mask + b * seq;
  const bool query_kept = m[i] != 0;
  const float* from = x + row * seq;
  float* p = probs + row * seq;
  float max = -INFINITY;
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) {
    const float t = query_kept && m[j] != 0 ? __fmul_rn(from[j], scale) : -FLT_MAX;
    p[j] = t;
    max = fmaxf(max, t);
  }
  max = cuda::warp_max(max);
  double sum = 0.0;
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) {
    const float e = expf(__fsub_rn(p[j], max));
    p[j] = e;
    sum += static_cast<double>(e);
  }
  const float inv = static_cast<float>(1.0 / cuda::warp_sum(sum));
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) p[j] = __fmul_rn(p[j], inv);
}

__global__ void masked_softmax_backward_kernel(int64_t rows, int64_t batch, int64_t seq, float scale,
                                               const float* probs, const float* dprobs, const int32_t* mask,
                                               float* dx) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;
  const int64_t b = (row / seq) % batch, i = row % seq;
  const int32_t* m = mask + b * seq;
  if (m[i] == 0) return;  // a padded query: every element was filled
  const float* p = probs + row * seq;
  const float* dp = dprobs + row * seq;
  float* d = dx + row * seq;
  double dot = 0.0;
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) dot += static_cast<double>(p[j]) * static_cast<double>(dp[j]);
  const float rowsum = static_cast<float>(cuda::warp_sum(dot));
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) {
    if (m[j] != 0) d[j] += __fmul_rn(scale, __fmul_rn(p[j], __fsub_rn(dp[j], rowsum)));
  }
}

unsigned row_blocks(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > INT32_MAX) throw Error("cuda masked_softmax: " + std::to_string(rows) + " rows is larger than the grid");
  return static_cast<unsigned>(blocks);
}

}  // namespace

void CudaBackend::masked_softmax_forward(int64_t groups, int64_t batch, int64_t seq, float scale, const float* x,
                                         const int32_t* mask, float* probs) {
  const int64_t rows = groups * batch * seq;
  if (rows == 0) return;
  masked_softmax_forward_kernel<<<row_blocks(rows), cuda::kThreads, 0, stream_>>>(rows, batch, seq, scale, x, mask,
                                                                                  probs);
  cuda::check_launch("masked_softmax_forward");
}

void CudaBackend::masked_softmax_backward(int64_t groups, int64_t batch, int64_t seq, float scale, const float* probs,
                                          const float* dprobs, const int32_t* mask, float* dx) {
  const int64_t rows = groups * batch * seq;
  if (rows == 0) return;
  masked_softmax_backward_kernel<<<row_blocks(rows), cuda::kThreads, 0, stream_>>>(rows, batch, seq, scale, probs,
                                                                                   dprobs, mask, dx);
  cuda::check_launch("masked_softmax_backward");
}

}  // namespace bertkit
