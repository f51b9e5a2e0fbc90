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
//
// multi_tensor_adamw runs adam_update, the loop adamw_step runs, over many
// tensors in one parallel region (one queued op instead of one per tensor), so
// each element is bit-identical to the per-tensor op; the multi-tensor sum of
// squares gives a global gradient norm in one op, summed in double.
//
// On AVX-512 CPUs the loops run 16 elements at a time (adamw_avx512.cpp) with
// the same roundings in the same order, so the results do not change.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "adamw_kernels.h"
#include "bertkit/dtype.h"
#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 16384;

// torch's lerp kernel starts from whichever end is nearer to the weight, so
// that weight 1 gives exactly `end`. The weight is the same for the whole
// tensor, so the choice is made once, outside the loop, which keeps the loop
// free of branches and vectorisable.
struct LerpFromSelf {
  static constexpr bool kFromEnd = false;
  float operator()(float self, float end, float weight) const { return self + weight * (end - self); }
};
struct LerpFromEnd {
  static constexpr bool kFromEnd = true;
  float operator()(float self, float end, float weight) const {
    return end - (end - self) * (1.0f - weight);
  }
};

// The step's scalars, computed in double and rounded to float once, as torch
// does with Python floats. Shared by adamw_step and multi_tensor_adamw so that
// both run the very same arithmetic.
using adamw_detail::AdamScalars;

AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  const double steps = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, steps);
  const double bias_correction2 = 1.0 - std::pow(beta2, steps);
  AdamScalars s{};
  s.decay = static_cast<float>(1.0 - lr * weight_decay);
  s.avg_weight = static_cast<float>(1.0 - beta1);
  s.beta2 = beta2;
  s.sq_weight = static_cast<float>(1.0 - beta2);
  s.eps = eps;
  s.step_size = static_cast<float>(lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  return s;
}

// Elements [begin, end) of one tensor. Everything arrives by value: with
// references, every store to param could alias the scalars, and the compiler
// would not vectorise.
template <typename Lerp>
void adam_update_plain(AdamScalars s, float scale, const float* grad, float* param, float* exp_avg,
                       float* exp_avg_sq, uint16_t* half, int64_t begin, int64_t end, Lerp lerp) {
  const float decay = s.decay, avg_weight = s.avg_weight, sq_weight = s.sq_weight;
  const double beta2 = s.beta2, eps = s.eps;
  const float step_size = s.step_size, bias_correction2_sqrt = s.bias_correction2_sqrt;
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i] * scale;
    const float p = param[i] * decay;
    const float m = lerp(exp_avg[i], g, avg_weight);
    // exp_avg_sq * beta2 is a double product: beta2 stays double, as in torch's mul_.
    const float v = exp_avg_sq[i] * beta2 + sq_weight * g * g;
    const float denom = std::sqrt(v) / bias_correction2_sqrt + eps;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p + (-step_size) * m / denom;
    if (half) half[i] = float_to_bf16(param[i]);
  }
}

// The vector loop where there is one (adamw_kernels.h), the plain loop for the rest.
// half (null: none): the weight's bf16 copy, written from the updated value in
// the same pass (autocast's cached cast of the weight, without reading it again).
template <typename Lerp>
void adam_update(AdamScalars s, float scale, const float* grad, float* param, float* exp_avg, float* exp_avg_sq,
                 int64_t begin, int64_t end, Lerp lerp, uint16_t* half = nullptr) {
  if (const adamw_detail::AdamUpdateFn simd = adamw_detail::simd_adam_update()) {
    begin = simd(s, scale, grad, param, exp_avg, exp_avg_sq, half, begin, end, Lerp::kFromEnd);
  }
  adam_update_plain(s, scale, grad, param, exp_avg, exp_avg_sq, half, begin, end, lerp);
}

// Reductions sum fixed blocks of this many elements of each tensor and add the
// block sums in order: the layout depends only on the sizes, so the result is
// the same for every thread count.
constexpr int64_t kReduceBlock = 8192;

