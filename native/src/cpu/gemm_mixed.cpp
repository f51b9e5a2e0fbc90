// Mixed-precision GEMM of the CPU backend. bfloat16 products run natively
// where the CPU has AMX-BF16 or AVX512-BF16 (gemm_bf16.h: float32
// accumulation, as torch's CPU autocast matmuls). Otherwise, and for float16,
// A and B are widened to float32 (exactly: every half and bfloat16 value is a
// float32 value) before the ordinary fp32 gemm, which is also the reference
// the CUDA backend's tensor-core path is checked against. An optional bias
// row is added as C is written (gemm_bf16.h), or after the product when widened.
#include <algorithm>
#include <string>
#include <vector>

#include "cpu_backend.h"
#include "gemm_bf16.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 32768;

// Elements of an operand that a batch of products reads (what the Node-API
// layer checked the buffer holds).
int64_t extent(int64_t batch, int64_t stride, int64_t size) {
  return size == 0 ? 0 : (batch - 1) * stride + size;
}

// An operand as float32 values of `dtype`: half elements widened, or float32
// elements (f32) rounded to dtype and back.
void widen(DType dtype, const void* src, bool f32, int64_t n, float* dst) {
  const uint16_t* bits = static_cast<const uint16_t*>(src);
  const float* floats = static_cast<const float*>(src);
  ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    if (f32 && dtype == DType::F16) {
      for (int64_t i = begin; i < end; ++i) dst[i] = half_to_float(float_to_half(floats[i]));
    } else if (f32) {
      for (int64_t i = begin; i < end; ++i) dst[i] = bf16_to_float(float_to_bf16(floats[i]));
    } else if (dtype == DType::F16) {
      for (int64_t i = begin; i < end; ++i) dst[i] = half_to_float(bits[i]);
    } else {
      for (int64_t i = begin; i < end; ++i) dst[i] = bf16_to_float(bits[i]);
    }
  });
}

}  // namespace

void CpuBackend::gemm_mixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                            const void* a, const void* b, DType ab_dtype, float beta, float* c,
                            int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, bool a_f32,
                            bool b_f32, const float* bias, bool stream_c) {
  if (ab_dtype != DType::F16 && ab_dtype != DType::BF16) {
    throw Error(std::string("gemm_mixed: inputs must be float16 or bfloat16, got ") + dtype_name(ab_dtype));
  }
  if (m == 0 || n == 0 || batch == 0) return;
#if defined(__x86_64__)
  if (ab_dtype == DType::BF16 && k > 0 && alpha != 0.f) {
    const gemm::Bf16Path path = gemm::current_bf16_path();
    if (path != gemm::Bf16Path::Widen) {
      const gemm::Bf16Problem p{trans_a, trans_b,  m,        n,        k,     alpha, a, b, beta, c,
                                batch,   stride_a, stride_b, stride_c, a_f32, b_f32, bias, stream_c};
      if (path == gemm::Bf16Path::Amx) gemm::bf16_gemm_amx(p);
      else gemm::bf16_gemm_avx512(p);
      return;
    }
  }
#endif
  const int64_t len_a = extent(batch, stride_a, m * k);
  const int64_t len_b = extent(batch, stride_b, k * n);
  // At least one element each, so gemm never sees a null operand (k == 0).
  std::vector<float> wide_a(static_cast<size_t>(std::max<int64_t>(len_a, 1)));
  std::vector<float> wide_b(static_cast<size_t>(std::max<int64_t>(len_b, 1)));
  widen(ab_dtype, a, a_f32, len_a, wide_a.data());
  widen(ab_dtype, b, b_f32, len_b, wide_b.data());
  gemm(trans_a, trans_b, m, n, k, alpha, wide_a.data(), wide_b.data(), beta, c, batch, stride_a, stride_b,
       stride_c);
  // The fallback adds the bias in a second pass, the kernels as they write C.
  if (bias) {
    for (int64_t bi = 0; bi < batch; ++bi) add_bias_rows(m, n, bias, c + bi * stride_c);
  }
}

}  // namespace bertkit
