// AdamW and the gradient-clipping coefficient, as cpu/adamw.cpp computes them
// (read its header for how each line follows torch.optim.AdamW).
//
// The step's scalars are computed on the host in double and rounded to float
// exactly as the CPU backend does; each element then runs the CPU's float and
// double expressions in the same order, through the _rn intrinsics so nvcc
// cannot fuse a multiply and an add (the CPU build has no FMA), which keeps
// every element bit-identical to the CPU backend's. grad_scale stays on the
// device: no host sync per step.
//
// The multi-tensor ops cover many tensors in one launch, the way apex's and
// torch's multi_tensor_apply do: every tensor is cut into fixed chunks, one
// block per chunk, and a table of {pointers, size, first chunk} per tensor
// tells a block which tensor and which chunk it owns (a binary search over the
// first chunks). Unlike those, the table is not packed into the kernel's
// arguments (which caps the tensors per launch) but uploaded on the stream
// into a block of the caching allocator: no host sync, no cudaMalloc, and one
// launch however many tensors there are.
#include <cmath>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

// The scalars shared by every tensor of one step (one param group).
struct AdamGroup {
  float decay;               // 1 - lr * weight_decay
  float avg_weight;          // 1 - beta1, the lerp weight
  float avg_keep;            // 1 - avg_weight, for the lerp computed from the far end
  bool lerp_from_self;       // torch's lerp starts from the end nearer the weight
  double beta2;
  float sq_weight;           // 1 - beta2
  double eps;
};

// The scalars that depend on a tensor's step number (its bias corrections).
struct AdamStep {
  float neg_step_size;       // -(lr / bias_correction1)
  float bias_correction2_sqrt;
};

AdamGroup adam_group(double lr, double beta1, double beta2, double eps, double weight_decay) {
  AdamGroup g{};
  g.decay = static_cast<float>(1.0 - lr * weight_decay);
  g.avg_weight = static_cast<float>(1.0 - beta1);
  g.avg_keep = 1.0f - g.avg_weight;
  g.lerp_from_self = g.avg_weight < 0.5f;
  g.beta2 = beta2;
  g.sq_weight = static_cast<float>(1.0 - beta2);
  g.eps = eps;
  return g;
}

AdamStep adam_step(double lr, double beta1, double beta2, int64_t step) {
  const double steps = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(beta1, steps);
  const double bias_correction2 = 1.0 - std::pow(beta2, steps);
  AdamStep s{};
  s.neg_step_size = -static_cast<float>(lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  return s;
}

// Element i of one tensor: the single-tensor and the multi-tensor kernels both
// run exactly this, so they agree bit for bit with each other and the CPU.
__device__ __forceinline__ void adam_element(int64_t i, const AdamGroup& g, AdamStep s, float scale, const float* grad,
                                             float* param, float* exp_avg, float* exp_avg_sq) {
  const float gr = __fmul_rn(grad[i], scale);
  const float p = __fmul_rn(param[i], g.decay);
  const float m0 = exp_avg[i];
  const float m = g.lerp_from_self ? __fadd_rn(m0, __fmul_rn(g.avg_weight, __fsub_rn(gr, m0)))
                                   : __fsub_rn(gr, __fmul_rn(__fsub_rn(gr, m0), g.avg_keep));
  // exp_avg_sq * beta2 is a double product (beta2 stays double, as on the CPU).
  const float v = static_cast<float>(__dadd_rn(__dmul_rn(static_cast<double>(exp_avg_sq[i]), g.beta2),
                                               static_cast<double>(__fmul_rn(__fmul_rn(g.sq_weight, gr), gr))));
  const float denom =
      static_cast<float>(__dadd_rn(static_cast<double>(__fdiv_rn(__fsqrt_rn(v), s.bias_correction2_sqrt)), g.eps));
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(s.neg_step_size, m), denom));
}

__global__ void adamw_kernel(int64_t n, AdamGroup g, AdamStep s, const float* grad_scale, const float* grad,
                             float* param, float* exp_avg, float* exp_avg_sq) {
  const float scale = grad_scale ? grad_scale[0] : 1.0f;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    adam_element(i, g, s, scale, grad, param, exp_avg, exp_avg_sq);
  }
}

__global__ void clip_coefficient_kernel(const float* sum_sq, float max_norm, float* clip_coef) {
  const float total_norm = __fsqrt_rn(sum_sq[0]);
  const float coef = __fdiv_rn(max_norm, __fadd_rn(total_norm, 1e-6f));
  // A NaN coefficient stays NaN, as torch's clamp(max=1) leaves it.
  clip_coef[0] = (coef < 1.0f || isnan(coef)) ? coef : 1.0f;
}

