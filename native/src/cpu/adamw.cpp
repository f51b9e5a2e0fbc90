// AdamW and gradient-norm clipping of the CPU backend.
//
// The arithmetic follows torch.optim.AdamW's single-tensor path (torch 2.x,
// amsgrad off, not fused) operation by operation: the step's scalars are
// computed in double (Python floats in torch) and rounded to float once, and
// each tensor update is a float expression in the order of torch's kernels
// (mul_, lerp_, mul_ + addcmul_, sqrt / div / add_, addcdiv_), so the
// trajectory stays within float rounding of torch's. Two things keep it from
// being bit-identical: torch's vectorised CPU lerp_/addcmul_ use fused
// multiply-adds (this baseline x86-64 build has none), and the hyperparameters
// reach this function as float, so 1 - beta2 is 1 - 0.999f here but
// 1 - 0.999 in torch (1.3e-5 apart, relative, in exp_avg_sq).
#include <cmath>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 16384;

// torch's lerp kernel starts from whichever end is nearer to the weight, so
// that weight 1 gives exactly `end`. The weight is the same for the whole
// tensor, so the choice is made once, outside the loop, which keeps the loop
// free of branches and vectorisable.
struct LerpFromSelf {
  float operator()(float self, float end, float weight) const { return self + weight * (end - self); }
};
struct LerpFromEnd {
  float operator()(float self, float end, float weight) const {
    return end - (end - self) * (1.0f - weight);
  }
};

}  // namespace

void CpuBackend::adamw_step(int64_t n, double lr, double beta1, double beta2, double eps,
                            double weight_decay, int64_t step, const float* grad_scale,
                            const float* grad, float* param, float* exp_avg, float* exp_avg_sq) {
  const double lr_d = lr, beta1_d = beta1, beta2_d = beta2;
  const double steps = static_cast<double>(step);
  const float decay = static_cast<float>(1.0 - lr_d * static_cast<double>(weight_decay));
  const float avg_weight = static_cast<float>(1.0 - beta1_d);   // exp_avg.lerp_(grad, 1 - beta1)
  const float sq_weight = static_cast<float>(1.0 - beta2_d);    // addcmul_(grad, grad, value=1 - beta2)
  const double bias_correction1 = 1.0 - std::pow(beta1_d, steps);
  const double bias_correction2 = 1.0 - std::pow(beta2_d, steps);
  const float step_size = static_cast<float>(lr_d / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  // The clipping coefficient lives in device memory (no host sync on CUDA).
  // clip_grad_norm_ scales the gradient in place (grad.mul_(coef)) before the
  // step; multiplying by exactly 1 when there is none changes nothing.
  const float scale = grad_scale ? grad_scale[0] : 1.0f;

  auto run = [&](auto lerp) {
    // Captured by value: with references, every store to param could alias the
    // captured pointers and scalars, and the compiler would not vectorise.
    ThreadPool::instance().parallel_for(n, kGrain, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float g = grad[i] * scale;
        const float p = param[i] * decay;
        const float m = lerp(exp_avg[i], g, avg_weight);
        const float v = exp_avg_sq[i] * beta2 + sq_weight * g * g;
        const float denom = std::sqrt(v) / bias_correction2_sqrt + eps;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p + (-step_size) * m / denom;
      }
    });
  };
  if (avg_weight < 0.5f) run(LerpFromSelf{});
  else run(LerpFromEnd{});
}

void CpuBackend::clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) {
  const float total_norm = std::sqrt(sum_sq[0]);
  const float coef = max_norm / (total_norm + 1e-6f);
  // clamp(max=1.0) keeps a NaN coefficient (from a NaN norm) NaN, as torch does,
  // rather than silently training on with unclipped non-finite gradients.
  clip_coef[0] = coef < 1.0f || std::isnan(coef) ? coef : 1.0f;
}

}  // namespace bertkit
