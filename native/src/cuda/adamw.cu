// AdamW and the gradient-clipping coefficient, as cpu/adamw.cpp computes them
// (read its header for how each line follows torch.optim.AdamW).
//
// The step's scalars are computed on the host in double and rounded to float
// exactly as the CPU backend does; each element then runs the CPU's float and
// double expressions in the same order, through the _rn intrinsics so nvcc
// cannot fuse a multiply and an add (the CPU build has no FMA), which keeps
// every element bit-identical to the CPU backend's. grad_scale stays on the
// device: no host sync per step.
#include <cmath>

#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

struct AdamScalars {
  float decay;               // 1 - lr * weight_decay
  float avg_weight;          // 1 - beta1, the lerp weight
  float avg_keep;            // 1 - avg_weight, for the lerp computed from the far end
  bool lerp_from_self;       // torch's lerp starts from the end nearer the weight
  double beta2;
  float sq_weight;           // 1 - beta2
  float neg_step_size;       // -(lr / bias_correction1)
  float bias_correction2_sqrt;
  double eps;
};

__global__ void adamw_kernel(int64_t n, AdamScalars s, const float* grad_scale, const float* grad, float* param,
                             float* exp_avg, float* exp_avg_sq) {
  const float scale = grad_scale ? grad_scale[0] : 1.0f;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float g = __fmul_rn(grad[i], scale);
    const float p = __fmul_rn(param[i], s.decay);
    const float m0 = exp_avg[i];
    const float m = s.lerp_from_self ? __fadd_rn(m0, __fmul_rn(s.avg_weight, __fsub_rn(g, m0)))
                                     : __fsub_rn(g, __fmul_rn(__fsub_rn(g, m0), s.avg_keep));
    // exp_avg_sq * beta2 is a double product (beta2 stays double, as on the CPU).
    const float v = static_cast<float>(__dadd_rn(__dmul_rn(static_cast<double>(exp_avg_sq[i]), s.beta2),
                                                 static_cast<double>(__fmul_rn(__fmul_rn(s.sq_weight, g), g))));
    const float denom =
        static_cast<float>(__dadd_rn(static_cast<double>(__fdiv_rn(__fsqrt_rn(v), s.bias_correction2_sqrt)), s.eps));
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(s.neg_step_size, m), denom));
  }
}

__global__ void clip_coefficient_kernel(const float* sum_sq, float max_norm, float* clip_coef) {
  const float total_norm = __fsqrt_rn(sum_sq[0]);
  const float coef = __fdiv_rn(max_norm, __fadd_rn(total_norm, 1e-6f));
  // A NaN coefficient stays NaN, as torch's clamp(max=1) leaves it.
  clip_coef[0] = (coef < 1.0f || isnan(coef)) ? coef : 1.0f;
}

}  // namespace

void CudaBackend::adamw_step(int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
                             int64_t step, const float* grad_scale, const float* grad, float* param, float* exp_avg,
                             float* exp_avg_sq) {
  if (n == 0) return;
  const double steps = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, steps);
  const double bias_correction2 = 1.0 - std::pow(beta2, steps);
  AdamScalars s{};
  s.decay = static_cast<float>(1.0 - lr * weight_decay);
  s.avg_weight = static_cast<float>(1.0 - beta1);
  s.avg_keep = 1.0f - s.avg_weight;
  s.lerp_from_self = s.avg_weight < 0.5f;
  s.beta2 = beta2;
  s.sq_weight = static_cast<float>(1.0 - beta2);
  s.neg_step_size = -static_cast<float>(lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.eps = eps;
  adamw_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, stream_>>>(n, s, grad_scale, grad, param, exp_avg, exp_avg_sq);
  cuda::check_launch("adamw_step");
}

void CudaBackend::clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) {
  clip_coefficient_kernel<<<1, 1, 0, stream_>>>(sum_sq, max_norm, clip_coef);
  cuda::check_launch("clip_coefficient");
}

}  // namespace bertkit
