// Activations, forward and backward: exact-erf GELU ("gelu"), the tanh
// approximation ("gelu_new"), tanh, ReLU, and the rest of transformers'
// ACT2FN kinds without parameters (silu, quick_gelu, mish, sigmoid, relu6,
// leaky_relu, linear, relu2, gelu_10, laplace, hardswish, sqrtsoftplus), in
// the same forms as cpu/activation.cpp. Backward takes x (not y) and
// accumulates: dx += dy * f'(x).
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

using Kind = Backend::Activation;

constexpr float kInvSqrt2 = 0.70710678118654752f;     // 1/sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;   // 1/sqrt(2*pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

// The same cancellation-free forms as the CPU backend (see cpu/activation.cpp):
// torch's 1 + erf(z) and 1 + tanh(u) lose most digits once erf / tanh near -1,
// so Phi(x) is 0.5 * erfc(-x / sqrt2) and 0.5 * (1 + tanh(u)) is sigmoid(2u).
__device__ __forceinline__ float normal_cdf(float x) { return 0.5f * erfcf(-x * kInvSqrt2); }
__device__ __forceinline__ float normal_pdf(float x) { return kInvSqrt2Pi * expf(-0.5f * x * x); }
__device__ __forceinline__ float gelu_tanh_inner(float x) { return kSqrt2OverPi * (x + kGeluCubic * x * x * x); }
__device__ __forceinline__ float half_one_plus_tanh(float u) { return 1.0f / (1.0f + expf(-2.0f * u)); }
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

constexpr float kQuickGeluScale = 1.702f;
constexpr float kLeakySlope = 0.01f;
constexpr float kLaplaceMu = 0.707107f;
constexpr float kLaplaceInvScale = static_cast<float>(1.0 / (0.282095 * 1.4142135623730951));
constexpr float kInvSqrtPi = 0.56418958354775628695f;

template <Kind K>
__device__ __forceinline__ float act(float x) {
  if constexpr (K == Kind::GeluErf) {
    return x * normal_cdf(x);
  } else if constexpr (K == Kind::GeluTanh) {
    return x * half_one_plus_tanh(gelu_tanh_inner(x));
  } else if constexpr (K == Kind::Tanh) {
    return tanhf(x);
  } else if constexpr (K == Kind::Relu) {
    return (x > 0.0f || x != x) ? x : 0.0f;  // NaN stays NaN, as torch.relu does
  } else if constexpr (K == Kind::Silu) {
    return x * sigmoid(x);
  } else if constexpr (K == Kind::QuickGelu) {
    return x * sigmoid(kQuickGeluScale * x);
  } else if constexpr (K == Kind::Mish) {
    return x * tanhf(softplus(x));
  } else if constexpr (K == Kind::Sigmoid) {
    return sigmoid(x);
  } else if constexpr (K == Kind::Relu6) {
    return x != x ? x : x < 0.0f ? 0.0f : x > 6.0f ? 6.0f : x;
  } else if constexpr (K == Kind::LeakyRelu) {
    return x > 0.0f ? x : kLeakySlope * x;
  } else if constexpr (K == Kind::Identity) {
    return x;
  } else if constexpr (K == Kind::Relu2) {
    const float r = (x > 0.0f || x != x) ? x : 0.0f;
    return r * r;
  } else if constexpr (K == Kind::GeluClip10) {
    return fminf(fmaxf(x * normal_cdf(x), -10.0f), 10.0f);
  } else if constexpr (K == Kind::Laplace) {
    return 0.5f * erfcf(-(x - kLaplaceMu) * kLaplaceInvScale);
  } else if constexpr (K == Kind::Hardswish) {
    return x * fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
  } else {
    static_assert(K == Kind::SqrtSoftplus, "every activation kind has a forward");
    return sqrtf(softplus(x));
  }
}

