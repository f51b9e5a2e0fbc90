// Multi-head scaled dot-product attention over a padded batch, fp32.
//
// q, k, v and out are [batch, seq, heads * head_dim], the layout the Q/K/V
// Linear layers produce: head h of token i is the contiguous slice
// [h * head_dim, (h + 1) * head_dim) of row i, so no transpose to
// [batch, heads, seq, head_dim] is needed. Every (batch, head) pair is
// independent and is handled whole by one thread in a fixed order, so the
// results are bit-identical for any thread count.
//
// Forward, for one pair and query row i:
//   s_j   = scale * <q_i, k_j> + bias_j      bias_j = 0, or -FLT_MAX for a padded key j
//   P_i   = softmax(s)                        saved in probs, before dropout
//   out_i = sum_j D_ij v_j                    D = P * keep / (1 - p)
// For a query row whose keys are all padded every s_j rounds to exactly
// -FLT_MAX (the scores are far below its ulp), so the softmax is uniform, as
// in transformers, rather than 0/0.
//
// Backward, for one pair:
//   dV += Dᵀ dO
//   dP  = (dO Vᵀ) * keep / (1 - p)
//   dS  = P * (dP - rowsum(P * dP))          softmax backward
//   dQ += scale * dS K,   dK += scale * dSᵀ Q
// As in torch's autograd, the mask bias is a constant added to the scores, so
// a fully padded row still passes gradient through the softmax Jacobian at its
// uniform probabilities (a finite difference of the rounded forward sees 0).
//
// The per-pair products go through the small register-blocked matmul below,
// not Backend::gemm: a head's slice has row stride heads * head_dim, which
// gemm's contiguous operands cannot express without a copy, and at BERT's
// sequence lengths one gemm call per pair would cost more than its product.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "attention_kernels.h"
#include "bertkit/philox.h"
#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

// The product loops below are plain C++ that the compiler vectorises. The
// library is built for baseline x86-64 (SSE2), so where the toolchain offers
// function multiversioning (an ifunc resolver, hence glibc) they are also
// compiled for x86-64-v3 (AVX2 + FMA) and x86-64-v4 (AVX-512), and the loader
// picks the clone the CPU runs: v3 made attention backward 1.6x and forward
// 1.2x faster on one thread; v4, whose 16-float registers hold a whole
// 16-column tile row, another 1.5x both ways on Zen 5. Every clone sums each
// element in the same order; only FMA contraction (which the default clone
// lacks) can change its rounding.
#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && __GNUC__ >= 12))
#define BERTKIT_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BERTKIT_VECTOR_CLONES
#endif

// The shape of one call, and where a pair's head slices live.
struct Geometry {
  int64_t batch, seq, heads, head_dim;
  int64_t hidden() const { return heads * head_dim; }
  int64_t pairs() const { return batch * heads; }
  // Offset of token 0, head h of batch row b in a [batch, seq, hidden] tensor.
  int64_t head_offset(int64_t pair) const {
    return (pair / heads) * seq * hidden() + (pair % heads) * head_dim;
  }
  // Offset of the pair's [seq, seq] block in probs.
  int64_t probs_offset(int64_t pair) const { return pair * seq * seq; }
};

}  // namespace

