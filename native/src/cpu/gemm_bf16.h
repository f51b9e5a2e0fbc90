// Native bfloat16 products on the CPU, for gemm_mixed with BF16 inputs (torch
// CPU autocast's linear / matmul): A and B in bfloat16, C in float32,
// products accumulated in float32. Two kernels, picked at run time:
//   amx           AMX-BF16 tiles (TDPBF16PS: a 16 x 16 float32 tile += a
//                 16 x 32 bf16 tile times a 32 x 16 one), on CPUs with AMX
//                 (Sapphire Rapids and later) once Linux has granted the
//                 process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM);
//   avx512-bf16   AVX512-BF16 (VDPBF16PS: 16 float32 lanes += the products of
//                 16 bf16 pairs), on Cooper Lake, Sapphire Rapids, Zen 4 and later;
// and otherwise the widening fallback of gemm_mixed.cpp (both operands to
// float32, then the float32 GEMM). BERTKIT_GEMM_BF16=auto | amx | avx512-bf16
// | widen (read at the first product) caps the choice; select_cpu_gemm_bf16
// switches later.
//
// Both kernels pair the depth: a 32-bit word holds op(A)(i, 2q) and
// op(A)(i, 2q + 1) (low, high half), B likewise, and one instruction adds
// both products of a pair to a float32 accumulator (a zero pads an odd depth).
// Each element of C sums its pairs in the same order whatever the number of
// rows, the tiling of C into tasks or the thread count, so a row of the
// result does not depend on the other rows (unpadded and padded batches
// agree) nor on the threads. The instructions round to nearest even and treat
// bfloat16 denormals as zero (Intel's definition of VDPBF16PS / TDPBF16PS).
#pragma once

#include <cstdint>
#include <string>

namespace bertkit {
namespace gemm {

// One batched, strided bfloat16 product, with the meaning of Backend::gemm_mixed.
// a_f32 / b_f32: that operand holds float32 values, rounded to bfloat16 (to
// nearest even, NaN kept quiet: the cast op's rounding) as the packing reads
// them, so the product is bit for bit the one of a cast copy.
struct Bf16Problem {
  bool trans_a, trans_b;
  int64_t m, n, k;
  float alpha;
  const void* a;
  const void* b;
  float beta;
  float* c;
  int64_t batch, stride_a, stride_b, stride_c;
  bool a_f32, b_f32;
  // Null, or n float32 values added to each row of C as it is written (after
  // alpha * acc + beta * C: the bits of a separate add_bias_rows).
  const float* bias;
  // C is written with non-temporal stores where a whole aligned 64-byte line
  // is written at once (Backend::gemm_mixed's stream_c); same bits.
  bool stream_c;

  int64_t ld_a() const { return trans_a ? m : k; }
  int64_t ld_b() const { return trans_b ? k : n; }
};

enum class Bf16Path : int { Widen = 0, Avx512Bf16 = 1, Amx = 2 };

// The best path this CPU and OS allow (asks Linux for the AMX tile state the
// first time; a refusal leaves AVX512-BF16 or widening).
Bf16Path best_bf16_path();
const char* bf16_path_name(Bf16Path path);

// The path gemm_mixed uses now (BERTKIT_GEMM_BF16, else the best).
Bf16Path current_bf16_path();

// The kernels (gemm_bf16_avx512.cpp, gemm_bf16_amx.cpp). Only call one the
// CPU runs; current_bf16_path() does the checking. Threaded over the pool.
#if defined(__x86_64__)
void bf16_gemm_avx512(const Bf16Problem& p);
void bf16_gemm_amx(const Bf16Problem& p);
#endif

}  // namespace gemm

// Selects the bfloat16 path for every later product: "auto", "amx",
// "avx512-bf16" or "widen" (capped by what the CPU runs). Returns the name of
// what is used now, with a note when the request cannot be met; throws
// bertkit::Error for any other string. Not to be called while a product runs.
const char* select_cpu_gemm_bf16(const std::string& path);
// What gemm_mixed uses for bfloat16 now, e.g. "AMX-BF16 tiles".
const char* cpu_gemm_bf16_name();

}  // namespace bertkit