template <Kind K>
__device__ __forceinline__ float act_backward(float x, float dy) {
  if constexpr (K == Kind::GeluErf) {
    // d/dx [x * Phi(x)] = Phi(x) + x * phi(x)
    return dy * (normal_cdf(x) + x * normal_pdf(x));
  } else if constexpr (K == Kind::GeluTanh) {
    // y = x * s, s = sigmoid(2u): s' = 2 s (1 - s) u'; 1 - s as sigmoid(-2u) so
    // it keeps its digits when s is within an ulp of 1.
    const float u = gelu_tanh_inner(x);
    const float s = half_one_plus_tanh(u);
    const float one_minus_s = half_one_plus_tanh(-u);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
    return dy * (s + 2.0f * x * s * one_minus_s * du);
  } else if constexpr (K == Kind::Tanh) {
    const float t = tanhf(x);
    return dy * (1.0f - t * t);
  } else if constexpr (K == Kind::Relu) {
    // A select, not dy * mask: a NaN dy where x <= 0 must not reach dx (torch's threshold_backward).
    return x > 0.0f ? dy : 0.0f;
  } else if constexpr (K == Kind::Silu) {
    return dy * (sigmoid(x) * (1.0f + x * sigmoid(-x)));
  } else if constexpr (K == Kind::QuickGelu) {
    const float s = sigmoid(kQuickGeluScale * x);
    return dy * (s + kQuickGeluScale * x * s * sigmoid(-kQuickGeluScale * x));
  } else if constexpr (K == Kind::Mish) {
    const float t = tanhf(softplus(x));
    return dy * (t + x * sigmoid(x) * (1.0f - t * t));
  } else if constexpr (K == Kind::Sigmoid) {
    return dy * (sigmoid(x) * sigmoid(-x));
  } else if constexpr (K == Kind::Relu6) {
    return (x > 0.0f && x < 6.0f) ? dy : 0.0f;
  } else if constexpr (K == Kind::LeakyRelu) {
    return x > 0.0f ? dy : kLeakySlope * dy;
  } else if constexpr (K == Kind::Identity) {
    return dy;
  } else if constexpr (K == Kind::Relu2) {
    return x > 0.0f ? 2.0f * x * dy : 0.0f;
  } else if constexpr (K == Kind::GeluClip10) {
    const float g = x * normal_cdf(x);
    return (g >= -10.0f && g <= 10.0f) ? dy * (normal_cdf(x) + x * normal_pdf(x)) : 0.0f;
  } else if constexpr (K == Kind::Laplace) {
    const float z = (x - kLaplaceMu) * kLaplaceInvScale;
    return dy * (kInvSqrtPi * kLaplaceInvScale * expf(-z * z));
  } else if constexpr (K == Kind::Hardswish) {
    return x < -3.0f ? 0.0f : x <= 3.0f ? dy * (x / 3.0f + 0.5f) : dy;
  } else {
    static_assert(K == Kind::SqrtSoftplus, "every activation kind has a backward");
    return dy * (sigmoid(x) / (2.0f * sqrtf(softplus(x))));
  }
}

template <Kind K>
__global__ void activation_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = act<K>(x[i]);
  }
}

template <Kind K>
__global__ void activation_backward_kernel(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    dx[i] += act_backward<K>(x[i], dy[i]);
  }
}

template <Kind K>
void launch_forward(cudaStream_t stream, int64_t n, const float* x, float* y) {
  activation_forward_kernel<K><<<cuda::grid_for(n), cuda::kThreads, 0, stream>>>(n, x, y);
}

template <Kind K>
void launch_backward(cudaStream_t stream, int64_t n, const float* x, const float* dy, float* dx) {
  activation_backward_kernel<K><<<cuda::grid_for(n), cuda::kThreads, 0, stream>>>(n, x, dy, dx);
}

}  // namespace

