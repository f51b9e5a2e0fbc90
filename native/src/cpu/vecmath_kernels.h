// The vecmath kernels (vecmath.h), written once over an instruction-set
// traits type S and included by vecmath_avx2.cpp and vecmath_avx512.cpp after
// their `#pragma GCC target`, so each gets its own code generation. Everything
// works on groups of kW = 16 elements: S::F holds 16 floats (one zmm, or two
// ymm), S::D 16 doubles (two zmm, or four ymm). Because the AVX2 traits keep
// the AVX-512 lane layout and run every operation in the same order, both
// builds round alike and give bit-identical results. Two zmm per group also
// gives each step two independent dependency chains.
//
// Formulas:
//   exp_d(a), double: clamp a to [-1400, 1400] (NaN passes), n = rint(a/ln2),
//             r = a - n ln2 with ln2 split in two (FMA: both steps exact or
//             nearly), e^r = 1 + r + r^2 q(r) with q of degree 7 (7.4e-14
//             relative on |r| <= ln2/2), times 2^n by S::ldexp, which rounds
//             once also into subnormals and overflows to inf.
//   exp_f(a), float (softmax): the same in float lanes, clamp [-110, 90],
//             q of degree 5; measured over every float in [-110, 90]
//             against double exp: at most 0.874 ulp.
//   erfc(t), t >= 0, double: erfc(t) = e^{-t^2} (t + L)^{-1} P(s),
//             s = (A t + B)/(t + L), L = 3.5, P of degree 16: (t + L) erfcx(t)
//             is smooth in (t - L)/(t + L) (Weideman's substitution), which s
//             maps affinely onto [-1, 1] for t in [0, 10.5]. Fitted by
//             relative-weighted least squares at 600 Chebyshev points in
//             50-digit arithmetic: 1.1e-14 relative. t is clamped at 10.5:
//             past that, everything erfc feeds is below float's smallest
//             subnormal.
//   GELU erf: in float lanes, see GeluErfF below.
//   GELU tanh: 0.5 (1 + tanh u) = 1/(1 + e^{-2u}), u and everything after in
//             double, so the e^{-2u} of very negative x (where float u would
//             lose 2|u| ulps) stays accurate.
// The GELUs are rounded to float once, at the end.
//
// Included inside `namespace bertkit::vecmath::{anonymous}` after the
// includes it relies on (<immintrin.h>, <algorithm>, <cmath>, <cstring>,
// philox.h), so it includes nothing itself.

constexpr int kW = 16;  // elements per group, for every instruction set

// ---- exp ---------------------------------------------------------------------------

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2Hi = 0x1.62e42fefa39efp-1;   // ln 2 rounded to double
constexpr double kLn2Lo = 0x1.abc9e3b39803fp-56;  // ln 2 - kLn2Hi
// e^1400 overflows and e^-1400 underflows to 0, and n = rint(1400/ln2) = 2020
// stays within the two-step 2^n of the AVX2 build (|n| <= 2046).
constexpr double kExpClamp = 1400.0;

template <class S>
inline typename S::D exp_d(typename S::D a) {
  using D = typename S::D;
  // max/min return their second operand when either is NaN: a NaN a survives.
  a = S::min(S::set(kExpClamp), S::max(S::set(-kExpClamp), a));
  const D n = S::round(S::mul(a, S::set(kLog2e)));
  D r = S::fnmadd(n, S::set(kLn2Hi), a);
  r = S::fnmadd(n, S::set(kLn2Lo), r);
  // e^r = 1 + r + r^2 q(r), q of degree 7 interpolated at Chebyshev nodes on
  // [-ln2/2, ln2/2] in 50-digit arithmetic: 7.4e-14 relative. Every caller
  // rounds to float, where that is 1e-6 of an ulp; two more degrees would
  // reach double precision (1.6e-17) for 10 % more time, buying nothing.
  D p = S::set(2.761757684835413e-06);
  p = S::fmadd(p, r, S::set(2.4867883453521802e-05));
  p = S::fmadd(p, r, S::set(0.00019841224581544105));
  p = S::fmadd(p, r, S::set(0.001388883909064138));
  p = S::fmadd(p, r, S::set(0.008333333344209506));
  p = S::fmadd(p, r, S::set(0.041666666786337556));
  p = S::fmadd(p, r, S::set(0.16666666666662583));
  p = S::fmadd(p, r, S::set(0.4999999999995507));
  p = S::fmadd(p, r, S::set(1.0));
  p = S::fmadd(p, r, S::set(1.0));
  return S::ldexp(p, n);
}

