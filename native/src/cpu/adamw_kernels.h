// The element loops of AdamW and of the gradient norm's sum of squares
// (adamw.cpp), shared by the plain x86-64 build of adamw.cpp and the AVX-512
// build of adamw_avx512.cpp, which runs the very same operations in the same
// order, each rounded once (no fused multiply-add), so both give bit-identical
// results. The AVX-512 loops are picked at run time by vecmath's choice of
// instruction set (BERTKIT_VECMATH=scalar keeps the plain loops).
#pragma once

#include <cstdint>

namespace bertkit {
namespace adamw_detail {

// One tensor's step scalars (torch's Python floats, computed in double and
// rounded to float once; beta2 and eps stay double, as adamw.cpp explains).
struct AdamScalars {
  float decay;                  // 1 - lr * weight_decay
  float avg_weight;             // exp_avg.lerp_(grad, 1 - beta1)
  double beta2;
  float sq_weight;              // addcmul_(grad, grad, value=1 - beta2)
  double eps;
  float step_size;              // lr / bias_correction1, per step number
  float bias_correction2_sqrt;  // per step number
};

// Elements [begin, end) of one tensor; lerp_from_end picks torch's lerp
// formula for weights >= 0.5; half (null: none) receives the bf16 copy of the
// updated param, rounded as the cast op rounds (float_to_bf16). Returns the
// first element it did not do (a vector loop leaves the last partial group to
// the caller's plain loop).
using AdamUpdateFn = int64_t (*)(const AdamScalars& s, float scale, const float* grad, float* param,
                                 float* exp_avg, float* exp_avg_sq, uint16_t* half, int64_t begin, int64_t end,
                                 bool lerp_from_end);

// The same update with a gradient of +0 (a zero gradient times a finite,
// non-negative scale): the bits of AdamUpdateFn on a zero row, without
// reading one (the deferred rows' replay, adamw_rows).
using AdamZeroGradFn = int64_t (*)(const AdamScalars& s, float* param, float* exp_avg, float* exp_avg_sq,
                                   int64_t begin, int64_t end, bool lerp_from_end);

// Adds x[i]^2 (in double) to lanes[i % 8] for i in [0, n8), n8 a multiple
// of 8, in index order per lane.
using SumSquaresLanesFn = void (*)(const float* x, int64_t n8, double lanes[8]);

// The AVX-512 loops, or nullptr when vecmath did not pick AVX-512 (CPU,
// build or BERTKIT_VECMATH).
AdamUpdateFn simd_adam_update();
AdamZeroGradFn simd_adam_zero_grad();
SumSquaresLanesFn simd_sum_squares_lanes();

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// adamw_avx512.cpp.
int64_t adam_update_avx512(const AdamScalars& s, float scale, const float* grad, float* param, float* exp_avg,
                           float* exp_avg_sq, uint16_t* half, int64_t begin, int64_t end, bool lerp_from_end);
int64_t adam_zero_grad_avx512(const AdamScalars& s, float* param, float* exp_avg, float* exp_avg_sq, int64_t begin,
                              int64_t end, bool lerp_from_end);
void sum_squares_lanes_avx512(const float* x, int64_t n8, double lanes[8]);
#endif

}  // namespace adamw_detail
}  // namespace bertkit
