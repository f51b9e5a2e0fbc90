// Activations of the CPU backend, forward and backward side by side.
//
// Both GELUs are written in a form algebraically identical to torch's but
// without its cancellation for negative x: torch computes 1 + erf(z) and
// 1 + tanh(u), which lose most significant digits once erf/tanh approach -1.
// erfc(-z) and a two-sided sigmoid keep full float relative precision
// everywhere, so results stay within float rounding of torch's, and nearer the
// truth.
//
// On CPUs with AVX2+FMA both GELUs run the vecmath kernels (vecmath.h):
// libm-free, the erf GELU in float lanes (within 5.3 ulp; 2.3x faster than
// the double lanes it replaced, which were within 0.5 ulp), the tanh GELU in
// double lanes (within 0.5 ulp), and faster than the libm loops below
// (AVX-512 on Zen 5, one thread, double lanes: erf 15x, tanh 5x forward, 16x
// and 10x backward). The libm loops remain for plain x86-64:
// their scalar erfcf / expf calls do not vectorise, and a libm-free version
// only pays off with AVX2/FMA.
#include <cmath>
#include <string>
#include <vector>

#include "column_sums.h"
#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

// erf/exp/tanh cost tens of cycles per element, so a thread pays off sooner
// than for plain adds.
constexpr int64_t kGrain = 4096;
// The vector kernels take about a nanosecond an element: below this a second
// thread costs more to wake than it saves.
constexpr int64_t kSimdGrain = 16384;

constexpr float kSqrt1_2 = 0.70710678118654752440f;      // 1/sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;   // 1/sqrt(2*pi), the normal pdf's scale
constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2/pi), gelu_new's constant
constexpr float kGeluTanhCubic = 0.044715f;

// Normal cdf Phi(x) = 0.5 * (1 + erf(x / sqrt2)), as 0.5 * erfc(-x / sqrt2).
inline float normal_cdf(float x) { return 0.5f * std::erfc(-x * kSqrt1_2); }
inline float normal_pdf(float x) { return kInvSqrt2Pi * std::exp(-0.5f * x * x); }

// gelu_new: 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), and
// 0.5 (1 + tanh(u)) = sigmoid(2u). expf overflowing to inf gives exactly 0.
inline float gelu_tanh_inner(float x) { return kSqrt2OverPi * (x + kGeluTanhCubic * x * x * x); }
inline float sigmoid_of_twice(float u) { return 1.0f / (1.0f + std::exp(-2.0f * u)); }

// sigmoid(x) = 1 / (1 + e^-x): e^-x overflowing to inf gives exactly 0. 1 - sigmoid(x)
// is taken as sigmoid(-x) wherever it appears, for the digits subtraction would lose.
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
// softplus(x) = log(1 + e^x), x itself above torch's threshold of 20.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

constexpr float kQuickGeluScale = 1.702f;  // transformers' QuickGELUActivation
constexpr float kLeakySlope = 0.01f;       // torch.nn.LeakyReLU's default negative_slope
// transformers' LaplaceActivation: 0.5 (1 + erf((x - mu) / (sigma sqrt2))), mu and sigma as there.
constexpr float kLaplaceMu = 0.707107f;
constexpr float kLaplaceInvScale = static_cast<float>(1.0 / (0.282095 * 1.4142135623730951));  // 1 / (sigma sqrt2)
constexpr float kInvSqrtPi = 0.56418958354775628695f;  // 1/sqrt(pi)

// gelu_10: gelu clipped to [-10, 10] (gelu never goes below -0.17, so only 10 binds).
inline float gelu_erf(float x) { return x * normal_cdf(x); }