__global__ void nonfinite_flag_kernel(const float* x, float* found_inf) {
  found_inf[0] = isfinite(x[0]) ? 0.0f : 1.0f;
}

// ---- multi-tensor ---------------------------------------------------------------------

constexpr int kMultiThreads = 256;
// Elements per block: large enough that a block's fixed cost is amortised,
// small enough that a 768-float bias (one partial chunk) does not leave the
// grid unbalanced. The norm's chunk also fixes its summation order.
constexpr int64_t kAdamChunk = 8192;
constexpr int64_t kNormChunk = 8192;

struct AdamTensor {  // one row of the device table
  const float* grad;
  float* param;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t n;
  int64_t first_chunk;  // index of this tensor's first block in the grid
  AdamStep step;
};

struct NormTensor {
  const float* x;
  int64_t n;
  int64_t first_chunk;
};

// The row owning block `chunk`: the last one whose first chunk is <= chunk.
// Empty tensors never enter a table, so first chunks strictly increase.
template <typename Row>
__device__ __forceinline__ int find_row(const Row* table, int rows, int64_t chunk) {
  int lo = 0, hi = rows - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_chunk <= chunk) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

__global__ void multi_tensor_adamw_kernel(const AdamTensor* table, int rows, AdamGroup g, const float* grad_scale,
                                          const float* found_inf) {
  // The whole step is skipped on inf/NaN; every block sees the same flag.
  if (found_inf && found_inf[0] != 0.0f) return;
  const float scale = grad_scale ? grad_scale[0] : 1.0f;
  const int64_t chunk = blockIdx.x;
  const AdamTensor t = table[find_row(table, rows, chunk)];
  const int64_t begin = (chunk - t.first_chunk) * kAdamChunk;
  const int64_t end = begin + kAdamChunk < t.n ? begin + kAdamChunk : t.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += kMultiThreads) {
    adam_element(i, g, t.step, scale, t.grad, t.param, t.exp_avg, t.exp_avg_sq);
  }
}

// Stage one: each block's double sum of squares over its chunk; stage two adds
// the chunk sums in one block. Both orders depend only on the sizes.
__global__ void multi_tensor_sum_squares_kernel(const NormTensor* table, int rows, double* partial) {
  const int64_t chunk = blockIdx.x;
  const NormTensor t = table[find_row(table, rows, chunk)];
  const int64_t begin = (chunk - t.first_chunk) * kNormChunk;
  const int64_t end = begin + kNormChunk < t.n ? begin + kNormChunk : t.n;
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kMultiThreads) {
    const double v = static_cast<double>(t.x[i]);
    acc += v * v;
  }
  const double total = cuda::block_sum<kMultiThreads>(acc);
  if (threadIdx.x == 0) partial[chunk] = total;
}

__global__ void multi_tensor_sum_finish_kernel(int64_t chunks, const double* partial, float* out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < chunks; i += kMultiThreads) acc += partial[i];
  const double total = cuda::block_sum<kMultiThreads>(acc);
  if (threadIdx.x == 0) out[0] = static_cast<float>(static_cast<double>(out[0]) + total);
}

// Grid size of a multi-tensor launch, checked against what one launch can address.
unsigned grid_of(int64_t chunks, size_t rows, const char* op) {
  if (chunks > INT32_MAX || rows > static_cast<size_t>(INT32_MAX)) {
    throw Error(std::string("cuda ") + op + ": " + std::to_string(chunks) + " chunks of " + std::to_string(rows) +
                " tensors is larger than one launch's grid");
  }
  return static_cast<unsigned>(chunks);
}

size_t round_up8(size_t bytes) { return (bytes + 7) / 8 * 8; }

}  // namespace

void CudaBackend::adamw_step(int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
                             int64_t step, const float* grad_scale, const float* grad, float* param, float* exp_avg,
                             float* exp_avg_sq) {
  if (n == 0) return;
  const AdamGroup g = adam_group(lr, beta1, beta2, eps, weight_decay);
  const AdamStep s = adam_step(lr, beta1, beta2, step);
  adamw_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, stream_>>>(n, g, s, grad_scale, grad, param, exp_avg,
                                                                    exp_avg_sq);
  cuda::check_launch("adamw_step");
}

