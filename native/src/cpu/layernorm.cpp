// LayerNorm of the CPU backend (optionally fused with the residual add that
// precedes every LayerNorm in BERT), forward and backward.
//
// Row statistics and row reductions are accumulated in double: the variance is
// computed in two passes (mean first, then squared deviations), so a large mean
// does not cancel against the variance, and the results match torch's to about
// float rounding. Per-element work stays in float.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_backend.h"
#include "thread_pool.h"

// The row loops below are also built for x86-64-v3 / v4 (8 or 16 lanes
// where the baseline build has SSE2's 2 doubles or 4 floats; attention.cpp
// explains the clones). Every clone must give the baseline's bits, so no
// product may be contracted into an FMA with its sum: GCC contracts by
// default in its GNU dialect, hence the pragma (a no-op for the baseline
// build, which has no FMA), and clang is told the same per function.
#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && __GNUC__ >= 12))
#define BERTKIT_ROW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BERTKIT_ROW_CLONES
#endif
#if defined(__clang__)
#define BERTKIT_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#pragma GCC optimize("fp-contract=off")
#define BERTKIT_NO_CONTRACT
#endif

namespace bertkit {

namespace {

// Elements per thread below which a LayerNorm is not worth splitting.
constexpr int64_t kGrain = 16384;

// Sum over i < n of term(i) in double, with eight independent lanes so the
// adds can run in vector registers instead of one serial chain.
template <typename Term>
inline __attribute__((always_inline)) double lane_sum(int64_t n, Term term) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  }
  for (; i < n; ++i) lanes[0] += term(i);
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

int64_t grain_rows(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }

}  // namespace

namespace {

BERTKIT_ROW_CLONES
void forward_rows(int64_t r0, int64_t r1, int64_t cols, float eps, const float* x, const float* residual,
                  const float* gamma, const float* beta, float* y, float* sum_out, float* mean, float* rstd) {
  BERTKIT_NO_CONTRACT
  for (int64_t r = r0; r < r1; ++r) {
    const float* in = x + r * cols;
    if (residual) {
      // The sum is rounded to float first, exactly as torch's separate add
      // would, and backward reads this very tensor.
      float* s = sum_out + r * cols;
      const float* res = residual + r * cols;
      for (int64_t c = 0; c < cols; ++c) s[c] = in[c] + res[c];
      in = s;
    }
    double mu = lane_sum(cols, [&](int64_t c) { return static_cast<double>(in[c]); }) / cols;
    double var = lane_sum(cols, [&](int64_t c) {
                   double d = static_cast<double>(in[c]) - mu;
                   return d * d;
                 }) / cols;  // biased, as torch's layer_norm
    double inv_std = 1.0 / std::sqrt(var + static_cast<double>(eps));
    float mu_f = static_cast<float>(mu), inv_std_f = static_cast<float>(inv_std);
    mean[r] = mu_f;
    rstd[r] = inv_std_f;
    // Same xhat formula as backward, from the saved float statistics, so the
    // two passes agree on what was normalised. (A float mean costs rows whose
    // mean dwarfs their spread about |mean|/std * 6e-8 relative in xhat, as
    // in torch, whose statistics are float too.)
    float* out = y + r * cols;
    for (int64_t c = 0; c < cols; ++c) out[c] = (in[c] - mu_f) * inv_std_f * gamma[c] + beta[c];
  }
}

}  // namespace

void CpuBackend::layernorm_forward(int64_t rows, int64_t cols, float eps, const float* x,
                                   const float* residual, const float* gamma, const float* beta,
                                   float* y, float* sum_out, float* mean, float* rstd) {
  if (cols == 0) return;
  ThreadPool::instance().parallel_for(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) {
    forward_rows(r0, r1, cols, eps, x, residual, gamma, beta, y, sum_out, mean, rstd);
  });
}

void CpuBackend::layernorm_forward_half(int64_t rows, int64_t cols, float eps, const float* x, const float* residual,
                                        const float* gamma, const float* beta, float* y, float* sum_out, float* mean,
                                        float* rstd, DType half_dtype, void* half) {
  if (cols == 0) return;
  // Each chunk of rows is cast right after it is normalised, while in cache.
  ThreadPool::instance().parallel_for(rows, grain_rows(cols), [&](int64_t r0, int64_t r1) {
    forward_rows(r0, r1, cols, eps, x, residual, gamma, beta, y, sum_out, mean, rstd);
    cast((r1 - r0) * cols, DType::F32, y + r0 * cols, half_dtype, static_cast<char*>(half) + r0 * cols * 2);
  });
}