// The products, packing and dropout draws below are shared with
// flash_attention.cpp (declared in attention_kernels.h).
namespace attention_detail {

// C[i, j] = sum over t < k of A(i, t) * B[t * ldb + j], for i < m, j < n.
// C is written, not accumulated. Register-blocked: a 4 x 16 tile of C stays
// in accumulators for the whole k loop, so each step loads one row slice of
// B and four values of A for 64 multiply-adds. Every element is one sum in
// order t = 0..k-1, whatever the tile it falls in.
BERTKIT_VECTOR_CLONES
void matmul_loops(int64_t m, int64_t n, int64_t k, Operand A, const float* b, int64_t ldb, float* c,
                  int64_t ldc) {
  constexpr int64_t kTileRows = 4, kTileCols = 16;
  for (int64_t j0 = 0; j0 < n; j0 += kTileCols) {
    const int64_t cols = std::min(kTileCols, n - j0);
    int64_t i0 = 0;
    if (cols == kTileCols) {
      for (; i0 + kTileRows <= m; i0 += kTileRows) {
        // Four named rows rather than acc[4][16], which GCC vectorises across
        // the rows instead of along them.
        float acc0[kTileCols] = {}, acc1[kTileCols] = {}, acc2[kTileCols] = {}, acc3[kTileCols] = {};
        for (int64_t t = 0; t < k; ++t) {
          const float* bt = b + t * ldb + j0;
          const float a0 = A.at(i0, t), a1 = A.at(i0 + 1, t), a2 = A.at(i0 + 2, t), a3 = A.at(i0 + 3, t);
          for (int64_t j = 0; j < kTileCols; ++j) {
            acc0[j] += a0 * bt[j];
            acc1[j] += a1 * bt[j];
            acc2[j] += a2 * bt[j];
            acc3[j] += a3 * bt[j];
          }
        }
        const float* rows[kTileRows] = {acc0, acc1, acc2, acc3};
        for (int64_t r = 0; r < kTileRows; ++r) {
          std::copy(rows[r], rows[r] + kTileCols, c + (i0 + r) * ldc + j0);
        }
      }
    }
    // Leftover rows, and the last columns when n is not a multiple of 16.
    for (; i0 < m; ++i0) {
      float acc[kTileCols] = {};
      for (int64_t t = 0; t < k; ++t) {
        const float* bt = b + t * ldb + j0;
        const float ai = A.at(i0, t);
        for (int64_t j = 0; j < cols; ++j) acc[j] += ai * bt[j];
      }
      std::copy(acc, acc + cols, c + i0 * ldc + j0);
    }
  }
}

// With AVX2 or AVX-512, vecmath's small_matmul: the same sums (FMA chains in
// t order, as the v3/v4 clones above compute them where the compiler
// contracts, as GCC does in its default GNU dialect: the CMake build; a build
// in ISO mode, -std=c++17 as node-gyp's, keeps mul + add in the loops, which
// then differ from the kernel by float rounding), with the row and column
// leftovers of attention's small products (27 x 27 x 32 for a 27-token
// sentence) in full vectors instead of the loops' narrow tails.
void matmul(int64_t m, int64_t n, int64_t k, Operand A, const float* b, int64_t ldb, float* c, int64_t ldc) {
  const vecmath::Kernels* simd = vecmath::simd();
  constexpr int64_t kMaxScratchDepth = 1024;
  if (simd && k <= kMaxScratchDepth) {
    alignas(64) float scratch[kMaxScratchDepth * 16];
    simd->small_matmul(m, n, k, A.a, A.row_stride, A.col_stride, b, ldb, c, ldc, scratch);
    return;
  }
  matmul_loops(m, n, k, A, b, ldb, c, ldc);
}

// dst[i, 0, cols) += alpha * src[i, 0, cols): a pair's gradient is finished
// in scratch and then added once, so accumulating into dst costs one rounding.
void add_scaled(int64_t rows, int64_t cols, float alpha, const float* src, int64_t lds, float* dst,
                int64_t ldd) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict s = src + i * lds;
    float* __restrict d = dst + i * ldd;
    for (int64_t j = 0; j < cols; ++j) d[j] += alpha * s[j];
  }
}

// Packs a head's [seq, head_dim] slice (row stride ld) transposed into
// [head_dim, seq], so products against its transpose run along contiguous rows.
void pack_transposed(int64_t seq, int64_t head_dim, const float* src, int64_t ld, float* dst) {
  for (int64_t j = 0; j < seq; ++j) {
    const float* row = src + j * ld;
    for (int64_t t = 0; t < head_dim; ++t) dst[t * seq + j] = row[t];
  }
}