// Sum of squares of x[0..n) in double, in eight independent lanes so the adds
// stay in vector registers instead of one serial chain.
double lane_sum_squares(const float* x, int64_t n) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  if (const adamw_detail::SumSquaresLanesFn simd = adamw_detail::simd_sum_squares_lanes()) {
    i = n / kLanes * kLanes;
    simd(x, i, lanes);
  }
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const double v = static_cast<double>(x[i + l]);
      lanes[l] += v * v;
    }
  }
  for (; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    lanes[0] += v * v;
  }
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// lane_sum_squares of block x[begin, begin + n) of a [rows, width] tensor
// whose unmarked rows count as zero: each marked element goes to the lane it
// has there (the tail past the last group of 8 to lane 0), in index order, so
// the block's sum has the bits of the dense one, which only adds zeros.
double marked_sum_squares(const float* x, int64_t begin, int64_t n, int64_t width, const int32_t* marks) {
  const int64_t end = begin + n, n8 = n / 8 * 8;
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t r = begin / width; r * width < end; ++r) {
    if (!marks[r]) continue;
    const int64_t lo = std::max(begin, r * width), hi = std::min(end, (r + 1) * width);
    for (int64_t e = lo; e < hi; ++e) {
      const int64_t k = e - begin;
      const double v = static_cast<double>(x[e]);
      lanes[k < n8 ? k % 8 : 0] += v * v;
    }
  }
  double total = 0;
  for (int l = 0; l < 8; ++l) total += lanes[l];
  return total;
}

}  // namespace

namespace adamw_detail {

AdamUpdateFn simd_adam_update() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const AdamUpdateFn fn = vecmath::simd() && vecmath::simd()->isa == vecmath::Isa::Avx512 ? adam_update_avx512 : nullptr;
  return fn;
#else
  return nullptr;
#endif
}

AdamZeroGradFn simd_adam_zero_grad() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const AdamZeroGradFn fn = vecmath::simd() && vecmath::simd()->isa == vecmath::Isa::Avx512 ? adam_zero_grad_avx512 : nullptr;
  return fn;
#else
  return nullptr;
#endif
}

SumSquaresLanesFn simd_sum_squares_lanes() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const SumSquaresLanesFn fn = vecmath::simd() && vecmath::simd()->isa == vecmath::Isa::Avx512 ? sum_squares_lanes_avx512 : nullptr;
  return fn;
#else
  return nullptr;
#endif
}

}  // namespace adamw_detail

void CpuBackend::adamw_step(int64_t n, double lr, double beta1, double beta2, double eps,
                            double weight_decay, int64_t step, const float* grad_scale,
                            const float* grad, float* param, float* exp_avg, float* exp_avg_sq) {
  const AdamScalars s = adam_scalars(lr, beta1, beta2, eps, weight_decay, step);
  // The clipping coefficient lives in device memory (no host sync on CUDA).
  // clip_grad_norm_ scales the gradient in place (grad.mul_(coef)) before the
  // step; multiplying by exactly 1 when there is none changes nothing.
  const float scale = grad_scale ? grad_scale[0] : 1.0f;
  auto run = [&](auto lerp) {
    ThreadPool::instance().parallel_for(n, kGrain, [=](int64_t begin, int64_t end) {
      adam_update(s, scale, grad, param, exp_avg, exp_avg_sq, begin, end, lerp);
    });
  };
  if (s.avg_weight < 0.5f) run(LerpFromSelf{});
  else run(LerpFromEnd{});
}

void CpuBackend::multi_tensor_adamw(int64_t count, const int64_t* sizes, float* const* params,
                                    const float* const* grads, float* const* exp_avgs,
                                    float* const* exp_avg_sqs, double lr, double beta1, double beta2,
                                    double eps, double weight_decay, const int64_t* steps,
                                    const float* grad_scale, const float* found_inf, uint16_t* const* halves) {
  // GradScaler found an inf/NaN: the whole step is skipped, nothing is touched.
  if (found_inf && found_inf[0] != 0.0f) return;
  const float scale = grad_scale ? grad_scale[0] : 1.0f;
  // The tensors laid end to end: offsets[t] is where tensor t starts, so the
  // threads split the concatenated elements evenly however the sizes vary
  // (bert-base: one 22M-element embedding beside hundreds of 768-long biases).
  std::vector<int64_t> offsets(static_cast<size_t>(count) + 1, 0);
  std::vector<AdamScalars> scalars(static_cast<size_t>(count));
  for (int64_t t = 0; t < count; ++t) {
    offsets[t + 1] = offsets[t] + sizes[t];
    scalars[t] = adam_scalars(lr, beta1, beta2, eps, weight_decay, steps[t]);
  }
  const int64_t total = offsets[count];
  auto run = [&](auto lerp) {
    ThreadPool::instance().parallel_for(total, kGrain, [&](int64_t begin, int64_t end) {
      // The last tensor starting at or before `begin` (empty tensors are skipped by the loop).
      int64_t t = std::upper_bound(offsets.begin(), offsets.end(), begin) - offsets.begin() - 1;
      for (; t < count && offsets[t] < end; ++t) {
        const int64_t lo = std::max(begin, offsets[t]) - offsets[t];
        const int64_t hi = std::min(end, offsets[t + 1]) - offsets[t];
        if (lo < hi) {
          adam_update(scalars[t], scale, grads[t], params[t], exp_avgs[t], exp_avg_sqs[t], lo, hi, lerp,
                      halves && halves[t] ? halves[t] : nullptr);
        }
      }
    });
  };
  // 1 - beta1 is the same for the whole group, so the lerp branch is too.
  if (static_cast<float>(1.0 - beta1) < 0.5f) run(LerpFromSelf{});
  else run(LerpFromEnd{});
}

