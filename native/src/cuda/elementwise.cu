// Elementwise helpers, reductions (column sums for bias gradients, total sums
// for gradient norms), dtype casts and row slices.
#include <cstring>

#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

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

// sum / sum_squares: stage one gives each block a fixed slice of kSumChunk
// elements and writes its double total; stage two adds those totals in one
// block. The slices and both trees depend only on n, so the result is the same
// on every GPU and every run. Double accumulators, as on the CPU: summing 2^25
// ones in float would stall at 2^24.
constexpr int kSumThreads = 256;
constexpr int64_t kSumChunk = 8192;

template <bool Squares>
__device__ __forceinline__ double sum_term(float v) {
  const double d = static_cast<double>(v);
  return Squares ? d * d : d;
}

// partial == nullptr: a single slice, added straight into out[0].
template <bool Squares>
__global__ void sum_chunks_kernel(int64_t n, const float* x, double* partial, float* out) {
  const int64_t begin = blockIdx.x * kSumChunk;
  const int64_t end = begin + kSumChunk < n ? begin + kSumChunk : n;
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kSumThreads) acc += sum_term<Squares>(x[i]);
  const double total = cuda::block_sum<kSumThreads>(acc);
  if (threadIdx.x != 0) return;
  if (partial) partial[blockIdx.x] = total;
  else out[0] = static_cast<float>(static_cast<double>(out[0]) + total);
}

__global__ void sum_partials_kernel(int64_t count, const double* partial, float* out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kSumThreads) acc += partial[i];
  const double total = cuda::block_sum<kSumThreads>(acc);
  if (threadIdx.x == 0) out[0] = static_cast<float>(static_cast<double>(out[0]) + total);
}

// Casts use dtype.h's conversions, the very code the CPU backend runs, so both
// round to nearest even identically (NaN, infinities and subnormals included).
enum class CastKind { F32ToF16, F32ToBF16, F16ToF32, BF16ToF32, I32ToF32 };

template <CastKind K>
__global__ void cast_kernel(int64_t n, const void* src, void* dst) {
  BERTKIT_GRID_STRIDE(i, n) {
    if constexpr (K == CastKind::F32ToF16) {
      static_cast<uint16_t*>(dst)[i] = float_to_half(static_cast<const float*>(src)[i]);
    } else if constexpr (K == CastKind::F32ToBF16) {
      static_cast<uint16_t*>(dst)[i] = float_to_bf16(static_cast<const float*>(src)[i]);
    } else if constexpr (K == CastKind::F16ToF32) {
      static_cast<float*>(dst)[i] = half_to_float(static_cast<const uint16_t*>(src)[i]);
    } else if constexpr (K == CastKind::BF16ToF32) {
      static_cast<float*>(dst)[i] = bf16_to_float(static_cast<const uint16_t*>(src)[i]);
    } else {
      // Round to nearest even above 2^24, like static_cast<float> on the host.
      static_cast<float*>(dst)[i] = __int2float_rn(static_cast<const int32_t*>(src)[i]);
    }
  }
}

template <CastKind K>
void launch_cast(cudaStream_t stream, int64_t n, const void* src, void* dst) {
  cast_kernel<K><<<cuda::grid_for(n), cuda::kThreads, 0, stream>>>(n, src, dst);
}

// Element i of the [batch, count, cols] slice and its row in [batch, src_rows, cols].
__device__ __forceinline__ int64_t slice_source_index(int64_t i, int64_t src_rows, int64_t cols, int64_t start,
                                                      int64_t count) {
  const int64_t r = i / cols, c = i - r * cols;
  const int64_t b = r / count, j = r - b * count;
  return (b * src_rows + start + j) * cols + c;
}

__global__ void slice_rows_forward_kernel(int64_t total, int64_t src_rows, int64_t cols, int64_t start,
                                          int64_t count, const float* src, float* dst) {
  BERTKIT_GRID_STRIDE(i, total) { dst[i] = src[slice_source_index(i, src_rows, cols, start, count)]; }
}