constexpr float kLog2eF = 1.44269502f;
constexpr float kLn2HiF = 0x1.62e430p-1f;    // ln 2 rounded to float
constexpr float kLn2LoF = -0x1.05c610p-29f;  // ln 2 - kLn2HiF
// e^90 overflows to inf in float, and e^a for a < -104 rounds to 0: those
// lanes are computed from a = 0 and then set to 0, because letting the
// scaling underflow costs a microcode assist per instruction (the padded
// keys of attention, at -FLT_MAX, would pay it on every row). n = rint(a/ln2)
// in [-151, 130] stays within the two-step 2^n of the AVX2 build.
constexpr float kExpZeroBelowF = -104.0f, kExpClampHiF = 90.0f;

template <class S>
inline typename S::F exp_f(typename S::F a0) {
  using F = typename S::F;
  F a = S::fmin(S::fset(kExpClampHiF), S::fzero_below(a0, kExpZeroBelowF, a0));  // NaN passes, as in exp_d
  const F n = S::fround(S::fmul(a, S::fset(kLog2eF)));
  // With FMA the first step is exact: n ln2hi has at most 32 significant bits
  // and a - n ln2hi at most 24.
  F r = S::ffnmadd(n, S::fset(kLn2HiF), a);
  r = S::ffnmadd(n, S::fset(kLn2LoF), r);
  // q fitted at Chebyshev nodes in 50-digit arithmetic, rounded to float.
  F p = S::fset(0x1.a1256cp-13f);
  p = S::ffmadd(p, r, S::fset(0x1.6d43b0p-10f));
  p = S::ffmadd(p, r, S::fset(0x1.1110e0p-7f));
  p = S::ffmadd(p, r, S::fset(0x1.5554e8p-5f));
  p = S::ffmadd(p, r, S::fset(0x1.555556p-3f));
  p = S::ffmadd(p, r, S::fset(0.5f));
  p = S::ffmadd(p, r, S::fset(1.0f));
  p = S::ffmadd(p, r, S::fset(1.0f));
  return S::fzero_below(a0, kExpZeroBelowF, S::fldexp(p, n));
}

// ---- erfc on t >= 0 -------------------------------------------------------------------

constexpr double kErfcL = 3.5;
constexpr double kErfcA = 1.6666666666666667;  // s = (A t + B) / (t + L) maps [0, 10.5] to [-1, 1]
constexpr double kErfcB = -3.5;
constexpr double kErfcMaxT = 10.5;

// e^{-t^2} is passed in (the callers have it from an exact argument).
template <class S>
inline typename S::D erfc_scaled(typename S::D t, typename S::D exp_minus_t2) {
  using D = typename S::D;
  t = S::min(S::set(kErfcMaxT), t);
  const D r = S::div(S::set(1.0), S::add(t, S::set(kErfcL)));
  const D s = S::mul(S::fmadd(S::set(kErfcA), t, S::set(kErfcB)), r);
  D p = S::set(-1.5213125618398081e-09);
  p = S::fmadd(p, s, S::set(-1.3693168861222353e-08));
  p = S::fmadd(p, s, S::set(2.8585605609251094e-08));
  p = S::fmadd(p, s, S::set(2.462133511484098e-07));
  p = S::fmadd(p, s, S::set(-4.902398208257033e-07));
  p = S::fmadd(p, s, S::set(-3.4662254825619507e-06));
  p = S::fmadd(p, s, S::set(1.1151838078170468e-05));
  p = S::fmadd(p, s, S::set(3.934897863312402e-05));
  p = S::fmadd(p, s, S::set(-0.00028168588303603605));
  p = S::fmadd(p, s, S::set(0.00013522717610737133));
  p = S::fmadd(p, s, S::set(0.005136247692182899));
  p = S::fmadd(p, s, S::set(-0.03198190058176224));
  p = S::fmadd(p, s, S::set(0.11621293843779952));
  p = S::fmadd(p, s, S::set(-0.30684197443579536));
  p = S::fmadd(p, s, S::set(0.6306980185834882));
  p = S::fmadd(p, s, S::set(-1.0369041692059544));
  p = S::fmadd(p, s, S::set(1.372667090732976));
  return S::mul(S::mul(exp_minus_t2, p), r);
}

