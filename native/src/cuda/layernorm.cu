// LayerNorm, optionally fused with the residual add before it, forward and
// backward, following cpu/layernorm.cpp formula for formula.
//
// Row statistics: one warp per row, sums in double (mean first, then squared
// deviations about it, as the CPU does), so a row's mean and rstd round to the
// same floats as on the CPU except in the rare case the two double sums,
// taken in different orders, straddle a float rounding boundary.
// Per-element arithmetic uses the _rn intrinsics: they forbid nvcc from
// fusing a multiply and an add into one FMA, which the CPU build (baseline
// x86-64) never does, so elements match the CPU bit for bit given equal
// statistics.
//
// dgamma / dbeta reduce over rows: each block owns 32 columns and a fixed
// chunk of rows and writes double partial sums; a second kernel adds the
// chunks in order. No atomics, and the order depends only on the shape.
#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

constexpr int kRowsPerBlock = cuda::kThreads / cuda::kWarpSize;  // one warp per row

// Column reduction geometry: 32 columns (one per lane, coalesced) by 8 row lanes.
constexpr int kColsPerBlock = 32;
constexpr int kRowLanes = 8;
constexpr int64_t kRowsPerChunk = 256;

__global__ void layernorm_forward_kernel(int64_t rows, int64_t cols, float eps, const float* x, const float* residual,
                                         const float* gamma, const float* beta, float* y, float* sum_out,
                                         float* mean, float* rstd) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together
  const int64_t base = row * cols;
  const float* in = x + base;
  if (residual) {
    // Rounded to float first, as torch's separate add; backward reads this very
    // tensor. Each lane later reads back only the elements it wrote itself.
    float* s = sum_out + base;
    const float* res = residual + base;
    for (int64_t c = lane; c < cols; c += cuda::kWarpSize) s[c] = __fadd_rn(in[c], res[c]);
    in = s;
  }
  double acc = 0.0;
  for (int64_t c = lane; c < cols; c += cuda::kWarpSize) acc += static_cast<double>(in[c]);
  const double mu = cuda::warp_sum(acc) / static_cast<double>(cols);
  double sq = 0.0;
  for (int64_t c = lane; c < cols; c += cuda::kWarpSize) {
    const double d = static_cast<double>(in[c]) - mu;
    sq += d * d;
  }
  const double var = cuda::warp_sum(sq) / static_cast<double>(cols);  // biased, as torch
  const double inv_std = 1.0 / sqrt(var + static_cast<double>(eps));
  const float mu_f = static_cast<float>(mu), inv_std_f = static_cast<float>(inv_std);
  if (lane == 0) {
    mean[row] = mu_f;
    rstd[row] = inv_std_f;
  }
  float* out = y + base;
  for (int64_t c = lane; c < cols; c += cuda::kWarpSize) {
    const float xhat = __fmul_rn(__fsub_rn(in[c], mu_f), inv_std_f);
    out[c] = __fadd_rn(__fmul_rn(xhat, gamma[c]), beta[c]);
  }
}

// dx += rstd * (h - mean(h) - xhat * mean(h * xhat)), h = dy * gamma; one warp per row.
__global__ void layernorm_backward_dx_kernel(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                             const float* mean, const float* rstd, const float* dy, float* dx) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;
  const int64_t base = row * cols;
  const float* xr = x + base;
  const float* g = dy + base;
  const float mu = mean[row], inv_std = rstd[row];
  double sum_h = 0.0, sum_hx = 0.0;
  for (int64_t c = lane; c < cols; c += cuda::kWarpSize) {
    const float h = __fmul_rn(g[c], gamma[c]);
    const float xhat = __fmul_rn(__fsub_rn(xr[c], mu), inv_std);
    sum_h += static_cast<double>(h);
    sum_hx += static_cast<double>(h) * static_cast<double>(xhat);
  }
  const float mean_h = static_cast<float>(cuda::warp_sum(sum_h) / static_cast<double>(cols));
  const float mean_hx = static_cast<float>(cuda::warp_sum(sum_hx) / static_cast<double>(cols));
  float* out = dx + base;
  for (int64_t c = lane; c < cols; c += cuda::kWarpSize) {
    const float h = __fmul_rn(g[c], gamma[c]);
    const float xhat = __fmul_rn(__fsub_rn(xr[c], mu), inv_std);
    const float inner = __fsub_rn(__fsub_rn(h, mean_h), __fmul_rn(xhat, mean_hx));
    out[c] = __fadd_rn(out[c], __fmul_rn(inv_std, inner));
  }
}