// factor[0, n) = keep ? scale : 0 for the flat probs elements [first, first + n).
// Must agree with philox_keep (philox.h) element for element; each Philox
// block is computed once for its four elements instead of once per element,
// and with AVX2 / AVX-512 for 4 / 8 blocks at once (vecmath.h).
void dropout_factors(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p, float scale,
                     float* factor) {
  if (const vecmath::Kernels* simd = vecmath::simd()) {
    simd->dropout_factors(seed, offset, first, n, p, scale, factor);
    return;
  }
  int64_t j = 0;
  uint64_t index = first;
  while (j < n) {
    const uint64_t counter = offset + (index >> 2);
    const Philox4 r = philox4x32_10(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
                                    0u, 0u, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    for (unsigned lane = static_cast<unsigned>(index & 3); lane < 4 && j < n; ++lane, ++index, ++j) {
      const float u = static_cast<float>(r.v[lane] >> 8) * (1.0f / 16777216.0f);
      factor[j] = u >= p ? scale : 0.0f;
    }
  }
}

void dropout_factor_rows(uint64_t seed, uint64_t offset, uint64_t first, uint64_t stride, int64_t rows, int64_t n,
                         float p, float scale, float* factor) {
  if (const vecmath::Kernels* simd = vecmath::simd()) {
    simd->dropout_factor_rows(seed, offset, first, stride, rows, n, p, scale, factor);
    return;
  }
  for (int64_t i = 0; i < rows; ++i) {
    dropout_factors(seed, offset, first + static_cast<uint64_t>(i) * stride, n, p, scale, factor + i * n);
  }
}

float dropout_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }


// s = softmax(scale * s + bias), in place. Sums in double: the row can be
// long, and exp dominates the cost anyway. With AVX2 / AVX-512 the same
// steps run vectorised (vecmath.h: its own float exp, within 0.874 ulp where
// glibc's expf is within ~0.5, so the probabilities stay within 2.4 ulp of
// exact, against 2.1 for this loop).
void softmax_row(int64_t n, float scale, const float* bias, float* s) {
  if (const vecmath::Kernels* simd = vecmath::simd()) {
    simd->softmax_row(n, scale, bias, s);
    return;
  }
  float max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = s[j] * scale + bias[j];
    max = std::max(max, s[j]);
  }
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - max);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

void softmax_rows(int64_t rows, int64_t n, float scale, const float* bias, float* s) {
  if (const vecmath::Kernels* simd = vecmath::simd()) {
    simd->softmax_rows(rows, n, scale, bias, s);
    return;
  }
  for (int64_t i = 0; i < rows; ++i) softmax_row(n, scale, bias, s + i * n);
}

}  // namespace attention_detail

namespace {

using namespace attention_detail;

}  // namespace

void CpuBackend::attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                   float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                   const float* q, const float* k, const float* v,
                                   const int32_t* mask, float* probs, float* out) {
  const Geometry g{batch, seq, heads, head_dim};
  const int64_t hidden = g.hidden();
  const bool dropout = dropout_p > 0.0f;
  const float keep = dropout_scale(dropout_p);
  const size_t square = static_cast<size_t>(seq * seq);
  ThreadPool::instance().parallel_for(g.pairs(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> k_t(static_cast<size_t>(head_dim * seq));
    std::vector<float> bias(static_cast<size_t>(seq));
    std::vector<float> dropped(dropout ? square : 0);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / heads;
      const int64_t base = g.head_offset(pair);
      float* p = probs + g.probs_offset(pair);
      for (int64_t j = 0; j < seq; ++j) bias[j] = mask[b * seq + j] != 0 ? 0.0f : -FLT_MAX;

      // Raw scores Q Kᵀ go straight into probs and are turned into softmax rows in place.
      pack_transposed(seq, head_dim, k + base, hidden, k_t.data());
      matmul(seq, seq, head_dim, rows_of(q + base, hidden), k_t.data(), seq, p, seq);
      softmax_rows(seq, seq, scale, bias.data(), p);

      const float* weights = p;
      if (dropout) {
        dropout_factors(seed, offset, static_cast<uint64_t>(g.probs_offset(pair)),
                        static_cast<int64_t>(square), dropout_p, keep, dropped.data());
        for (size_t e = 0; e < square; ++e) dropped[e] *= p[e];
        weights = dropped.data();
      }
      matmul(seq, head_dim, seq, rows_of(weights, seq), v + base, hidden, out + base, hidden);
    }
  });
}