// ---- elementwise drivers ---------------------------------------------------------------

// y[0, n) = Op::value(x[0, n)) a group at a time; the last partial group goes
// through a zero-padded copy, so every element takes the same arithmetic path
// whatever its position (results do not depend on how threads split the range).
template <class S, class Op>
void map_unary(int64_t n, const float* x, float* y) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) S::storef(y + i, Op::value(S::loadf(x + i)));
  if (i < n) {
    const size_t rest = static_cast<size_t>(n - i);
    float in[kW] = {}, out[kW];
    std::memcpy(in, x + i, rest * sizeof(float));
    S::storef(out, Op::value(S::loadf(in)));
    std::memcpy(y + i, out, rest * sizeof(float));
  }
}

// dx[0, n) += dy * Op::derivative(x). The product is rounded before the add,
// as torch's backward (grad * f'(x)) followed by autograd's accumulation is.
// Without accumulate, dx = 0 + product: what a zero-filled dx would get.
template <class S, class Op>
inline void backward_step(const float* x, const float* dy, float* dx, bool accumulate) {
  const typename S::F prod = S::fmul(S::loadf(dy), Op::derivative(S::loadf(x)));
  S::storef(dx, S::fadd(accumulate ? S::loadf(dx) : S::fset(0.0f), prod));
}

template <class S, class Op>
void map_backward(int64_t n, const float* x, const float* dy, float* dx, bool accumulate) {
  int64_t i = 0;
  for (; i + kW <= n; i += kW) backward_step<S, Op>(x + i, dy + i, dx + i, accumulate);
  if (i < n) {
    const size_t rest = static_cast<size_t>(n - i);
    float xs[kW] = {}, dys[kW] = {}, dxs[kW] = {};
    std::memcpy(xs, x + i, rest * sizeof(float));
    std::memcpy(dys, dy + i, rest * sizeof(float));
    std::memcpy(dxs, dx + i, rest * sizeof(float));
    backward_step<S, Op>(xs, dys, dxs, accumulate);
    std::memcpy(dx + i, dxs, rest * sizeof(float));
  }
}

// ---- GELU (erf), float lanes -------------------------------------------------------------

// What the training step runs (BERT's "gelu"): everything in float, as torch
// computes it; 2.3x faster than the double lanes this replaced (which were
// within 0.5 ulp, against a few ulps here). Away from 0, with u = |x|:
//   erfc(u/sqrt2) = e^{-u^2/2} (u + 3)^{-1} P(z),  z = (1.375 u - 3) / (u + 3),
// the substitution of erfc_scaled with its constants chosen so that z maps
// [0, 16] onto [-1, 1] with an exact float slope; P of degree 10 was fitted
// (near-minimax relative, 40-digit references; bench/fit_gelu_erf_float.py)
// to 9.4e-10 relative, 5.3e-8 with its coefficients rounded to float, and is
// stored halved so P gives Phi's tail h = erfc/2 directly.
// e^{-u^2/2} takes u^2 split exactly into hi + lo (FMA), lo entering the
// reduced argument, so squaring costs no accuracy. Past |x| = 16, h is below
// float's smallest subnormal: x is clamped there (NaN passes), which also
// keeps inf out of the FMA split; x * Phi still gives x, inf, or -inf * 0 =
// NaN as torch does. bench/vecmath-accuracy.cpp measures the result on every
// float (vecmath.h has the figures).
constexpr float kGeluErfClampF = 16.0f;
constexpr float kErfcLF = 3.0f, kErfcAF = 1.375f, kErfcBF = -3.0f;
constexpr float kInvSqrt2PiF = 0.398942280f;

// e^{a + c}, a <= 0 exact, |c| tiny: exp_f with c added to the reduced argument.
template <class S>
inline typename S::F exp_f_plus(typename S::F a0, typename S::F c) {
  using F = typename S::F;
  const F a = S::fzero_below(a0, kExpZeroBelowF, a0);  // NaN passes; see exp_f
  const F n = S::fround(S::fmul(a, S::fset(kLog2eF)));
  F r = S::ffnmadd(n, S::fset(kLn2HiF), a);
  r = S::ffnmadd(n, S::fset(kLn2LoF), r);
  r = S::fadd(r, c);
  F p = S::fset(0x1.a1256cp-13f);
  p = S::ffmadd(p, r, S::fset(0x1.6d43b0p-10f));
  p = S::ffmadd(p, r, S::fset(0x1.1110e0p-7f));
  p = S::ffmadd(p, r, S::fset(0x1.5554e8p-5f));
  p = S::ffmadd(p, r, S::fset(0x1.555556p-3f));
  p = S::ffmadd(p, r, S::fset(0.5f));
  p = S::ffmadd(p, r, S::fset(1.0f));
  p = S::ffmadd(p, r, S::fset(1.0f));
  return S::fzero_below(a0, kExpZeroBelowF, S::fldexp(p, n));
}

