// Elementwise helpers and the column reduction behind bias gradients.
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

#define BERTKIT_GRID_STRIDE(i, n)                                                    \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)

__global__ void fill_kernel(float* x, int64_t n, float value) {
  BERTKIT_GRID_STRIDE(i, n) { x[i] = value; }
}

__global__ void axpby_kernel(int64_t n, float alpha, const float* x, float beta, float* y) {
  BERTKIT_GRID_STRIDE(i, n) { y[i] = alpha * x[i] + beta * y[i]; }
}

// beta == 0 gets its own kernel so y is never read: 0 * NaN would leak a stale NaN.
__global__ void axpy_write_kernel(int64_t n, float alpha, const float* x, float* y) {
  BERTKIT_GRID_STRIDE(i, n) { y[i] = alpha * x[i]; }
}

__global__ void mul_kernel(int64_t n, const float* a, const float* b, float* out) {
  BERTKIT_GRID_STRIDE(i, n) { out[i] = a[i] * b[i]; }
}

__global__ void add_bias_rows_kernel(int64_t total, int64_t cols, const float* bias, float* y) {
  BERTKIT_GRID_STRIDE(i, total) { y[i] += bias[i % cols]; }
}

// sum_rows: a block owns 32 columns (one per lane, so loads are coalesced) and a
// range of rows split across its 8 warps; the warps' partial sums are added in
// a fixed order, so the result does not depend on scheduling. Sums are kept in
// double, as the CPU backend does, and rounded once into out.
constexpr int kColsPerBlock = 32;
constexpr int kRowLanes = 8;
// Rows per chunk when the rows are split across blocks (so a narrow bias still
// fills the GPU); chosen from the shape only, so a shape reduces in the same
// order on every GPU.
constexpr int64_t kRowsPerChunk = 256;

// chunk_sums == nullptr: one chunk, add straight into out. Otherwise write this
// chunk's column sums to chunk_sums[blockIdx.y, :] for sum_rows_finish_kernel.
__global__ void sum_rows_kernel(int64_t rows, int64_t cols, int64_t rows_per_chunk, const float* x,
                                double* chunk_sums, float* out) {
  __shared__ double partial[kRowLanes][kColsPerBlock];
  const int64_t col = blockIdx.x * int64_t{kColsPerBlock} + threadIdx.x;
  const int64_t row_begin = blockIdx.y * rows_per_chunk;
  const int64_t row_end = row_begin + rows_per_chunk < rows ? row_begin + rows_per_chunk : rows;
  double acc = 0.0;
  if (col < cols) {
    for (int64_t r = row_begin + threadIdx.y; r < row_end; r += kRowLanes) acc += x[r * cols + col];
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    double total = 0.0;
    for (int j = 0; j < kRowLanes; ++j) total += partial[j][threadIdx.x];
    if (chunk_sums) chunk_sums[blockIdx.y * cols + col] = total;
    else out[col] = static_cast<float>(static_cast<double>(out[col]) + total);
  }
}

__global__ void sum_rows_finish_kernel(int64_t chunks, int64_t cols, const double* chunk_sums, float* out) {
  for (int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; col < cols;
       col += int64_t{gridDim.x} * blockDim.x) {
    double total = 0.0;
    for (int64_t c = 0; c < chunks; ++c) total += chunk_sums[c * cols + col];
    out[col] = static_cast<float>(static_cast<double>(out[col]) + total);
  }
}

}  // namespace

void CudaBackend::fill(float* x, int64_t n, float value) {
  if (n == 0) return;
  fill_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, stream_>>>(x, n, value);
  cuda::check_launch("fill");
}

void CudaBackend::axpby(int64_t n, float alpha, const float* x, float beta, float* y) {
  if (n == 0) return;
  if (beta == 0.0f) {
    axpy_write_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, stream_>>>(n, alpha, x, y);
  } else {
    axpby_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, stream_>>>(n, alpha, x, beta, y);
  }
  cuda::check_launch("axpby");
}

void CudaBackend::mul(int64_t n, const float* a, const float* b, float* out) {
  if (n == 0) return;
  mul_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, stream_>>>(n, a, b, out);
  cuda::check_launch("mul");
}

void CudaBackend::add_bias_rows(int64_t rows, int64_t cols, const float* bias, float* y) {
  const int64_t total = rows * cols;
  if (total == 0) return;
  add_bias_rows_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, cols, bias, y);
  cuda::check_launch("add_bias_rows");
}

void CudaBackend::sum_rows(int64_t rows, int64_t cols, const float* x, float* out) {
  if (rows == 0 || cols == 0) return;
  const int64_t col_blocks = (cols + kColsPerBlock - 1) / kColsPerBlock;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (col_blocks > INT32_MAX || chunks > 65535) {
    throw Error("cuda sum_rows: [" + std::to_string(rows) + ", " + std::to_string(cols) +
                "] is larger than this kernel's grid");
  }
  const dim3 block(kColsPerBlock, kRowLanes);
  if (chunks == 1) {
    sum_rows_kernel<<<dim3(static_cast<unsigned>(col_blocks), 1), block, 0, stream_>>>(rows, cols, rows, x,
                                                                                        nullptr, out);
    cuda::check_launch("sum_rows");
    return;
  }
  const size_t scratch_bytes = static_cast<size_t>(chunks * cols) * sizeof(double);
  double* scratch = static_cast<double*>(allocate(scratch_bytes));
  try {
    sum_rows_kernel<<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)), block, 0,
                      stream_>>>(rows, cols, kRowsPerChunk, x, scratch, out);
    cuda::check_launch("sum_rows (chunks)");
    sum_rows_finish_kernel<<<cuda::grid_for(cols), cuda::kThreads, 0, stream_>>>(chunks, cols, scratch, out);
    cuda::check_launch("sum_rows (finish)");
  } catch (...) {
    release(scratch, scratch_bytes);
    throw;
  }
  // Stream order makes the block safe to hand out again before the kernels ran.
  release(scratch, scratch_bytes);
}

}  // namespace bertkit