namespace {

// Rows [r0, r1) of backward: dx (when non-null) added to, or written as
// 0 + value (a zero-filled dx's bits) when write_dx, and then dx_copy (when
// non-null) written with the same values; dg / db (when non-null) this
// chunk's partial sums.
BERTKIT_ROW_CLONES
void backward_rows(int64_t r0, int64_t r1, int64_t cols, const float* x, const float* gamma, const float* mean,
                   const float* rstd, const float* dy, float* dx, bool write_dx, float* dx_copy, double* dg,
                   double* db) {
  BERTKIT_NO_CONTRACT
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * cols;
    const float* g = dy + r * cols;
    const float mu = mean[r], inv_std = rstd[r];
    auto xhat = [&](int64_t c) { return (xr[c] - mu) * inv_std; };

    if (dg) {
      for (int64_t c = 0; c < cols; ++c) dg[c] += static_cast<double>(g[c]) * xhat(c);
    }
    if (db) {
      for (int64_t c = 0; c < cols; ++c) db[c] += static_cast<double>(g[c]);
    }
    if (dx) {
      // With h = dy * gamma: dx = rstd * (h - mean(h) - xhat * mean(h * xhat)).
      double sum_h = lane_sum(cols, [&](int64_t c) { return static_cast<double>(g[c] * gamma[c]); });
      double sum_hx = lane_sum(cols, [&](int64_t c) {
        return static_cast<double>(g[c] * gamma[c]) * static_cast<double>(xhat(c));
      });
      const float mean_h = static_cast<float>(sum_h / cols);
      const float mean_hx = static_cast<float>(sum_hx / cols);
      float* out = dx + r * cols;
      if (!write_dx) {
        for (int64_t c = 0; c < cols; ++c) {
          out[c] += inv_std * (g[c] * gamma[c] - mean_h - xhat(c) * mean_hx);
        }
      } else {
        for (int64_t c = 0; c < cols; ++c) {
          out[c] = 0.0f + inv_std * (g[c] * gamma[c] - mean_h - xhat(c) * mean_hx);
        }
        if (dx_copy) std::memcpy(dx_copy + r * cols, out, static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }
}

// The backward of every entry point below (defined after them): dx added to or written (see backward_rows).
void backward(int64_t rows, int64_t cols, const float* x, const float* gamma, const float* mean, const float* rstd,
              const float* dy, float* dx, bool write_dx, float* dx_copy, float* dgamma, float* dbeta,
              bool write_dgamma, bool write_dbeta);

}  // namespace

void CpuBackend::layernorm_backward(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                    const float* mean, const float* rstd, const float* dy, float* dx,
                                    float* dgamma, float* dbeta) {
  layernorm_backward_write(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, false, false);
}

void CpuBackend::layernorm_backward_write(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                          const float* mean, const float* rstd, const float* dy, float* dx,
                                          float* dgamma, float* dbeta, bool write_dgamma, bool write_dbeta) {
  backward(rows, cols, x, gamma, mean, rstd, dy, dx, false, nullptr, dgamma, dbeta, write_dgamma, write_dbeta);
}

void CpuBackend::layernorm_backward_dx_write(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                             const float* mean, const float* rstd, const float* dy, float* dx,
                                             float* dx_copy, float* dgamma, float* dbeta, bool write_dgamma,
                                             bool write_dbeta) {
  backward(rows, cols, x, gamma, mean, rstd, dy, dx, true, dx_copy, dgamma, dbeta, write_dgamma, write_dbeta);
}

namespace {

void backward(int64_t rows, int64_t cols, const float* x, const float* gamma, const float* mean, const float* rstd,
              const float* dy, float* dx, bool write_dx, float* dx_copy, float* dgamma, float* dbeta,
              bool write_dgamma, bool write_dbeta) {
  if (cols == 0) return;
  if (rows == 0) {
    if (dgamma && write_dgamma) std::fill(dgamma, dgamma + cols, 0.0f);
    if (dbeta && write_dbeta) std::fill(dbeta, dbeta + cols, 0.0f);
    return;
  }
  if (!dx && !dgamma && !dbeta) return;

  // dgamma/dbeta reduce over rows. Each chunk of rows keeps its own partial
  // sums, and the partials are added in chunk order afterwards: no atomics, and
  // a fixed result for a given thread count.
  ThreadPool& pool = ThreadPool::instance();
  int64_t grain = grain_rows(cols);
  int chunks = static_cast<int>(std::min<int64_t>(pool.num_threads(), (rows + grain - 1) / grain));
  chunks = std::max(chunks, 1);
  size_t partial_size = static_cast<size_t>(chunks) * static_cast<size_t>(cols);
  std::vector<double> dgamma_partial(dgamma ? partial_size : 0, 0.0);
  std::vector<double> dbeta_partial(dbeta ? partial_size : 0, 0.0);

  pool.run_chunks(chunks, [&](int chunk) {
    int64_t r0 = rows * chunk / chunks, r1 = rows * (chunk + 1) / chunks;
    double* dg = dgamma ? dgamma_partial.data() + static_cast<size_t>(chunk) * cols : nullptr;
    double* db = dbeta ? dbeta_partial.data() + static_cast<size_t>(chunk) * cols : nullptr;
    backward_rows(r0, r1, cols, x, gamma, mean, rstd, dy, dx, write_dx, dx_copy, dg, db);
  });

  // Written: 0 + total, the bits of a zero-filled target.
  auto combine = [&](const std::vector<double>& partial, float* target, bool write) {
    for (int64_t c = 0; c < cols; ++c) {
      double total = 0;
      for (int k = 0; k < chunks; ++k) total += partial[static_cast<size_t>(k) * cols + c];
      target[c] = static_cast<float>((write ? 0.0 : static_cast<double>(target[c])) + total);
    }
  };
  if (dgamma) combine(dgamma_partial, dgamma, write_dgamma);
  if (dbeta) combine(dbeta_partial, dbeta, write_dbeta);
}

}  // namespace

}  // namespace bertkit
