// The AVX-512 build of AdamW's element loops (adamw_kernels.h). Every
// operation is an explicitly rounded intrinsic (_round_ forms with
// round-to-nearest), which no compiler contracts into a fused multiply-add,
// so each element goes through exactly the roundings of adamw.cpp's plain
// loop: float products, sums and quotients, and the two double steps (exp_avg_sq
// times beta2 plus the new square; the root plus eps), each rounded to float.
// GCC 12.1-12.2 flags the deliberately uninitialised `__Y = __Y` inside
// _mm512_undefined_* (GCC bug 105593), as in vecmath_avx512.cpp.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "adamw_kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#include <cstdint>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif

namespace bertkit {
namespace adamw_detail {

namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m512 fmul(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kRound); }
inline __m512 fadd(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kRound); }
inline __m512 fsub(__m512 a, __m512 b) { return _mm512_sub_round_ps(a, b, kRound); }
inline __m512 fdiv(__m512 a, __m512 b) { return _mm512_div_round_ps(a, b, kRound); }
inline __m512d dmul(__m512d a, __m512d b) { return _mm512_mul_round_pd(a, b, kRound); }
inline __m512d dadd(__m512d a, __m512d b) { return _mm512_add_round_pd(a, b, kRound); }
// Floats 0-7 / 8-15 of a group as doubles (exact), and back (rounded once).
inline __m512d lo_pd(__m512 f) { return _mm512_cvtps_pd(_mm512_castps512_ps256(f)); }
inline __m512d hi_pd(__m512 f) {
  return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
}
inline __m512 to_ps(__m512d lo, __m512d hi) {
  const __m256 l = _mm512_cvt_roundpd_ps(lo, kRound), h = _mm512_cvt_roundpd_ps(hi, kRound);
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(l)), _mm256_castps_pd(h), 1));
}

// float32 -> bfloat16 bits as float_to_bf16 (dtype.h): round to nearest
// even, NaN kept quiet.
inline __m256i to_bf16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

// How far ahead the loops ask for the lines they will read (2 KB of each
// stream). The optimizer's streams come from memory, and on the 2-core VM of
// the benchmarks the hardware prefetchers alone left the update at ~32 GB/s;
// with these requests it ran at ~44 GB/s (10.6M parameters, 2 threads:
// 9.5-10.0 -> 7.1-7.5 ms; 256 to 2048 floats ahead measured, 512 best).
constexpr int64_t kPrefetchFloats = 512;

inline void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

}  // namespace

// The loop of both entry points. kZeroGrad: the gradient is +0 (a zero row
// times a finite, non-negative scale), so g and its square are the constant +0
// the general loop would compute; every other operation is the same.
template <bool kZeroGrad>
int64_t adam_loop(const AdamScalars& s, float scale, const float* grad, float* param, float* exp_avg,
                  float* exp_avg_sq, uint16_t* half, int64_t begin, int64_t end, bool lerp_from_end) {
  const __m512 vscale = _mm512_set1_ps(scale), decay = _mm512_set1_ps(s.decay);
  const __m512 avg_weight = _mm512_set1_ps(s.avg_weight), avg_keep = _mm512_set1_ps(1.0f - s.avg_weight);
  const __m512 sq_weight = _mm512_set1_ps(s.sq_weight), neg_step = _mm512_set1_ps(-s.step_size);
  const __m512 bc2 = _mm512_set1_ps(s.bias_correction2_sqrt);
  const __m512d beta2 = _mm512_set1_pd(s.beta2), eps = _mm512_set1_pd(s.eps);
  int64_t i = begin;
  for (; i + 16 <= end; i += 16) {
    if (i + kPrefetchFloats < end) {
      if (!kZeroGrad) prefetch(grad + i + kPrefetchFloats);
      prefetch(param + i + kPrefetchFloats);
      prefetch(exp_avg + i + kPrefetchFloats);
      prefetch(exp_avg_sq + i + kPrefetchFloats);
    }
    const __m512 g = kZeroGrad ? _mm512_setzero_ps() : fmul(_mm512_loadu_ps(grad + i), vscale);
    const __m512 p = fmul(_mm512_loadu_ps(param + i), decay);
    const __m512 self = _mm512_loadu_ps(exp_avg + i);
    // torch's lerp: self + w (end - self), or end - (end - self)(1 - w) for w >= 0.5.
    const __m512 m = lerp_from_end ? fsub(g, fmul(fsub(g, self), avg_keep)) : fadd(self, fmul(avg_weight, fsub(g, self)));
    // v = exp_avg_sq * beta2 (double) + (sq_weight * g) * g (float), rounded to float.
    __m512d sq_lo, sq_hi;
    if (kZeroGrad) {
      sq_lo = sq_hi = _mm512_setzero_pd();
    } else {
      const __m512 sq = fmul(fmul(sq_weight, g), g);
      sq_lo = lo_pd(sq);
      sq_hi = hi_pd(sq);
    }
    const __m512 v_old = _mm512_loadu_ps(exp_avg_sq + i);
    const __m512 v = to_ps(dadd(dmul(lo_pd(v_old), beta2), sq_lo), dadd(dmul(hi_pd(v_old), beta2), sq_hi));
    // denom = sqrt(v) / bias_correction2_sqrt (float) + eps (double), rounded to float.
    const __m512 root = fdiv(_mm512_sqrt_round_ps(v, kRound), bc2);
    const __m512 denom = to_ps(dadd(lo_pd(root), eps), dadd(hi_pd(root), eps));
    const __m512 updated = fadd(p, fdiv(fmul(neg_step, m), denom));
    _mm512_storeu_ps(exp_avg + i, m);
    _mm512_storeu_ps(exp_avg_sq + i, v);
    _mm512_storeu_ps(param + i, updated);
    if (half) {
      // Streaming stores where aligned: the copy is read in the next forward pass, not now,
      // so its lines need not be read into the cache first.
      __m256i* to = reinterpret_cast<__m256i*>(half + i);
      if ((reinterpret_cast<uintptr_t>(to) & 31) == 0) _mm256_stream_si256(to, to_bf16(updated));
      else _mm256_storeu_si256(to, to_bf16(updated));
    }
  }
  if (half) _mm_sfence();  // the streamed stores are visible before the caller's threads join
  return i;
}

int64_t adam_update_avx512(const AdamScalars& s, float scale, const float* grad, float* param, float* exp_avg,
                           float* exp_avg_sq, uint16_t* half, int64_t begin, int64_t end, bool lerp_from_end) {
  return adam_loop<false>(s, scale, grad, param, exp_avg, exp_avg_sq, half, begin, end, lerp_from_end);
}

int64_t adam_zero_grad_avx512(const AdamScalars& s, float* param, float* exp_avg, float* exp_avg_sq, int64_t begin,
                              int64_t end, bool lerp_from_end) {
  return adam_loop<true>(s, 0.0f, nullptr, param, exp_avg, exp_avg_sq, nullptr, begin, end, lerp_from_end);
}

void sum_squares_lanes_avx512(const float* x, int64_t n8, double lanes[8]) {
  __m512d acc = _mm512_loadu_pd(lanes);
  for (int64_t i = 0; i < n8; i += 8) {
    if ((i & 15) == 0 && i + kPrefetchFloats < n8) prefetch(x + i + kPrefetchFloats);
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    acc = dadd(acc, dmul(v, v));
  }
  _mm512_storeu_pd(lanes, acc);
}

}  // namespace adamw_detail
}  // namespace bertkit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // x86-64