template <class S>
struct GeluErfF {
  using F = typename S::F;

  // t = e^{-x^2/2} P(z) and r = 1/(u + 3), so that erfc(u/sqrt2)/2 = t r, for x
  // already clamped; e = e^{-x^2/2} for the derivative.
  static void tail(F x, F* t, F* r, F* e) {
    const F hi = S::fmul(x, x);
    const F lo = S::ffmadd(x, x, S::fsub(S::fset(0.0f), hi));  // x*x - hi, exactly
    *e = exp_f_plus<S>(S::fmul(hi, S::fset(-0.5f)), S::fmul(lo, S::fset(-0.5f)));
    const F u = S::fabs(x);
    *r = S::fdiv(S::fset(1.0f), S::fadd(u, S::fset(kErfcLF)));
    const F z = S::fmul(S::ffmadd(S::fset(kErfcAF), u, S::fset(kErfcBF)), *r);
    F p = S::fset(0x1.480806p-17f);
    p = S::ffmadd(p, z, S::fset(0x1.43c6eap-17f));
    p = S::ffmadd(p, z, S::fset(-0x1.88bba2p-14f));
    p = S::ffmadd(p, z, S::fset(-0x1.8d9aa4p-13f));
    p = S::ffmadd(p, z, S::fset(0x1.6e3fe2p-11f));
    p = S::ffmadd(p, z, S::fset(0x1.327026p-9f));
    p = S::ffmadd(p, z, S::fset(-0x1.fd3920p-8f));
    p = S::ffmadd(p, z, S::fset(-0x1.7dc374p-6f));
    p = S::ffmadd(p, z, S::fset(0x1.6beb44p-3f));
    p = S::ffmadd(p, z, S::fset(-0x1.f8bab0p-2f));
    p = S::ffmadd(p, z, S::fset(0x1.a17e76p-1f));
    *t = S::fmul(*e, p);
  }

  static F clamp(F x) {
    return S::fmin(S::fset(kGeluErfClampF), S::fmax(S::fset(-kGeluErfClampF), x));  // NaN passes
  }

  // Near 0 the pieces above (e near 1, P, r, each rounded) add up to a few
  // ulps, and most activations live there: inside [-kNearLo, kNearHi] Phi
  // and the derivative come from their series instead, Phi = 1/2 + x R(x^2)
  // and Phi + x phi = 1/2 + x D(x^2), each with one rounding in the final
  // FMA. R and D (degree 7 in x^2 on [0, 1.5^2]) were fitted like P (8e-11
  // and 8e-10 relative; their float coefficients dominate at 3e-8 and 4e-8).
  // The forward's range stops at -1 on the left: 1/2 + x R cancels more and
  // more below -0.5, but at -1 it still beats the tail pieces (every float
  // in [-1, -0.01]: max 2.6 ulp this way, 4.1 with the range stopping at
  // -0.5); the derivative cancels at its zero anyway (-0.75), and is
  // measured against its terms.
  static F near_cdf(F x) {
    const F w = S::fmul(x, x);
    F p = S::fset(-0x1.b17c98p-26f);
    p = S::ffmadd(p, w, S::fset(0x1.48a046p-21f));
    p = S::ffmadd(p, w, S::fset(-0x1.3996b6p-17f));
    p = S::ffmadd(p, w, S::fset(0x1.e3bc8ep-14f));
    p = S::ffmadd(p, w, S::fset(-0x1.373c4ep-10f));
    p = S::ffmadd(p, w, S::fset(0x1.46d01ep-7f));
    p = S::ffmadd(p, w, S::fset(-0x1.105838p-4f));
    p = S::ffmadd(p, w, S::fset(0x1.988454p-2f));
    return S::ffmadd(x, p, S::fset(0.5f));
  }
  static F near_derivative(F x) {
    const F w = S::fmul(x, x);
    F p = S::fset(-0x1.95269ap-22f);
    p = S::ffmadd(p, w, S::fset(0x1.18f71ep-17f));
    p = S::ffmadd(p, w, S::fset(-0x1.d3fcc6p-14f));
    p = S::ffmadd(p, w, S::fset(0x1.2e1eaep-10f));
    p = S::ffmadd(p, w, S::fset(-0x1.37373ap-7f));
    p = S::ffmadd(p, w, S::fset(0x1.ea37bcp-5f));
    p = S::ffmadd(p, w, S::fset(-0x1.105836p-2f));
    p = S::ffmadd(p, w, S::fset(0x1.988454p-1f));
    return S::ffmadd(x, p, S::fset(0.5f));
  }
  static constexpr float kNearHi = 1.5f, kNearLoValue = -1.0f, kNearLoDerivative = -1.5f;

