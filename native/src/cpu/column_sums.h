// Column sums of a [rows, cols] float32 matrix, as sum_rows takes them, with
// a pass over each row segment on the way (a cast, an activation's
// gradient): threads own column ranges and each column is summed over the
// rows in order, in double, so the result does not depend on the thread
// count and every op built on this gives sum_rows' bits. A thread takes its
// whole range of a row at once; the segment function prefetches the next
// row where the matrix comes from memory (a cold matrix walked down in short
// runs defeats the hardware prefetchers).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "thread_pool.h"

namespace bertkit {

// segment(r, c0, width) does the pass over row r's columns [c0, c0 + width)
// and returns those columns' values to sum. sums (null: none taken) become
// (write_sums ? 0 : sums) + the column totals, in double, rounded once.
template <class Segment>
void for_column_ranges(int64_t rows, int64_t cols, int64_t grain, float* sums, bool write_sums, Segment segment) {
  if (cols == 0) return;
  const int64_t grain_cols = std::max<int64_t>(16, grain / std::max<int64_t>(rows, 1));
  ThreadPool::instance().parallel_for(cols, grain_cols, [&](int64_t c0, int64_t c1) {
    const int64_t width = c1 - c0;
    std::vector<double> acc(sums ? static_cast<size_t>(width) : 0, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* values = segment(r, c0, width);
      if (sums) {
        for (int64_t c = 0; c < width; ++c) acc[c] += static_cast<double>(values[c]);
      }
    }
    if (sums) {
      for (int64_t c = 0; c < width; ++c) {
        sums[c0 + c] = static_cast<float>((write_sums ? 0.0 : static_cast<double>(sums[c0 + c])) + acc[c]);
      }
    }
  });
}

// Asks for the cache lines of n floats from p on.
inline void prefetch_floats(const float* p, int64_t n) {
  for (int64_t c = 0; c < n; c += 16) __builtin_prefetch(p + c);
}

}  // namespace bertkit
