// Accuracy and agreement sweep for the vecmath kernels (native/src/cpu/vecmath.h).
//
//   g++ -std=gnu++17 -O2 -pthread -Inative/include -Inative/src/cpu bench/vecmath-accuracy.cpp
//       native/src/cpu/vecmath.cpp native/src/cpu/vecmath_avx2.cpp native/src/cpu/vecmath_avx512.cpp
//       -o /tmp/vecmath-accuracy && /tmp/vecmath-accuracy [--quick] [--erf]
//
// * exp and erfc in double against long-double expl / erfcl on dense grids.
// * Both GELUs, forward and derivative, on EVERY float (2^32 inputs; --quick
//   takes every 64th), against double-precision references, in float ulps;
//   the libm float code the kernels replace is measured beside them.
// * The AVX2 and AVX-512 builds must agree bit for bit everywhere.
// * softmax rows against a long-double reference, dropout masks bit for bit
//   against philox.h.
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bertkit/philox.h"
#include "vecmath.h"

using namespace bertkit;
using vecmath::Isa;
using vecmath::Kernels;

static int failures = 0;
static void check(bool ok, const char* what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what);
  }
}

// ---- references in double (their own error is ~1e-15 relative: far below a float ulp) ----

static double gelu_erf_ref(double x) { return x * 0.5 * std::erfc(-x * M_SQRT1_2); }
static double gelu_erf_grad_ref(double x) {
  return 0.5 * std::erfc(-x * M_SQRT1_2) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}
// The sum of the derivative's terms' magnitudes: the scale its float rounding works at.
static double gelu_erf_grad_scale(double x) {
  return 0.5 * std::erfc(-x * M_SQRT1_2) + std::fabs(x) * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
}
static void tanh_parts(double x, double* s, double* one_minus_s, double* du) {
  const double u = std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x);
  const double e = std::exp(-2 * u);
  *s = 1 / (1 + e);
  *one_minus_s = 1 / (1 + 1 / e);  // e / (1 + e) without inf / inf
  *du = std::sqrt(2 / M_PI) * (1 + 3 * 0.044715 * x * x);
}
static double gelu_tanh_ref(double x) {
  double s, om, du;
  tanh_parts(x, &s, &om, &du);
  return x * s;
}
static double gelu_tanh_grad_ref(double x) {
  double s, om, du;
  tanh_parts(x, &s, &om, &du);
  return s + 2 * x * s * om * du;
}
static double gelu_tanh_grad_scale(double x) {
  double s, om, du;
  tanh_parts(x, &s, &om, &du);
  return s + std::fabs(2 * x * s * om * du);
}

// ---- the scalar float code of activation.cpp, for comparison ----------------------------

static float old_gelu_erf(float x) { return x * (0.5f * std::erfc(-x * 0.70710678118654752440f)); }
static float old_gelu_erf_grad(float v) {
  return 0.5f * std::erfc(-v * 0.70710678118654752440f) + v * (0.39894228040143267794f * std::exp(-0.5f * v * v));
}
static float old_sig2(float u) { return 1.0f / (1.0f + std::exp(-2.0f * u)); }
static float old_inner(float x) { return 0.79788456080286535588f * (x + 0.044715f * x * x * x); }
static float old_gelu_tanh(float x) { return x * old_sig2(old_inner(x)); }
static float old_gelu_tanh_grad(float v) {
  float u = old_inner(v), s = old_sig2(u), om = old_sig2(-u);
  float du = 0.79788456080286535588f * (1.0f + 3.0f * 0.044715f * v * v);
  return s + 2.0f * v * s * om * du;
}

// Error of float y against double r in units of the float spacing at r.
static double ulp_error(float y, double r) {
  if (std::isnan(r)) return std::isnan(y) ? 0.0 : INFINITY;
  if (std::isinf(r) || std::isinf(y)) return (double)y == (double)(float)r ? 0.0 : INFINITY;  // beyond FLT_MAX rounds to inf
  double a = std::fabs(r);
  int e;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  double ulp = std::ldexp(1.0, std::max(e - 24, -149));
  if (a >= (double)FLT_MAX) ulp = std::ldexp(1.0, 104);
  return std::fabs((double)y - r) / ulp;
}