// Each source element receives at most one slice element: no two threads collide.
__global__ void slice_rows_backward_kernel(int64_t total, int64_t src_rows, int64_t cols, int64_t start,
                                           int64_t count, const float* ddst, float* dsrc) {
  BERTKIT_GRID_STRIDE(i, total) { dsrc[slice_source_index(i, src_rows, cols, start, count)] += ddst[i]; }
}

template <bool Squares>
void launch_sum(CudaBackend& backend, cudaStream_t stream, int64_t n, const float* x, float* out) {
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  if (chunks > INT32_MAX) throw Error("cuda sum: " + std::to_string(n) + " elements is larger than this kernel's grid");
  if (chunks == 1) {
    sum_chunks_kernel<Squares><<<1, kSumThreads, 0, stream>>>(n, x, nullptr, out);
    cuda::check_launch(Squares ? "sum_squares" : "sum");
    return;
  }
  cuda::Scratch partial(backend, static_cast<size_t>(chunks) * sizeof(double));
  sum_chunks_kernel<Squares><<<static_cast<unsigned>(chunks), kSumThreads, 0, stream>>>(n, x, partial.as<double>(),
                                                                                        out);
  cuda::check_launch(Squares ? "sum_squares (chunks)" : "sum (chunks)");
  sum_partials_kernel<<<1, kSumThreads, 0, stream>>>(chunks, partial.as<double>(), out);
  cuda::check_launch(Squares ? "sum_squares (finish)" : "sum (finish)");
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

void CudaBackend::sum(int64_t n, const float* x, float* out) {
  if (n == 0) return;
  launch_sum<false>(*this, stream_, n, x, out);
}

void CudaBackend::sum_squares(int64_t n, const float* x, float* out) {
  if (n == 0) return;
  launch_sum<true>(*this, stream_, n, x, out);
}

void CudaBackend::cast(int64_t n, DType src_dtype, const void* src, DType dst_dtype, void* dst) {
  if (src_dtype == DType::F32 && dst_dtype == DType::F32) {
    copy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  if (n == 0) return;
  if (src_dtype == DType::F32 && dst_dtype == DType::F16) {
    launch_cast<CastKind::F32ToF16>(stream_, n, src, dst);
  } else if (src_dtype == DType::F32 && dst_dtype == DType::BF16) {
    launch_cast<CastKind::F32ToBF16>(stream_, n, src, dst);
  } else if (src_dtype == DType::F16 && dst_dtype == DType::F32) {
    launch_cast<CastKind::F16ToF32>(stream_, n, src, dst);
  } else if (src_dtype == DType::BF16 && dst_dtype == DType::F32) {
    launch_cast<CastKind::BF16ToF32>(stream_, n, src, dst);
  } else if (src_dtype == DType::I32 && dst_dtype == DType::F32) {
    launch_cast<CastKind::I32ToF32>(stream_, n, src, dst);
  } else {
    throw Error(std::string("cannot cast ") + dtype_name(src_dtype) + " to " + dtype_name(dst_dtype));
  }
  cuda::check_launch("cast");
}

void CudaBackend::slice_rows_forward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start, int64_t count,
                                     const float* src, float* dst) {
  const int64_t total = batch * count * cols;
  if (total == 0) return;
  slice_rows_forward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, src_rows, cols, start,
                                                                                   count, src, dst);
  cuda::check_launch("slice_rows_forward");
}

void CudaBackend::slice_rows_backward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start, int64_t count,
                                      const float* ddst, float* dsrc) {
  const int64_t total = batch * count * cols;
  if (total == 0) return;
  slice_rows_backward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, src_rows, cols, start,
                                                                                    count, ddst, dsrc);
  cuda::check_launch("slice_rows_backward");
}

}  // namespace bertkit
