// Multi-head attention over packed (unpadded) sequences, fp32, forward and
// backward: the materialised attention of attention.cpp without the padding.
//
// q, k, v and out are [tokens, heads * head_dim]; sequence b owns rows
// [cu_seqlens[b], cu_seqlens[b + 1]) and attends to itself only, so a pair
// (sequence, head) is an L x L problem instead of seq x seq, and nothing is
// masked. The formulas are attention.cpp's with every key real:
//   forward   s = scale q kᵀ;  P = softmax(s);  out = D v,  D = P * keep / (1 - p)
//   backward  dV += Dᵀ dO;  dP = (dO Vᵀ) * keep / (1 - p);
//             dS = P * (dP - rowsum(P * dP));  dQ += scale dS K;  dK += scale dSᵀ Q
// Dropout draws the padded layout's flat probs index ((b * heads + h) * seq +
// i) * seq + j, so the kept elements are those attention_forward keeps on the
// padded batch. A query row then gets the same probabilities and output as
// there: the padded keys it skips contributed exact zeros (exp of -FLT_MAX),
// and the products sum the remaining terms in the same order.
//
// Every pair is handled whole by one thread: the results do not depend on the
// thread count.
#include <algorithm>
#include <vector>

#include "attention_kernels.h"
#include "cpu_backend.h"
#include "thread_pool.h"

namespace bertkit {

namespace {

using namespace attention_detail;

// Where the pairs of one call live.
struct Layout {
  int64_t batch, seq, heads, head_dim;
  const int32_t* cu;
  std::vector<int64_t> probs_start;  // per sequence: offset of its [heads, L, L] block
  int64_t max_len = 0;

  Layout(int64_t batch_, int64_t seq_, int64_t heads_, int64_t head_dim_, const int32_t* cu_)
      : batch(batch_), seq(seq_), heads(heads_), head_dim(head_dim_), cu(cu_), probs_start(batch_ + 1, 0) {
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = length(b);
      probs_start[b + 1] = probs_start[b] + heads * len * len;
      max_len = std::max(max_len, len);
    }
  }
  int64_t hidden() const { return heads * head_dim; }
  int64_t length(int64_t b) const { return static_cast<int64_t>(cu[b + 1]) - cu[b]; }
  // Offset of the sequence's first token, head h, in a [tokens, hidden] tensor.
  int64_t head_offset(int64_t b, int64_t h) const { return static_cast<int64_t>(cu[b]) * hidden() + h * head_dim; }
  float* probs_of(float* probs, int64_t b, int64_t h) const {
    const int64_t len = length(b);
    return probs + probs_start[b] + h * len * len;
  }
  const float* probs_of(const float* probs, int64_t b, int64_t h) const {
    return probs_of(const_cast<float*>(probs), b, h);
  }
  // The padded flat probs index of (b, h, i, 0).
  uint64_t dropout_row(int64_t b, int64_t h, int64_t i) const {
    return static_cast<uint64_t>(((b * heads + h) * seq + i) * seq);
  }
};

// Runs fn(begin, end) over ranges of the pairs (sequence-major, head-minor),
// several ranges per thread taken as threads free up, cut where the work
// (about L^2 per pair) splits evenly: sequence lengths differ, and two
// contiguous halves of the pairs can differ in work by 2x. Each pair is
// still computed whole by one thread, so results do not depend on the split.
template <typename Fn>
void for_pair_ranges(const Layout& g, Fn fn) {
  ThreadPool& pool = ThreadPool::instance();
  const int64_t pairs = g.batch * g.heads;
  const int64_t chunks = std::min<int64_t>(pairs, pool.num_threads() > 1 ? 4 * pool.num_threads() : 1);
  if (chunks <= 1) {
    fn(int64_t{0}, pairs);
    return;
  }
  auto cost = [&](int64_t pair) { const int64_t len = g.length(pair / g.heads); return len * len + 8 * len + 1; };
  int64_t total = 0;
  for (int64_t pair = 0; pair < pairs; ++pair) total += cost(pair);
  std::vector<int64_t> cut(static_cast<size_t>(chunks) + 1, pairs);
  cut[0] = 0;
  int64_t done = 0, next = 1;
  for (int64_t pair = 0; pair < pairs && next < chunks; ++pair) {
    done += cost(pair);
    while (next < chunks && done * chunks >= total * next) cut[static_cast<size_t>(next++)] = pair + 1;
  }
  pool.run_chunks(static_cast<int>(chunks), [&](int c) {
    const int64_t begin = cut[static_cast<size_t>(c)], end = cut[static_cast<size_t>(c) + 1];
    if (begin < end) fn(begin, end);
  });
}

// factor[i * len + j] = keep ? 1 / (1 - p) : 0 for the pair's len x len block.
void pair_factors(const Layout& g, int64_t b, int64_t h, int64_t len, float p, uint64_t seed, uint64_t offset,
                  float* factor) {
  dropout_factor_rows(seed, offset, g.dropout_row(b, h, 0), static_cast<uint64_t>(g.seq), len, len, p,
                      dropout_scale(p), factor);
}

// ds = P * (ds - rowsum(P * ds)) over a pair's len x len block, each row's
// dot product in double in column order. Four rows at a time: their sums are
// independent chains, so they overlap instead of waiting on each add.
void softmax_backward_rows(int64_t len, const float* p, float* ds) {
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    const float* p0 = p + i * len;
    float* d0 = ds + i * len;
    double dot[4] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t j = 0; j < len; ++j) {
      for (int r = 0; r < 4; ++r) dot[r] += static_cast<double>(p0[r * len + j]) * d0[r * len + j];
    }
    for (int r = 0; r < 4; ++r) {
      const float rowsum = static_cast<float>(dot[r]);
      for (int64_t j = 0; j < len; ++j) d0[r * len + j] = p0[r * len + j] * (d0[r * len + j] - rowsum);
    }
  }
  for (; i < len; ++i) {
    const float* p_row = p + i * len;
    float* ds_row = ds + i * len;
    double dot = 0.0;
    for (int64_t j = 0; j < len; ++j) dot += static_cast<double>(p_row[j]) * ds_row[j];
    const float rowsum = static_cast<float>(dot);
    for (int64_t j = 0; j < len; ++j) ds_row[j] = p_row[j] * (ds_row[j] - rowsum);
  }
}

}  // namespace