void CpuBackend::multi_tensor_sum_squares(int64_t count, const int64_t* sizes, const float* const* tensors,
                                          float* out) {
  multi_tensor_sum_squares_rows(count, sizes, tensors, nullptr, nullptr, out);
}

void CpuBackend::multi_tensor_sum_squares_rows(int64_t count, const int64_t* sizes, const float* const* tensors,
                                               const int32_t* const* row_marks, const int64_t* widths, float* out) {
  // first_block[t]: index of tensor t's first block among all tensors' blocks.
  std::vector<int64_t> first_block(static_cast<size_t>(count) + 1, 0);
  for (int64_t t = 0; t < count; ++t) first_block[t + 1] = first_block[t] + (sizes[t] + kReduceBlock - 1) / kReduceBlock;
  const int64_t blocks = first_block[count];
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  // Blocks cost very different amounts (a row-sparse table's blocks are
  // mostly skipped, and the word embeddings come first), so they are handed
  // out in many small chunks that idle threads take, not in one even split.
  ThreadPool& pool = ThreadPool::instance();
  const int64_t chunks = std::min<int64_t>(blocks, 16 * static_cast<int64_t>(pool.num_threads()));
  pool.run_chunks(static_cast<int>(chunks), [&](int c) {
    const int64_t b0 = blocks * c / chunks, b1 = blocks * (c + 1) / chunks;
    if (b0 == b1) return;
    int64_t t = std::upper_bound(first_block.begin(), first_block.end(), b0) - first_block.begin() - 1;
    for (int64_t b = b0; b < b1; ++b) {
      while (first_block[t + 1] <= b) ++t;  // steps over finished and empty tensors
      const int64_t begin = (b - first_block[t]) * kReduceBlock;
      const int64_t len = std::min(kReduceBlock, sizes[t] - begin);
      const int32_t* marks = row_marks ? row_marks[t] : nullptr;
      partial[static_cast<size_t>(b)] = marks ? marked_sum_squares(tensors[t], begin, len, widths[t], marks)
                                              : lane_sum_squares(tensors[t] + begin, len);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  out[0] = static_cast<float>(static_cast<double>(out[0]) + total);
}

void CpuBackend::adamw_rows(int64_t rows, int64_t width, const int32_t* ids, int64_t n_ids, const int32_t* row_marks,
                            int32_t* row_steps, int64_t log_len, const double* log, float* scale_log,
                            const float* grad_scale, const float* grad, float* param, float* exp_avg,
                            float* exp_avg_sq) {
  if (log_len == 0) return;
  struct Entry {
    AdamScalars s;
    bool from_end;
  };
  std::vector<Entry> entries(static_cast<size_t>(log_len));
  for (int64_t j = 0; j < log_len; ++j) {
    const double* e = log + 6 * j;
    entries[j].s = adam_scalars(e[0], e[1], e[2], e[3], e[4], static_cast<int64_t>(e[5]));
    // The lerp branch multi_tensor_adamw takes for this beta1.
    entries[j].from_end = !(static_cast<float>(1.0 - e[1]) < 0.5f);
  }
  const int64_t first_step = static_cast<int64_t>(log[5]);
  const int64_t last_step = first_step + log_len - 1;
  const int64_t last = log_len - 1;
  if (grad) scale_log[last] = grad_scale ? grad_scale[0] : 1.0f;
  // The rows to bring forward, each once (ids may repeat a row).
  std::vector<int32_t> list;
  if (grad) {
    for (int64_t r = 0; r < rows; ++r) if (row_marks[r]) list.push_back(static_cast<int32_t>(r));
  } else if (ids) {
    list.assign(ids, ids + n_ids);
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
  } else {
    list.resize(static_cast<size_t>(rows));
    std::iota(list.begin(), list.end(), int32_t{0});
  }
  for (int32_t r : list) {
    if (r < 0 || r >= rows) throw Error("adamw_rows: row " + std::to_string(r) + " is outside [0, " + std::to_string(rows) + ")");
    if (row_steps[r] < first_step - 1 || row_steps[r] > last_step) {
      throw Error("adamw_rows: row " + std::to_string(r) + " is at step " + std::to_string(row_steps[r]) +
                  ", outside the log's steps " + std::to_string(first_step) + ".." + std::to_string(last_step));
    }
  }
  // Entries [row's next, replay_end) are replayed with a zero gradient.
  const int64_t replay_end = grad ? last : log_len;
  const adamw_detail::AdamZeroGradFn zero_grad = adamw_detail::simd_adam_zero_grad();
  auto update = [&](const Entry& e, float scale, const float* g, bool g_is_zero, int64_t r) {
    float* p = param + r * width;
    float* m = exp_avg + r * width;
    float* v = exp_avg_sq + r * width;
    int64_t begin = 0;
    // A zero row times a finite scale >= +0 is +0, the constant the zero-gradient loop uses.
    if (g_is_zero && zero_grad && std::isfinite(scale) && !std::signbit(scale)) begin = zero_grad(e.s, p, m, v, 0, width, e.from_end);
    if (e.from_end) adam_update(e.s, scale, g, p, m, v, begin, width, LerpFromEnd{});
    else adam_update(e.s, scale, g, p, m, v, begin, width, LerpFromSelf{});
  };
  // A row whose moments are all +0 (one no batch has touched yet: most of a
  // vocabulary early on) keeps them +0 under a zero gradient, and the dense
  // step's update of it reduces to param * decay: m / denom is +0 and
  // p + (-step_size) * +0 / denom adds -0, which changes no value. That holds
  // when the gradient's scale is finite and not negative (g = +0), step_size
  // is finite and >= 0, and denom = 0 / bc2 + eps is finite and > 0; other
  // steps run the full update.
  std::vector<uint8_t> decay_only(static_cast<size_t>(log_len), 0);
  for (int64_t j = 0; j < log_len; ++j) {
    const AdamScalars& s = entries[j].s;
    const float denom = static_cast<float>(0.0f / s.bias_correction2_sqrt + s.eps);
    decay_only[j] = std::isfinite(scale_log[j]) && !std::signbit(scale_log[j]) && std::isfinite(s.step_size) &&
                    s.step_size >= 0.0f && std::isfinite(denom) && denom > 0.0f;
  }
  auto all_plus_zero = [width](const float* x) {
    for (int64_t i = 0; i < width; ++i) {
      uint32_t u;
      std::memcpy(&u, x + i, 4);
      if (u != 0) return false;
    }
    return true;
  };
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, width));
  ThreadPool::instance().parallel_for(static_cast<int64_t>(list.size()), grain, [&](int64_t i0, int64_t i1) {
    // The dense step reads a zero-filled gradient (times the step's scale): the same bits.
    const std::vector<float> zeros(static_cast<size_t>(width), 0.0f);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = list[static_cast<size_t>(i)];
      int64_t j = row_steps[r] - first_step + 1;
      if (j < replay_end && all_plus_zero(exp_avg + r * width) && all_plus_zero(exp_avg_sq + r * width)) {
        float* p = param + r * width;
        for (; j < replay_end && decay_only[j]; ++j) {
          const float decay = entries[j].s.decay;
          for (int64_t c = 0; c < width; ++c) p[c] = p[c] * decay;
        }
      }
      for (; j < replay_end; ++j) update(entries[j], scale_log[j], zeros.data(), true, r);
      if (grad) update(entries[last], scale_log[last], grad + r * width, false, r);
      row_steps[r] = static_cast<int32_t>(last_step);
    }
  });
}

void CpuBackend::nonfinite_flag(const float* x, float* found_inf) {
  found_inf[0] = std::isfinite(x[0]) ? 0.0f : 1.0f;
}

void CpuBackend::clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) {
  const float total_norm = std::sqrt(sum_sq[0]);
  const float coef = max_norm / (total_norm + 1e-6f);
  // clamp(max=1.0) keeps a NaN coefficient (from a NaN norm) NaN, as torch does,
  // rather than silently training on with unclipped non-finite gradients.
  clip_coef[0] = coef < 1.0f || std::isnan(coef) ? coef : 1.0f;
}

}  // namespace bertkit
