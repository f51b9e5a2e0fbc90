// Cross-entropy over logits [rows, classes] with integer labels, fp32, with
// torch.nn.functional.cross_entropy's semantics for reduction="mean":
//
//   loss = sum_i w[y_i] * nll_i / sum_i w[y_i]     over rows with y_i != ignore_index
//   nll_i = logsumexp(x_i) - x_i[y_i]
//
// w = 1 without class weights, so the denominator is the count of rows kept.
// When every row is ignored (or the kept weights sum to 0) the loss is 0/0 =
// NaN, exactly as torch returns; backward then adds nothing for ignored rows,
// as torch's does.
//
// Per-row terms are computed in parallel into a buffer and summed in row
// order on one thread, so the loss does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

// Rows per task: enough logits that a thread's wake-up is worth it.
int64_t row_grain(int64_t classes) { return std::max<int64_t>(1, 16384 / classes); }

struct RowSoftmax {
  float max;
  double sum;  // sum_c exp(x_c - max), >= 1
};

// The shift by the row max keeps every exp() in (0, 1]; the sum in double
// keeps log(sum) accurate for wide rows.
RowSoftmax row_softmax_stats(int64_t classes, const float* x) {
  float max = x[0];
  for (int64_t c = 1; c < classes; ++c) max = std::max(max, x[c]);
  double sum = 0.0;
  for (int64_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(x[c]) - max);
  return {max, sum};
}

float class_weight(const float* weights, int32_t label) { return weights ? weights[label] : 1.0f; }

}  // namespace

void CpuBackend::cross_entropy_forward(int64_t rows, int64_t classes, const float* logits,
                                       const int32_t* labels, int32_t ignore_index,
                                       const float* class_weights, float* loss) {
  std::vector<double> weighted_nll(static_cast<size_t>(rows), 0.0);
  ThreadPool::instance().parallel_for(rows, row_grain(classes), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int32_t y = labels[r];
      if (y == ignore_index) continue;
      const float* x = logits + r * classes;
      const RowSoftmax s = row_softmax_stats(classes, x);
      const double nll = std::log(s.sum) - (static_cast<double>(x[y]) - s.max);
      weighted_nll[static_cast<size_t>(r)] = class_weight(class_weights, y) * nll;
    }
  });
  double numerator = 0.0, denominator = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] == ignore_index) continue;
    numerator += weighted_nll[static_cast<size_t>(r)];
    denominator += class_weight(class_weights, labels[r]);
  }
  loss[0] = static_cast<float>(numerator / denominator);
}

void CpuBackend::cross_entropy_backward(int64_t rows, int64_t classes, const float* logits,
                                        const int32_t* labels, int32_t ignore_index,
                                        const float* class_weights, const float* dloss,
                                        float* dlogits) {
  double denominator = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    if (labels[r] != ignore_index) denominator += class_weight(class_weights, labels[r]);
  }
  // torch forms dloss / total_weight first and multiplies each row by its
  // class weight; with a zero total weight that gives NaN rows, as here.
  const float per_unit_weight = static_cast<float>(dloss[0] / denominator);
  ThreadPool::instance().parallel_for(rows, row_grain(classes), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int32_t y = labels[r];
      if (y == ignore_index) continue;
      const float* x = logits + r * classes;
      float* dx = dlogits + r * classes;
      const RowSoftmax s = row_softmax_stats(classes, x);
      const float coef = class_weight(class_weights, y) * per_unit_weight;
      const double inv_sum = 1.0 / s.sum;
      for (int64_t c = 0; c < classes; ++c) {
        const double softmax = std::exp(static_cast<double>(x[c]) - s.max) * inv_sum;
        dx[c] += coef * static_cast<float>(softmax - (c == y ? 1.0 : 0.0));
      }
    }
  });
}

}  // namespace bertkit