  // Away from 0, x < 0: x h = (x t) r, multiplied in that order so that no
  // factor but the result falls into subnormals (t r alone would, below
  // x = -13). x >= 0: x (1 - h).
  static F value(F x) {
    F t, r, e;
    tail(clamp(x), &t, &r, &e);
    const F negative = S::fmul(S::fmul(x, t), r);
    const F positive = S::fmul(x, S::fsub(S::fset(1.0f), S::fmul(t, r)));
    const F far = S::fselect_sign(x, negative, positive);
    return S::fselect_range(x, kNearLoValue, kNearHi, S::fmul(x, near_cdf(x)), far);
  }

  // d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = e^{-x^2/2} / sqrt(2 pi).
  static F derivative(F x) {
    F t, r, e;
    tail(clamp(x), &t, &r, &e);
    const F h = S::fmul(t, r);
    const F cdf = S::fselect_sign(x, h, S::fsub(S::fset(1.0f), h));  // no cancellation: h <= 1/2
    // x itself, not the clamped x: -inf * 0 gives torch's NaN at x = -inf.
    const F far = S::ffmadd(x, S::fmul(e, S::fset(kInvSqrt2PiF)), cdf);
    return S::fselect_range(x, kNearLoDerivative, kNearHi, near_derivative(x), far);
  }
};

// ---- GELU (tanh) ---------------------------------------------------------------------------

constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluTanhCubic = 0.044715;

template <class S>
struct GeluTanh {
  using D = typename S::D;
  using F = typename S::F;

  // s = 0.5 (1 + tanh u) = 1 / (1 + e^{-2u}). In double x^3 cannot overflow,
  // and e^{-2u} = inf (x -> -inf) gives s = 0 exactly, so gelu(-inf) =
  // -inf * 0 = NaN, as torch's formula gives.
  static D sigmoid(D x) {
    // -2u = x (c1 + c3 x^2), c1 = -2 sqrt(2/pi), c3 = 0.044715 c1.
    const D minus_2u = S::mul(S::fmadd(S::set(-2.0 * kSqrt2OverPi * kGeluTanhCubic), S::mul(x, x),
                                       S::set(-2.0 * kSqrt2OverPi)), x);
    return S::div(S::set(1.0), S::add(S::set(1.0), exp_d<S>(minus_2u)));
  }

  static F value(F xf) {
    const D x = S::widen(xf);
    return S::narrow(S::mul(x, sigmoid(x)));
  }

  // y' = s + 2 x s (1 - s) u'(x), u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
  // In double, 1 - s keeps ~1e-16 absolute error, far below float resolution
  // of y' even after 2 x u'(x) (~40 at x = 5) magnifies it.
  static F derivative(F xf) {
    const D x = S::widen(xf);
    const D s = sigmoid(x);
    const D du2 = S::fmadd(S::set(6.0 * kSqrt2OverPi * kGeluTanhCubic), S::mul(x, x), S::set(2.0 * kSqrt2OverPi));
    const D x_s = S::mul(x, s);
    return S::narrow(S::fmadd(S::mul(x_s, S::sub(S::set(1.0), s)), du2, s));
  }
};

// ---- softmax ---------------------------------------------------------------------------------

