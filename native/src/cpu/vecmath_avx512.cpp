// The AVX-512 build of the vecmath kernels (vecmath.h, vecmath_kernels.h).

// GCC 12.1-12.2 flags the deliberately uninitialised `__Y = __Y` inside
// _mm512_undefined_* (GCC bug 105593, fixed in 12.3); set before the include
// so it covers the intrinsics' own lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "bertkit/philox.h"
#include "vecmath.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif

namespace bertkit {
namespace vecmath {
namespace {

struct Avx512 {
  // A group's 16 floats in one zmm; its 16 doubles in two (elements 0-7, 8-15).
  using F = __m512;
  struct D {
    __m512d lo, hi;
  };

  // ---- float lanes
  static F loadf(const float* p) { return _mm512_loadu_ps(p); }
  static void storef(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void streamf(float* p, F v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
  static F fset(float v) { return _mm512_set1_ps(v); }
  static F fadd(F a, F b) { return _mm512_add_ps(a, b); }
  static F fsub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F fmul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F ffmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
  static F ffnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  static F fmin(F a, F b) { return _mm512_min_ps(a, b); }  // b when either is NaN
  static F fmax(F a, F b) { return _mm512_max_ps(a, b); }
  static F fdiv(F a, F b) { return _mm512_div_ps(a, b); }
  // The first count (< 16) elements; the other lanes hold fill / are not written.
  static __mmask16 first_lanes(int64_t count) { return static_cast<__mmask16>((1u << count) - 1u); }
  static F loadf_partial(const float* p, int64_t count, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(count), p);
  }
  static void storef_partial(float* p, F v, int64_t count) { _mm512_mask_storeu_ps(p, first_lanes(count), v); }
  static F fkeep_first(F v, int64_t count) { return _mm512_maskz_mov_ps(first_lanes(count), v); }  // others 0
  // a < limit ? 0 : v (v for NaN a).
  static F fzero_below(F a, float limit, F v) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(a, _mm512_set1_ps(limit), _CMP_LT_OQ), _mm512_setzero_ps());
  }
  // lo <= x <= hi ? in : out (out for NaN).
  static F fselect_range(F x, float lo, float hi, F in, F out) {
    const __mmask16 m = _mm512_cmp_ps_mask(x, _mm512_set1_ps(lo), _CMP_GE_OQ) &
                        _mm512_cmp_ps_mask(x, _mm512_set1_ps(hi), _CMP_LE_OQ);
    return _mm512_mask_blend_ps(m, out, in);
  }
  static F fabs(F a) { return _mm512_abs_ps(a); }
  // Sign bit of x set ? neg : pos.
  static F fselect_sign(F x, F neg, F pos) {
    const __mmask16 m = _mm512_test_epi32_mask(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    return _mm512_mask_blend_ps(m, pos, neg);
  }
  static F fround(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p * 2^n, n integral, rounded once (into subnormals, or to inf).
  static F fldexp(F p, F n) { return _mm512_scalef_ps(p, n); }
  static float fhmax(F v) {
    __m256 m = _mm256_max_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 q = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    q = _mm_max_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
  }

  // ---- double lanes
  static D widen(F f) {
    return {_mm512_cvtps_pd(_mm512_castps512_ps256(f)),
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)))};
  }
  static F narrow(D d) {
    const __m512d lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(d.lo)));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm512_cvtpd_ps(d.hi)), 1));
  }
  static D load(const double* p) { return {_mm512_loadu_pd(p), _mm512_loadu_pd(p + 8)}; }
  static void store(double* p, D v) {
    _mm512_storeu_pd(p, v.lo);
    _mm512_storeu_pd(p + 8, v.hi);
  }
  static D set(double v) { return {_mm512_set1_pd(v), _mm512_set1_pd(v)}; }
  static D add(D a, D b) { return {_mm512_add_pd(a.lo, b.lo), _mm512_add_pd(a.hi, b.hi)}; }
  static D sub(D a, D b) { return {_mm512_sub_pd(a.lo, b.lo), _mm512_sub_pd(a.hi, b.hi)}; }
  static D mul(D a, D b) { return {_mm512_mul_pd(a.lo, b.lo), _mm512_mul_pd(a.hi, b.hi)}; }
  static D div(D a, D b) { return {_mm512_div_pd(a.lo, b.lo), _mm512_div_pd(a.hi, b.hi)}; }
  static D fmadd(D a, D b, D c) { return {_mm512_fmadd_pd(a.lo, b.lo, c.lo), _mm512_fmadd_pd(a.hi, b.hi, c.hi)}; }
  static D fnmadd(D a, D b, D c) { return {_mm512_fnmadd_pd(a.lo, b.lo, c.lo), _mm512_fnmadd_pd(a.hi, b.hi, c.hi)}; }
  static D min(D a, D b) { return {_mm512_min_pd(a.lo, b.lo), _mm512_min_pd(a.hi, b.hi)}; }  // b on NaN
  static D max(D a, D b) { return {_mm512_max_pd(a.lo, b.lo), _mm512_max_pd(a.hi, b.hi)}; }
  static D abs(D a) { return {_mm512_abs_pd(a.lo), _mm512_abs_pd(a.hi)}; }
  // Sum of the 16 lanes as the tree part[t] += part[t + w] for w = 8, 4, 2, 1.
  static double hsum_tree(D v) {
    const __m512d s8 = _mm512_add_pd(v.lo, v.hi);
    const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
  static __m512d round1(__m512d a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static D round(D a) { return {round1(a.lo), round1(a.hi)}; }
  static D ldexp(D p, D n) { return {_mm512_scalef_pd(p.lo, n.lo), _mm512_scalef_pd(p.hi, n.hi)}; }
  // Sign bit of x set ? neg : pos.
  static __m512d select_sign1(__m512d x, __m512d neg, __m512d pos) {
    const __mmask8 m = _mm512_test_epi64_mask(_mm512_castpd_si512(x), _mm512_set1_epi64(INT64_MIN));
    return _mm512_mask_blend_pd(m, pos, neg);
  }
  static D select_sign(D x, D neg, D pos) { return {select_sign1(x.lo, neg.lo, pos.lo), select_sign1(x.hi, neg.hi, pos.hi)}; }

  // Philox4x32-10 on 8 counters, one per 64-bit lane. mul_epu32 reads only the
  // low 32 bits of each lane, so the upper halves may hold junk and the round
  // needs no masking: the 64-bit product is hi:lo, and a shift gives hi.
  static constexpr int kPhiloxFloats = 32;
  template <typename Key>
  static void philox_group(uint64_t counter, const Key& key, float p, float scale, float* out) {
    const __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(counter)),
                                         _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    __m512i c0 = ctr, c1 = _mm512_srli_epi64(ctr, 32), c2 = _mm512_setzero_si512(), c3 = c2;
    const __m512i m0 = _mm512_set1_epi64(0xD2511F53), m1 = _mm512_set1_epi64(0xCD9E8D57);
    for (int r = 0; r < 10; ++r) {
      const __m512i p0 = _mm512_mul_epu32(c0, m0), p1 = _mm512_mul_epu32(c2, m1);
      c0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1, _mm512_set1_epi64(key.k0[r]), 0x96);  // a^b^c
      c2 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3, _mm512_set1_epi64(key.k1[r]), 0x96);
      c1 = p1;
      c3 = p0;
    }
    // Lane b's words (c0, c1, c2, c3) are elements 4b .. 4b+3: gather each
    // block's four words into 128 bits, then put the blocks in order.
    const __m512i w01 = _mm512_mask_blend_epi32(0xAAAA, c0, _mm512_slli_epi64(c1, 32));
    const __m512i w23 = _mm512_mask_blend_epi32(0xAAAA, c2, _mm512_slli_epi64(c3, 32));
    const __m512i even = _mm512_unpacklo_epi64(w01, w23);  // blocks 0, 2, 4, 6
    const __m512i odd = _mm512_unpackhi_epi64(w01, w23);   // blocks 1, 3, 5, 7
    const __m512i words[2] = {
        _mm512_permutex2var_epi64(even, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), odd),
        _mm512_permutex2var_epi64(even, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), odd)};
    const __m512 pv = _mm512_set1_ps(p), sv = _mm512_set1_ps(scale);
    for (int h = 0; h < 2; ++h) {
      // philox_uniform: (word >> 8) * 2^-24, exact in float; kept when >= p.
      const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(words[h], 8)),
                                     _mm512_set1_ps(1.0f / 16777216.0f));
      _mm512_storeu_ps(out + 16 * h, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, pv, _CMP_GE_OQ), sv));
    }
  }
};

#include "vecmath_kernels.h"

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k = make_kernels<Avx512>(Isa::Avx512, "AVX-512");
  return k;
}

}  // namespace vecmath
}  // namespace bertkit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // x86-64