// Callers capture their pointers by value: with captures by reference, each
// store through dx might alias the captured pointers, which blocks vectorising.
template <typename Fn>
void for_each_chunk(int64_t n, Fn fn) {
  ThreadPool::instance().parallel_for(n, kGrain, [fn](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

// fn(count, x + begin, y + begin) over thread-sized ranges, for the vecmath kernels.
template <typename Fn>
void for_each_range(int64_t n, Fn fn) {
  ThreadPool::instance().parallel_for(n, kSimdGrain, [fn](int64_t begin, int64_t end) { fn(begin, end - begin); });
}

// The GELUs' backward on vecmath's vector kernels, adding dy f'(x) into dx
// (accumulate) or writing 0 + dy f'(x); false when this kind or CPU has none.
bool gelu_backward_simd(Backend::Activation kind, int64_t n, const float* x, const float* dy, float* dx, bool accumulate) {
  const vecmath::Kernels* simd = vecmath::simd();
  if (!simd || (kind != Backend::Activation::GeluErf && kind != Backend::Activation::GeluTanh)) return false;
  auto* kernel = kind == Backend::Activation::GeluErf ? simd->gelu_erf_backward : simd->gelu_tanh_backward;
  for_each_range(n, [=](int64_t begin, int64_t count) { kernel(count, x + begin, dy + begin, dx + begin, accumulate); });
  return true;
}

}  // namespace

void CpuBackend::activation_forward(Activation kind, int64_t n, const float* x, float* y) {
  const vecmath::Kernels* simd = vecmath::simd();
  if (simd && (kind == Activation::GeluErf || kind == Activation::GeluTanh)) {
    auto* kernel = kind == Activation::GeluErf ? simd->gelu_erf_forward : simd->gelu_tanh_forward;
    for_each_range(n, [=](int64_t begin, int64_t count) { kernel(count, x + begin, y + begin); });
    return;
  }
  switch (kind) {
    case Activation::GeluErf:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i] * normal_cdf(x[i]); });
      return;
    case Activation::GeluTanh:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i] * sigmoid_of_twice(gelu_tanh_inner(x[i])); });
      return;
    case Activation::Tanh:
      for_each_chunk(n, [=](int64_t i) { y[i] = std::tanh(x[i]); });
      return;
    case Activation::Relu:
      // NaN stays NaN, as torch.relu does; a plain `x > 0 ? x : 0` would hide it.
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        y[i] = ((v > 0.0f) | (v != v)) ? v : 0.0f;  // `|`, not `||`: no branch, so it vectorises
      });
      return;
    case Activation::Silu:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i] * sigmoid(x[i]); });
      return;
    case Activation::QuickGelu:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i] * sigmoid(kQuickGeluScale * x[i]); });
      return;
    case Activation::Mish:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i] * std::tanh(softplus(x[i])); });
      return;
    case Activation::Sigmoid:
      for_each_chunk(n, [=](int64_t i) { y[i] = sigmoid(x[i]); });
      return;
    case Activation::Relu6:
      // min(max(x, 0), 6) with NaN kept, as torch's hardtanh.
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        y[i] = v != v ? v : v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
      });
      return;
    case Activation::LeakyRelu:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i] > 0.0f ? x[i] : kLeakySlope * x[i]; });
      return;
    case Activation::Identity:
      for_each_chunk(n, [=](int64_t i) { y[i] = x[i]; });
      return;
    case Activation::Relu2:
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        float r = ((v > 0.0f) | (v != v)) ? v : 0.0f;
        y[i] = r * r;
      });
      return;
    case Activation::GeluClip10:
      for_each_chunk(n, [=](int64_t i) { y[i] = std::fmin(std::fmax(gelu_erf(x[i]), -10.0f), 10.0f); });
      return;
    case Activation::Laplace:
      // 0.5 (1 + erf(z)) as 0.5 erfc(-z): no cancellation where erf(z) nears -1.
      for_each_chunk(n, [=](int64_t i) { y[i] = 0.5f * std::erfc(-(x[i] - kLaplaceMu) * kLaplaceInvScale); });
      return;
    case Activation::Hardswish:
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        y[i] = v * std::fmin(std::fmax(v + 3.0f, 0.0f), 6.0f) / 6.0f;
      });
      return;
    case Activation::SqrtSoftplus:
      for_each_chunk(n, [=](int64_t i) { y[i] = std::sqrt(softplus(x[i])); });
      return;
  }
  throw Error("unknown activation kind " + std::to_string(static_cast<int>(kind)));
}