// The same contract as attention.cpp's scalar softmax_row: scores s*scale +
// bias, max skipping NaN (std::max(max, v) keeps max when v is NaN), exp in
// float of (score - max), their sum in double, one float reciprocal.
template <class S>
void softmax_row(int64_t n, float scale, const float* bias, float* s) {
  using F = typename S::F;
  using D = typename S::D;
  const F vscale = S::fset(scale);
  F vmax = S::fset(-INFINITY);
  int64_t j = 0;
  for (; j + kW <= n; j += kW) {
    const F v = S::fadd(S::fmul(S::loadf(s + j), vscale), S::loadf(bias + j));
    S::storef(s + j, v);
    vmax = S::fmax(v, vmax);  // second operand on NaN: a NaN score leaves the max alone
  }
  float max = S::fhmax(vmax);
  for (int64_t t = j; t < n; ++t) {
    s[t] = s[t] * scale + bias[t];
    max = std::max(max, s[t]);
  }

  const F vmaxb = S::fset(max);
  D acc = S::set(0.0);  // 16 partial sums, lane l taking elements l, l + 16, ...
  for (j = 0; j + kW <= n; j += kW) {
    const F e = exp_f<S>(S::fsub(S::loadf(s + j), vmaxb));
    S::storef(s + j, e);
    acc = S::add(acc, S::widen(e));
  }
  const int64_t rest = n - j;
  if (rest > 0) {
    // The padding lanes add 0 to the sum. They are computed from the max
    // (e^0) and then zeroed, not as e^-inf: exp_f's underflow would take a
    // slow microcode assist on every row (most of the softmax's time at
    // attention's short rows).
    const F e = S::fkeep_first(exp_f<S>(S::fsub(S::loadf_partial(s + j, rest, max), vmaxb)), rest);
    S::storef_partial(s + j, e, rest);
    acc = S::add(acc, S::widen(e));
  }
  const float inv = static_cast<float>(1.0 / S::hsum_tree(acc));
  const F vinv = S::fset(inv);
  for (j = 0; j + kW <= n; j += kW) S::storef(s + j, S::fmul(S::loadf(s + j), vinv));
  if (rest > 0) S::storef_partial(s + j, S::fmul(S::loadf_partial(s + j, rest, 0.0f), vinv), rest);
}

// softmax_row over consecutive rows of n; one call for a head's rows lets
// the rows' dependency chains (max, then sum, then a division) overlap.
template <class S>
void softmax_rows(int64_t rows, int64_t n, float scale, const float* bias, float* s) {
  for (int64_t i = 0; i < rows; ++i) softmax_row<S>(n, scale, bias, s + i * n);
}

// ---- dropout -------------------------------------------------------------------------------

// Philox's round keys, the same for every counter of a call.
struct PhiloxKey {
  uint32_t k0[10], k1[10];
};

inline PhiloxKey philox_key(uint64_t seed) {
  PhiloxKey key;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    key.k0[r] = k0;
    key.k1[r] = k1;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return key;
}

// A start inside a Philox block draws the group of that block whole into a
// buffer and keeps its tail (attention's rows start anywhere: a row of 27
// then costs one group instead of one scalar block per element before the
// boundary); then whole groups of S::kPhiloxFloats (S::philox_group: 4
// elements per counter); a last partial group is drawn whole and cut.
template <class S>
int64_t dropout_head(uint64_t offset, const PhiloxKey& key, uint64_t first, int64_t n, float p, float scale,
                     float* buf) {
  constexpr int64_t K = S::kPhiloxFloats;
  const int64_t skip = static_cast<int64_t>(first & 3);
  if (skip == 0 || n == 0) return 0;
  S::philox_group(offset + (first >> 2), key, p, scale, buf);
  return std::min<int64_t>(n, K - skip);
}

template <class S>
void dropout_factors(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p, float scale,
                     float* factor) {
  constexpr int64_t K = S::kPhiloxFloats;
  const PhiloxKey key = philox_key(seed);
  float head[K];
  int64_t j = dropout_head<S>(offset, key, first, n, p, scale, head);
  std::memcpy(factor, head + (first & 3), static_cast<size_t>(j) * sizeof(float));
  for (; j + K <= n; j += K) S::philox_group(offset + ((first + j) >> 2), key, p, scale, factor + j);
  if (j < n) {
    float buf[K];
    S::philox_group(offset + ((first + j) >> 2), key, p, scale, buf);
    std::memcpy(factor + j, buf, static_cast<size_t>(n - j) * sizeof(float));
  }
}

