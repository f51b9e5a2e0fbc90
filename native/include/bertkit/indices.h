// The range check applied to integer indices (token ids, labels, gather
// indices) before any memory is read with them, by the Node-API layer on its
// host copy and by the backends on theirs.
#pragma once

#include <cstdint>
#include <string>

#include "bertkit/error.h"

namespace bertkit {

// Throws Error("<what>[i] = v is out of range [0, limit)") for the first index
// outside [0, limit); ignore_index is skipped when allow_ignore.
inline void check_index_range(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                              int32_t ignore_index, const std::string& what) {
  for (int64_t i = 0; i < n; ++i) {
    int32_t v = indices[i];
    if (allow_ignore && v == ignore_index) continue;
    if (v < 0 || v >= limit) {
      throw Error(what + "[" + std::to_string(i) + "] = " + std::to_string(v) + " is out of range [0, " +
                  std::to_string(limit) + ")");
    }
  }
}

}  // namespace bertkit
