// Dropout with the counter-based Philox generator of bertkit/philox.h: element i
// is kept when its uniform draw for (seed, offset, i) is >= p, exactly as on the
// CPU, so both backends drop the same elements and backward regenerates the
// mask instead of storing it.
#include "bertkit/philox.h"
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

float keep_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }

// One thread per Philox block: elements 4g..4g+3 share the counter offset + g
// (philox_uniform's layout), so one call yields all four draws. The uniform is
// computed as philox_uniform does (top 24 bits times 2^-24, exact in float), and
// the tests compare the mask with the CPU backend's.
template <bool Backward>
__global__ void dropout_kernel(int64_t n, float p, float scale, uint64_t seed, uint64_t offset,
                               const float* in, float* out) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; g < groups;
       g += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t counter = offset + static_cast<uint64_t>(g);
    const Philox4 r = philox4x32_10(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u,
                                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    const int64_t base = g * 4;
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = base + lane;
      if (i >= n) break;
      const float u = static_cast<float>(r.v[lane] >> 8) * (1.0f / 16777216.0f);
      // A factor of 0, not a select, as on the CPU: a dropped NaN stays NaN so a
      // diverging run is not hidden by the mask.
      const float v = in[i] * (u >= p ? scale : 0.0f);
      if (Backward) out[i] += v;
      else out[i] = v;
    }
  }
}

// Rows of a padded tensor: element (r, c) draws flat index row_index[r] *
// cols + c. One thread per element (a Philox block per element: these rows
// need not start on a block boundary).
template <bool Backward>
__global__ void dropout_rows_kernel(int64_t rows, int64_t cols, float p, float scale, uint64_t seed, uint64_t offset,
                                    const int32_t* row_index, const float* in, float* out) {
  const int64_t total = rows * cols;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / cols, c = e - r * cols;
    const uint64_t index = static_cast<uint64_t>(row_index[r]) * static_cast<uint64_t>(cols) + static_cast<uint64_t>(c);
    const float v = in[e] * (philox_keep(seed, offset, index, p) ? scale : 0.0f);
    if (Backward) out[e] += v;
    else out[e] = v;
  }
}

}  // namespace

void CudaBackend::dropout_rows_forward(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                       const int32_t* row_index, const float* x, float* y) {
  if (rows == 0 || cols == 0) return;
  dropout_rows_kernel<false><<<cuda::grid_for(rows * cols), cuda::kThreads, 0, stream_>>>(
      rows, cols, p, keep_scale(p), seed, offset, row_index, x, y);
  cuda::check_launch("dropout_rows_forward");
}

void CudaBackend::dropout_rows_backward(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                        const int32_t* row_index, const float* dy, float* dx) {
  if (rows == 0 || cols == 0 || dx == nullptr) return;
  dropout_rows_kernel<true><<<cuda::grid_for(rows * cols), cuda::kThreads, 0, stream_>>>(
      rows, cols, p, keep_scale(p), seed, offset, row_index, dy, dx);
  cuda::check_launch("dropout_rows_backward");
}

void CudaBackend::dropout_forward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x, float* y) {
  if (n == 0) return;
  // 1/(1-p) in double, rounded once, exactly as the CPU backend computes it.
  const float scale = keep_scale(p);
  dropout_kernel<false><<<cuda::grid_for((n + 3) / 4), cuda::kThreads, 0, stream_>>>(n, p, scale, seed, offset,
                                                                                     x, y);
  cuda::check_launch("dropout_forward");
}

void CudaBackend::dropout_backward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy, float* dx) {
  if (n == 0 || dx == nullptr) return;
  const float scale = keep_scale(p);
  dropout_kernel<true><<<cuda::grid_for((n + 3) / 4), cuda::kThreads, 0, stream_>>>(n, p, scale, seed, offset,
                                                                                    dy, dx);
  cuda::check_launch("dropout_backward");
}

}  // namespace bertkit
