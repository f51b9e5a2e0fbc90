// The AMX-BF16 kernel of the bfloat16 GEMM (gemm_bf16.h). Eight tile
// registers of 16 rows x 64 bytes: four hold a 32 x 32 block of C in
// float32, two a 32 x 32 slice of A (rows x depth, bfloat16 pairs), two a
// 32 x 32 slice of B (depth pairs x columns, the "VNNI" layout TDPBF16PS
// reads); each depth step of 32 is four tile products. A is packed row-major
// in pairs [rows][kp], B depth-major [kp][columns], both zero-padded to whole
// tiles, so a tile load is one strided read and no edge needs a mask until
// the float32 block is written to C.
//
// The tile state is per thread: each task loads the configuration and
// releases the tiles when done. Linux grants the state to the process first
// (gemm_bf16.cpp asks once); a CPU with AMX but no grant never gets here.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bertkit/error.h"
#include "gemm_bf16.h"
#include "thread_pool.h"

#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 11)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,fma"))), apply_to = function)
#else
#pragma GCC push_options
// GCC 12 reports the undefined vectors inside its own AVX-512 shuffle intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,fma")
#endif

namespace bertkit {
namespace gemm {
namespace {

#include "gemm_bf16_driver.h"

// The LDTILECFG memory layout (palette 1).
struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Every tile: 16 rows of 64 bytes (16 float32, or 16 bfloat16 pairs).
void configure_tiles() {
  alignas(64) TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

struct Amx {
  static constexpr int64_t kRowBlock = 32;
  static constexpr int64_t kColBlock = 32;
  static constexpr int64_t kPairAlign = 16;
  static constexpr int64_t kRowsPerBlock = 64;  // rows of A packed at a time

  // A packed B panel of up to ~1 MB (an L2 holds 2 MB on these CPUs).
  static int64_t panel_cols(int64_t kp) {
    return std::max<int64_t>(kColBlock, (262144 / std::max<int64_t>(kp, 1)) / kColBlock * kColBlock);
  }
  static int64_t padded(int64_t nc) { return (nc + kColBlock - 1) / kColBlock * kColBlock; }
  static int64_t b_words(int64_t nc, int64_t kp) { return padded(nc) * kp; }

  static void pack_b(const PairSource& b, int64_t j0, int64_t nc, int64_t kp, uint32_t* out) {
    pairs_depth_major(b, j0, nc, 0, kp, padded(nc), out);
  }
  // Parts of a panel: slices of the depth, whole tile rows (16 pairs) each.
  static int64_t pack_parts(int64_t kp) { return std::max<int64_t>(1, std::min<int64_t>(8, kp / 16)); }
  static void pack_b_part(const PairSource& b, int64_t j0, int64_t nc, int64_t kp, int64_t part, int64_t parts,
                          uint32_t* out) {
    const int64_t slices = kp / 16;
    const int64_t q0 = slices * part / parts * 16, q1 = slices * (part + 1) / parts * 16;
    if (q1 > q0) pairs_depth_major(b, j0, nc, q0, q1 - q0, padded(nc), out + q0 * padded(nc));
  }

  // A bfloat16 A whose rows run along the depth, with a depth of whole tiles
  // (no zero pair to pad), already is row-major pairs: rows() reads whole
  // blocks of 32 rows in place (a last partial block is packed).
  static bool reads_a_in_place(const Bf16Problem& p) { return !p.a_f32 && !p.trans_a && p.k % 32 == 0; }

  static WordBuffer& a_buffer() {
    static thread_local WordBuffer buf;
    return buf;
  }

  static void rows(const Bf16Problem& p, const PairSource& a, int64_t i0, int64_t i1, const uint32_t* bpanel,
                   int64_t j0, int64_t nc, int64_t kp, float* c) {
    const int64_t ncp = padded(nc);
    uint32_t* apack = a_buffer().get(static_cast<size_t>(kRowsPerBlock * kp));
    alignas(64) float block[32 * 32];
    const int64_t b_stride = ncp * 4;
    const bool in_place = reads_a_in_place(p);
    // alpha 1, beta 0, no bias: the tiles are the result, stored straight into C.
    const bool plain = p.alpha == 1.f && p.beta == 0.f && !p.stream_c;
    configure_tiles();
    for (int64_t ib = i0; ib < i1; ib += kRowsPerBlock) {
      const int64_t mc = std::min<int64_t>(kRowsPerBlock, i1 - ib);
      const int64_t mcp = (mc + 31) / 32 * 32;
      const int64_t direct = in_place ? mc / 32 * 32 : 0;
      if (direct < mc) {
        pairs_row_major(a, ib + direct, mc - direct, 0, (p.k + 1) / 2, kp, apack);
        if (mcp > mc) std::memset(apack + (mc - direct) * kp, 0, static_cast<size_t>((mcp - mc) * kp) * sizeof(uint32_t));
      }
      for (int64_t r = 0; r < mcp; r += 32) {
        const uint32_t* a0 = r < direct ? static_cast<const uint32_t*>(a.base) + (ib + r) * a.ld / 2 : apack + (r - direct) * kp;
        const int64_t a_stride = r < direct ? a.ld * 2 : kp * 4;
        const uint32_t* a1 = a0 + 16 * a_stride / 4;
        const int64_t rows = std::min<int64_t>(32, mc - r);
        for (int64_t cb = 0; cb < ncp; cb += 32) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
          // Each load but the first goes in while the previous product runs.
          // B tiles load with the T1 hint (TILELOADDT1), as the benchmarks of
          // 2026-12-07 ran; plain loads measured the same (the step's 108
          // products, 2 threads: 42.8 against 42.6 ms, mean of 3 interleaved).
          for (int64_t q = 0; q < kp; q += 16) {
            _tile_loadd(4, a0 + q, a_stride);
            _tile_stream_loadd(6, bpanel + q * ncp + cb, b_stride);
            _tile_dpbf16ps(0, 4, 6);
            _tile_stream_loadd(7, bpanel + q * ncp + cb + 16, b_stride);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, a1 + q, a_stride);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
          const int64_t cols = std::min<int64_t>(32, nc - cb);
          float* out = c + (ib + r) * p.n + j0 + cb;
          const float* bias = p.bias ? p.bias + j0 + cb : nullptr;
          // A bias goes through the block below: C is written once, the tiles' float32
          // sums and the bias row read back from L1 (measured faster than storing the
          // tiles into C and adding the bias there, and no slower than a full-block copy loop).
          // So do streamed stores (tiles have no non-temporal store).
          if (plain && !bias && rows == 32 && cols == 32) {
            _tile_stored(0, out, p.n * 4);
            _tile_stored(1, out + 16, p.n * 4);
            _tile_stored(2, out + 16 * p.n, p.n * 4);
            _tile_stored(3, out + 16 * p.n + 16, p.n * 4);
            continue;
          }
          _tile_stored(0, block, 128);
          _tile_stored(1, block + 16, 128);
          _tile_stored(2, block + 16 * 32, 128);
          _tile_stored(3, block + 16 * 32 + 16, 128);
          for (int64_t i = 0; i < rows; ++i) {
            store_row(out + i * p.n, block + i * 32, cols, p.alpha, p.beta, bias, p.stream_c);
          }
        }
      }
    }
    _tile_release();
    end_task(p);
  }
};

}  // namespace

void bf16_gemm_amx(const Bf16Problem& p) { Bf16Driver<Amx>::run(p); }

}  // namespace gemm
}  // namespace bertkit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#elif defined(__x86_64__)

// A compiler without AMX intrinsics: the path is never selected (gemm_bf16.cpp).
namespace bertkit {
namespace gemm {
void bf16_gemm_amx(const Bf16Problem&) { throw Error("gemm (bf16): this build has no AMX kernel"); }
}  // namespace gemm
}  // namespace bertkit

#endif