void CpuBackend::activation_forward_half(Activation kind, int64_t n, const float* x, float* y, DType half_dtype,
                                         void* half) {
  // Each thread casts the blocks it has just computed, while they are in L1
  // (the nested calls run inline on the thread that makes them).
  constexpr int64_t kBlock = 4096;
  constexpr int64_t kHalfBytes = 2;
  ThreadPool::instance().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t count = std::min(kBlock, end - b);
      activation_forward(kind, count, x + b, y + b);
      cast(count, DType::F32, y + b, half_dtype, static_cast<char*>(half) + b * kHalfBytes);
    }
  });
}

void CpuBackend::activation_backward_cast_sum_rows(Activation kind, int64_t rows, int64_t cols, const float* h,
                                                   const float* dy, float* /*scratch*/, DType dst_dtype, void* dst,
                                                   float* sums, bool write_sums) {
  if (dst_dtype != DType::BF16 && dst_dtype != DType::F16) {
    throw Error(std::string("activation_backward_cast_sum_rows: cannot cast float32 to ") + dtype_name(dst_dtype));
  }
  if (cols == 0) return;
  // dh of each row segment goes into a buffer of the thread's own, is cast
  // from there and summed (column_sums.h: sum_rows' order and bits).
  char* out = static_cast<char*>(dst);
  for_column_ranges(rows, cols, 32768, sums, write_sums, [&](int64_t r, int64_t c0, int64_t width) {
    thread_local std::vector<float> dh;
    if (static_cast<int64_t>(dh.size()) < width) dh.resize(static_cast<size_t>(width));
    const int64_t at = r * cols + c0;
    if (r + 1 < rows) {
      prefetch_floats(h + at + cols, width);
      prefetch_floats(dy + at + cols, width);
    }
    activation_backward_write(kind, width, h + at, dy + at, dh.data());
    cast(width, DType::F32, dh.data(), dst_dtype, out + at * 2);
    return static_cast<const float*>(dh.data());
  });
}

void CpuBackend::activation_backward_write(Activation kind, int64_t n, const float* x, const float* dy,
                                           float* dx) {
  // The GELUs' vector kernels write 0 + dy f'(x) directly; the other kinds
  // are rare enough to keep the default's zero fill.
  if (gelu_backward_simd(kind, n, x, dy, dx, false)) return;
  fill(dx, n, 0.0f);
  activation_backward(kind, n, x, dy, dx);
}

