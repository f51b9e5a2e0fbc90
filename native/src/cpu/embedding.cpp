// Embedding lookup of the CPU backend: a row gather forward, a scatter-add
// backward. ids were range-checked by the Node-API layer before reaching here.
#include <algorithm>
#include <cstring>

#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

constexpr int64_t kGrain = 32768;  // elements per thread worth a wake-up

// Backward splits the embedding dimension among threads. A slice narrower than
// a few cache lines would have threads writing to the same lines of a row.
constexpr int64_t kMinColumnsPerThread = 64;

}  // namespace

void CpuBackend::embedding_forward(int64_t n, int64_t dim, const int32_t* ids, const float* table,
                                   float* out) {
  if (dim == 0) return;
  int64_t grain = std::max<int64_t>(1, kGrain / dim);
  ThreadPool::instance().parallel_for(n, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      std::memcpy(out + i * dim, table + static_cast<int64_t>(ids[i]) * dim,
                  static_cast<size_t>(dim) * sizeof(float));
    }
  });
}

void CpuBackend::embedding_backward(int64_t n, int64_t dim, int64_t /*vocab*/, const int32_t* ids,
                                    const float* dout, float* dtable) {
  if (dim == 0 || n == 0) return;
  // Repeated ids (padding, [CLS], common words) hit the same table row, so the
  // tokens cannot be split among threads. Each thread instead owns a slice of
  // columns of every row and walks all tokens in order: no two threads ever
  // touch the same element, and each element sums its tokens in token order,
  // whatever the thread count.
  int64_t grain = std::max(kMinColumnsPerThread, kGrain / n);
  ThreadPool::instance().parallel_for(dim, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; ++i) {
      float* to = dtable + static_cast<int64_t>(ids[i]) * dim;
      const float* from = dout + i * dim;
      for (int64_t c = c0; c < c1; ++c) to[c] += from[c];
    }
  });
}

}  // namespace bertkit
