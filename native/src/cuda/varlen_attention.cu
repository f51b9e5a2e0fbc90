// Multi-head attention over packed (unpadded) sequences, fp32, with the
// semantics of cpu/varlen_attention.cpp (read its header for the formulas,
// op_list.h for the layout): q, k, v, out [tokens, heads * head_dim], sequence
// b owning rows [cu_seqlens[b], cu_seqlens[b + 1]), probs per sequence
// [heads, L, L] one after the other, dropout keyed by the padded layout's
// flat probs index.
//
// Plain kernels, no cuBLAS: the pairs have different sizes, and cuBLAS's
// grouped batched GEMM is not in every toolkit this builds with.
//   forward     one block per (query row, head): scores against the row's
//               sequence into probs, softmax in place, then out row = D v.
//   backward A  one block per (query row, head): dP = (dO vᵀ) * factor,
//               rowsum(P * dP) saved per (row, head), dQ row += scale dS K.
//   backward B  one block per (key row, head): its column of P and of dS
//               (dP recomputed from the saved rowsums), then
//               dV row += Dᵀ dO and dK row += scale dSᵀ Q.
// Each output element is summed by one thread in a fixed order, so results
// are deterministic. cu_seqlens is only read on the device.
#include <cfloat>
#include <climits>

#include "bertkit/philox.h"
#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

constexpr int kBlock = 128;

float keep_scale(float p) { return static_cast<float>(1.0 / (1.0 - static_cast<double>(p))); }

// The sequence holding token row t: the last b with cu[b] <= t.
__device__ int64_t sequence_of(const int32_t* cu, int64_t batch, int64_t t) {
  int64_t lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  // Empty sequences share their start with the next one: step past them.
  while (lo + 1 < batch && cu[lo + 1] <= t) ++lo;
  return lo;
}

// Offset of sequence b's [heads, L, L] block in probs.
__device__ int64_t probs_start(const int32_t* cu, int64_t b, int64_t heads) {
  int64_t total = 0;
  for (int64_t s = 0; s < b; ++s) {
    const int64_t len = cu[s + 1] - cu[s];
    total += heads * len * len;
  }
  return total;
}

__device__ float dropout_factor(float p, float scale, uint64_t seed, uint64_t offset, uint64_t index) {
  return philox_keep(seed, offset, index, p) ? scale : 0.0f;
}

__device__ float block_max(float v) {
  __shared__ float partial[kBlock];
  partial[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] = fmaxf(partial[threadIdx.x], partial[threadIdx.x + stride]);
    __syncthreads();
  }
  const float total = partial[0];
  __syncthreads();
  return total;
}

struct Dims {
  int64_t batch, seq, heads, head_dim;
  float scale, p, keep;
  uint64_t seed, offset;
  __host__ __device__ int64_t hidden() const { return heads * head_dim; }
};

// Dynamic shared memory: the query row (head_dim floats), then the row's
// weights (seq floats).
__global__ void varlen_forward_kernel(Dims d, const int32_t* cu, const float* q, const float* k, const float* v,
                                      float* probs, float* out) {
  extern __shared__ float shared[];
  float* q_row = shared;
  float* weights = shared + d.head_dim;
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int64_t b = sequence_of(cu, d.batch, t);
  const int64_t first = cu[b], len = cu[b + 1] - cu[b], i = t - first;
  const int64_t hidden = d.hidden();
  float* p = probs + probs_start(cu, b, d.heads) + (h * len + i) * len;
  const float* qi = q + t * hidden + h * d.head_dim;
  for (int64_t c = threadIdx.x; c < d.head_dim; c += kBlock) q_row[c] = qi[c];
  __syncthreads();

  float max = -INFINITY;
  for (int64_t j = threadIdx.x; j < len; j += kBlock) {
    const float* kj = k + (first + j) * hidden + h * d.head_dim;
    float s = 0.0f;
    for (int64_t c = 0; c < d.head_dim; ++c) s = fmaf(q_row[c], kj[c], s);
    s = __fmul_rn(s, d.scale);
    p[j] = s;
    max = fmaxf(max, s);
  }
  max = block_max(max);
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < len; j += kBlock) {
    const float e = expf(__fsub_rn(p[j], max));
    p[j] = e;
    sum += static_cast<double>(e);
  }
  const float inv = static_cast<float>(1.0 / cuda::block_sum<kBlock>(sum));
  const uint64_t row_index = static_cast<uint64_t>(((b * d.heads + h) * d.seq + i) * d.seq);
  for (int64_t j = threadIdx.x; j < len; j += kBlock) {
    const float prob = __fmul_rn(p[j], inv);
    p[j] = prob;
    weights[j] = d.p > 0.0f ? prob * dropout_factor(d.p, d.keep, d.seed, d.offset, row_index + j) : prob;
  }
  __syncthreads();
  float* oi = out + t * hidden + h * d.head_dim;
  for (int64_t c = threadIdx.x; c < d.head_dim; c += kBlock) {
    float acc = 0.0f;
    for (int64_t j = 0; j < len; ++j) acc = fmaf(weights[j], v[(first + j) * hidden + h * d.head_dim + c], acc);
    oi[c] = acc;
  }
}

