// Fused ("flash") multi-head attention over a padded batch, fp32: the same
// maths as attention.cpp, without the [batch, heads, seq, seq] probabilities.
// This file is the readable reference of the CUDA kernels' tiling
// (cuda/flash_attention.cu) and a lower-memory CPU path.
//
// Layout, mask and dropout are those of attention.cpp: q, k, v, out are
// [batch, seq, heads * head_dim]; a key with mask 0 gets the additive bias
// -FLT_MAX; dropout keeps probs element (b, h, i, j) when the Philox draw of
// flat index ((b * heads + h) * seq + i) * seq + j under (seed, offset) says
// so, exactly as the materialised op, so both give the same mask bit for bit.
//
// Forward (FlashAttention, online softmax). Queries are cut into tiles of
// kTile rows, keys into tiles of kTile columns. For one query tile, running
// per-row statistics m (max score so far) and l (sum of exp(s - m)) and an
// accumulator A = sum_j exp(s_j - m) * keep_j / (1 - p) * v_j are updated key
// tile by key tile:
//   S     = scale * Q Kᵀ + bias                     (one tile)
//   m'    = max(m, rowmax(S));  alpha = exp(m - m')
//   P~    = exp(S - m')
//   l     = alpha * l + rowsum(P~)                   (before dropout: the softmax's own sum)
//   A     = alpha * A + (P~ * dropout factor) V
// and at the end out = A / l, lse = m + log(l) (saved for backward).
//
// Backward (FlashAttention-2). With lse, any tile of probabilities is
// recomputed as P = exp(S - lse) without the rest of its row. Per row,
// D_i = <dO_i, O_i> equals rowsum(P * dP) of attention.cpp (O_i = sum_j P_ij
// z_ij v_j with z the dropout factor), so for each (key tile, query tile):
//   P  = exp(S - lse);   dV += (P * z)ᵀ dO
//   dP = (dO Vᵀ) * z;    dS = P * (dP - D)
//   dQ += scale dS K;    dK += scale dSᵀ Q
// The loop runs key tile outer, query tile inner, as the CUDA key-tile kernel.
//
// Padding. The mask is per key and the same for every query row of a batch
// row, so two cases exist:
//  * the batch row has an unpadded key: padded keys score about -FLT_MAX and
//    get probability exactly 0, as in the materialised op. A key tile with no
//    unpadded key therefore contributes exactly nothing and is skipped
//    (forward and backward), which is where dynamic padding pays.
//  * every key is padded: the materialised op's scores all round to exactly
//    -FLT_MAX, so its softmax is uniform (transformers does the same). Here
//    the lse of such a row would round to -FLT_MAX as well and lose log(seq),
//    so these rows use the score 0 for every key instead: the same uniform
//    softmax, an exact lse of log(seq), and the same gradient (as in torch,
//    the bias is a constant, so dQ and dK still flow through the softmax).
//
// Work is split over (batch, head) pairs, one whole pair per thread in a
// fixed order, so results are bit-identical for any thread count.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "attention_kernels.h"
#include "cpu_backend.h"
#include "thread_pool.h"
#include "vecmath.h"

namespace bertkit {

namespace {

using namespace attention_detail;

// Rows of a query tile and columns of a key tile (the CUDA kernels use 64
// for head_dim <= 64). Small enough that a tile of scores stays in L1.
constexpr int64_t kTile = 64;

// x = exp(x) over n floats, in place.
void exp_in_place(int64_t n, float* x) {
  if (const vecmath::Kernels* simd = vecmath::simd()) {
    simd->exp_f32(n, x, x);
    return;
  }
  for (int64_t j = 0; j < n; ++j) x[j] = std::exp(x[j]);
}

// What a pair needs to know about its keys: the additive bias per key, and
// which key tiles hold an unpadded key.
struct Keys {
  bool uniform = false;          // every key padded: all scores are 0 (see header)
  std::vector<float> bias;       // [seq]: 0, or -FLT_MAX for a padded key
  std::vector<char> tile_live;   // [tiles]: does the tile contribute anything?

