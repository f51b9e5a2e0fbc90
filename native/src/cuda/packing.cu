// Gathers and scatters of whole rows, with the semantics of cpu/packing.cpp:
// packing the real tokens of a padded batch, unpacking them, and picking the
// first token of each sequence.
//
// The scatter-add of backward may meet an index twice in general; instead of
// float atomics (whose order changes from run to run) one thread owns one
// column and adds the rows in index order, as the CPU does.
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

__global__ void gather_rows_kernel(int64_t n, int64_t cols, const int32_t* index, const float* src, float* dst,
                                   bool accumulate) {
  const int64_t total = n * cols;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = e / cols, c = e - i * cols;
    const float v = src[static_cast<int64_t>(index[i]) * cols + c];
    if (accumulate) dst[e] += v;
    else dst[e] = v;
  }
}

__global__ void scatter_rows_kernel(int64_t n, int64_t cols, const int32_t* index, const float* src, float* dst) {
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols; c += int64_t{gridDim.x} * blockDim.x) {
    for (int64_t i = 0; i < n; ++i) dst[static_cast<int64_t>(index[i]) * cols + c] += src[i * cols + c];
  }
}

}  // namespace

void CudaBackend::gather_rows_forward(int64_t n, int64_t cols, int64_t /*src_rows*/, const int32_t* index,
                                      const float* src, float* dst, bool accumulate) {
  if (n == 0 || cols == 0) return;
  gather_rows_kernel<<<cuda::grid_for(n * cols), cuda::kThreads, 0, stream_>>>(n, cols, index, src, dst, accumulate);
  cuda::check_launch("gather_rows_forward");
}

void CudaBackend::gather_rows_backward(int64_t n, int64_t cols, int64_t /*src_rows*/, const int32_t* index,
                                       const float* ddst, float* dsrc) {
  if (n == 0 || cols == 0 || dsrc == nullptr) return;
  scatter_rows_kernel<<<cuda::grid_for(cols, 128), 128, 0, stream_>>>(n, cols, index, ddst, dsrc);
  cuda::check_launch("gather_rows_backward");
}

}  // namespace bertkit
