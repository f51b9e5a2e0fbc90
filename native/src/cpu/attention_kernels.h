// Building blocks shared by the CPU attention op families: the materialised
// one (attention.cpp, which defines these), the tiled, flash-style one
// (flash_attention.cpp) and the unpadded one (varlen_attention.cpp).
// Internal to the CPU backend.
#pragma once

#include <cstdint>

namespace bertkit {
namespace attention_detail {

// How a product reads its left operand: element (i, t) of A is
// a[i * row_stride + t * col_stride], so one kernel serves both A and Aᵀ.
struct Operand {
  const float* a;
  int64_t row_stride, col_stride;
  float at(int64_t i, int64_t t) const { return a[i * row_stride + t * col_stride]; }
};

// A [m, k] stored row-major with row stride ld.
inline Operand rows_of(const float* a, int64_t ld) { return {a, ld, 1}; }
// Aᵀ, where A is [k, m] stored row-major with row stride ld.
inline Operand transpose_of(const float* a, int64_t ld) { return {a, 1, ld}; }

// C[i, j] = sum over t < k of A(i, t) * B[t * ldb + j], for i < m, j < n.
// C is written, not accumulated; every element is one sum in order t = 0..k-1.
void matmul(int64_t m, int64_t n, int64_t k, Operand A, const float* b, int64_t ldb, float* c, int64_t ldc);

// dst[i, 0, cols) += alpha * src[i, 0, cols).
void add_scaled(int64_t rows, int64_t cols, float alpha, const float* src, int64_t lds, float* dst, int64_t ldd);

// Packs a head's [seq, head_dim] slice (row stride ld) transposed into [head_dim, seq].
void pack_transposed(int64_t seq, int64_t head_dim, const float* src, int64_t ld, float* dst);

// factor[0, n) = keep ? scale : 0 for the flat probs elements [first, first + n),
// element for element the draw of philox_keep (philox.h).
void dropout_factors(uint64_t seed, uint64_t offset, uint64_t first, int64_t n, float p, float scale,
                     float* factor);

// dropout_factors for `rows` rows of n: row i takes the elements
// [first + i * stride, + n) into factor + i * n.
void dropout_factor_rows(uint64_t seed, uint64_t offset, uint64_t first, uint64_t stride, int64_t rows, int64_t n,
                         float p, float scale, float* factor);

// 1 / (1 - p), rounded once from double, as every backend scales kept elements.
float dropout_scale(float p);

// s = softmax(scale * s + bias) in place over one row of n (bias: 0, or
// -FLT_MAX for a padded key), summed in double; vectorised where vecmath.h
// has kernels for this CPU.
void softmax_row(int64_t n, float scale, const float* bias, float* s);
// softmax_row on each of `rows` consecutive rows of n, sharing one bias.
void softmax_rows(int64_t rows, int64_t n, float scale, const float* bias, float* s);

}  // namespace attention_detail
}  // namespace bertkit