  void prepare(const int32_t* key_mask, int64_t seq) {
    bias.resize(static_cast<size_t>(seq));
    bool any = false;
    for (int64_t j = 0; j < seq; ++j) {
      bias[j] = key_mask[j] != 0 ? 0.0f : -FLT_MAX;
      any = any || key_mask[j] != 0;
    }
    uniform = !any;
    if (uniform) std::fill(bias.begin(), bias.end(), 0.0f);
    const int64_t tiles = (seq + kTile - 1) / kTile;
    tile_live.assign(static_cast<size_t>(tiles), uniform ? 1 : 0);
    if (!uniform) {
      for (int64_t j = 0; j < seq; ++j) {
        if (key_mask[j] != 0) tile_live[j / kTile] = 1;
      }
    }
  }
  // Scores of one tile row in place: raw <q_i, k_j> in, scale * raw + bias out.
  void score_row(int64_t j0, int64_t cols, float scale, float* s) const {
    const float* b = bias.data() + j0;
    if (uniform) {
      std::fill(s, s + cols, 0.0f);
      return;
    }
    for (int64_t c = 0; c < cols; ++c) s[c] = s[c] * scale + b[c];
  }
};

// Offset of token 0, head h of batch row b in a [batch, seq, heads * head_dim] tensor.
int64_t head_offset(int64_t pair, int64_t seq, int64_t heads, int64_t head_dim) {
  return (pair / heads) * seq * heads * head_dim + (pair % heads) * head_dim;
}

}  // namespace

void CpuBackend::flash_attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                         float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                         const float* q, const float* k, const float* v,
                                         const int32_t* mask, float* lse, float* out) {
  const int64_t hidden = heads * head_dim;
  const bool dropout = dropout_p > 0.0f;
  const float keep = dropout_scale(dropout_p);
  ThreadPool::instance().parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> k_t(static_cast<size_t>(head_dim * seq));
    std::vector<float> s(static_cast<size_t>(kTile * kTile));        // one tile of scores / P~
    std::vector<float> pv(static_cast<size_t>(kTile * head_dim));    // P~ V of one tile
    std::vector<float> acc(static_cast<size_t>(kTile * head_dim));   // A of the query tile
    std::vector<float> factor(dropout ? static_cast<size_t>(kTile) : 0);
    float m[kTile];
    double l[kTile];
    Keys keys;
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t base = head_offset(pair, seq, heads, head_dim);
      keys.prepare(mask + (pair / heads) * seq, seq);
      pack_transposed(seq, head_dim, k + base, hidden, k_t.data());

      for (int64_t i0 = 0; i0 < seq; i0 += kTile) {
        const int64_t rows = std::min(kTile, seq - i0);
        std::fill(m, m + rows, -INFINITY);
        std::fill(l, l + rows, 0.0);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j0 = 0; j0 < seq; j0 += kTile) {
          if (!keys.tile_live[j0 / kTile]) continue;
          const int64_t cols = std::min(kTile, seq - j0);
          matmul(rows, cols, head_dim, rows_of(q + base + i0 * hidden, hidden), k_t.data() + j0, seq, s.data(),
                 kTile);
          for (int64_t r = 0; r < rows; ++r) {
            float* srow = s.data() + r * kTile;
            keys.score_row(j0, cols, scale, srow);
            float tile_max = -INFINITY;
            for (int64_t c = 0; c < cols; ++c) tile_max = std::max(tile_max, srow[c]);
            // Finite: a live tile has an unpadded key (or every score is 0).
            const float m_new = std::max(m[r], tile_max);
            const float alpha = std::exp(m[r] - m_new);  // exp(-inf) = 0 on the first live tile
            for (int64_t c = 0; c < cols; ++c) srow[c] -= m_new;
            exp_in_place(cols, srow);
            double sum = 0.0;
            for (int64_t c = 0; c < cols; ++c) sum += srow[c];
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
            if (alpha != 1.0f) {
              float* a = acc.data() + r * head_dim;
              for (int64_t t = 0; t < head_dim; ++t) a[t] *= alpha;
            }
            if (dropout) {
              const uint64_t first = static_cast<uint64_t>((pair * seq + i0 + r) * seq + j0);
              dropout_factors(seed, offset, first, cols, dropout_p, keep, factor.data());
              for (int64_t c = 0; c < cols; ++c) srow[c] *= factor[c];
            }
          }
          matmul(rows, head_dim, cols, rows_of(s.data(), kTile), v + base + j0 * hidden, hidden, pv.data(),
                 head_dim);
          add_scaled(rows, head_dim, 1.0f, pv.data(), head_dim, acc.data(), head_dim);
        }
        for (int64_t r = 0; r < rows; ++r) {
          const float inv = static_cast<float>(1.0 / l[r]);
          const float* a = acc.data() + r * head_dim;
          float* o = out + base + (i0 + r) * hidden;
          for (int64_t t = 0; t < head_dim; ++t) o[t] = a[t] * inv;
          lse[pair * seq + i0 + r] = static_cast<float>(static_cast<double>(m[r]) + std::log(l[r]));
        }
      }
    }
  });
}

