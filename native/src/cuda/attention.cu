// Multi-head scaled dot-product attention over a padded batch, fp32, with the
// semantics of cpu/attention.cpp (read its header for the formulas).
//
// q, k, v, out are [batch, seq, heads * head_dim]: head h of token i is the
// slice [h * head_dim, (h + 1) * head_dim) of row i, so a head's Q is a
// [seq, head_dim] matrix with row stride hidden = heads * head_dim, and no
// transpose to [batch, heads, seq, head_dim] is needed. cuBLAS's batched GEMM
// takes one pointer per (batch, head) pair: a small kernel writes those
// pointer tables on the device, and each product over all pairs is one
// cublasSgemmBatched call (strided batching cannot express the pairs: their
// offset b * seq * hidden + h * head_dim is not linear in b * heads + h).
//
// Row-major X[r, c] with row stride ld is, to column-major cuBLAS, the
// c x r matrix Xᵀ with leading dimension ld. Each product below is written as
// the column-major one cuBLAS computes, e.g. Sᵀ = K Qᵀ for S = Q Kᵀ.
//
// Forward:  S = Q Kᵀ (into probs) -> softmax rows in place (scale, mask bias,
//           max-subtracted exp, double sum) -> D = dropout(P) -> out = D V.
// Backward: dV += Dᵀ dO;  dP = (dO Vᵀ) * dropout factor;
//           dS = P * (dP - rowsum(P * dP));  dQ += scale dS K;  dK += scale dSᵀ Q.
// Dropout reuses dropout_forward, whose element index is the flat probs index,
// exactly as the CPU backend keys attention dropout.
#include <cfloat>
#include <climits>

#include "cuda/cuda_backend.h"
#include "cuda/cublas_api.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

constexpr int kRowsPerBlock = cuda::kThreads / cuda::kWarpSize;  // one warp per softmax row
constexpr int kMaxTables = 10;

// Which pointers a table holds for pair p = b * heads + h: a head slice of a
// [batch, seq, hidden] tensor, or the p-th [seq, seq] block of a
// [batch, heads, seq, seq] tensor.
struct PointerPlan {
  float* base[kMaxTables];
  bool square[kMaxTables];
  int count;
};

__global__ void pair_pointers_kernel(PointerPlan plan, int64_t pairs, int64_t heads, int64_t seq, int64_t head_dim,
                                     float** tables) {
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < pairs; p += int64_t{gridDim.x} * blockDim.x) {
    const int64_t b = p / heads, h = p - b * heads;
    const int64_t head_offset = b * seq * heads * head_dim + h * head_dim;
    const int64_t square_offset = p * seq * seq;
    for (int t = 0; t < plan.count; ++t) {
      float* base = plan.base[t];
      tables[t * pairs + p] = base ? base + (plan.square[t] ? square_offset : head_offset) : nullptr;
    }
  }
}

// probs rows in place: raw scores in, softmax(scale * s + bias) out. A fully
// padded row has every entry exactly -FLT_MAX after the bias (the scores are
// far below its ulp), so exp(0) = 1 everywhere and the row is exactly
// float(1 / seq), never 0/0; a padded key in any other row gets exp of about
// -FLT_MAX, exactly 0.
__global__ void softmax_forward_kernel(int64_t rows, int64_t seq, int64_t heads, float scale, const int32_t* mask,
                                       float* probs) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together
  const int64_t b = row / (heads * seq);
  const int32_t* key_mask = mask + b * seq;
  float* s = probs + row * seq;
  float max = -INFINITY;
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) {
    // _rn: no fused multiply-add, as on the CPU.
    const float t = __fadd_rn(__fmul_rn(s[j], scale), key_mask[j] != 0 ? 0.0f : -FLT_MAX);
    s[j] = t;
    max = fmaxf(max, t);
  }
  max = cuda::warp_max(max);
  double sum = 0.0;
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) {
    const float e = expf(__fsub_rn(s[j], max));
    s[j] = e;
    sum += static_cast<double>(e);
  }
  const float inv = static_cast<float>(1.0 / cuda::warp_sum(sum));
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) s[j] = __fmul_rn(s[j], inv);
}

