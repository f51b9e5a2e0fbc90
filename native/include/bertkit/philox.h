// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a counter-based generator, so element i's random number depends
// only on (seed, offset + i). The CPU and CUDA backends include this same code
// and therefore draw identical dropout masks.
#pragma once

#include <cstdint>

#include "bertkit/dtype.h"

namespace bertkit {

struct Philox4 {
  uint32_t v[4];
};

BERTKIT_HD inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                        uint32_t k0, uint32_t k1) {
  const uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  const uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform float in [0, 1) for flat element `index` of a draw keyed by (seed, offset).
// Four consecutive elements share one Philox block.
BERTKIT_HD inline float philox_uniform(uint64_t seed, uint64_t offset, uint64_t index) {
  uint64_t counter = offset + (index >> 2);
  Philox4 r = philox4x32_10(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u,
                            0u, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(r.v[index & 3] >> 8) * (1.0f / 16777216.0f);
}

// Dropout keeps an element when its uniform draw is >= p.
BERTKIT_HD inline bool philox_keep(uint64_t seed, uint64_t offset, uint64_t index, float p) {
  return philox_uniform(seed, offset, index) >= p;
}

}  // namespace bertkit
