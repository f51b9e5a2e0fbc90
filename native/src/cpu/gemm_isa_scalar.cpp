// The portable build of the SGEMM driver (gemm_driver.h), for CPUs without
// AVX2 + FMA. Plain C++; the compiler may still use the baseline SSE2.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "bertkit/error.h"
#include "gemm_builtin.h"
#include "thread_pool.h"

namespace bertkit {
namespace gemm {
namespace {

#include "gemm_driver.h"

// A 4 x 8 tile of scalars: 32 accumulators the compiler can hold in the 16
// SSE registers as pairs of 4-wide vectors.
struct Scalar {
  using V = float;
  static constexpr int L = 1;
  static constexpr int MR = 4;
  static constexpr int NV = 8;
  static constexpr int64_t KC = 256;
  static constexpr int64_t NC = 512;
  static constexpr int64_t MC = 64;

  static V zero() { return 0.f; }
  static V load(const float* p) { return *p; }
  static V loadu(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static void storeu(float* p, V v) { *p = v; }
  static V set1(float x) { return x; }
  // Not std::fma: without hardware FMA that is a slow library call.
  static V fma(V a, V b, V c) { return a * b + c; }
  static V mul(V a, V b) { return a * b; }
  static V add(V a, V b) { return a + b; }
  // L == 1: a "partial" vector is always empty or whole.
  static V loadu_partial(const float* p, int) { return *p; }
  static void storeu_partial(float* p, V v, int) { *p = v; }
  static void prefetch_c(const float*, int64_t, int, int) {}
  static void pack_a_rows(const float* src, int64_t lda, int rows, int64_t kc, int ld_out, float* out) {
    pack_transpose_scalar(src, lda, rows, kc, ld_out, out);
  }
  static void pack_b_cols(const float* src, int64_t ldb, int cols, int64_t kc, int ld_out, float* out) {
    pack_transpose_scalar(src, ldb, cols, kc, ld_out, out);
  }
};

}  // namespace

void sgemm_scalar(const Problem& p, bool threaded) { Driver<Scalar>::run(p, threaded); }

}  // namespace gemm
}  // namespace bertkit
