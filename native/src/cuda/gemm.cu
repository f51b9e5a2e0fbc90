// Matrix products through cuBLAS: fp32 (TF32 only when allowed, as torch's
// allow_tf32), and float16 / bfloat16 inputs with fp32 accumulation and output.
//
// cuBLAS is column-major and our tensors are row-major. A row-major X[r, c] read
// as column-major is X^T, so instead of C = op(A) op(B) we ask cuBLAS for
//   C^T [N, M] = op(B)^T op(A)^T,
// passing B as the first operand and A as the second. Each operand keeps its own
// transpose flag: an untransposed row-major B[K, N] is, column-major, the N x K
// matrix op(B)^T already (OP_N, ld N); a B stored as [N, K] is K x N column-major
// and needs OP_T (ld K). Likewise A: OP_N with ld K, or OP_T with ld M. C^T is
// N x M column-major with ld N, which is exactly row-major C[M, N].
#include <climits>

#include "cuda/cuda_backend.h"
#include "cuda/cublas_api.h"
#include "cuda/cuda_switches.h"

namespace bertkit {

namespace {

// C = beta * C over `batch` strided [m, n] blocks: the k == 0 case, which
// cuBLAS rejects (a leading dimension of 0). beta == 0 writes zeros so NaN in
// the old C does not survive, as the interface promises.
__global__ void scale_c_kernel(int64_t rows_cols, int64_t batch, int64_t stride_c, float beta,
                               float* c) {
  const int64_t total = rows_cols * batch;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t b = i / rows_cols, j = i - b * rows_cols;
    float* p = c + b * stride_c + j;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

void check_int(int64_t v, const char* name) {
  if (v > INT_MAX) {
    throw Error(std::string("cuda gemm: ") + name + " = " + std::to_string(v) +
                " exceeds cuBLAS's 32-bit dimension limit");
  }
}

void launch_scale_c(cudaStream_t stream, int64_t m, int64_t n, int64_t batch, int64_t stride_c, float beta,
                    float* c) {
  scale_c_kernel<<<cuda::grid_for(m * n * batch), cuda::kThreads, 0, stream>>>(m * n, batch, stride_c, beta, c);
  cuda::check_launch("gemm (k = 0)");
}

void check_shape(int64_t m, int64_t n, int64_t k, int64_t batch) {
  check_int(m, "m");
  check_int(n, "n");
  check_int(k, "k");
  check_int(batch, "batch");
}

}  // namespace

void CudaBackend::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* a, const float* b, float beta, float* c, int64_t batch,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {
    launch_scale_c(stream_, m, n, batch, stride_c, beta, c);
    return;
  }
  check_shape(m, n, k, batch);
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ld_b = static_cast<int>(trans_b ? k : n);
  const int ld_a = static_cast<int>(trans_a ? m : k);
  const int ld_c = static_cast<int>(n);
  // beta == 0: cuBLAS does not read C, so a NaN-filled output stays write-only.
  BERTKIT_CUDA_CHECK(cuda::cublas_lib().sgemm_strided_batched(
      cublas_, op_first, op_second, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
      ld_b, static_cast<long long>(stride_b), a, ld_a, static_cast<long long>(stride_a), &beta, c, ld_c,
      static_cast<long long>(stride_c), static_cast<int>(batch)));
}

void CudaBackend::gemm_mixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                             const void* a, const void* b, DType ab_dtype, float beta, float* c, int64_t batch,
                             int64_t stride_a, int64_t stride_b, int64_t stride_c, bool a_f32, bool b_f32,
                             const float* bias, bool /*stream_c: cuBLAS picks its own stores*/) {
  if (ab_dtype != DType::F16 && ab_dtype != DType::BF16) {
    throw Error(std::string("cuda gemm_mixed: inputs must be float16 or bfloat16, got ") + dtype_name(ab_dtype));
  }
  if (a_f32 || b_f32) throw Error("cuda gemm_mixed: float32 operands are read only on the CPU; cast them first");
  if (m == 0 || n == 0 || batch == 0) return;
  // The bias row, added after the product by the add_bias_rows kernel on the
  // same stream: the bits of a separate add_bias_rows, as on the CPU.
  auto add_bias = [&] {
    if (!bias) return;
    if (stride_c == m * n) add_bias_rows(batch * m, n, bias, c);
    else for (int64_t bi = 0; bi < batch; ++bi) add_bias_rows(m, n, bias, c + bi * stride_c);
  };
  if (k == 0) {
    launch_scale_c(stream_, m, n, batch, stride_c, beta, c);
    add_bias();
    return;
  }
  check_shape(m, n, k, batch);
  // The same operand swap as gemm (see the top of this file). CUBLAS_COMPUTE_32F
  // keeps the accumulation in fp32 whatever the math mode, so the TF32 switch
  // does not touch this path; half inputs use tensor cores regardless.
  const cudaDataType_t ab_type = ab_dtype == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ld_b = static_cast<int>(trans_b ? k : n);
  const int ld_a = static_cast<int>(trans_a ? m : k);
  const int ld_c = static_cast<int>(n);
  BERTKIT_CUDA_CHECK(cuda::cublas_lib().gemm_strided_batched_ex(
      cublas_, op_first, op_second, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, b,
      ab_type, ld_b, static_cast<long long>(stride_b), a, ab_type, ld_a, static_cast<long long>(stride_a), &beta, c,
      CUDA_R_32F, ld_c, static_cast<long long>(stride_c), static_cast<int>(batch), CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT));
  add_bias();
}

void CudaBackend::set_allow_tf32(bool allow) {
  BERTKIT_CUDA_CHECK(cuda::cublas_lib().set_math_mode(cublas_, allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  allow_tf32_ = allow;
}

void cuda_set_allow_tf32(bool allow) {
  // backend_for(CUDA) hands out the CudaBackend singleton of cuda_backend.cu.
  static_cast<CudaBackend&>(backend_for(Device::CUDA)).set_allow_tf32(allow);
}

}  // namespace bertkit
