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
// The products are small (seq x seq x head_dim per pair), so they are done
// here with loops whose innermost index runs over contiguous memory and
// vectorises, rather than through one gemm call per pair.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "bertkit/philox.h"
#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

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

// c[0, n) = sum over t < k of a[t] * b[t * ldb + 0, n).
// Four t at a time so c is loaded and stored a quarter as often.
void row_times_matrix(int64_t k, int64_t n, const float* a, const float* b, int64_t ldb,
                      float* __restrict c) {
  std::fill(c, c + n, 0.0f);
  int64_t t = 0;
  for (; t + 4 <= k; t += 4) {
    const float a0 = a[t], a1 = a[t + 1], a2 = a[t + 2], a3 = a[t + 3];
    const float* __restrict b0 = b + t * ldb;
    const float* __restrict b1 = b0 + ldb;
    const float* __restrict b2 = b1 + ldb;
    const float* __restrict b3 = b2 + ldb;
    for (int64_t j = 0; j < n; ++j) c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
  }
  for (; t < k; ++t) {
    const float at = a[t];
    const float* __restrict bt = b + t * ldb;
    for (int64_t j = 0; j < n; ++j) c[j] += at * bt[j];
  }
}

// C[m, n] = A B, A [m, k] with row stride lda, B [k, n] with row stride ldb.
void matmul_nn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) row_times_matrix(k, n, a + i * lda, b, ldb, c + i * ldc);
}

// C[m, n] = Aᵀ B, A stored [k, m] with row stride lda, B [k, n] with row stride ldb.
// A sum of rank-1 updates, so the inner loop runs along rows of B and C.
void matmul_tn(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  int64_t t = 0;
  for (; t + 4 <= k; t += 4) {
    const float* __restrict b0 = b + t * ldb;
    const float* __restrict b1 = b0 + ldb;
    const float* __restrict b2 = b1 + ldb;
    const float* __restrict b3 = b2 + ldb;
    for (int64_t i = 0; i < m; ++i) {
      const float a0 = a[t * lda + i], a1 = a[(t + 1) * lda + i];
      const float a2 = a[(t + 2) * lda + i], a3 = a[(t + 3) * lda + i];
      float* __restrict ci = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) ci[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
    }
  }
  for (; t < k; ++t) {
    const float* __restrict bt = b + t * ldb;
    for (int64_t i = 0; i < m; ++i) {
      const float at = a[t * lda + i];
      float* __restrict ci = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) ci[j] += at * bt[j];
    }
  }
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
// block is computed once for its four elements instead of once per element.
void dropout_factors(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p, float scale,
                     float* factor) {
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

// s = softmax(scale * s + bias), in place. Sums in double: the row can be
// long, and exp dominates the cost anyway.
void softmax_row(int64_t n, float scale, const float* bias, float* s) {
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

float dropout_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }

}  // namespace

void CpuBackend::attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                   float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                   const float* q, const float* k, const float* v,
                                   const int32_t* mask, float* probs, float* out) {
  const Geometry g{batch, seq, heads, head_dim};
  const int64_t hidden = g.hidden();
  const bool dropout = dropout_p > 0.0f;
  const float keep = dropout_scale(dropout_p);
  ThreadPool::instance().parallel_for(g.pairs(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> k_t(static_cast<size_t>(head_dim * seq));
    std::vector<float> bias(static_cast<size_t>(seq));
    std::vector<float> factor(dropout ? static_cast<size_t>(seq) : 0);
    std::vector<float> dropped(dropout ? static_cast<size_t>(seq) : 0);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / heads;
      const int64_t base = g.head_offset(pair);
      pack_transposed(seq, head_dim, k + base, hidden, k_t.data());
      for (int64_t j = 0; j < seq; ++j) bias[j] = mask[b * seq + j] != 0 ? 0.0f : -FLT_MAX;
      for (int64_t i = 0; i < seq; ++i) {
        float* p_row = probs + g.probs_offset(pair) + i * seq;
        row_times_matrix(head_dim, seq, q + base + i * hidden, k_t.data(), seq, p_row);
        softmax_row(seq, scale, bias.data(), p_row);
        const float* weights = p_row;
        if (dropout) {
          const uint64_t first = static_cast<uint64_t>(g.probs_offset(pair) + i * seq);
          dropout_factors(seed, offset, first, seq, dropout_p, keep, factor.data());
          for (int64_t j = 0; j < seq; ++j) dropped[j] = p_row[j] * factor[j];
          weights = dropped.data();
        }
        row_times_matrix(seq, head_dim, weights, v + base, hidden, out + base + i * hidden);
      }
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
    std::vector<float> factor(dropout ? square : 0);   // keep / (1 - p) or 0, per probs element
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
        matmul_tn(seq, head_dim, seq, d, seq, dout_h, hidden, grad.data(), head_dim);
        add_scaled(seq, head_dim, 1.0f, grad.data(), head_dim, dv + base, hidden);
      }
      if (!need_ds) continue;

      pack_transposed(seq, head_dim, v + base, hidden, v_t.data());
      for (int64_t i = 0; i < seq; ++i) {
        const float* p_row = p + i * seq;
        float* ds_row = ds.data() + i * seq;
        row_times_matrix(head_dim, seq, dout_h + i * hidden, v_t.data(), seq, ds_row);  // dD
        if (dropout) {
          const float* f_row = factor.data() + i * seq;
          for (int64_t j = 0; j < seq; ++j) ds_row[j] *= f_row[j];  // dP
        }
        double dot = 0.0;
        for (int64_t j = 0; j < seq; ++j) dot += static_cast<double>(p_row[j]) * ds_row[j];
        const float rowsum = static_cast<float>(dot);
        for (int64_t j = 0; j < seq; ++j) ds_row[j] = p_row[j] * (ds_row[j] - rowsum);
      }
      if (dq) {
        matmul_nn(seq, head_dim, seq, ds.data(), seq, k + base, hidden, grad.data(), head_dim);
        add_scaled(seq, head_dim, scale, grad.data(), head_dim, dq + base, hidden);
      }
      if (dk) {
        matmul_tn(seq, head_dim, seq, ds.data(), seq, q + base, hidden, grad.data(), head_dim);
        add_scaled(seq, head_dim, scale, grad.data(), head_dim, dk + base, hidden);
      }
    }
  });
}

}  // namespace bertkit