void CpuBackend::attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                    float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                    const float* q, const float* k, const float* v,
                                    const float* probs, const float* dout, float* dq, float* dk,
                                    float* dv) {
  if (!dq && !dk && !dv) return;
  const Geometry g{batch, seq, heads, head_dim};
  const int64_t hidden = g.hidden();
  const bool dropout = dropout_p > 0.0f;
  const bool need_ds = dq || dk;
  const float keep = dropout_scale(dropout_p);
  const size_t square = static_cast<size_t>(seq * seq);
  ThreadPool::instance().parallel_for(g.pairs(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> factor(dropout ? square : 0);  // keep / (1 - p) or 0, per probs element
    std::vector<float> dropped(dropout && dv ? square : 0);
    std::vector<float> v_t(need_ds ? static_cast<size_t>(head_dim * seq) : 0);
    std::vector<float> ds(need_ds ? square : 0);
    std::vector<float> grad(static_cast<size_t>(seq * head_dim));  // one head's dQ, dK or dV
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t base = g.head_offset(pair);
      const float* p = probs + g.probs_offset(pair);
      const float* dout_h = dout + base;
      if (dropout) {
        dropout_factors(seed, offset, static_cast<uint64_t>(g.probs_offset(pair)),
                        static_cast<int64_t>(square), dropout_p, keep, factor.data());
      }

      if (dv) {
        const float* d = p;
        if (dropout) {
          for (size_t e = 0; e < square; ++e) dropped[e] = p[e] * factor[e];
          d = dropped.data();
        }
        matmul(seq, head_dim, seq, transpose_of(d, seq), dout_h, hidden, grad.data(), head_dim);
        add_scaled(seq, head_dim, 1.0f, grad.data(), head_dim, dv + base, hidden);
      }
      if (!need_ds) continue;

      // dD = dO Vᵀ, then dP = dD * factor, then dS, all in place in ds.
      pack_transposed(seq, head_dim, v + base, hidden, v_t.data());
      matmul(seq, seq, head_dim, rows_of(dout_h, hidden), v_t.data(), seq, ds.data(), seq);
      if (dropout) {
        for (size_t e = 0; e < square; ++e) ds[e] *= factor[e];
      }
      for (int64_t i = 0; i < seq; ++i) {
        const float* p_row = p + i * seq;
        float* ds_row = ds.data() + i * seq;
        double dot = 0.0;
        for (int64_t j = 0; j < seq; ++j) dot += static_cast<double>(p_row[j]) * ds_row[j];
        const float rowsum = static_cast<float>(dot);
        for (int64_t j = 0; j < seq; ++j) ds_row[j] = p_row[j] * (ds_row[j] - rowsum);
      }
      if (dq) {
        matmul(seq, head_dim, seq, rows_of(ds.data(), seq), k + base, hidden, grad.data(), head_dim);
        add_scaled(seq, head_dim, scale, grad.data(), head_dim, dq + base, hidden);
      }
      if (dk) {
        matmul(seq, head_dim, seq, transpose_of(ds.data(), seq), q + base, hidden, grad.data(), head_dim);
        add_scaled(seq, head_dim, scale, grad.data(), head_dim, dk + base, hidden);
      }
    }
  });
}

}  // namespace bertkit
