// Vectorised kernels for the CPU backend's transcendental and random-number
// work: both GELUs (forward and backward), the attention softmax, and dropout
// masks. The library is compiled for baseline x86-64 (SSE2), where libm's
// scalar erfcf / expf cost 15-30 ns an element, so these are built a second
// and third time for AVX2+FMA and AVX-512 (vecmath_avx2.cpp,
// vecmath_avx512.cpp: per-file `#pragma GCC target`, which both cmake-js and
// node-gyp honour) and picked at run time. CPUs without AVX2+FMA keep the
// scalar libm code of activation.cpp / attention.cpp / dropout.cpp.
//
// The exact (erf) GELU, BERT's "gelu" and so most of a training step's
// transcendental work, runs in float lanes as torch's does (vecmath_kernels.h,
// GeluErfF); the tanh GELU runs in double lanes and is rounded to float once
// at the end; the softmax runs a float exp (see vecmath_kernels.h for the
// formulas). Measured by bench/vecmath-accuracy.cpp, on every one of the 2^32
// float inputs for the elementwise functions, against double references:
//   GELU erf forward        max 5.26 ulp, 96.6 % correctly rounded
//                           (libm loop: 206 ulp; the double lanes before: 0.500)
//   GELU erf derivative     max 10.8 ulp of its terms' magnitude (libm loop: 70),
//                           at x ~ -13.3 where e^{-x^2/2} is subnormal
//   GELU tanh forward       max 0.500 ulp   (libm loop: 1.7e7 ulp)
//   GELU tanh derivative    max 1.63 ulp    (libm loop: 2.3e7 ulp)
// (a derivative's worst case in its own ulps, for every code, sits at its
// zero near x = -0.75 where its terms cancel; the libm forwards lose most in
// the negative tail, x ~ -10..-13), and
// The AVX2 and AVX-512 builds run the same operations in the same order
// (softmax sums included), so they give bit-identical results (checked on
// all of the above); the scalar fallback differs from them by float rounding.
//
// Dropout masks are bit-identical to philox.h on every path: the vector code
// runs Philox4x32-10 on 8 (AVX-512) or 4 (AVX2) counters at once and applies
// the same draw -> keep rule.
//
// BERTKIT_VECMATH=avx512 | avx2 | scalar caps the instruction set (read once,
// at the first call), so the narrower paths can be tested on a wide CPU.
#pragma once

#include <cstdint>

namespace bertkit {
namespace vecmath {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// How a kernel stores its result y into its output.
enum class Store : int { Write, Add, WriteSum };

struct Kernels {
  Isa isa;
  const char* name;
  // y = x * Phi(x), Phi the standard normal cdf (exact GELU).
  void (*gelu_erf_forward)(int64_t n, const float* x, float* y);
  // dx += dy * (Phi(x) + x phi(x)); without accumulate dx = 0 + dy * ...
  // (the bits of a zero fill and the add, -0 becoming +0).
  void (*gelu_erf_backward)(int64_t n, const float* x, const float* dy, float* dx, bool accumulate);
  // y = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) (transformers' gelu_new).
  void (*gelu_tanh_forward)(int64_t n, const float* x, float* y);
  void (*gelu_tanh_backward)(int64_t n, const float* x, const float* dy, float* dx, bool accumulate);
  // s = softmax(scale * s + bias) in place over one row of n (attention.cpp's softmax_row).
  void (*softmax_row)(int64_t n, float scale, const float* bias, float* s);
  // softmax_row on each of `rows` consecutive rows of n (one bias for all).
  void (*softmax_rows)(int64_t rows, int64_t n, float scale, const float* bias, float* s);
  // factor[j] = keep ? scale : 0 for flat dropout elements first + j, j < n,
  // keep as philox_keep(seed, offset, first + j, p).
  void (*dropout_factors)(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p,
                          float scale, float* factor);
  // dropout_factors for `rows` rows of n: row i draws first + i * stride + j
  // into factor[i * n + j] (attention's rows of a padded probs layout).
  void (*dropout_factor_rows)(uint64_t seed, uint64_t offset, uint64_t first, uint64_t stride, int64_t rows,
                              int64_t n, float p, float scale, float* factor);
  // y[j] = x[j] * factor(first + j) (Store::Write), y[j] += ... (Store::Add),
  // or y[j] = 0 + ... (Store::WriteSum: the bits of a zero fill and Add).
  void (*dropout_apply)(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p,
                        float scale, const float* x, float* y, Store store);
  // The double-precision building blocks on their own, for the accuracy sweep
  // (bench/vecmath-accuracy.cpp): y = e^a, y = erfc(t) for t >= 0, and
  // the float exp of the softmax.
  void (*exp_f64)(int64_t n, const double* a, double* y);
  void (*erfc_f64)(int64_t n, const double* t, double* y);
  void (*exp_f32)(int64_t n, const float* a, float* y);
  // x[0..n) = value with non-temporal stores: for buffers far larger than the
  // caches (a gradient of the word embeddings), which then skip the read
  // that an ordinary store does first; about twice as fast on this machine.
  void (*fill_stream)(int64_t n, float value, float* x);
  // attention.cpp's matmul (C = A B, A(i, t) = a[i * a_row + t * a_col]),
  // with its bits; scratch holds k * 16 floats.
  void (*small_matmul)(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                       const float* b, int64_t ldb, float* c, int64_t ldc, float* scratch);
};

// The kernels for the widest instruction set this CPU runs (capped by
// BERTKIT_VECMATH), or nullptr when that is plain x86-64: callers then run
// their scalar code.
const Kernels* simd();

// The ISA simd() chose, for diagnostics: "avx512", "avx2" or "scalar".
const char* simd_isa_name();

// The kernels of one instruction set, or nullptr when the CPU (or the build)
// lacks it. For tests and benchmarks; ignores BERTKIT_VECMATH.
const Kernels* kernels_for(Isa isa);

// Built in vecmath_avx2.cpp / vecmath_avx512.cpp (x86-64 only).
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();

}  // namespace vecmath
}  // namespace bertkit