// factor for `rows` rows of n elements, row i drawing the flat elements
// [first + i * stride, + n) into factor + i * n: attention's rows, each a
// few dozen elements starting anywhere in a Philox block. A row that fits in
// one group (its start's offset in the block plus n at most
// S::kPhiloxFloats) is drawn as that group and copied out with vector moves,
// with no call in the loop, so the rows' independent Philox chains overlap;
// longer rows go through dropout_factors.
template <class S>
void dropout_factor_rows(uint64_t seed, uint64_t offset, uint64_t first, uint64_t stride, int64_t rows, int64_t n,
                         float p, float scale, float* factor) {
  constexpr int64_t K = S::kPhiloxFloats;
  const PhiloxKey key = philox_key(seed);
  alignas(64) float buf[K];
  for (int64_t i = 0; i < rows; ++i) {
    const uint64_t start = first + static_cast<uint64_t>(i) * stride;
    const int64_t skip = static_cast<int64_t>(start & 3);
    float* out = factor + i * n;
    if (skip + n > K) {
      dropout_factors<S>(seed, offset, start, n, p, scale, out);
      continue;
    }
    S::philox_group(offset + (start >> 2), key, p, scale, buf);
    for (int64_t c = 0; c < n; c += kW) {
      const int64_t count = std::min<int64_t>(kW, n - c);
      if (count == kW) S::storef(out + c, S::loadf(buf + skip + c));
      else S::storef_partial(out + c, S::loadf_partial(buf + skip + c, count, 0.0f), count);
    }
  }
}

// y = x * factor (or y += x * factor): a product, not a select, so a dropped
// NaN stays NaN as in torch.
template <class S>
void dropout_apply(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p, float scale,
                   const float* x, float* y, Store store) {
  // Add reads y; WriteSum adds to +0 (0 + -0 is +0, as for a zero-filled y).
  const bool accumulate = store == Store::Add, write_sum = store == Store::WriteSum;
  constexpr int64_t K = S::kPhiloxFloats;
  const PhiloxKey key = philox_key(seed);
  float f[K];
  int64_t j = dropout_head<S>(offset, key, first, n, p, scale, f);
  for (int64_t k = 0; k < j; ++k) {
    const float v = x[k] * f[(first & 3) + k];
    y[k] = accumulate ? y[k] + v : write_sum ? 0.0f + v : v;
  }
  for (; j < n; j += K) {
    S::philox_group(offset + ((first + j) >> 2), key, p, scale, f);
    const int64_t count = std::min<int64_t>(K, n - j);
    const float* xs = x + j;  // may alias ys: dropout in place
    float* ys = y + j;
    if (count == K) {
      if (accumulate) {
        for (int64_t k = 0; k < K; ++k) ys[k] += xs[k] * f[k];
      } else if (write_sum) {
        for (int64_t k = 0; k < K; ++k) ys[k] = 0.0f + xs[k] * f[k];
      } else {
        for (int64_t k = 0; k < K; ++k) ys[k] = xs[k] * f[k];
      }
    } else {
      for (int64_t k = 0; k < count; ++k) {
        const float v = xs[k] * f[k];
        ys[k] = accumulate ? ys[k] + v : write_sum ? 0.0f + v : v;
      }
    }
  }
}

// ---- small products (attention) -------------------------------------------------------------