void CudaBackend::multi_tensor_adamw(int64_t count, const int64_t* sizes, float* const* params,
                                     const float* const* grads, float* const* exp_avgs, float* const* exp_avg_sqs,
                                     double lr, double beta1, double beta2, double eps, double weight_decay,
                                     const int64_t* steps, const float* grad_scale, const float* found_inf,
                                     uint16_t* const* halves) {
  for (int64_t t = 0; halves && t < count; ++t) {
    if (halves[t]) throw Error("multi_tensor_adamw: the fused bf16 weight copy is a CPU backend feature");
  }
  std::vector<AdamTensor> table;
  table.reserve(static_cast<size_t>(count));
  int64_t chunks = 0;
  for (int64_t t = 0; t < count; ++t) {
    if (sizes[t] == 0) continue;
    table.push_back(AdamTensor{grads[t], params[t], exp_avgs[t], exp_avg_sqs[t], sizes[t], chunks,
                               adam_step(lr, beta1, beta2, steps[t])});
    chunks += (sizes[t] + kAdamChunk - 1) / kAdamChunk;
  }
  if (table.empty()) return;
  const unsigned grid = grid_of(chunks, table.size(), "multi_tensor_adamw");
  const size_t bytes = table.size() * sizeof(AdamTensor);
  cuda::Scratch device_table(*this, bytes);
  // Ordered on the stream before the kernel; the host copy may go at once (see upload()).
  upload(device_table.as<void>(), table.data(), bytes);
  multi_tensor_adamw_kernel<<<grid, kMultiThreads, 0, stream_>>>(device_table.as<AdamTensor>(),
                                                                 static_cast<int>(table.size()),
                                                                 adam_group(lr, beta1, beta2, eps, weight_decay),
                                                                 grad_scale, found_inf);
  cuda::check_launch("multi_tensor_adamw");
}

void CudaBackend::multi_tensor_sum_squares(int64_t count, const int64_t* sizes, const float* const* tensors,
                                           float* out) {
  std::vector<NormTensor> table;
  table.reserve(static_cast<size_t>(count));
  int64_t chunks = 0;
  for (int64_t t = 0; t < count; ++t) {
    if (sizes[t] == 0) continue;
    table.push_back(NormTensor{tensors[t], sizes[t], chunks});
    chunks += (sizes[t] + kNormChunk - 1) / kNormChunk;
  }
  if (table.empty()) return;  // out[0] += 0
  const unsigned grid = grid_of(chunks, table.size(), "multi_tensor_sum_squares");
  // One block from the caching allocator: the table, then one double per chunk.
  const size_t table_bytes = round_up8(table.size() * sizeof(NormTensor));
  cuda::Scratch scratch(*this, table_bytes + static_cast<size_t>(chunks) * sizeof(double));
  upload(scratch.as<void>(), table.data(), table.size() * sizeof(NormTensor));
  double* partial = reinterpret_cast<double*>(scratch.as<char>() + table_bytes);
  multi_tensor_sum_squares_kernel<<<grid, kMultiThreads, 0, stream_>>>(scratch.as<NormTensor>(),
                                                                       static_cast<int>(table.size()), partial);
  cuda::check_launch("multi_tensor_sum_squares (chunks)");
  multi_tensor_sum_finish_kernel<<<1, kMultiThreads, 0, stream_>>>(chunks, partial, out);
  cuda::check_launch("multi_tensor_sum_squares (finish)");
}

// Row-sparse gradients and deferred row updates exist on the CPU backend only
// (the TypeScript layer never asks for them on CUDA, where a dense step is cheap).
void CudaBackend::multi_tensor_sum_squares_rows(int64_t count, const int64_t* sizes, const float* const* tensors,
                                                const int32_t* const* row_marks, const int64_t* /*widths*/,
                                                float* out) {
  for (int64_t t = 0; row_marks && t < count; ++t) {
    if (row_marks[t]) throw Error("multi_tensor_sum_squares_rows: row-sparse tensors are a CPU backend feature");
  }
  multi_tensor_sum_squares(count, sizes, tensors, out);
}

void CudaBackend::adamw_rows(int64_t, int64_t, const int32_t*, int64_t, const int32_t*, int32_t*, int64_t,
                             const double*, float*, const float*, const float*, float*, float*, float*) {
  throw Error("adamw_rows: deferred row updates are a CPU backend feature");
}

void CudaBackend::nonfinite_flag(const float* x, float* found_inf) {
  nonfinite_flag_kernel<<<1, 1, 0, stream_>>>(x, found_inf);
  cuda::check_launch("nonfinite_flag");
}

void CudaBackend::clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) {
  clip_coefficient_kernel<<<1, 1, 0, stream_>>>(sum_sq, max_norm, clip_coef);
  cuda::check_launch("clip_coefficient");
}

}  // namespace bertkit