void CpuBackend::varlen_attention_forward(int64_t batch, int64_t /*tokens*/, int64_t seq, int64_t heads, int64_t head_dim,
                                          float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                          const int32_t* cu_seqlens, const float* q, const float* k,
                                          const float* v, float* probs, float* out) {
  const Layout g(batch, seq, heads, head_dim, cu_seqlens);
  const int64_t hidden = g.hidden();
  const bool dropout = dropout_p > 0.0f;
  const size_t max_square = static_cast<size_t>(g.max_len * g.max_len);
  for_pair_ranges(g, [&](int64_t begin, int64_t end) {
    std::vector<float> k_t(static_cast<size_t>(head_dim * g.max_len));
    const std::vector<float> zeros(static_cast<size_t>(g.max_len), 0.0f);  // no key is masked
    std::vector<float> dropped(dropout ? max_square : 0);
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / heads, h = pair % heads;
      const int64_t len = g.length(b);
      if (len == 0) continue;
      const int64_t base = g.head_offset(b, h);
      float* p = g.probs_of(probs, b, h);
      pack_transposed(len, head_dim, k + base, hidden, k_t.data());
      matmul(len, len, head_dim, rows_of(q + base, hidden), k_t.data(), len, p, len);
      softmax_rows(len, len, scale, zeros.data(), p);

      const float* weights = p;
      if (dropout) {
        pair_factors(g, b, h, len, dropout_p, seed, offset, dropped.data());
        for (int64_t e = 0; e < len * len; ++e) dropped[e] *= p[e];
        weights = dropped.data();
      }
      matmul(len, head_dim, len, rows_of(weights, len), v + base, hidden, out + base, hidden);
    }
  });
}

