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

namespace {

// The scatter-add of both backward ops. fresh_row (null: none) is indexed by
// the position of a token's group in the sorted order: true when its row holds
// garbage and is written instead of added to.
void scatter_rows(int64_t n, int64_t dim, int64_t padding_idx, const int32_t* ids, const float* dout, float* dtable,
                  const std::vector<int64_t>& order, const std::vector<char>* fresh_row) {
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
      if (fresh_row && (*fresh_row)[static_cast<size_t>(first)]) {
        // 0.0 + acc, not acc: a zero-filled row would turn a -0 sum into +0.
        for (int64_t c = 0; c < width; ++c) to[c] = static_cast<float>(0.0 + acc[c]);
      } else {
        for (int64_t c = 0; c < width; ++c) to[c] = static_cast<float>(static_cast<double>(to[c]) + acc[c]);
      }
      first = k;
    }
  });
}

// Token positions grouped by id (stable, so token order is kept within an id).
std::vector<int64_t> sorted_by_id(int64_t n, const int32_t* ids) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [ids](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  return order;
}

}  // namespace

void CpuBackend::embedding_backward(int64_t n, int64_t dim, int64_t /*vocab*/, int64_t padding_idx,
                                    const int32_t* ids, const float* dout, float* dtable) {
  if (dim == 0 || n == 0) return;
  // Repeated ids (padding, [CLS], common words) hit the same table row: a batch
  // of 16 x 512 can send a thousand tokens to the padding row. Tokens are
  // grouped by id, each group is summed in double and added to its row once,
  // so the row sees one rounding instead of a thousand.
  scatter_rows(n, dim, padding_idx, ids, dout, dtable, sorted_by_id(n, ids), nullptr);
}

void CpuBackend::embedding_backward_rows(int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx,
                                         const int32_t* ids, const float* dout, float* dtable, int32_t* row_marks,
                                         bool marks_fresh) {
  // A batch reaches a few hundred rows of a 30k-row table: clearing the marks
  // costs 4 bytes a row where zero-filling the gradient cost 4 * dim.
  if (marks_fresh) std::memset(row_marks, 0, static_cast<size_t>(vocab) * sizeof(int32_t));
  if (dim == 0 || n == 0) return;
  const std::vector<int64_t> order = sorted_by_id(n, ids);
  // Which groups meet an unmarked row is decided before the threads start, and
  // the marks are set after, since every thread visits every group.
  std::vector<char> fresh_row(static_cast<size_t>(n), 0);
  for (int64_t k = 0; k < n; ++k) {
    const int32_t id = ids[order[k]];
    if (id != padding_idx && !row_marks[id]) fresh_row[static_cast<size_t>(k)] = 1;
  }
  scatter_rows(n, dim, padding_idx, ids, dout, dtable, order, &fresh_row);
  for (int64_t k = 0; k < n; ++k) {
    const int32_t id = ids[order[k]];
    if (id != padding_idx) row_marks[id] = 1;
  }
}

void CpuBackend::zero_unmarked_rows(int64_t rows, int64_t width, const int32_t* row_marks, float* x) {
  if (width == 0) return;
  int64_t grain = std::max<int64_t>(1, kGrain / width);
  ThreadPool::instance().parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (!row_marks[r]) std::memset(x + r * width, 0, static_cast<size_t>(width) * sizeof(float));
    }
  });
}

}  // namespace bertkit