void CudaBackend::activation_forward(Activation kind, int64_t n, const float* x, float* y) {
  if (n == 0) return;
  switch (kind) {
    case Kind::GeluErf: launch_forward<Kind::GeluErf>(stream_, n, x, y); break;
    case Kind::GeluTanh: launch_forward<Kind::GeluTanh>(stream_, n, x, y); break;
    case Kind::Tanh: launch_forward<Kind::Tanh>(stream_, n, x, y); break;
    case Kind::Relu: launch_forward<Kind::Relu>(stream_, n, x, y); break;
    case Kind::Silu: launch_forward<Kind::Silu>(stream_, n, x, y); break;
    case Kind::QuickGelu: launch_forward<Kind::QuickGelu>(stream_, n, x, y); break;
    case Kind::Mish: launch_forward<Kind::Mish>(stream_, n, x, y); break;
    case Kind::Sigmoid: launch_forward<Kind::Sigmoid>(stream_, n, x, y); break;
    case Kind::Relu6: launch_forward<Kind::Relu6>(stream_, n, x, y); break;
    case Kind::LeakyRelu: launch_forward<Kind::LeakyRelu>(stream_, n, x, y); break;
    case Kind::Identity: launch_forward<Kind::Identity>(stream_, n, x, y); break;
    case Kind::Relu2: launch_forward<Kind::Relu2>(stream_, n, x, y); break;
    case Kind::GeluClip10: launch_forward<Kind::GeluClip10>(stream_, n, x, y); break;
    case Kind::Laplace: launch_forward<Kind::Laplace>(stream_, n, x, y); break;
    case Kind::Hardswish: launch_forward<Kind::Hardswish>(stream_, n, x, y); break;
    case Kind::SqrtSoftplus: launch_forward<Kind::SqrtSoftplus>(stream_, n, x, y); break;
    default: throw Error("cuda activation_forward: unknown activation kind " + std::to_string(static_cast<int>(kind)));
  }
  cuda::check_launch("activation_forward");
}

void CudaBackend::activation_backward(Activation kind, int64_t n, const float* x, const float* dy, float* dx) {
  if (n == 0 || dx == nullptr) return;
  switch (kind) {
    case Kind::GeluErf: launch_backward<Kind::GeluErf>(stream_, n, x, dy, dx); break;
    case Kind::GeluTanh: launch_backward<Kind::GeluTanh>(stream_, n, x, dy, dx); break;
    case Kind::Tanh: launch_backward<Kind::Tanh>(stream_, n, x, dy, dx); break;
    case Kind::Relu: launch_backward<Kind::Relu>(stream_, n, x, dy, dx); break;
    case Kind::Silu: launch_backward<Kind::Silu>(stream_, n, x, dy, dx); break;
    case Kind::QuickGelu: launch_backward<Kind::QuickGelu>(stream_, n, x, dy, dx); break;
    case Kind::Mish: launch_backward<Kind::Mish>(stream_, n, x, dy, dx); break;
    case Kind::Sigmoid: launch_backward<Kind::Sigmoid>(stream_, n, x, dy, dx); break;
    case Kind::Relu6: launch_backward<Kind::Relu6>(stream_, n, x, dy, dx); break;
    case Kind::LeakyRelu: launch_backward<Kind::LeakyRelu>(stream_, n, x, dy, dx); break;
    case Kind::Identity: launch_backward<Kind::Identity>(stream_, n, x, dy, dx); break;
    case Kind::Relu2: launch_backward<Kind::Relu2>(stream_, n, x, dy, dx); break;
    case Kind::GeluClip10: launch_backward<Kind::GeluClip10>(stream_, n, x, dy, dx); break;
    case Kind::Laplace: launch_backward<Kind::Laplace>(stream_, n, x, dy, dx); break;
    case Kind::Hardswish: launch_backward<Kind::Hardswish>(stream_, n, x, dy, dx); break;
    case Kind::SqrtSoftplus: launch_backward<Kind::SqrtSoftplus>(stream_, n, x, dy, dx); break;
    default: throw Error("cuda activation_backward: unknown activation kind " + std::to_string(static_cast<int>(kind)));
  }
  cuda::check_launch("activation_backward");
}

}  // namespace bertkit