// Partial column sums of dy * xhat (dgamma) and dy (dbeta) over one chunk of
// rows, into [chunks, cols] doubles. Block (32 columns, 8 row lanes); grid
// (column blocks, chunks).
__global__ void layernorm_backward_params_kernel(int64_t rows, int64_t cols, const float* x, const float* mean,
                                                 const float* rstd, const float* dy, double* dgamma_partial,
                                                 double* dbeta_partial) {
  __shared__ double shared_g[kRowLanes][kColsPerBlock];
  __shared__ double shared_b[kRowLanes][kColsPerBlock];
  const int64_t col = blockIdx.x * int64_t{kColsPerBlock} + threadIdx.x;
  const int64_t row_begin = blockIdx.y * kRowsPerChunk;
  const int64_t row_end = row_begin + kRowsPerChunk < rows ? row_begin + kRowsPerChunk : rows;
  double acc_g = 0.0, acc_b = 0.0;
  if (col < cols) {
    for (int64_t r = row_begin + threadIdx.y; r < row_end; r += kRowLanes) {
      const float g = dy[r * cols + col];
      const float xhat = __fmul_rn(__fsub_rn(x[r * cols + col], mean[r]), rstd[r]);
      acc_g += static_cast<double>(g) * static_cast<double>(xhat);
      acc_b += static_cast<double>(g);
    }
  }
  shared_g[threadIdx.y][threadIdx.x] = acc_g;
  shared_b[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    double total_g = 0.0, total_b = 0.0;
    for (int j = 0; j < kRowLanes; ++j) {
      total_g += shared_g[j][threadIdx.x];
      total_b += shared_b[j][threadIdx.x];
    }
    const int64_t at = blockIdx.y * cols + col;
    if (dgamma_partial) dgamma_partial[at] = total_g;
    if (dbeta_partial) dbeta_partial[at] = total_b;
  }
}

// target[c] += sum over chunks of partial[chunk, c], in chunk order, rounded once.
__global__ void add_chunk_sums_kernel(int64_t chunks, int64_t cols, const double* partial, float* target) {
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols; c += int64_t{gridDim.x} * blockDim.x) {
    double total = 0.0;
    for (int64_t k = 0; k < chunks; ++k) total += partial[k * cols + c];
    target[c] = static_cast<float>(static_cast<double>(target[c]) + total);
  }
}

unsigned row_blocks(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > INT32_MAX) throw Error("cuda layernorm: " + std::to_string(rows) + " rows is larger than the grid");
  return static_cast<unsigned>(blocks);
}

}  // namespace

void CudaBackend::layernorm_forward(int64_t rows, int64_t cols, float eps, const float* x, const float* residual,
                                    const float* gamma, const float* beta, float* y, float* sum_out, float* mean,
                                    float* rstd) {
  if (rows == 0 || cols == 0) return;
  layernorm_forward_kernel<<<row_blocks(rows), cuda::kThreads, 0, stream_>>>(rows, cols, eps, x, residual, gamma,
                                                                             beta, y, sum_out, mean, rstd);
  cuda::check_launch("layernorm_forward");
}

void CudaBackend::layernorm_backward(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                     const float* mean, const float* rstd, const float* dy, float* dx, float* dgamma,
                                     float* dbeta) {
  if (rows == 0 || cols == 0) return;
  if (dx) {
    layernorm_backward_dx_kernel<<<row_blocks(rows), cuda::kThreads, 0, stream_>>>(rows, cols, x, gamma, mean, rstd,
                                                                                   dy, dx);
    cuda::check_launch("layernorm_backward (dx)");
  }
  if (!dgamma && !dbeta) return;
  const int64_t col_blocks = (cols + kColsPerBlock - 1) / kColsPerBlock;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (col_blocks > INT32_MAX || chunks > 65535) {
    throw Error("cuda layernorm_backward: [" + std::to_string(rows) + ", " + std::to_string(cols) +
                "] is larger than this kernel's grid");
  }
  const size_t partial_bytes = static_cast<size_t>(chunks * cols) * sizeof(double);
  cuda::Scratch dgamma_partial(*this, dgamma ? partial_bytes : 0);
  cuda::Scratch dbeta_partial(*this, dbeta ? partial_bytes : 0);
  layernorm_backward_params_kernel<<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)),
                                     dim3(kColsPerBlock, kRowLanes), 0, stream_>>>(
      rows, cols, x, mean, rstd, dy, dgamma_partial.as<double>(), dbeta_partial.as<double>());
  cuda::check_launch("layernorm_backward (dgamma, dbeta)");
  if (dgamma) {
    add_chunk_sums_kernel<<<cuda::grid_for(cols), cuda::kThreads, 0, stream_>>>(chunks, cols,
                                                                                dgamma_partial.as<double>(), dgamma);
    cuda::check_launch("layernorm_backward (dgamma sum)");
  }
  if (dbeta) {
    add_chunk_sums_kernel<<<cuda::grid_for(cols), cuda::kThreads, 0, stream_>>>(chunks, cols,
                                                                                dbeta_partial.as<double>(), dbeta);
    cuda::check_launch("layernorm_backward (dbeta sum)");
  }
}

}  // namespace bertkit
