// Picking columns by index along the last dimension (torch.gather(x, -1,
// index) with the index broadcast over the leading batch dimension), and its
// scatter-add backward. DeBERTa gathers its content-to-position and
// position-to-content scores with it: row s of every batch entry picks the
// columns index[s, :] (relative-position buckets).
#include <algorithm>
#include <vector>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 32768;  // elements per thread worth a wake-up

}  // namespace

void CpuBackend::gather_columns_forward(int64_t batch, int64_t rows, int64_t width, int64_t picks,
                                        const float* x, const int32_t* index, float* out) {
  if (batch * rows * picks == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, picks));
  ThreadPool::instance().parallel_for(batch * rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t s = row % rows;
      const float* from = x + row * width;
      const int32_t* idx = index + s * picks;
      float* to = out + row * picks;
      for (int64_t t = 0; t < picks; ++t) to[t] = from[idx[t]];
    }
  });
}

void CpuBackend::gather_columns_backward(int64_t batch, int64_t rows, int64_t width, int64_t picks,
                                         const int32_t* index, const float* dout, float* dx) {
  if (batch * rows * picks == 0) return;
  // A (batch, row) pair is one thread's, whole: no other thread touches that
  // row of dx. Clamped relative positions send hundreds of picks to the same
  // column, so each column's picks are summed in double, in order t = 0, 1,
  // ..., and added to dx once.
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, picks));
  ThreadPool::instance().parallel_for(batch * rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(width));
    std::vector<char> touched(static_cast<size_t>(width));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t s = row % rows;
      const float* from = dout + row * picks;
      const int32_t* idx = index + s * picks;
      float* to = dx + row * width;
      std::fill(acc.begin(), acc.end(), 0.0);
      std::fill(touched.begin(), touched.end(), 0);
      for (int64_t t = 0; t < picks; ++t) {
        acc[idx[t]] += static_cast<double>(from[t]);
        touched[idx[t]] = 1;
      }
      for (int64_t w = 0; w < width; ++w) {
        if (touched[w]) to[w] = static_cast<float>(static_cast<double>(to[w]) + acc[w]);
      }
    }
  });
}

}  // namespace bertkit