void CpuBackend::flash_attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                          float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                          const float* q, const float* k, const float* v,
                                          const int32_t* mask, const float* lse, const float* out,
                                          const float* dout, float* dq, float* dk, float* dv) {
  if (!dq && !dk && !dv) return;
  const int64_t hidden = heads * head_dim;
  const bool dropout = dropout_p > 0.0f;
  const bool need_ds = dq || dk;
  const float keep = dropout_scale(dropout_p);
  ThreadPool::instance().parallel_for(batch * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> k_t(static_cast<size_t>(head_dim * seq));
    std::vector<float> v_t(need_ds ? static_cast<size_t>(head_dim * seq) : 0);
    std::vector<float> p(static_cast<size_t>(kTile * kTile));     // P, then P * z
    std::vector<float> ds(need_ds ? static_cast<size_t>(kTile * kTile) : 0);
    std::vector<float> factor(dropout ? static_cast<size_t>(kTile * kTile) : 0);
    std::vector<float> row_d(static_cast<size_t>(seq));           // D_i = <dO_i, O_i>
    std::vector<float> dq_acc(dq ? static_cast<size_t>(seq * head_dim) : 0);
    std::vector<float> dk_acc(static_cast<size_t>(kTile * head_dim)), dv_acc(static_cast<size_t>(kTile * head_dim));
    std::vector<float> tmp(static_cast<size_t>(kTile * head_dim));
    Keys keys;
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t base = head_offset(pair, seq, heads, head_dim);
      const float* lse_h = lse + pair * seq;
      keys.prepare(mask + (pair / heads) * seq, seq);
      pack_transposed(seq, head_dim, k + base, hidden, k_t.data());
      if (need_ds) pack_transposed(seq, head_dim, v + base, hidden, v_t.data());
      for (int64_t i = 0; i < seq; ++i) {
        const float* o = out + base + i * hidden;
        const float* g = dout + base + i * hidden;
        double dot = 0.0;
        for (int64_t t = 0; t < head_dim; ++t) dot += static_cast<double>(o[t]) * g[t];
        row_d[i] = static_cast<float>(dot);
      }
      std::fill(dq_acc.begin(), dq_acc.end(), 0.0f);

      for (int64_t j0 = 0; j0 < seq; j0 += kTile) {
        if (!keys.tile_live[j0 / kTile]) continue;  // P = 0 there: no gradient at all
        const int64_t cols = std::min(kTile, seq - j0);
        std::fill(dk_acc.begin(), dk_acc.end(), 0.0f);
        std::fill(dv_acc.begin(), dv_acc.end(), 0.0f);
        for (int64_t i0 = 0; i0 < seq; i0 += kTile) {
          const int64_t rows = std::min(kTile, seq - i0);
          const float* q_i = q + base + i0 * hidden;
          const float* dout_i = dout + base + i0 * hidden;
          // P = exp(scale * Q Kᵀ + bias - lse), recomputed.
          matmul(rows, cols, head_dim, rows_of(q_i, hidden), k_t.data() + j0, seq, p.data(), kTile);
          for (int64_t r = 0; r < rows; ++r) {
            float* prow = p.data() + r * kTile;
            keys.score_row(j0, cols, scale, prow);
            for (int64_t c = 0; c < cols; ++c) prow[c] -= lse_h[i0 + r];
            exp_in_place(cols, prow);
            if (dropout) {
              const uint64_t first = static_cast<uint64_t>((pair * seq + i0 + r) * seq + j0);
              dropout_factors(seed, offset, first, cols, dropout_p, keep, factor.data() + r * kTile);
            }
          }
          if (need_ds) {
            // dS = P * (dP * z - D), dP = dO Vᵀ; computed before p turns into P * z.
            matmul(rows, cols, head_dim, rows_of(dout_i, hidden), v_t.data() + j0, seq, ds.data(), kTile);
            for (int64_t r = 0; r < rows; ++r) {
              const float* prow = p.data() + r * kTile;
              float* drow = ds.data() + r * kTile;
              const float* z = dropout ? factor.data() + r * kTile : nullptr;
              const float d_i = row_d[i0 + r];
              for (int64_t c = 0; c < cols; ++c) {
                const float dp = z ? drow[c] * z[c] : drow[c];
                drow[c] = prow[c] * (dp - d_i);
              }
            }
          }
          if (dv) {
            if (dropout) {
              for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; ++c) p[r * kTile + c] *= factor[r * kTile + c];
              }
            }
            matmul(cols, head_dim, rows, transpose_of(p.data(), kTile), dout_i, hidden, tmp.data(), head_dim);
            add_scaled(cols, head_dim, 1.0f, tmp.data(), head_dim, dv_acc.data(), head_dim);
          }
          if (dq) {
            matmul(rows, head_dim, cols, rows_of(ds.data(), kTile), k + base + j0 * hidden, hidden, tmp.data(),
                   head_dim);
            add_scaled(rows, head_dim, 1.0f, tmp.data(), head_dim, dq_acc.data() + i0 * head_dim, head_dim);
          }
          if (dk) {
            matmul(cols, head_dim, rows, transpose_of(ds.data(), kTile), q_i, hidden, tmp.data(), head_dim);
            add_scaled(cols, head_dim, 1.0f, tmp.data(), head_dim, dk_acc.data(), head_dim);
          }
        }
        // Each key tile's gradient is finished here and added once.
        if (dk) add_scaled(cols, head_dim, scale, dk_acc.data(), head_dim, dk + base + j0 * hidden, hidden);
        if (dv) add_scaled(cols, head_dim, 1.0f, dv_acc.data(), head_dim, dv + base + j0 * hidden, hidden);
      }
      if (dq) add_scaled(seq, head_dim, scale, dq_acc.data(), head_dim, dq + base, hidden);
    }
  });
}

}  // namespace bertkit