// ds = p * (dp - rowsum(p * dp)), in place over dp; one warp per row.
__global__ void softmax_backward_kernel(int64_t rows, int64_t seq, const float* probs, float* ds) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;
  const float* p = probs + row * seq;
  float* d = ds + row * seq;
  double dot = 0.0;
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) dot += static_cast<double>(p[j]) * static_cast<double>(d[j]);
  const float rowsum = static_cast<float>(cuda::warp_sum(dot));
  for (int64_t j = lane; j < seq; j += cuda::kWarpSize) d[j] = __fmul_rn(p[j], __fsub_rn(d[j], rowsum));
}

void check_dims(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  const int64_t pairs = batch * heads;
  if (seq > INT_MAX || heads * head_dim > INT_MAX || pairs > INT_MAX) {
    throw Error("cuda attention: batch " + std::to_string(batch) + ", seq " + std::to_string(seq) + ", heads " +
                std::to_string(heads) + ", head_dim " + std::to_string(head_dim) +
                " exceed cuBLAS's 32-bit dimensions");
  }
}

unsigned softmax_blocks(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > INT32_MAX) throw Error("cuda attention: " + std::to_string(rows) + " rows is larger than the grid");
  return static_cast<unsigned>(blocks);
}

// Pointer tables for `plan` in scratch memory: table t is tables + t * pairs.
void fill_tables(cudaStream_t stream, const PointerPlan& plan, int64_t pairs, int64_t heads, int64_t seq,
                 int64_t head_dim, float** tables) {
  pair_pointers_kernel<<<cuda::grid_for(pairs), cuda::kThreads, 0, stream>>>(plan, pairs, heads, seq, head_dim,
                                                                              tables);
  cuda::check_launch("attention (pointer tables)");
}

// One product over all pairs, column-major as cuBLAS sees it:
// C[m, n] = alpha * op(A)[m, k] op(B)[k, n] + beta * C.
void batched(cublasHandle_t handle, cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n, int64_t k,
             float alpha, float* const* a, int64_t lda, float* const* b, int64_t ldb, float beta, float* const* c,
             int64_t ldc, int64_t pairs) {
  BERTKIT_CUDA_CHECK(cuda::cublas_lib().sgemm_batched(handle, op_a, op_b, static_cast<int>(m), static_cast<int>(n),
                                        static_cast<int>(k), &alpha, const_cast<const float* const*>(a),
                                        static_cast<int>(lda), const_cast<const float* const*>(b),
                                        static_cast<int>(ldb), &beta, c, static_cast<int>(ldc),
                                        static_cast<int>(pairs)));
}

}  // namespace

void CudaBackend::attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                    float dropout_p, uint64_t seed, uint64_t offset, const float* q, const float* k,
                                    const float* v, const int32_t* mask, float* probs, float* out) {
  if (batch == 0 || seq == 0) return;
  check_dims(batch, seq, heads, head_dim);
  const int64_t hidden = heads * head_dim;
  const int64_t pairs = batch * heads;
  const int64_t probs_numel = pairs * seq * seq;
  const bool dropout = dropout_p > 0.0f;

  cuda::Scratch dropped(*this, dropout ? static_cast<size_t>(probs_numel) * sizeof(float) : 0);
  enum { kQ, kK, kV, kOut, kProbs, kWeights, kCount };
  PointerPlan plan{};
  plan.count = kCount;
  plan.base[kQ] = const_cast<float*>(q);
  plan.base[kK] = const_cast<float*>(k);
  plan.base[kV] = const_cast<float*>(v);
  plan.base[kOut] = out;
  plan.base[kProbs] = probs;
  plan.base[kWeights] = dropout ? dropped.as<float>() : probs;
  plan.square[kProbs] = plan.square[kWeights] = true;
  cuda::Scratch table_memory(*this, static_cast<size_t>(kCount * pairs) * sizeof(float*));
  float** tables = table_memory.as<float*>();
  auto table = [&](int t) { return tables + t * pairs; };
  fill_tables(stream_, plan, pairs, heads, seq, head_dim, tables);

  // Sᵀ [seq(j), seq(i)] = K Qᵀ: K's slice read as column-major is Kᵀ (head_dim x seq), hence OP_T.
  batched(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, seq, seq, head_dim, 1.0f, table(kK), hidden, table(kQ), hidden, 0.0f,
          table(kProbs), seq, pairs);
  softmax_forward_kernel<<<softmax_blocks(pairs * seq), cuda::kThreads, 0, stream_>>>(pairs * seq, seq, heads, scale,
                                                                                      mask, probs);
  cuda::check_launch("attention_forward (softmax)");
  if (dropout) dropout_forward(probs_numel, dropout_p, seed, offset, probs, dropped.as<float>());
  // outᵀ [head_dim, seq(i)] = Vᵀ Dᵀ.
  batched(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, head_dim, seq, seq, 1.0f, table(kV), hidden, table(kWeights), seq, 0.0f,
          table(kOut), hidden, pairs);
}

