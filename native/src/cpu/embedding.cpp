// Embedding lookup of the CPU backend: a row gather forward, a scatter-add
// backward. ids were range-checked by the Node-API layer before reaching here.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

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

void CpuBackend::embedding_backward(int64_t n, int64_t dim, int64_t /*vocab*/, int64_t padding_idx,
                                    const int32_t* ids, const float* dout, float* dtable) {
  if (dim == 0 || n == 0) return;
  // Repeated ids (padding, [CLS], common words) hit the same table row: a batch
  // of 16 x 512 can send a thousand tokens to the padding row. Tokens are
  // grouped by id (stable, so token order is kept within an id), each group is
  // summed in double and added to its row once, so the row sees one rounding
  // instead of a thousand.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [ids](int64_t a, int64_t b) { return ids[a] < ids[b]; });

  // Threads own disjoint column slices of every row, so no two ever write the
  // same element (the padding row's group cannot be split by tokens without
  // racing), and the result is the same for every thread count.
  int64_t grain = std::max(kMinColumnsPerThread, kGrain / n);
  ThreadPool::instance().parallel_for(dim, grain, [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<double> acc(static_cast<size_t>(width));
    for (int64_t first = 0; first < n;) {
      const int32_t id = ids[order[first]];
      std::fill(acc.begin(), acc.end(), 0.0);
      int64_t k = first;
      if (id == padding_idx) {
        while (k < n && ids[order[k]] == id) ++k;  // the padding row gets no gradient
        first = k;
        continue;
      }
      for (; k < n && ids[order[k]] == id; ++k) {
        const float* from = dout + order[k] * dim + c0;
        for (int64_t c = 0; c < width; ++c) acc[c] += static_cast<double>(from[c]);
      }
      float* to = dtable + static_cast<int64_t>(id) * dim + c0;
      for (int64_t c = 0; c < width; ++c) to[c] = static_cast<float>(static_cast<double>(to[c]) + acc[c]);
      first = k;
    }
  });
}

}  // namespace bertkit
