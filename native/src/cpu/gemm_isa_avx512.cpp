// The AVX-512 build of the SGEMM driver (gemm_driver.h).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "bertkit/error.h"
#include "gemm_builtin.h"
#include "thread_pool.h"

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace bertkit {
namespace gemm {
namespace {

#include "gemm_driver.h"
#include "gemm_pack_avx.h"

// 8 x 48 micro-tile: 24 zmm accumulators, 3 for the B row, 1 broadcast. Per
// depth step 3 loads + 8 broadcasts feed 24 FMAs, well within two load ports,
// and BERT's sizes (m: tokens 128.., n: 64, 768, 3072) are multiples of 8 and
// mostly of 48. Measured on one Zen 5 core (1024x768x3072 and its
// transposes): as fast as 12 x 32, 14 x 32 and 6 x 64 on NN and NT (within
// the few % of noise) and 5-10 % faster on TN.
struct Avx512 {
  using V = __m512;
  static constexpr int L = 16;
  static constexpr int MR = 8;
  static constexpr int NV = 3;
  // An 8 x 384 panel of A (12 KB) stays in L1; 384 x 528 of packed B (790 KB)
  // in a 1 MB L2; 192 rows of packed A (290 KB) in L2/L3.
  static constexpr int64_t KC = 384;
  static constexpr int64_t NC = 528;
  static constexpr int64_t MC = 192;

  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V loadu_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void storeu_partial(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static void prefetch_c(const float* c, int64_t ldc, int rows, int cols) {
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < cols; j += 16) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + j), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + cols - 1), _MM_HINT_T0);
    }
  }
  static void pack_a_rows(const float* src, int64_t lda, int rows, int64_t kc, int ld_out, float* out) {
    pack_transpose_avx(src, lda, rows, kc, ld_out, out);
  }
  static void pack_b_cols(const float* src, int64_t ldb, int cols, int64_t kc, int ld_out, float* out) {
    pack_transpose_avx(src, ldb, cols, kc, ld_out, out);
  }
};

}  // namespace

void sgemm_avx512(const Problem& p, bool threaded) { Driver<Avx512>::run(p, threaded); }

}  // namespace gemm
}  // namespace bertkit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