void CudaBackend::attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                     float dropout_p, uint64_t seed, uint64_t offset, const float* q, const float* k,
                                     const float* v, const float* probs, const float* dout, float* dq, float* dk,
                                     float* dv) {
  if (!dq && !dk && !dv) return;
  if (batch == 0 || seq == 0) return;
  check_dims(batch, seq, heads, head_dim);
  const int64_t hidden = heads * head_dim;
  const int64_t pairs = batch * heads;
  const int64_t probs_numel = pairs * seq * seq;
  const bool dropout = dropout_p > 0.0f;
  const bool need_ds = dq || dk;

  cuda::Scratch dropped(*this, dropout && dv ? static_cast<size_t>(probs_numel) * sizeof(float) : 0);
  cuda::Scratch ds(*this, need_ds ? static_cast<size_t>(probs_numel) * sizeof(float) : 0);
  enum { kQ, kK, kV, kDout, kDq, kDk, kDv, kWeights, kDs, kCount };
  PointerPlan plan{};
  plan.count = kCount;
  plan.base[kQ] = const_cast<float*>(q);
  plan.base[kK] = const_cast<float*>(k);
  plan.base[kV] = const_cast<float*>(v);
  plan.base[kDout] = const_cast<float*>(dout);
  plan.base[kDq] = dq;
  plan.base[kDk] = dk;
  plan.base[kDv] = dv;
  plan.base[kWeights] = dropout && dv ? dropped.as<float>() : const_cast<float*>(probs);
  plan.base[kDs] = ds.as<float>();
  plan.square[kWeights] = plan.square[kDs] = true;
  cuda::Scratch table_memory(*this, static_cast<size_t>(kCount * pairs) * sizeof(float*));
  float** tables = table_memory.as<float*>();
  auto table = [&](int t) { return tables + t * pairs; };
  fill_tables(stream_, plan, pairs, heads, seq, head_dim, tables);

  if (dv) {
    if (dropout) dropout_forward(probs_numel, dropout_p, seed, offset, probs, dropped.as<float>());
    // dVᵀ [head_dim, seq(j)] += dOᵀ D: D's block read as column-major is Dᵀ, hence OP_T.
    batched(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, head_dim, seq, seq, 1.0f, table(kDout), hidden, table(kWeights), seq,
            1.0f, table(kDv), hidden, pairs);
  }
  if (!need_ds) return;
  // dPᵀ [seq(j), seq(i)] = V dOᵀ.
  batched(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, seq, seq, head_dim, 1.0f, table(kV), hidden, table(kDout), hidden, 0.0f,
          table(kDs), seq, pairs);
  // In place: the dropout kernel reads each element before writing it.
  if (dropout) dropout_forward(probs_numel, dropout_p, seed, offset, ds.as<float>(), ds.as<float>());
  softmax_backward_kernel<<<softmax_blocks(pairs * seq), cuda::kThreads, 0, stream_>>>(pairs * seq, seq, probs,
                                                                                       ds.as<float>());
  cuda::check_launch("attention_backward (softmax)");
  if (dq) {
    // dQᵀ [head_dim, seq(i)] += scale Kᵀ dSᵀ.
    batched(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, head_dim, seq, seq, scale, table(kK), hidden, table(kDs), seq, 1.0f,
            table(kDq), hidden, pairs);
  }
  if (dk) {
    // dKᵀ [head_dim, seq(j)] += scale Qᵀ dS.
    batched(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, head_dim, seq, seq, scale, table(kQ), hidden, table(kDs), seq, 1.0f,
            table(kDk), hidden, pairs);
  }
}

}  // namespace bertkit
