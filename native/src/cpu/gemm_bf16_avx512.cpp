// The AVX512-BF16 kernel of the bfloat16 GEMM (gemm_bf16.h): VDPBF16PS adds,
// per float32 lane, the two products of a pair of bfloat16s. An 8 x 48
// micro-tile of C stays in 24 zmm accumulators; each depth pair loads three
// vectors of packed B (48 columns' pairs) and broadcasts one packed A word
// per row, as the float32 driver's 8 x 48 tile does with floats.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "bertkit/error.h"
#include "gemm_bf16.h"
#include "thread_pool.h"

// AVX512-BF16 intrinsics: GCC 10, clang 9.
#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 10)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma"))), apply_to = function)
#else
#pragma GCC push_options
// GCC 12 reports the undefined vectors inside its own AVX-512 shuffle intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,fma")
#endif

namespace bertkit {
namespace gemm {
namespace {

#include "gemm_bf16_driver.h"

struct Avx512Bf16 {
  static constexpr int MR = 8;
  static constexpr int NV = 3;
  static constexpr int NR = 16 * NV;
  static constexpr int64_t kRowBlock = MR;
  static constexpr int64_t kColBlock = NR;
  static constexpr int64_t kPairAlign = 1;
  static constexpr int64_t kRowsPerBlock = 96;  // rows of A packed at a time (12 panels)

  static bool reads_a_in_place(const Bf16Problem&) { return false; }

  // A packed B panel of up to ~512 KB, half of a 1 MB L2.
  static int64_t panel_cols(int64_t kp) {
    return std::max<int64_t>(NR, (131072 / std::max<int64_t>(kp, 1)) / NR * NR);
  }
  static int64_t b_words(int64_t nc, int64_t kp) { return (nc + NR - 1) / NR * NR * kp; }

  // Panels of NR columns, each kp rows of NR words.
  static void pack_b(const PairSource& b, int64_t j0, int64_t nc, int64_t kp, uint32_t* out) {
    for (int64_t jp = 0; jp < nc; jp += NR) {
      pairs_depth_major(b, j0 + jp, std::min<int64_t>(NR, nc - jp), 0, kp, NR, out + jp * kp);
    }
  }
  // Parts of a panel: runs of whole NR-column panels.
  static int64_t pack_parts(int64_t) { return 8; }
  static void pack_b_part(const PairSource& b, int64_t j0, int64_t nc, int64_t kp, int64_t part, int64_t parts,
                          uint32_t* out) {
    const int64_t np = (nc + NR - 1) / NR;
    for (int64_t pi = np * part / parts; pi < np * (part + 1) / parts; ++pi) {
      const int64_t jp = pi * NR;
      pairs_depth_major(b, j0 + jp, std::min<int64_t>(NR, nc - jp), 0, kp, NR, out + jp * kp);
    }
  }

  template <int NVA>
  static void micro_kernel(int64_t kp, const uint32_t* __restrict ap, const uint32_t* __restrict bp, float* c,
                           int64_t ldc, int mr, int nr, float alpha, float beta, const float* bias, bool stream) {
    __m512 acc[MR][NVA];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NVA; ++j) acc[i][j] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kp; ++q) {
      __m512bh b[NVA];
      for (int j = 0; j < NVA; ++j) b[j] = (__m512bh)_mm512_load_si512(bp + q * NR + 16 * j);
      for (int i = 0; i < MR; ++i) {
        const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[q * MR + i]));
        for (int j = 0; j < NVA; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, b[j]);
      }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; ++i) {
      float* row = c + i * ldc;
      for (int j = 0; j < NVA; ++j) {
        const int64_t cols = nr - 16 * j;
        if (cols <= 0) break;
        const __mmask16 mask = first_words(cols);
        __m512 r = _mm512_mul_ps(va, acc[i][j]);
        if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, row + 16 * j), r);
        // The bias last, in its own rounding: the bits of a separate add_bias_rows.
        if (bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, bias + 16 * j));
        store_lanes(row + 16 * j, mask, r, stream);
      }
    }
  }

  static void tile(int64_t kp, const uint32_t* ap, const uint32_t* bp, float* c, int64_t ldc, int mr, int nr,
                   float alpha, float beta, const float* bias, bool stream) {
    if (nr <= 16) micro_kernel<1>(kp, ap, bp, c, ldc, mr, nr, alpha, beta, bias, stream);
    else if (nr <= 32) micro_kernel<2>(kp, ap, bp, c, ldc, mr, nr, alpha, beta, bias, stream);
    else micro_kernel<3>(kp, ap, bp, c, ldc, mr, nr, alpha, beta, bias, stream);
  }

  static WordBuffer& a_buffer() {
    static thread_local WordBuffer buf;
    return buf;
  }

  static void rows(const Bf16Problem& p, const PairSource& a, int64_t i0, int64_t i1, const uint32_t* bpanel,
                   int64_t j0, int64_t nc, int64_t kp, float* c) {
    uint32_t* apack = a_buffer().get(static_cast<size_t>(kRowsPerBlock * kp));
    for (int64_t ib = i0; ib < i1; ib += kRowsPerBlock) {
      const int64_t mc = std::min<int64_t>(kRowsPerBlock, i1 - ib);
      for (int64_t ip = 0; ip < mc; ip += MR) {
        pairs_depth_major(a, ib + ip, std::min<int64_t>(MR, mc - ip), 0, kp, MR, apack + ip * kp);
      }
      for (int64_t ip = 0; ip < mc; ip += MR) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ip));
        for (int64_t jp = 0; jp < nc; jp += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jp));
          tile(kp, apack + ip * kp, bpanel + jp * kp, c + (ib + ip) * p.n + j0 + jp, p.n, mr, nr, p.alpha, p.beta,
               p.bias ? p.bias + j0 + jp : nullptr, p.stream_c);
        }
      }
    }
    end_task(p);
  }
};

}  // namespace

void bf16_gemm_avx512(const Bf16Problem& p) { Bf16Driver<Avx512Bf16>::run(p); }

}  // namespace gemm
}  // namespace bertkit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#elif defined(__x86_64__)

// A compiler without AVX512-BF16 intrinsics: the path is never selected (gemm_bf16.cpp).
namespace bertkit {
namespace gemm {
void bf16_gemm_avx512(const Bf16Problem&) { throw Error("gemm (bf16): this build has no AVX512-BF16 kernel"); }
}  // namespace gemm
}  // namespace bertkit

#endif