// Dynamic shared memory: dO row (head_dim floats), then dS row (seq floats).
__global__ void varlen_backward_rows_kernel(Dims d, const int32_t* cu, const float* k, const float* v,
                                            const float* probs, const float* dout, float* rowsums, float* dq) {
  extern __shared__ float shared[];
  float* do_row = shared;
  float* ds = shared + d.head_dim;
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int64_t b = sequence_of(cu, d.batch, t);
  const int64_t first = cu[b], len = cu[b + 1] - cu[b], i = t - first;
  const int64_t hidden = d.hidden();
  const float* p = probs + probs_start(cu, b, d.heads) + (h * len + i) * len;
  const float* doi = dout + t * hidden + h * d.head_dim;
  for (int64_t c = threadIdx.x; c < d.head_dim; c += kBlock) do_row[c] = doi[c];
  __syncthreads();
  const uint64_t row_index = static_cast<uint64_t>(((b * d.heads + h) * d.seq + i) * d.seq);
  double dot = 0.0;
  for (int64_t j = threadIdx.x; j < len; j += kBlock) {
    const float* vj = v + (first + j) * hidden + h * d.head_dim;
    float dp = 0.0f;
    for (int64_t c = 0; c < d.head_dim; ++c) dp = fmaf(do_row[c], vj[c], dp);
    if (d.p > 0.0f) dp *= dropout_factor(d.p, d.keep, d.seed, d.offset, row_index + j);
    ds[j] = dp;
    dot += static_cast<double>(p[j]) * static_cast<double>(dp);
  }
  const float rowsum = static_cast<float>(cuda::block_sum<kBlock>(dot));
  if (threadIdx.x == 0) rowsums[t * d.heads + h] = rowsum;
  for (int64_t j = threadIdx.x; j < len; j += kBlock) ds[j] = __fmul_rn(p[j], __fsub_rn(ds[j], rowsum));
  __syncthreads();
  if (!dq) return;
  float* dqi = dq + t * hidden + h * d.head_dim;
  for (int64_t c = threadIdx.x; c < d.head_dim; c += kBlock) {
    float acc = 0.0f;
    for (int64_t j = 0; j < len; ++j) acc = fmaf(ds[j], k[(first + j) * hidden + h * d.head_dim + c], acc);
    dqi[c] += d.scale * acc;
  }
}

