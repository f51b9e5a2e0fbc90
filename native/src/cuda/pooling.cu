// Masked max pooling, with the semantics of cpu/pooling.cpp: per (b, d), the
// first unpadded token, replaced by a later one that is larger or that is NaN
// while the best is not; an empty row gives out = 0, argmax = -1.
//
// One thread per output column (b, d), walking s in order: the same
// comparisons in the same order as the CPU, so out and argmax match it bit for
// bit, with no reduction whose order could vary. Neighbouring threads take
// neighbouring d, so every read of h is coalesced across a warp, and all the
// threads of a row read the same mask element (a broadcast). batch * dim
// threads (16 x 768 for BERT-base) fill a few dozen blocks: small, and this op
// runs once per step.
//
// Backward: each (b, d) adds into its own element of dh (distinct d or b), so
// a plain read-add-write is race-free and deterministic; no atomics.
#include <cmath>

#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

__global__ void masked_max_pool_forward_kernel(int64_t total, int64_t seq, int64_t dim, const float* h,
                                               const int32_t* mask, float* out, int32_t* argmax) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = e / dim, d = e - b * dim;
    const int32_t* row_mask = mask + b * seq;
    const float* column = h + b * seq * dim + d;
    float best = 0.0f;
    int32_t at = -1;
    for (int64_t s = 0; s < seq; ++s) {
      if (row_mask[s] == 0) continue;
      const float v = column[s * dim];
      if (at < 0 || v > best || (isnan(v) && !isnan(best))) {
        best = v;
        at = static_cast<int32_t>(s);
      }
    }
    out[e] = at < 0 ? 0.0f : best;
    argmax[e] = at;
  }
}

__global__ void masked_max_pool_backward_kernel(int64_t total, int64_t seq, int64_t dim, const int32_t* argmax,
                                                const float* dout, float* dh) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = argmax[e];
    if (s < 0 || s >= seq) continue;  // an empty row's -1, or a value that is no token
    const int64_t b = e / dim, d = e - b * dim;
    dh[(b * seq + s) * dim + d] += dout[e];
  }
}

}  // namespace

void CudaBackend::masked_max_pool_forward(int64_t batch, int64_t seq, int64_t dim, const float* h,
                                          const int32_t* mask, float* out, int32_t* argmax) {
  const int64_t total = batch * dim;
  if (total == 0) return;
  masked_max_pool_forward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, seq, dim, h, mask,
                                                                                         out, argmax);
  cuda::check_launch("masked_max_pool_forward");
}

void CudaBackend::masked_max_pool_backward(int64_t batch, int64_t seq, int64_t dim, const int32_t* argmax,
                                           const float* dout, float* dh) {
  const int64_t total = batch * dim;
  if (dh == nullptr || total == 0) return;
  masked_max_pool_backward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, seq, dim, argmax,
                                                                                          dout, dh);
  cuda::check_launch("masked_max_pool_backward");
}

}  // namespace bertkit