// C[i, j] = sum over t < k of a[i * a_row + t * a_col] * b[t * ldb + j], for
// i < m, j < n, C written: attention.cpp's matmul (its contract and its
// bits: every element is one FMA chain over t = 0..k-1 from 0, as the
// x86-64-v3/v4 clones of that loop compute it), for the small per-head
// products of attention, whose n and m are rarely multiples of 16 or 4.
// Tiles of R rows x 16 columns stay in registers for the whole t loop; a
// last panel of fewer than 16 columns is first copied into a zero-padded
// k x 16 scratch so the t loop runs full vectors there too.
template <class S, int R>
inline void matmul_tile(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                        float* c, int64_t ldc, int64_t cols) {
  using F = typename S::F;
  F acc[R];
  for (int r = 0; r < R; ++r) acc[r] = S::fset(0.0f);
  for (int64_t t = 0; t < k; ++t) {
    const F bt = S::loadf(b + t * ldb);
    const float* at = a + t * a_col;
    for (int r = 0; r < R; ++r) acc[r] = S::ffmadd(S::fset(at[r * a_row]), bt, acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    if (cols == kW) S::storef(c + r * ldc, acc[r]);
    else S::storef_partial(c + r * ldc, acc[r], cols);
  }
}

template <class S>
void small_matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                  int64_t ldb, float* c, int64_t ldc, float* scratch) {
  constexpr int R = 4;
  for (int64_t j0 = 0; j0 < n; j0 += kW) {
    const int64_t cols = std::min<int64_t>(kW, n - j0);
    const float* panel = b + j0;
    int64_t ld = ldb;
    if (cols < kW) {
      for (int64_t t = 0; t < k; ++t) {
        S::storef(scratch + t * kW, S::loadf_partial(b + t * ldb + j0, cols, 0.0f));
      }
      panel = scratch;
      ld = kW;
    }
    int64_t i = 0;
    for (; i + R <= m; i += R) matmul_tile<S, R>(k, a + i * a_row, a_row, a_col, panel, ld, c + i * ldc + j0, ldc, cols);
    const float* ai = a + i * a_row;
    float* ci = c + i * ldc + j0;
    switch (m - i) {
      case 3: matmul_tile<S, 3>(k, ai, a_row, a_col, panel, ld, ci, ldc, cols); break;
      case 2: matmul_tile<S, 2>(k, ai, a_row, a_col, panel, ld, ci, ldc, cols); break;
      case 1: matmul_tile<S, 1>(k, ai, a_row, a_col, panel, ld, ci, ldc, cols); break;
      default: break;
    }
  }
}

// ---- test hooks ------------------------------------------------------------------------------

template <class S>
void exp_f64(int64_t n, const double* a, double* y) {
  for (int64_t i = 0; i < n; i += kW) {
    double in[kW] = {}, out[kW];
    const size_t count = static_cast<size_t>(std::min<int64_t>(kW, n - i));
    std::memcpy(in, a + i, count * sizeof(double));
    S::store(out, exp_d<S>(S::load(in)));
    std::memcpy(y + i, out, count * sizeof(double));
  }
}

// e^{-t^2} from t^2 split exactly into hi + lo (FMA), e^{-lo} ~ 1 - lo, so
// the measured error is the erfc fit's, not that of rounding t^2.
template <class S>
void erfc_f64(int64_t n, const double* t, double* y) {
  for (int64_t i = 0; i < n; i += kW) {
    double in[kW] = {}, out[kW];
    const size_t count = static_cast<size_t>(std::min<int64_t>(kW, n - i));
    std::memcpy(in, t + i, count * sizeof(double));
    const typename S::D tv = S::load(in);
    const typename S::D hi = S::mul(tv, tv);
    const typename S::D lo = S::fmadd(tv, tv, S::sub(S::set(0.0), hi));
    const typename S::D e = S::mul(exp_d<S>(S::sub(S::set(0.0), hi)), S::sub(S::set(1.0), lo));
    S::store(out, erfc_scaled<S>(tv, e));
    std::memcpy(y + i, out, count * sizeof(double));
  }
}

template <class S>
void exp_f32(int64_t n, const float* a, float* y) {
  for (int64_t i = 0; i < n; i += kW) {
    float in[kW] = {}, out[kW];
    const size_t count = static_cast<size_t>(std::min<int64_t>(kW, n - i));
    std::memcpy(in, a + i, count * sizeof(float));
    S::storef(out, exp_f<S>(S::loadf(in)));
    std::memcpy(y + i, out, count * sizeof(float));
  }
}

template <class S>
void fill_stream(int64_t n, float value, float* x) {
  int64_t i = 0;
  while (i < n && (reinterpret_cast<uintptr_t>(x + i) & 63) != 0) x[i++] = value;
  const typename S::F v = S::fset(value);
  for (; i + kW <= n; i += kW) S::streamf(x + i, v);
  for (; i < n; ++i) x[i] = value;
  _mm_sfence();  // orders the streaming stores before whatever this thread does next
}

template <class S>
Kernels make_kernels(Isa isa, const char* name) {
  return Kernels{isa,
                 name,
                 map_unary<S, GeluErfF<S>>,
                 map_backward<S, GeluErfF<S>>,
                 map_unary<S, GeluTanh<S>>,
                 map_backward<S, GeluTanh<S>>,
                 softmax_row<S>,
                 softmax_rows<S>,
                 dropout_factors<S>,
                 dropout_factor_rows<S>,
                 dropout_apply<S>,
                 exp_f64<S>,
                 erfc_f64<S>,
                 exp_f32<S>,
                 fill_stream<S>,
                 small_matmul<S>};
}
