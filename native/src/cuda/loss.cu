// Cross-entropy over logits [rows, classes] with integer labels, with
// torch.nn.functional.cross_entropy's reduction="mean" semantics, as in
// cpu/loss.cpp (read its header for the formulas):
//   loss = sum_i w[y_i] * nll_i / sum_i w[y_i]   over rows with y_i != ignore_index
// Everything stays on the device, the weight total included, so neither
// direction waits for the host: dloss is read by the kernel.
//
// One warp per row for the softmax statistics (max in float, sum of
// exp(x - max) in double, as the CPU), and one block adds the per-row terms
// as a fixed tree, so results are the same on every run.
#include <cmath>

#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

constexpr int kRowsPerBlock = cuda::kThreads / cuda::kWarpSize;
constexpr int kReduceThreads = 256;

struct RowSoftmax {
  float max;
  double sum;  // sum_c exp(x_c - max), >= 1
};

// Every lane of the warp gets the same statistics.
__device__ RowSoftmax row_softmax_stats(int lane, int64_t classes, const float* x) {
  float max = -INFINITY;
  for (int64_t c = lane; c < classes; c += cuda::kWarpSize) max = fmaxf(max, x[c]);
  max = cuda::warp_max(max);
  double sum = 0.0;
  for (int64_t c = lane; c < classes; c += cuda::kWarpSize) sum += exp(static_cast<double>(x[c]) - max);
  return {max, cuda::warp_sum(sum)};
}

__device__ __forceinline__ float class_weight(const float* weights, int32_t label) {
  return weights ? weights[label] : 1.0f;
}

// weighted_nll[r] = w[y] * nll_r and weight[r] = w[y], both 0 for an ignored row.
__global__ void cross_entropy_rows_kernel(int64_t rows, int64_t classes, const float* logits, const int32_t* labels,
                                          int32_t ignore_index, const float* class_weights, double* weighted_nll,
                                          double* weight) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t r = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (r >= rows) return;
  const int32_t y = labels[r];
  if (y == ignore_index) {
    if (lane == 0) weighted_nll[r] = weight[r] = 0.0;
    return;
  }
  const float* x = logits + r * classes;
  const RowSoftmax s = row_softmax_stats(lane, classes, x);
  if (lane == 0) {
    const double nll = log(s.sum) - (static_cast<double>(x[y]) - s.max);
    const float w = class_weight(class_weights, y);
    weighted_nll[r] = static_cast<double>(w) * nll;
    weight[r] = static_cast<double>(w);
  }
}

// loss[0] = sum(weighted_nll) / sum(weight): 0 / 0 = NaN when every row is ignored, as torch.
__global__ void cross_entropy_total_kernel(int64_t rows, const double* weighted_nll, const double* weight,
                                           float* loss) {
  double numerator = 0.0, denominator = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kReduceThreads) {
    numerator += weighted_nll[r];
    denominator += weight[r];
  }
  numerator = cuda::block_sum<kReduceThreads>(numerator);
  denominator = cuda::block_sum<kReduceThreads>(denominator);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(numerator / denominator);
}

// per_unit[0] = dloss[0] / sum of kept rows' weights, rounded to float as the CPU does.
__global__ void cross_entropy_scale_kernel(int64_t rows, const int32_t* labels, int32_t ignore_index,
                                           const float* class_weights, const float* dloss, float* per_unit) {
  double denominator = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kReduceThreads) {
    const int32_t y = labels[r];
    if (y != ignore_index) denominator += static_cast<double>(class_weight(class_weights, y));
  }
  denominator = cuda::block_sum<kReduceThreads>(denominator);
  if (threadIdx.x == 0) per_unit[0] = static_cast<float>(static_cast<double>(dloss[0]) / denominator);
}

// dlogits[r, c] += w[y] * per_unit * (softmax_c - [c == y]); ignored rows get nothing.
__global__ void cross_entropy_backward_kernel(int64_t rows, int64_t classes, const float* logits,
                                              const int32_t* labels, int32_t ignore_index, const float* class_weights,
                                              const float* per_unit, float* dlogits) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t r = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (r >= rows) return;
  const int32_t y = labels[r];
  if (y == ignore_index) return;
  const float* x = logits + r * classes;
  float* dx = dlogits + r * classes;
  const RowSoftmax s = row_softmax_stats(lane, classes, x);
  const float coef = __fmul_rn(class_weight(class_weights, y), per_unit[0]);
  const double inv_sum = 1.0 / s.sum;
  for (int64_t c = lane; c < classes; c += cuda::kWarpSize) {
    const double softmax = exp(static_cast<double>(x[c]) - s.max) * inv_sum;
    const float g = static_cast<float>(softmax - (c == y ? 1.0 : 0.0));
    dx[c] = __fadd_rn(dx[c], __fmul_rn(coef, g));
  }
}

unsigned row_blocks(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > INT32_MAX) throw Error("cuda cross_entropy: " + std::to_string(rows) + " rows is larger than the grid");
  return static_cast<unsigned>(blocks);
}

}  // namespace

void CudaBackend::cross_entropy_forward(int64_t rows, int64_t classes, const float* logits, const int32_t* labels,
                                        int32_t ignore_index, const float* class_weights, float* loss) {
  if (rows == 0) {
    // No rows: 0 / 0, as torch's mean over an empty batch.
    fill(loss, 1, NAN);
    return;
  }
  cuda::Scratch weighted_nll(*this, static_cast<size_t>(rows) * sizeof(double));
  cuda::Scratch weight(*this, static_cast<size_t>(rows) * sizeof(double));
  cross_entropy_rows_kernel<<<row_blocks(rows), cuda::kThreads, 0, stream_>>>(
      rows, classes, logits, labels, ignore_index, class_weights, weighted_nll.as<double>(), weight.as<double>());
  cuda::check_launch("cross_entropy_forward (rows)");
  cross_entropy_total_kernel<<<1, kReduceThreads, 0, stream_>>>(rows, weighted_nll.as<double>(), weight.as<double>(),
                                                                 loss);
  cuda::check_launch("cross_entropy_forward (total)");
}

void CudaBackend::cross_entropy_backward(int64_t rows, int64_t classes, const float* logits, const int32_t* labels,
                                         int32_t ignore_index, const float* class_weights, const float* dloss,
                                         float* dlogits) {
  if (rows == 0) return;
  cuda::Scratch per_unit(*this, sizeof(float));
  cross_entropy_scale_kernel<<<1, kReduceThreads, 0, stream_>>>(rows, labels, ignore_index, class_weights, dloss,
                                                                 per_unit.as<float>());
  cuda::check_launch("cross_entropy_backward (scale)");
  cross_entropy_backward_kernel<<<row_blocks(rows), cuda::kThreads, 0, stream_>>>(
      rows, classes, logits, labels, ignore_index, class_weights, per_unit.as<float>(), dlogits);
  cuda::check_launch("cross_entropy_backward");
}

}  // namespace bertkit