struct Stat {
  double max_ulp = 0, worst_x = 0;
  double max_scaled = 0, worst_scaled_x = 0;  // error in ulps of `scale` (see add)
  uint64_t not_rounded = 0, count = 0;
  // scale: the magnitude the result is made of (for a derivative, the sum of
  // its terms' magnitudes): where the terms cancel, a float code can do no
  // better than an ulp or two of that, however many ulps of the result it is.
  void add(float x, float y, double r, double scale) {
    double u = ulp_error(y, r);
    if (std::isfinite(r) && std::isfinite(scale) && scale > 0) {
      int e;
      std::frexp(scale, &e);
      const double su = std::fabs((double)y - r) / std::ldexp(1.0, std::max(e - 24, -149));
      if (su > max_scaled) max_scaled = su, worst_scaled_x = x;
    }
    ++count;
    if (!(std::isnan(r) && std::isnan(y)) && (float)r != y) ++not_rounded;
    if (u > max_ulp) {
      max_ulp = u;
      worst_x = x;
    }
  }
  void merge(const Stat& o) {
    if (o.max_scaled > max_scaled) max_scaled = o.max_scaled, worst_scaled_x = o.worst_scaled_x;
    if (o.max_ulp > max_ulp) {
      max_ulp = o.max_ulp;
      worst_x = o.worst_x;
    }
    not_rounded += o.not_rounded;
    count += o.count;
  }
};

enum Fn { ErfFwd, ErfGrad, TanhFwd, TanhGrad };
static const char* fn_name[] = {"gelu erf forward", "gelu erf derivative", "gelu tanh forward", "gelu tanh derivative"};

static void run_kernel(const Kernels& k, Fn fn, int64_t n, const float* x, float* y) {
  if (fn == ErfFwd) return k.gelu_erf_forward(n, x, y);
  if (fn == TanhFwd) return k.gelu_tanh_forward(n, x, y);
  std::vector<float> ones(n, 1.0f);
  std::memset(y, 0, n * sizeof(float));  // dx = 0 + 1 * g: exactly g
  if (fn == ErfGrad) return k.gelu_erf_backward(n, x, ones.data(), y, true);
  return k.gelu_tanh_backward(n, x, ones.data(), y, true);
}