// Dynamic shared memory: v row (head_dim floats), then the column's D and dS
// (seq floats each).
__global__ void varlen_backward_columns_kernel(Dims d, const int32_t* cu, const float* q, const float* v,
                                               const float* probs, const float* dout, const float* rowsums,
                                               float* dk, float* dv) {
  extern __shared__ float shared[];
  float* v_row = shared;
  float* dcol = shared + d.head_dim;
  float* dscol = dcol + d.seq;
  const int64_t t = blockIdx.x, h = blockIdx.y;
  const int64_t b = sequence_of(cu, d.batch, t);
  const int64_t first = cu[b], len = cu[b + 1] - cu[b], j = t - first;
  const int64_t hidden = d.hidden();
  const float* p = probs + probs_start(cu, b, d.heads) + h * len * len;
  const float* vj = v + t * hidden + h * d.head_dim;
  for (int64_t c = threadIdx.x; c < d.head_dim; c += kBlock) v_row[c] = vj[c];
  __syncthreads();
  for (int64_t i = threadIdx.x; i < len; i += kBlock) {
    const uint64_t index = static_cast<uint64_t>(((b * d.heads + h) * d.seq + i) * d.seq + j);
    const float factor = d.p > 0.0f ? dropout_factor(d.p, d.keep, d.seed, d.offset, index) : 1.0f;
    const float pij = p[i * len + j];
    dcol[i] = pij * factor;
    if (dk) {
      const float* doi = dout + (first + i) * hidden + h * d.head_dim;
      float dp = 0.0f;
      for (int64_t c = 0; c < d.head_dim; ++c) dp = fmaf(doi[c], v_row[c], dp);
      if (d.p > 0.0f) dp *= factor;
      dscol[i] = __fmul_rn(pij, __fsub_rn(dp, rowsums[(first + i) * d.heads + h]));
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < d.head_dim; c += kBlock) {
    if (dv) {
      float acc = 0.0f;
      for (int64_t i = 0; i < len; ++i) acc = fmaf(dcol[i], dout[(first + i) * hidden + h * d.head_dim + c], acc);
      dv[t * hidden + h * d.head_dim + c] += acc;
    }
    if (dk) {
      float acc = 0.0f;
      for (int64_t i = 0; i < len; ++i) acc = fmaf(dscol[i], q[(first + i) * hidden + h * d.head_dim + c], acc);
      dk[t * hidden + h * d.head_dim + c] += d.scale * acc;
    }
  }
}

Dims make_dims(int64_t batch, int64_t tokens, int64_t seq, int64_t heads, int64_t head_dim, float scale, float p,
               uint64_t seed, uint64_t offset, size_t shared_floats) {
  if (tokens > INT32_MAX || heads > 65535) {
    throw Error("cuda varlen attention: " + std::to_string(tokens) + " tokens x " + std::to_string(heads) +
                " heads exceed the grid");
  }
  if (shared_floats * sizeof(float) > 48 * 1024) {
    throw Error("cuda varlen attention: sequences up to " + std::to_string(seq) + " tokens with head_dim " +
                std::to_string(head_dim) + " need more than 48 KB of shared memory per block; use the padded attention");
  }
  return Dims{batch, seq, heads, head_dim, scale, p, keep_scale(p), seed, offset};
}

}  // namespace

void CudaBackend::varlen_attention_forward(int64_t batch, int64_t tokens, int64_t seq, int64_t heads,
                                           int64_t head_dim, float scale, float dropout_p, uint64_t seed,
                                           uint64_t offset, const int32_t* cu_seqlens, const float* q,
                                           const float* k, const float* v, float* probs, float* out) {
  if (batch == 0 || tokens == 0) return;
  const size_t shared = static_cast<size_t>(head_dim + seq);
  const Dims d = make_dims(batch, tokens, seq, heads, head_dim, scale, dropout_p, seed, offset, shared);
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(heads));
  varlen_forward_kernel<<<grid, kBlock, shared * sizeof(float), stream_>>>(d, cu_seqlens, q, k, v, probs, out);
  cuda::check_launch("varlen_attention_forward");
}

void CudaBackend::varlen_attention_backward(int64_t batch, int64_t tokens, int64_t seq, int64_t heads,
                                            int64_t head_dim, float scale, float dropout_p, uint64_t seed,
                                            uint64_t offset, const int32_t* cu_seqlens, const float* q,
                                            const float* k, const float* v, const float* probs,
                                            const float* dout, float* dq, float* dk, float* dv) {
  if (!dq && !dk && !dv) return;
  if (batch == 0 || tokens == 0) return;
  const size_t shared_rows = static_cast<size_t>(head_dim + seq);
  const size_t shared_cols = static_cast<size_t>(head_dim + 2 * seq);
  const Dims d = make_dims(batch, tokens, seq, heads, head_dim, scale, dropout_p, seed, offset, shared_cols);
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(heads));
  cuda::Scratch rowsums(*this, static_cast<size_t>(tokens * heads) * sizeof(float));
  if (dq || dk) {
    varlen_backward_rows_kernel<<<grid, kBlock, shared_rows * sizeof(float), stream_>>>(
        d, cu_seqlens, k, v, probs, dout, rowsums.as<float>(), dq);
    cuda::check_launch("varlen_attention_backward (rows)");
  }
  if (dk || dv) {
    varlen_backward_columns_kernel<<<grid, kBlock, shared_cols * sizeof(float), stream_>>>(
        d, cu_seqlens, q, v, probs, dout, rowsums.as<float>(), dk, dv);
    cuda::check_launch("varlen_attention_backward (columns)");
  }
}

}  // namespace bertkit
