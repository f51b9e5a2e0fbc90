// The AVX2 + FMA build of the SGEMM driver (gemm_driver.h).
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
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace bertkit {
namespace gemm {
namespace {

#include "gemm_driver.h"
#include "gemm_pack_avx.h"

// 6 x 16 micro-tile: 12 ymm accumulators, 2 for the B row, 1 broadcast: 15 of
// the 16 registers.
struct Avx2 {
  using V = __m256;
  static constexpr int L = 8;
  static constexpr int MR = 6;
  static constexpr int NV = 2;
  static constexpr int64_t KC = 256;
  static constexpr int64_t NC = 512;
  static constexpr int64_t MC = 72;

  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static __m256i first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V loadu_partial(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  static void storeu_partial(float* p, V v, int n) { _mm256_maskstore_ps(p, first(n), v); }
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

void sgemm_avx2(const Problem& p, bool threaded) { Driver<Avx2>::run(p, threaded); }

}  // namespace gemm
}  // namespace bertkit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
