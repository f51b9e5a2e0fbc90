// The AVX2+FMA build of the vecmath kernels (vecmath.h, vecmath_kernels.h).
// Doubles travel in pairs of ymm registers laid out as one zmm would be, so
// every result is bit-identical to the AVX-512 build's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "bertkit/philox.h"
#include "vecmath.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace bertkit {
namespace vecmath {
namespace {

struct Avx2 {
  // A group's 16 floats in two ymm, its 16 doubles in four, each holding the
  // elements the AVX-512 build's registers hold.
  struct F {
    __m256 lo, hi;
  };
  struct D {
    __m256d q0, q1, q2, q3;
  };

  static __m256d abs1(__m256d a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static __m256d round1(__m256d a) { return _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static __m256d select_sign1(__m256d x, __m256d neg, __m256d pos) { return _mm256_blendv_pd(pos, neg, x); }
  // 2^k for integral k in [-1022, 1023]: k + 1023 lands in the low mantissa
  // bits of 2^52 + k + 1023, and shifting it up makes it the exponent field.
  static __m256d pow2(__m256d k) {
    const __m256d biased = _mm256_add_pd(k, _mm256_set1_pd(4503599627370496.0 + 1023.0));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(biased), 52));
  }
  // p * 2^n in two steps, n = n1 + n2 with both halves in pow2's range for
  // |n| <= 2046; p * 2^n1 stays normal (p is near 1), so the only rounding is
  // the last one, exactly as AVX-512's scalef rounds.
  static __m256d ldexp1(__m256d p, __m256d n) {
    const __m256d n1 = _mm256_round_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    return _mm256_mul_pd(_mm256_mul_pd(p, pow2(n1)), pow2(_mm256_sub_pd(n, n1)));
  }

  // ---- float lanes
  static F loadf(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static void storef(float* p, F v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
  }
  static void streamf(float* p, F v) {  // p 64-byte aligned
    _mm256_stream_ps(p, v.lo);
    _mm256_stream_ps(p + 8, v.hi);
  }
  static F fset(float v) { return {_mm256_set1_ps(v), _mm256_set1_ps(v)}; }
  static F fadd(F a, F b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static F fsub(F a, F b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static F fmul(F a, F b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static F ffmadd(F a, F b, F c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
  static F ffnmadd(F a, F b, F c) { return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)}; }
  static F fmin(F a, F b) { return {_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)}; }  // b on NaN
  static F fmax(F a, F b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
  static F fdiv(F a, F b) { return {_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)}; }
  // The first count (< 16) elements, through a buffer; the other lanes hold fill / are not written.
  static F loadf_partial(const float* p, int64_t count, float fill) {
    float buf[16];
    for (int t = 0; t < 16; ++t) buf[t] = fill;
    std::memcpy(buf, p, static_cast<size_t>(count) * sizeof(float));
    return loadf(buf);
  }
  static void storef_partial(float* p, F v, int64_t count) {
    float buf[16];
    storef(buf, v);
    std::memcpy(p, buf, static_cast<size_t>(count) * sizeof(float));
  }
  // a < limit ? 0 : v (v for NaN a).
  static __m256 fzero_below1(__m256 a, float limit, __m256 v) {
    return _mm256_andnot_ps(_mm256_cmp_ps(a, _mm256_set1_ps(limit), _CMP_LT_OQ), v);
  }
  static F fzero_below(F a, float limit, F v) { return {fzero_below1(a.lo, limit, v.lo), fzero_below1(a.hi, limit, v.hi)}; }
  static F fkeep_first(F v, int64_t count) {  // others 0
    const __m256i n = _mm256_set1_epi32(static_cast<int>(count));
    const __m256i lo = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i hi = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
    return {_mm256_and_ps(v.lo, _mm256_castsi256_ps(lo)), _mm256_and_ps(v.hi, _mm256_castsi256_ps(hi))};
  }
  // lo <= x <= hi ? in : out (out for NaN).
  static __m256 fselect_range1(__m256 x, float lo, float hi, __m256 in, __m256 out) {
    const __m256 m = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(lo), _CMP_GE_OQ),
                                   _mm256_cmp_ps(x, _mm256_set1_ps(hi), _CMP_LE_OQ));
    return _mm256_blendv_ps(out, in, m);
  }
  static F fselect_range(F x, float lo, float hi, F in, F out) {
    return {fselect_range1(x.lo, lo, hi, in.lo, out.lo), fselect_range1(x.hi, lo, hi, in.hi, out.hi)};
  }
  static __m256 fabs1(__m256 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static F fabs(F a) { return {fabs1(a.lo), fabs1(a.hi)}; }
  // Sign bit of x set ? neg : pos.
  static F fselect_sign(F x, F neg, F pos) {
    return {_mm256_blendv_ps(pos.lo, neg.lo, x.lo), _mm256_blendv_ps(pos.hi, neg.hi, x.hi)};
  }
  static __m256 fround1(__m256 a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F fround(F a) { return {fround1(a.lo), fround1(a.hi)}; }
  // 2^k for integral k in [-126, 127]: k + 127 lands in the low mantissa bits
  // of 2^23 + k + 127, and shifting it up makes it the exponent field.
  static __m256 pow2f(__m256 k) {
    const __m256 biased = _mm256_add_ps(k, _mm256_set1_ps(8388608.0f + 127.0f));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(biased), 23));
  }
  // p * 2^n as p * 2^n1 * 2^n2: the first product is exact (p is near 1 and
  // n1 >= -80), so the only rounding is the last, exactly as scalef rounds.
  static __m256 fldexp1(__m256 p, __m256 n) {
    const __m256 n1 = _mm256_round_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2f(n1)), pow2f(_mm256_sub_ps(n, n1)));
  }
  static F fldexp(F p, F n) { return {fldexp1(p.lo, n.lo), fldexp1(p.hi, n.hi)}; }
  static float fhmax(F v) {
    const __m256 m = _mm256_max_ps(v.lo, v.hi);
    __m128 q = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    q = _mm_max_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
  }