namespace {

// dst[i, 0, cols) = 0 + alpha * src[i, 0, cols): add_scaled into a zero-filled dst, without the fill.
void write_scaled(int64_t rows, int64_t cols, float alpha, const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict s = src + i * lds;
    float* __restrict d = dst + i * ldd;
    for (int64_t j = 0; j < cols; ++j) d[j] = 0.0f + alpha * s[j];
  }
}

}  // namespace

void CpuBackend::varlen_attention_backward(int64_t batch, int64_t tokens, int64_t seq, int64_t heads, int64_t head_dim,
                                           float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                           const int32_t* cu_seqlens, const float* q, const float* k,
                                           const float* v, const float* probs, const float* dout, float* dq,
                                           float* dk, float* dv) {
  varlen_attention_backward_write(batch, tokens, seq, heads, head_dim, scale, dropout_p, seed, offset, cu_seqlens, q,
                                  k, v, probs, dout, dq, dk, dv, false, false, false);
}

// Every row of dq, dk and dv belongs to exactly one (sequence, head) pair,
// which finishes its gradient in scratch and adds it (or writes it) once.
void CpuBackend::varlen_attention_backward_write(int64_t batch, int64_t /*tokens*/, int64_t seq, int64_t heads,
                                                 int64_t head_dim, float scale, float dropout_p, uint64_t seed,
                                                 uint64_t offset, const int32_t* cu_seqlens, const float* q,
                                                 const float* k, const float* v, const float* probs, const float* dout,
                                                 float* dq, float* dk, float* dv, bool write_q, bool write_k,
                                                 bool write_v) {
  if (!dq && !dk && !dv) return;
  auto store = [](bool write) { return write ? write_scaled : add_scaled; };
  const auto store_q = store(write_q), store_k = store(write_k), store_v = store(write_v);
  const Layout g(batch, seq, heads, head_dim, cu_seqlens);
  const int64_t hidden = g.hidden();
  const bool dropout = dropout_p > 0.0f;
  const bool need_ds = dq || dk;
  const size_t max_square = static_cast<size_t>(g.max_len * g.max_len);
  for_pair_ranges(g, [&](int64_t begin, int64_t end) {
    std::vector<float> factor(dropout ? max_square : 0);
    std::vector<float> dropped(dropout && dv ? max_square : 0);
    std::vector<float> v_t(need_ds ? static_cast<size_t>(head_dim * g.max_len) : 0);
    std::vector<float> ds(need_ds ? max_square : 0);
    std::vector<float> grad(static_cast<size_t>(g.max_len * head_dim));
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t b = pair / heads, h = pair % heads;
      const int64_t len = g.length(b);
      if (len == 0) continue;
      const int64_t square = len * len;
      const int64_t base = g.head_offset(b, h);
      const float* p = g.probs_of(probs, b, h);
      const float* dout_h = dout + base;
      if (dropout) pair_factors(g, b, h, len, dropout_p, seed, offset, factor.data());

      if (dv) {
        const float* d = p;
        if (dropout) {
          for (int64_t e = 0; e < square; ++e) dropped[e] = p[e] * factor[e];
          d = dropped.data();
        }
        matmul(len, head_dim, len, transpose_of(d, len), dout_h, hidden, grad.data(), head_dim);
        store_v(len, head_dim, 1.0f, grad.data(), head_dim, dv + base, hidden);
      }
      if (!need_ds) continue;

      pack_transposed(len, head_dim, v + base, hidden, v_t.data());
      matmul(len, len, head_dim, rows_of(dout_h, hidden), v_t.data(), len, ds.data(), len);
      if (dropout) {
        for (int64_t e = 0; e < square; ++e) ds[e] *= factor[e];
      }
      softmax_backward_rows(len, p, ds.data());
      if (dq) {
        matmul(len, head_dim, len, rows_of(ds.data(), len), k + base, hidden, grad.data(), head_dim);
        store_q(len, head_dim, scale, grad.data(), head_dim, dq + base, hidden);
      }
      if (dk) {
        matmul(len, head_dim, len, transpose_of(ds.data(), len), q + base, hidden, grad.data(), head_dim);
        store_k(len, head_dim, scale, grad.data(), head_dim, dk + base, hidden);
      }
    }
  });
}

}  // namespace bertkit