// Every float bit pattern with index % stride == 0, split over two threads.
static void sweep_gelu(Fn fn, const std::vector<const Kernels*>& ks, uint64_t stride) {
  const int threads = 2;
  std::vector<Stat> stats(threads * (ks.size() + 1));
  std::vector<uint64_t> mismatches(threads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const int64_t chunk = 1 << 16;
      std::vector<float> x(chunk), y(chunk), y2(chunk);
      const uint64_t total = (1ull << 32) / stride;
      for (uint64_t start = t * chunk; start < total; start += threads * chunk) {
        int64_t n = (int64_t)std::min<uint64_t>(chunk, total - start);
        for (int64_t i = 0; i < n; ++i) {
          uint32_t bits = (uint32_t)((start + i) * stride);
          std::memcpy(&x[i], &bits, 4);
        }
        std::vector<double> ref(n), scale(n);
        for (int64_t i = 0; i < n; ++i) {
          double v = x[i];
          ref[i] = fn == ErfFwd ? gelu_erf_ref(v) : fn == ErfGrad ? gelu_erf_grad_ref(v)
                 : fn == TanhFwd ? gelu_tanh_ref(v) : gelu_tanh_grad_ref(v);
          scale[i] = fn == ErfGrad ? gelu_erf_grad_scale(v) : fn == TanhGrad ? gelu_tanh_grad_scale(v) : std::fabs(ref[i]);
        }
        for (size_t k = 0; k < ks.size(); ++k) {
          run_kernel(*ks[k], fn, n, x.data(), k == 0 ? y.data() : y2.data());
          const float* out = k == 0 ? y.data() : y2.data();
          for (int64_t i = 0; i < n; ++i) {
            if (std::isnan(x[i])) continue;
            stats[t * (ks.size() + 1) + k].add(x[i], out[i], ref[i], scale[i]);
          }
          if (k > 0 && std::memcmp(y.data(), y2.data(), n * 4) != 0) {
            // NaN payloads may differ; a NaN must meet a NaN.
            for (int64_t i = 0; i < n; ++i) {
              mismatches[t] += std::memcmp(&y[i], &y2[i], 4) != 0 && !(std::isnan(y[i]) && std::isnan(y2[i]));
            }
          }
        }
        for (int64_t i = 0; i < n; ++i) {
          if (std::isnan(x[i])) continue;
          float v = x[i];
          float o = fn == ErfFwd ? old_gelu_erf(v) : fn == ErfGrad ? old_gelu_erf_grad(v)
                  : fn == TanhFwd ? old_gelu_tanh(v) : old_gelu_tanh_grad(v);
          stats[t * (ks.size() + 1) + ks.size()].add(v, o, ref[i], scale[i]);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (size_t k = 0; k <= ks.size(); ++k) {
    Stat s;
    for (int t = 0; t < threads; ++t) s.merge(stats[t * (ks.size() + 1) + k]);
    std::printf("  %-22s %-10s max %.3f ulp (at x = %.9g), not correctly rounded: %" PRIu64 " of %" PRIu64 "\n",
                fn_name[fn], k < ks.size() ? ks[k]->name : "old libm", s.max_ulp, s.worst_x, s.not_rounded, s.count);
    if (fn == ErfGrad || fn == TanhGrad) {
      std::printf("  %-22s %-10s max %.3f ulp of |terms| (at x = %.9g)\n", fn_name[fn],
                  k < ks.size() ? ks[k]->name : "old libm", s.max_scaled, s.worst_scaled_x);
    }
    // A derivative crosses zero near x = -0.75, where its terms cancel and
    // double's ~1e-16 absolute error becomes a float ulp or two.
    // The erf GELU runs in float lanes (GeluErfF): a few roundings, bounded
    // here; its derivative is bounded in ulps of its terms (where they cancel
    // near x = -0.75 a float code cannot keep the result's own ulps). The
    // tanh GELU runs in double lanes and rounds once.
    if (k < ks.size()) {
      if (fn == ErfFwd) check(s.max_ulp <= 5.5, "GELU erf within 5.5 ulp");
      if (fn == ErfGrad) check(s.max_scaled <= 11.0, "GELU erf derivative within 11 ulp of its terms");
      if (fn == TanhFwd) check(s.max_ulp <= 0.5001, "GELU tanh within 0.5 ulp");
      if (fn == TanhGrad) check(s.max_ulp <= 2.0, "GELU tanh derivative within 2 ulp");
    }
  }
  uint64_t mm = 0;
  for (auto m : mismatches) mm += m;
  if (ks.size() > 1) {
    std::printf("  %-22s AVX2 vs AVX-512: %" PRIu64 " results differ\n", fn_name[fn], mm);
    check(mm == 0, "AVX2 and AVX-512 agree bit for bit");
  }
}

static void sweep_exp_erfc(const Kernels& k, int64_t points) {
  // exp over its whole double range, normal results.
  std::vector<double> a(points), y(points);
  for (int64_t i = 0; i < points; ++i) a[i] = -708.0 + (709.7 + 708.0) * (double)i / (double)(points - 1);
  k.exp_f64(points, a.data(), y.data());
  long double worst = 0;
  double worst_a = 0;
  for (int64_t i = 0; i < points; ++i) {
    long double r = expl((long double)a[i]);
    long double e = fabsl((long double)y[i] / r - 1);
    if (e > worst) worst = e, worst_a = a[i];
  }
  std::printf("  exp   %-9s x in [-708, 709.7], %" PRId64 " points: max rel error %.3Le at %.17g\n",
              k.name, points, worst, worst_a);
  check(worst < 1e-13L, "exp accuracy");
  // Specials and the subnormal / overflow edges.
  const double sp[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 709.8, 710.0, -720.0, -745.0, -746.0, -1e300, 1e300};
  double sy[12];
  k.exp_f64(12, sp, sy);
  for (int i = 0; i < 12; ++i) {
    double r = std::exp(sp[i]);
    bool ok = std::isnan(r) ? std::isnan(sy[i]) : std::isinf(r) ? sy[i] == r : (r == 0 || r < DBL_MIN)
                                                      ? std::fabs(sy[i] - r) <= 0x1p-1074
                                                      : std::fabs(sy[i] / r - 1) < 1e-15;
    if (!ok) std::printf("  exp(%g) = %.17g, want %.17g\n", sp[i], sy[i], r);
    check(ok, "exp special values");
  }
  // erfc on [0, 10.5].
  for (int64_t i = 0; i < points; ++i) a[i] = 10.5 * (double)i / (double)(points - 1);
  k.erfc_f64(points, a.data(), y.data());
  worst = 0;
  for (int64_t i = 0; i < points; ++i) {
    long double r = erfcl((long double)a[i]);
    long double e = fabsl((long double)y[i] / r - 1);
    if (e > worst) worst = e, worst_a = a[i];
  }
  std::printf("  erfc  %-9s t in [0, 10.5], %" PRId64 " points: max rel error %.3Le at %.17g\n", k.name, points, worst,
              worst_a);
  check(worst < 1e-13L, "erfc accuracy");
}

// The float exp of the softmax on every float in [-110, 90] (in chunks), and its specials.
static void sweep_exp_f32(const std::vector<const Kernels*>& ks, uint64_t stride) {
  std::vector<Stat> stats(ks.size());
  uint64_t diff = 0;
  std::vector<float> a;
  std::vector<std::vector<float>> y(ks.size());
  auto flush = [&] {
    for (size_t k = 0; k < ks.size(); ++k) {
      y[k].resize(a.size());
      ks[k]->exp_f32((int64_t)a.size(), a.data(), y[k].data());
      for (size_t i = 0; i < a.size(); ++i) stats[k].add(a[i], y[k][i], std::exp((double)a[i]), std::exp((double)a[i]));
      if (k > 0) {
        for (size_t i = 0; i < a.size(); ++i) diff += std::memcmp(&y[k][i], &y[0][i], 4) != 0;
      }
    }
    a.clear();
  };
  const float sp[] = {INFINITY, -INFINITY, NAN, 1e30f, -1e30f, -0.0f};
  a.assign(std::begin(sp), std::end(sp));
  for (uint64_t bits = 0; bits < (1ull << 32); bits += stride) {
    float v;
    uint32_t b = (uint32_t)bits;
    std::memcpy(&v, &b, 4);
    if (v >= -110.0f && v <= 90.0f) a.push_back(v);
    if (a.size() == (1u << 20)) flush();
  }
  flush();
  for (size_t k = 0; k < ks.size(); ++k) {
    const Stat& s = stats[k];
    std::printf("  expf  %-9s every float in [-110, 90] (%" PRIu64 "): max %.3f ulp (at %.9g), not correctly rounded %" PRIu64 "\n",
                ks[k]->name, s.count, s.max_ulp, s.worst_x, s.not_rounded);
    check(s.max_ulp < 1.0, "float exp within 1 ulp");
  }
  if (ks.size() > 1) {
    std::printf("  expf  AVX2 vs AVX-512: %" PRIu64 " results differ\n", diff);
    check(diff == 0, "float exp AVX2 == AVX-512");
  }
}

// attention.cpp's scalar softmax_row.
static void old_softmax(int64_t n, float scale, const float* bias, float* s) {
  float max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = s[j] * scale + bias[j];
    max = std::max(max, s[j]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - max);
    sum += s[j];
  }
  const float inv = (float)(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

static void sweep_softmax(const std::vector<const Kernels*>& ks) {
  std::mt19937_64 rng(7);
  std::vector<double> worst(ks.size() + 1, 0.0);
  uint64_t mismatches = 0;
  for (int row = 0; row < 200000; ++row) {
    int64_t n = 1 + (int64_t)(rng() % 130);
    float spread = std::ldexp(1.0f, (int)(rng() % 12) - 2);
    std::uniform_real_distribution<float> dist(-spread, spread);
    std::vector<float> s0(n), bias(n);
    for (int64_t j = 0; j < n; ++j) {
      s0[j] = dist(rng);
      bias[j] = (rng() % 8 == 0) ? -FLT_MAX : 0.0f;
    }
    const float scale = 0.125f;
    // Reference on the float scores, as every implementation rounds them first.
    std::vector<float> v(n);
    float max = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      v[j] = s0[j] * scale + bias[j];
      max = std::max(max, v[j]);
    }
    // v - max is rounded to float by every implementation (torch's too) before exp.
    long double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += expl((long double)(v[j] - max));
    std::vector<std::vector<float>> outs;
    for (size_t k = 0; k <= ks.size(); ++k) {
      std::vector<float> s = s0;
      if (k < ks.size()) ks[k]->softmax_row(n, scale, bias.data(), s.data());
      else old_softmax(n, scale, bias.data(), s.data());
      for (int64_t j = 0; j < n; ++j) {
        long double r = expl((long double)(v[j] - max)) / sum;
        if (r < 1e-30L) continue;
        worst[k] = std::max(worst[k], (double)ulp_error(s[j], (double)r));
      }
      outs.push_back(s);
    }
    if (ks.size() > 1 && std::memcmp(outs[0].data(), outs[1].data(), n * 4) != 0) ++mismatches;
  }
  for (size_t k = 0; k <= ks.size(); ++k) {
    std::printf("  softmax rows (200000, n 1..130) %-10s max %.3f ulp vs long double\n",
                k < ks.size() ? ks[k]->name : "old libm", worst[k]);
  }
  check(worst[0] < 2.5, "softmax accuracy");
  if (ks.size() > 1) {
    std::printf("  softmax AVX2 vs AVX-512: %" PRIu64 " rows differ\n", mismatches);
    check(mismatches == 0, "softmax AVX2 == AVX-512");
  }
}

static void sweep_dropout(const Kernels& k) {
  std::mt19937_64 rng(11);
  uint64_t bad = 0, total = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const uint64_t seed = rng();
    uint64_t offset = rng();
    if (trial % 3 == 0) offset = 0xfffffffffffffff0ull + rng() % 8;  // the counter wraps 2^64
    if (trial % 3 == 1) offset = 0xfffffff0ull + rng() % 8;          // crosses 2^32
    const uint64_t first = rng() % 1000;
    const int64_t n = (int64_t)(rng() % 300);
    const float p = std::uniform_real_distribution<float>(0.0f, 0.99f)(rng);
    const float scale = (float)(1.0 / (1.0 - (double)p));
    std::vector<float> f(n), x(n), y(n), acc(n), want(n), acc0(n);
    for (int64_t j = 0; j < n; ++j) {
      x[j] = std::uniform_real_distribution<float>(-2, 2)(rng);
      acc0[j] = acc[j] = std::uniform_real_distribution<float>(-2, 2)(rng);
      want[j] = philox_keep(seed, offset, first + j, p) ? scale : 0.0f;
    }
    k.dropout_factors(seed, offset, first, n, p, scale, f.data());
    k.dropout_apply(seed, offset, first, n, p, scale, x.data(), y.data(), vecmath::Store::Write);
    k.dropout_apply(seed, offset, first, n, p, scale, x.data(), acc.data(), vecmath::Store::Add);
    for (int64_t j = 0; j < n; ++j) {
      ++total;
      // The accumulation may round once (FMA) or twice: allow for either.
      const double exact = (double)acc0[j] + (double)x[j] * want[j];
      const double slack = 1.2e-7 * (std::fabs((double)acc0[j]) + std::fabs((double)x[j] * want[j]));
      bad += f[j] != want[j] || y[j] != x[j] * want[j] || std::fabs(acc[j] - exact) > slack;
    }
  }
  std::printf("  dropout %-10s %" PRIu64 " elements in 3000 random calls: %" PRIu64 " differ from philox_keep\n", k.name,
              total, bad);
  check(bad == 0, "dropout masks exact");
}

int main(int argc, char** argv) {
  // --quick: every 64th float; --erf: only the erf GELU sweeps.
  bool quick = false, erf_only = false;
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::string(argv[i]) == "--quick";
    erf_only = erf_only || std::string(argv[i]) == "--erf";
  }
  std::vector<const Kernels*> ks;
  for (Isa isa : {Isa::Avx512, Isa::Avx2}) {
    if (const Kernels* k = vecmath::kernels_for(isa)) ks.push_back(k);
  }
  if (ks.empty()) {
    std::printf("no AVX2 on this CPU: nothing to check\n");
    return 0;
  }
  std::printf("kernels:");
  for (auto* k : ks) std::printf(" %s", k->name);
  std::printf("\n");
  if (!erf_only) {
    for (auto* k : ks) sweep_exp_erfc(*k, quick ? 1000000 : 20000000);
    sweep_exp_f32(ks, quick ? 64 : 1);
    for (auto* k : ks) sweep_dropout(*k);
    sweep_softmax(ks);
  }
  for (Fn fn : {ErfFwd, ErfGrad, TanhFwd, TanhGrad}) {
    if (!erf_only || fn == ErfFwd || fn == ErfGrad) sweep_gelu(fn, ks, quick ? 64 : 1);
  }
  std::printf(failures ? "%d FAILURES\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