  // ---- double lanes
  static D widen(F f) {
    return {_mm256_cvtps_pd(_mm256_castps256_ps128(f.lo)), _mm256_cvtps_pd(_mm256_extractf128_ps(f.lo, 1)),
            _mm256_cvtps_pd(_mm256_castps256_ps128(f.hi)), _mm256_cvtps_pd(_mm256_extractf128_ps(f.hi, 1))};
  }
  static __m256 narrow2(__m256d a, __m256d b) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(a)), _mm256_cvtpd_ps(b), 1);
  }
  static F narrow(D d) { return {narrow2(d.q0, d.q1), narrow2(d.q2, d.q3)}; }
  static D load(const double* p) {
    return {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4), _mm256_loadu_pd(p + 8), _mm256_loadu_pd(p + 12)};
  }
  static void store(double* p, D v) {
    _mm256_storeu_pd(p, v.q0);
    _mm256_storeu_pd(p + 4, v.q1);
    _mm256_storeu_pd(p + 8, v.q2);
    _mm256_storeu_pd(p + 12, v.q3);
  }
  static D set(double v) {
    const __m256d x = _mm256_set1_pd(v);
    return {x, x, x, x};
  }
  // Named quarters, not an array: GCC keeps arrays of vectors in memory.
#define BERTKIT_QUARTERS2(name, op) \
  static D name(D a, D b) { return {op(a.q0, b.q0), op(a.q1, b.q1), op(a.q2, b.q2), op(a.q3, b.q3)}; }
#define BERTKIT_QUARTERS3(name, op) \
  static D name(D a, D b, D c) { return {op(a.q0, b.q0, c.q0), op(a.q1, b.q1, c.q1), op(a.q2, b.q2, c.q2), op(a.q3, b.q3, c.q3)}; }
  BERTKIT_QUARTERS2(add, _mm256_add_pd)
  BERTKIT_QUARTERS2(sub, _mm256_sub_pd)
  BERTKIT_QUARTERS2(mul, _mm256_mul_pd)
  BERTKIT_QUARTERS2(div, _mm256_div_pd)
  BERTKIT_QUARTERS2(min, _mm256_min_pd)  // b on NaN
  BERTKIT_QUARTERS2(max, _mm256_max_pd)
  BERTKIT_QUARTERS3(fmadd, _mm256_fmadd_pd)    // a*b + c
  BERTKIT_QUARTERS3(fnmadd, _mm256_fnmadd_pd)  // c - a*b
  BERTKIT_QUARTERS2(ldexp, ldexp1)
  // Sign bit of a set ? b : c.
  BERTKIT_QUARTERS3(select_sign, select_sign1)
#undef BERTKIT_QUARTERS2
#undef BERTKIT_QUARTERS3
  static D abs(D a) { return {abs1(a.q0), abs1(a.q1), abs1(a.q2), abs1(a.q3)}; }
  // Sum of the 16 lanes as the tree part[t] += part[t + w] for w = 8, 4, 2, 1
  // (q0..q3 hold elements 0-3, 4-7, 8-11, 12-15).
  static double hsum_tree(D v) {
    const __m256d s4 = _mm256_add_pd(_mm256_add_pd(v.q0, v.q2), _mm256_add_pd(v.q1, v.q3));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
  static D round(D a) { return {round1(a.q0), round1(a.q1), round1(a.q2), round1(a.q3)}; }

  // Philox4x32-10 on 4 counters, one per 64-bit lane (see the AVX-512 build).
  static constexpr int kPhiloxFloats = 16;
  template <typename Key>
  static void philox_group(uint64_t counter, const Key& key, float p, float scale, float* out) {
    const __m256i ctr = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(counter)),
                                         _mm256_setr_epi64x(0, 1, 2, 3));
    __m256i c0 = ctr, c1 = _mm256_srli_epi64(ctr, 32), c2 = _mm256_setzero_si256(), c3 = c2;
    const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
    for (int r = 0; r < 10; ++r) {
      const __m256i p0 = _mm256_mul_epu32(c0, m0), p1 = _mm256_mul_epu32(c2, m1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1), _mm256_set1_epi64x(key.k0[r]));
      c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3), _mm256_set1_epi64x(key.k1[r]));
      c1 = p1;
      c3 = p0;
    }
    const __m256i w01 = _mm256_blend_epi32(c0, _mm256_slli_epi64(c1, 32), 0xAA);
    const __m256i w23 = _mm256_blend_epi32(c2, _mm256_slli_epi64(c3, 32), 0xAA);
    const __m256i even = _mm256_unpacklo_epi64(w01, w23);  // blocks 0, 2
    const __m256i odd = _mm256_unpackhi_epi64(w01, w23);   // blocks 1, 3
    const __m256i words[2] = {_mm256_permute2x128_si256(even, odd, 0x20), _mm256_permute2x128_si256(even, odd, 0x31)};
    const __m256 pv = _mm256_set1_ps(p), sv = _mm256_set1_ps(scale);
    for (int h = 0; h < 2; ++h) {
      const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words[h], 8)),
                                     _mm256_set1_ps(1.0f / 16777216.0f));
      _mm256_storeu_ps(out + 8 * h, _mm256_and_ps(_mm256_cmp_ps(u, pv, _CMP_GE_OQ), sv));
    }
  }
};

#include "vecmath_kernels.h"

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k = make_kernels<Avx2>(Isa::Avx2, "AVX2+FMA");
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
