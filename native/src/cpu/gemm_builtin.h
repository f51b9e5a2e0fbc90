// The built-in SGEMM: packed panels, a register-blocked micro-kernel per
// instruction set, threads over tiles of C. One copy of the driver is compiled
// per instruction set (gemm_isa_*.cpp), and the widest one the CPU runs is
// picked at run time, so one binary runs on any x86-64.
#pragma once

#include <cstdint>

namespace bertkit {
namespace gemm {

// One batched, strided product, with the meaning of Backend::gemm.
struct Problem {
  bool trans_a;
  bool trans_b;
  int64_t m, n, k;
  float alpha;
  const float* a;
  const float* b;
  float beta;
  float* c;
  int64_t batch;
  int64_t stride_a, stride_b, stride_c;
  // Row strides (leading dimensions) of A, B and C as stored; 0 means
  // contiguous rows. Backend::gemm always passes 0; the built-in entry points
  // also take sub-matrices, e.g. one head's [seq, head_dim] slice of a
  // [seq, heads * head_dim] tensor (lda = heads * head_dim).
  int64_t lda = 0, ldb = 0, ldc = 0;

  int64_t ld_a() const { return lda ? lda : (trans_a ? m : k); }
  int64_t ld_b() const { return ldb ? ldb : (trans_b ? k : n); }
  int64_t ld_c() const { return ldc ? ldc : n; }
};

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// The widest kernel this CPU (and OS) can run.
Isa best_isa();
const char* isa_name(Isa isa);

// C = alpha * op(A) op(B) + beta * C with the kernel for `isa` (narrowed to
// what the CPU runs). Threaded through ThreadPool::instance() unless
// `threaded` is false: pass false from inside a parallel region of that pool
// (say, one small product per attention head), which cannot nest.
// Every element of C sums its k terms in the same order whatever the thread
// count, so results do not depend on it at all.
void builtin_sgemm(const Problem& p, Isa isa, bool threaded = true);

// Per-instruction-set entry points (gemm_isa_*.cpp). Only call the ones the
// CPU supports; builtin_sgemm does the checking.
void sgemm_scalar(const Problem& p, bool threaded);
#if defined(__x86_64__)
void sgemm_avx2(const Problem& p, bool threaded);
void sgemm_avx512(const Problem& p, bool threaded);
#endif

// C = beta * C over the batch (beta == 0 writes zeros, ignoring NaN in C):
// what every path does when k == 0 or alpha == 0.
void scale_c(const Problem& p);

}  // namespace gemm
}  // namespace bertkit