void CpuBackend::activation_backward(Activation kind, int64_t n, const float* x, const float* dy,
                                     float* dx) {
  if (gelu_backward_simd(kind, n, x, dy, dx, true)) return;
  switch (kind) {
    case Activation::GeluErf:
      // d/dx [x Phi(x)] = Phi(x) + x phi(x)
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        dx[i] += dy[i] * (normal_cdf(v) + v * normal_pdf(v));
      });
      return;
    case Activation::GeluTanh:
      // y = x s with s = sigmoid(2u(x)): y' = s + x * 2 s (1 - s) u'(x), with
      // u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2). 1 - s is evaluated as
      // sigmoid(-2u): subtracting s from 1 would leave only rounding noise once
      // s is within an ulp of 1, and 2 x u'(x) (~40 at x = 5) magnifies it.
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        float u = gelu_tanh_inner(v);
        float s = sigmoid_of_twice(u);
        float one_minus_s = sigmoid_of_twice(-u);
        float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluTanhCubic * v * v);
        dx[i] += dy[i] * (s + 2.0f * v * s * one_minus_s * du);
      });
      return;
    case Activation::Tanh:
      for_each_chunk(n, [=](int64_t i) {
        float t = std::tanh(x[i]);
        dx[i] += dy[i] * (1.0f - t * t);
      });
      return;
    case Activation::Relu:
      // torch's threshold_backward: the gradient passes where x > 0 and is 0
      // elsewhere (x == 0 included). A select, not dy * mask, so a NaN dy at a
      // masked position does not poison dx.
      for_each_chunk(n, [=](int64_t i) {
        const float g = dy[i];  // loaded unconditionally so the select needs no branch
        dx[i] += x[i] > 0.0f ? g : 0.0f;
      });
      return;
    case Activation::Silu:
      // d/dx [x s(x)] = s(x) (1 + x (1 - s(x))), 1 - s(x) as s(-x).
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        dx[i] += dy[i] * (sigmoid(v) * (1.0f + v * sigmoid(-v)));
      });
      return;
    case Activation::QuickGelu:
      // d/dx [x s(a x)] = s(a x) + a x s(a x) s(-a x).
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        float s = sigmoid(kQuickGeluScale * v);
        dx[i] += dy[i] * (s + kQuickGeluScale * v * s * sigmoid(-kQuickGeluScale * v));
      });
      return;
    case Activation::Mish:
      // d/dx [x tanh(sp(x))] = tanh(sp) + x (1 - tanh(sp)^2) s(x), as torch's mish_backward.
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        float t = std::tanh(softplus(v));
        dx[i] += dy[i] * (t + v * sigmoid(v) * (1.0f - t * t));
      });
      return;
    case Activation::Sigmoid:
      for_each_chunk(n, [=](int64_t i) { dx[i] += dy[i] * (sigmoid(x[i]) * sigmoid(-x[i])); });
      return;
    case Activation::Relu6:
      // torch's hardtanh_backward: the gradient passes strictly inside (0, 6).
      for_each_chunk(n, [=](int64_t i) {
        const float g = dy[i];
        dx[i] += (x[i] > 0.0f && x[i] < 6.0f) ? g : 0.0f;
      });
      return;
    case Activation::LeakyRelu:
      for_each_chunk(n, [=](int64_t i) { dx[i] += x[i] > 0.0f ? dy[i] : kLeakySlope * dy[i]; });
      return;
    case Activation::Identity:
      for_each_chunk(n, [=](int64_t i) { dx[i] += dy[i]; });
      return;
    case Activation::Relu2:
      for_each_chunk(n, [=](int64_t i) {
        const float g = dy[i];
        dx[i] += x[i] > 0.0f ? 2.0f * x[i] * g : 0.0f;
      });
      return;
    case Activation::GeluClip10:
      // torch.clip's backward passes the gradient where min <= gelu(x) <= max.
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        float gv = gelu_erf(v);
        const float g = dy[i];
        dx[i] += (gv >= -10.0f && gv <= 10.0f) ? g * (normal_cdf(v) + v * normal_pdf(v)) : 0.0f;
      });
      return;
    case Activation::Laplace:
      // d/dx 0.5 erfc(-z) = exp(-z^2) / sqrt(pi) * dz/dx.
      for_each_chunk(n, [=](int64_t i) {
        float z = (x[i] - kLaplaceMu) * kLaplaceInvScale;
        dx[i] += dy[i] * (kInvSqrtPi * kLaplaceInvScale * std::exp(-z * z));
      });
      return;
    case Activation::Hardswish:
      // torch's hardswish_backward: 0 below -3, dy above 3, dy (x / 3 + 0.5) between.
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        const float g = dy[i];
        dx[i] += v < -3.0f ? 0.0f : v <= 3.0f ? g * (v / 3.0f + 0.5f) : g;
      });
      return;
    case Activation::SqrtSoftplus:
      // d/dx sqrt(sp(x)) = s(x) / (2 sqrt(sp(x))).
      for_each_chunk(n, [=](int64_t i) {
        float v = x[i];
        dx[i] += dy[i] * (sigmoid(v) / (2.0f * std::sqrt(softplus(v))));
      });
      return;
  }
  throw Error("unknown activation kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace bertkit
