// Swapping the two middle axes of a 4-D tensor, [outer, rows, cols, inner] ->
// [outer, cols, rows, inner], with the semantics of cpu/transpose.cpp. One
// thread per destination element: reads stride through the source, writes are
// contiguous; each source element has exactly one destination, so the
// backward's accumulation needs no atomics.
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

// Source offset of destination element e = ((o * cols + c) * rows + r) * inner + i.
__device__ __forceinline__ int64_t source_of(int64_t e, int64_t rows, int64_t cols, int64_t inner) {
  const int64_t i = e % inner;
  int64_t rest = e / inner;
  const int64_t r = rest % rows;
  rest /= rows;
  const int64_t c = rest % cols;
  const int64_t o = rest / cols;
  return ((o * rows + r) * cols + c) * inner + i;
}

__global__ void swap_axes_forward_kernel(int64_t total, int64_t rows, int64_t cols, int64_t inner, const float* src,
                                         float* dst) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    dst[e] = src[source_of(e, rows, cols, inner)];
  }
}

__global__ void swap_axes_backward_kernel(int64_t total, int64_t rows, int64_t cols, int64_t inner, const float* ddst,
                                          float* dsrc) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    dsrc[source_of(e, rows, cols, inner)] += ddst[e];
  }
}

}  // namespace

void CudaBackend::swap_axes_forward(int64_t outer, int64_t rows, int64_t cols, int64_t inner, const float* src,
                                    float* dst) {
  const int64_t total = outer * rows * cols * inner;
  if (total == 0) return;
  swap_axes_forward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, rows, cols, inner, src, dst);
  cuda::check_launch("swap_axes_forward");
}

void CudaBackend::swap_axes_backward(int64_t outer, int64_t rows, int64_t cols, int64_t inner, const float* ddst,
                                     float* dsrc) {
  const int64_t total = outer * rows * cols * inner;
  if (total == 0) return;
  swap_axes_backward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, rows, cols, inner, ddst,
                                                                                    dsrc);
  cuda::check_launch("swap_axes_backward");
}

}  // namespace bertkit
