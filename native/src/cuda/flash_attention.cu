// Fused ("flash") multi-head attention over a padded batch, fp32, with the
// semantics and the tiling of cpu/flash_attention.cpp (read its header for the
// formulas, the padding rules and why a fully padded batch row scores 0).
// Nothing of size [seq, seq] ever reaches global memory: forward saves the
// per-row log-sum-exp (lse) only, and backward recomputes the probabilities.
//
// Kernels (one thread block per tile of one (batch, head) pair; the pair's
// head slices are read in place, row stride hidden = heads * head_dim):
//   forward        block = one query tile; loops over key tiles with an
//                  online softmax; writes out and lse.
//   row_dot        D_i = <dO_i, O_i>, one warp per row, into a scratch block
//                  from the caching allocator.
//   backward_kv    block = one key tile; loops over query tiles; dK and dV of
//                  its keys stay in registers and are added to dk / dv once.
//   backward_q     block = one query tile; loops over key tiles; dQ in
//                  registers, added to dq once.
// dQ gets its own pass (recomputing the scores and dO Vᵀ a second time)
// instead of atomics from backward_kv: every gradient element is then summed
// by one thread in a fixed order, so results are bit-identical run to run,
// as the backend contract asks (backend.h) and as the rest of the CUDA
// backend is (embedding backward avoids float atomics for the same reason).
//
// Inside a block. The block is G x G threads (G = kTile / 4); thread (ty, tx)
// owns rows 4 ty .. 4 ty + 3 of every [kTile x ...] product and columns
// tx, tx + G, tx + 2G, ... so that the G threads of a row group are
// neighbouring lanes (row max / sum by shuffles) and reads of a shared row
// are broadcasts. Shared tiles of [kTile][head_dim] are padded to an odd row
// stride (kDim + 1) so that reading one column across threads touches
// distinct banks. Head dims are padded up to kDim in {32, 64, 128} with zeros.
// Maths is plain fp32 on the CUDA cores (fmaf for the products, as cuBLAS's
// SGEMM; _rn adds and multiplies for the scores, as the materialised
// softmax): no TF32, whatever setAllowTf32 says.
//
// Dropout. The keep decision for probs element (b, h, i, j) is the Philox
// draw of flat index ((b * heads + h) * seq + i) * seq + j, as in attention.cu
// (which runs dropout_forward over the materialised probs): four consecutive
// elements share one Philox block, so each tile's mask is drawn
// cooperatively, four elements per thread and step, into a byte mask in
// shared memory.
//
// No host synchronisation and no allocation per call beyond the caching
// allocator's scratch (row_dot's output, pairs * seq floats).
#include <cfloat>
#include <climits>
#include <cstdint>
#include <string>

#include "bertkit/philox.h"
#include "cuda/cuda_backend.h"
#include "cuda/reduce.cuh"

namespace bertkit {

namespace {

// Everything a kernel needs, passed by value.
struct Args {
  int seq, heads, head_dim, tiles;  // tiles: ceil(seq / kTile)
  int64_t hidden;
  float scale, dropout_p, keep_scale;
  uint64_t seed, offset;
  const float *q, *k, *v;
  const int32_t* mask;
  const float *lse_in, *out_in, *dout, *row_d;
  float *lse, *out, *dq, *dk, *dv;
};

// The tile shape for a padded head dim: 64 x 64 tiles (256 threads) up to 64,
// 32 x 32 (64 threads) for 128, so that the backward kernels' shared memory
// (four [kTile][kDim] tiles and one score tile) stays under the 99 KiB per
// block of sm_86 / sm_89.
template <int kDim>
struct Layout {
  static constexpr int kTile = kDim <= 64 ? 64 : 32;
  static constexpr int G = kTile / 4;                  // threads per row group
  static constexpr int kThreads = G * G;
  static constexpr int kLd = kDim + 1;                 // row stride of [kTile][kDim] tiles
  static constexpr int kTileLd = kTile + 1;            // row stride of [kTile][kTile] tiles
  static constexpr int kKeepLd = kTile + 4;            // bytes per row of the keep mask
  static constexpr int kCols = kDim / G;               // head-dim columns per thread
  static constexpr int kMat = kTile * kLd;             // floats of a [kTile][kDim] tile
  static constexpr int kSq = kTile * kTileLd;          // floats of a [kTile][kTile] tile
  static constexpr int kKeepBytes = kTile * kKeepLd;
  static constexpr size_t kForwardBytes = (2 * kMat + kSq + kTile) * sizeof(float) + kKeepBytes;
  static constexpr size_t kBackwardBytes = (4 * kMat + kSq + 3 * kTile) * sizeof(float) + kKeepBytes;
  static_assert(kDim % G == 0, "head-dim columns must split evenly over a row group");
};

// Max / sum over the G neighbouring lanes of a row group (G divides 32).
// Butterflies: every lane ends with the same bits (a + b == b + a).
template <int G>
__device__ __forceinline__ float group_max(float x) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
template <int G>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// dst[r][t] = row row0 + r of a head slice (zero past seq and past head_dim).
template <int kDim>
__device__ __forceinline__ void load_rows(float* dst, const float* head, int64_t hidden, int row0, int seq,
                                          int head_dim) {
  using L = Layout<kDim>;
  for (int idx = threadIdx.x; idx < L::kTile * kDim; idx += L::kThreads) {
    const int r = idx / kDim, t = idx % kDim;
    const int row = row0 + r;
    dst[r * L::kLd + t] = (row < seq && t < head_dim) ? head[static_cast<int64_t>(row) * hidden + t] : 0.0f;
  }
}

// Additive bias of keys k0 .. k0 + kTile - 1: -inf past seq (no such key),
// 0 for an unpadded key or when every key is padded, -FLT_MAX otherwise.
template <int kDim>
__device__ __forceinline__ void load_key_bias(float* kb, const int32_t* key_mask, int k0, int seq, bool uniform) {
  const int c = threadIdx.x;
  if (c < Layout<kDim>::kTile) {
    const int j = k0 + c;
    kb[c] = j >= seq ? -INFINITY : (uniform || key_mask[j] != 0) ? 0.0f : -FLT_MAX;
  }
}

__device__ __forceinline__ uint32_t philox_word(const Philox4& r, unsigned lane) {
  return lane == 0 ? r.v[0] : lane == 1 ? r.v[1] : lane == 2 ? r.v[2] : r.v[3];
}

__device__ __forceinline__ Philox4 philox_block(uint64_t seed, uint64_t counter) {
  return philox4x32_10(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// keep[r * kKeepLd + c] = 1 when probs element (pair, q0 + r, k0 + c) is kept,
// philox_keep's rule exactly. Each step draws four consecutive columns: one
// Philox block, or two when the row's flat index is not a multiple of 4.
template <int kDim>
__device__ void fill_keep(uint8_t* keep, const Args& a, int64_t pair, int q0, int k0) {
  using L = Layout<kDim>;
  constexpr int kGroups = L::kTile / 4;
  for (int idx = threadIdx.x; idx < L::kTile * kGroups; idx += L::kThreads) {
    const int r = idx / kGroups, g = idx % kGroups;
    const int i = q0 + r, j = k0 + 4 * g;
    uint32_t bits = 0;
    if (i < a.seq && j < a.seq) {
      const uint64_t first = (static_cast<uint64_t>(pair) * a.seq + i) * a.seq + j;
      const uint64_t block0 = first >> 2, block1 = (first + 3) >> 2;
      const Philox4 r0 = philox_block(a.seed, a.offset + block0);
      const Philox4 r1 = block1 != block0 ? philox_block(a.seed, a.offset + block1) : r0;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const uint64_t e = first + c;
        const uint32_t word = (e >> 2) == block0 ? philox_word(r0, e & 3) : philox_word(r1, e & 3);
        const bool kept = static_cast<float>(word >> 8) * (1.0f / 16777216.0f) >= a.dropout_p;
        if (j + c < a.seq && kept) bits |= 1u << (8 * c);
      }
    }
    *reinterpret_cast<uint32_t*>(keep + r * L::kKeepLd + 4 * g) = bits;
  }
}

// Does the batch row have an unpadded key at all? Every thread must call it.
__device__ __forceinline__ bool any_key(const int32_t* key_mask, int seq, int threads) {
  int any = 0;
  for (int j = threadIdx.x; j < seq; j += threads) any |= key_mask[j] != 0;
  return __syncthreads_or(any) != 0;
}

// Is key tile k0 worth visiting: an unpadded key in it, or a uniform row?
// Every thread must call it; it is also a block barrier.
template <int kDim>
__device__ __forceinline__ bool tile_live(const int32_t* key_mask, int k0, int seq, bool uniform) {
  const int c = threadIdx.x;
  const int live = c < Layout<kDim>::kTile && k0 + c < seq && key_mask[k0 + c] != 0;
  return __syncthreads_or(live) != 0 || uniform;
}

// The score of one element, as cpu/flash_attention.cpp's score_row.
__device__ __forceinline__ float score(float raw, float scale, float bias, bool uniform) {
  return __fadd_rn(uniform ? 0.0f : __fmul_rn(raw, scale), bias);
}

// ---- forward ---------------------------------------------------------------------------------

template <int kDim>
__global__ void __launch_bounds__(Layout<kDim>::kThreads) flash_forward_kernel(Args a) {
  using L = Layout<kDim>;
  constexpr int G = L::G;
  extern __shared__ float smem[];
  float* qs = smem;               // [kTile][kLd] this block's queries
  float* kvs = qs + L::kMat;      // [kTile][kLd] K, then V, of the current key tile
  float* ps = kvs + L::kMat;      // [kTile][kTileLd] P~ * dropout factor
  float* kb = ps + L::kSq;        // [kTile] key bias
  uint8_t* keep = reinterpret_cast<uint8_t*>(kb + L::kTile);

  const int q0 = (blockIdx.x % a.tiles) * L::kTile;
  const int64_t pair = blockIdx.x / a.tiles;
  const int64_t b = pair / a.heads;
  const int ty = threadIdx.x / G, tx = threadIdx.x % G;
  const int64_t head = b * a.seq * a.hidden + (pair % a.heads) * a.head_dim;
  const int32_t* key_mask = a.mask + b * a.seq;
  const bool dropout = a.dropout_p > 0.0f;

  const bool uniform = !any_key(key_mask, a.seq, L::kThreads);
  load_rows<kDim>(qs, a.q + head, a.hidden, q0, a.seq, a.head_dim);

  float m[4], l[4], acc[4][L::kCols];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < L::kCols; ++c) acc[r][c] = 0.0f;
  }

  for (int k0 = 0; k0 < a.seq; k0 += L::kTile) {
    // Also the barrier after which the previous tile's kvs / ps / kb / keep may be overwritten.
    if (!tile_live<kDim>(key_mask, k0, a.seq, uniform)) continue;
    load_key_bias<kDim>(kb, key_mask, k0, a.seq, uniform);
    load_rows<kDim>(kvs, a.k + head, a.hidden, k0, a.seq, a.head_dim);
    if (dropout) fill_keep<kDim>(keep, a, pair, q0, k0);
    __syncthreads();

    float s[4][4] = {};
#pragma unroll 8
    for (int t = 0; t < kDim; ++t) {
      float qr[4], kc[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) qr[r] = qs[(4 * ty + r) * L::kLd + t];
#pragma unroll
      for (int c = 0; c < 4; ++c) kc[c] = kvs[(tx + G * c) * L::kLd + t];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) s[r][c] = fmaf(qr[r], kc[c], s[r][c]);
    }

#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[r][c] = score(s[r][c], a.scale, kb[tx + G * c], uniform);
        tile_max = fmaxf(tile_max, s[r][c]);
      }
      // Finite: a live tile has an unpadded key, or every score is 0.
      const float m_new = fmaxf(m[r], group_max<G>(tile_max));
      const float alpha = expf(__fsub_rn(m[r], m_new));  // 0 on the first live tile
      float sum = 0.0f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[r][c] = expf(__fsub_rn(s[r][c], m_new));
        sum += s[r][c];
      }
      l[r] = fmaf(l[r], alpha, group_sum<G>(sum));
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < L::kCols; ++c) acc[r][c] *= alpha;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int row = 4 * ty + r, col = tx + G * c;
        // A factor of 0, not a select, as dropout_forward: a dropped NaN stays NaN.
        const float z = dropout ? (keep[row * L::kKeepLd + col] ? a.keep_scale : 0.0f) : 1.0f;
        ps[row * L::kTileLd + col] = s[r][c] * z;
      }
    }
    __syncthreads();  // K is no longer read; ps is complete
    load_rows<kDim>(kvs, a.v + head, a.hidden, k0, a.seq, a.head_dim);
    __syncthreads();

#pragma unroll 4
    for (int j = 0; j < L::kTile; ++j) {
      float pr[4], vc[L::kCols];
#pragma unroll
      for (int r = 0; r < 4; ++r) pr[r] = ps[(4 * ty + r) * L::kTileLd + j];
#pragma unroll
      for (int c = 0; c < L::kCols; ++c) vc[c] = kvs[j * L::kLd + tx + G * c];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < L::kCols; ++c) acc[r][c] = fmaf(pr[r], vc[c], acc[r][c]);
    }
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = q0 + 4 * ty + r;
    if (i >= a.seq) continue;
    const float inv = 1.0f / l[r];
    float* o = a.out + head + static_cast<int64_t>(i) * a.hidden;
#pragma unroll
    for (int c = 0; c < L::kCols; ++c) {
      const int t = tx + G * c;
      if (t < a.head_dim) o[t] = acc[r][c] * inv;
    }
    if (tx == 0) a.lse[pair * a.seq + i] = m[r] + logf(l[r]);
  }
}

// ---- backward ----------------------------------------------------------------------------------

// row_d[pair * seq + i] = <dO_i, O_i> over the head slice; one warp per row.
__global__ void row_dot_kernel(int64_t rows, int seq, int heads, int head_dim, int64_t hidden, const float* out,
                               const float* dout, float* row_d) {
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t row = blockIdx.x * int64_t{cuda::kThreads / cuda::kWarpSize} + threadIdx.x / cuda::kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together
  const int64_t pair = row / seq, i = row % seq;
  const int64_t base = ((pair / heads) * seq + i) * hidden + (pair % heads) * head_dim;
  double dot = 0.0;
  for (int t = lane; t < head_dim; t += cuda::kWarpSize) {
    dot += static_cast<double>(out[base + t]) * static_cast<double>(dout[base + t]);
  }
  dot = cuda::warp_sum(dot);
  if (lane == 0) row_d[row] = static_cast<float>(dot);
}

// Shared memory of both backward kernels.
template <int kDim>
struct BackwardSmem {
  float *a, *b, *c, *d, *ts, *kb, *lse, *row_d;
  uint8_t* keep;
  __device__ explicit BackwardSmem(float* smem) {
    using L = Layout<kDim>;
    a = smem;
    b = a + L::kMat;
    c = b + L::kMat;
    d = c + L::kMat;
    ts = d + L::kMat;
    kb = ts + L::kSq;
    lse = kb + L::kTile;
    row_d = lse + L::kTile;
    keep = reinterpret_cast<uint8_t*>(row_d + L::kTile);
  }
};

// lse and D of query rows q0 .. q0 + kTile - 1; past seq, lse = +inf makes P = 0.
template <int kDim>
__device__ __forceinline__ void load_row_stats(float* lse_s, float* d_s, const Args& a, int64_t pair, int q0) {
  const int r = threadIdx.x;
  if (r < Layout<kDim>::kTile) {
    const int i = q0 + r;
    lse_s[r] = i < a.seq ? a.lse_in[pair * a.seq + i] : INFINITY;
    d_s[r] = i < a.seq ? a.row_d[pair * a.seq + i] : 0.0f;
  }
}

// One block per key tile: dK and dV of its keys over every query tile.
template <int kDim>
__global__ void __launch_bounds__(Layout<kDim>::kThreads) flash_backward_kv_kernel(Args a) {
  using L = Layout<kDim>;
  constexpr int G = L::G;
  extern __shared__ float smem[];
  const BackwardSmem<kDim> sh(smem);
  float *ks = sh.a, *vs = sh.b, *qs = sh.c, *dos = sh.d;

  const int k0 = (blockIdx.x % a.tiles) * L::kTile;
  const int64_t pair = blockIdx.x / a.tiles;
  const int64_t b = pair / a.heads;
  const int ty = threadIdx.x / G, tx = threadIdx.x % G;
  const int64_t head = b * a.seq * a.hidden + (pair % a.heads) * a.head_dim;
  const int32_t* key_mask = a.mask + b * a.seq;
  const bool dropout = a.dropout_p > 0.0f;
  const bool need_dk = a.dk != nullptr, need_dv = a.dv != nullptr;

  const bool uniform = !any_key(key_mask, a.seq, L::kThreads);
  // Keys that all get probability exactly 0 get exactly no gradient.
  if (!tile_live<kDim>(key_mask, k0, a.seq, uniform)) return;
  load_key_bias<kDim>(sh.kb, key_mask, k0, a.seq, uniform);
  load_rows<kDim>(ks, a.k + head, a.hidden, k0, a.seq, a.head_dim);
  load_rows<kDim>(vs, a.v + head, a.hidden, k0, a.seq, a.head_dim);

  // Rows of these are this thread's keys 4 ty + r; columns head-dim tx + G c.
  float dk_acc[4][L::kCols] = {}, dv_acc[4][L::kCols] = {};

  for (int q0 = 0; q0 < a.seq; q0 += L::kTile) {
    __syncthreads();  // the previous query tile's qs / dos / ts / keep are no longer read
    load_rows<kDim>(qs, a.q + head, a.hidden, q0, a.seq, a.head_dim);
    load_rows<kDim>(dos, a.dout + head, a.hidden, q0, a.seq, a.head_dim);
    load_row_stats<kDim>(sh.lse, sh.row_d, a, pair, q0);
    if (dropout) fill_keep<kDim>(sh.keep, a, pair, q0, k0);
    __syncthreads();

    // Transposed tiles: st[r][c] = S[query tx + G c][key 4 ty + r], dpt likewise for dO Vᵀ.
    float st[4][4] = {}, dpt[4][4] = {};
#pragma unroll 4
    for (int t = 0; t < kDim; ++t) {
      float kr[4], qc[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) kr[r] = ks[(4 * ty + r) * L::kLd + t];
#pragma unroll
      for (int c = 0; c < 4; ++c) qc[c] = qs[(tx + G * c) * L::kLd + t];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) st[r][c] = fmaf(kr[r], qc[c], st[r][c]);
      if (need_dk) {
        float vr[4], oc[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) vr[r] = vs[(4 * ty + r) * L::kLd + t];
#pragma unroll
        for (int c = 0; c < 4; ++c) oc[c] = dos[(tx + G * c) * L::kLd + t];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) dpt[r][c] = fmaf(vr[r], oc[c], dpt[r][c]);
      }
    }

    // P = exp(S - lse); st becomes P * z, dpt becomes dS = P * (dP * z - D).
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int key = 4 * ty + r, query = tx + G * c;
        const float x = score(st[r][c], a.scale, sh.kb[key], uniform);
        const float p = expf(__fsub_rn(x, sh.lse[query]));
        const float z = dropout ? (sh.keep[query * L::kKeepLd + key] ? a.keep_scale : 0.0f) : 1.0f;
        st[r][c] = p * z;
        dpt[r][c] = p * (dpt[r][c] * z - sh.row_d[query]);
      }
    }

    if (need_dv) {
      // dV[key] += sum over queries of (P z)[query][key] dO[query]
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) sh.ts[(4 * ty + r) * L::kTileLd + tx + G * c] = st[r][c];
      __syncthreads();
#pragma unroll 4
      for (int i = 0; i < L::kTile; ++i) {
        float pr[4], oc[L::kCols];
#pragma unroll
        for (int r = 0; r < 4; ++r) pr[r] = sh.ts[(4 * ty + r) * L::kTileLd + i];
#pragma unroll
        for (int c = 0; c < L::kCols; ++c) oc[c] = dos[i * L::kLd + tx + G * c];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < L::kCols; ++c) dv_acc[r][c] = fmaf(pr[r], oc[c], dv_acc[r][c]);
      }
      __syncthreads();  // ts is reused for dS below
    }
    if (need_dk) {
      // dK[key] += sum over queries of dS[query][key] Q[query]   (times scale at the end)
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) sh.ts[(4 * ty + r) * L::kTileLd + tx + G * c] = dpt[r][c];
      __syncthreads();
#pragma unroll 4
      for (int i = 0; i < L::kTile; ++i) {
        float dr[4], qc[L::kCols];
#pragma unroll
        for (int r = 0; r < 4; ++r) dr[r] = sh.ts[(4 * ty + r) * L::kTileLd + i];
#pragma unroll
        for (int c = 0; c < L::kCols; ++c) qc[c] = qs[i * L::kLd + tx + G * c];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < L::kCols; ++c) dk_acc[r][c] = fmaf(dr[r], qc[c], dk_acc[r][c]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int j = k0 + 4 * ty + r;
    if (j >= a.seq) continue;
    const int64_t row = head + static_cast<int64_t>(j) * a.hidden;
#pragma unroll
    for (int c = 0; c < L::kCols; ++c) {
      const int t = tx + G * c;
      if (t >= a.head_dim) continue;
      if (need_dk) a.dk[row + t] += a.scale * dk_acc[r][c];
      if (need_dv) a.dv[row + t] += dv_acc[r][c];
    }
  }
}

// One block per query tile: dQ of its queries over every key tile.
template <int kDim>
__global__ void __launch_bounds__(Layout<kDim>::kThreads) flash_backward_q_kernel(Args a) {
  using L = Layout<kDim>;
  constexpr int G = L::G;
  extern __shared__ float smem[];
  const BackwardSmem<kDim> sh(smem);
  float *qs = sh.a, *dos = sh.b, *ks = sh.c, *vs = sh.d;

  const int q0 = (blockIdx.x % a.tiles) * L::kTile;
  const int64_t pair = blockIdx.x / a.tiles;
  const int64_t b = pair / a.heads;
  const int ty = threadIdx.x / G, tx = threadIdx.x % G;
  const int64_t head = b * a.seq * a.hidden + (pair % a.heads) * a.head_dim;
  const int32_t* key_mask = a.mask + b * a.seq;
  const bool dropout = a.dropout_p > 0.0f;

  const bool uniform = !any_key(key_mask, a.seq, L::kThreads);
  load_rows<kDim>(qs, a.q + head, a.hidden, q0, a.seq, a.head_dim);
  load_rows<kDim>(dos, a.dout + head, a.hidden, q0, a.seq, a.head_dim);
  load_row_stats<kDim>(sh.lse, sh.row_d, a, pair, q0);

  float dq_acc[4][L::kCols] = {};  // rows: queries 4 ty + r; columns: head-dim tx + G c
  for (int k0 = 0; k0 < a.seq; k0 += L::kTile) {
    if (!tile_live<kDim>(key_mask, k0, a.seq, uniform)) continue;  // also the barrier before reloading
    load_key_bias<kDim>(sh.kb, key_mask, k0, a.seq, uniform);
    load_rows<kDim>(ks, a.k + head, a.hidden, k0, a.seq, a.head_dim);
    load_rows<kDim>(vs, a.v + head, a.hidden, k0, a.seq, a.head_dim);
    if (dropout) fill_keep<kDim>(sh.keep, a, pair, q0, k0);
    __syncthreads();

    float s[4][4] = {}, dp[4][4] = {};
#pragma unroll 4
    for (int t = 0; t < kDim; ++t) {
      float qr[4], kc[4], orow[4], vc[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        qr[r] = qs[(4 * ty + r) * L::kLd + t];
        orow[r] = dos[(4 * ty + r) * L::kLd + t];
      }
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        kc[c] = ks[(tx + G * c) * L::kLd + t];
        vc[c] = vs[(tx + G * c) * L::kLd + t];
      }
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          s[r][c] = fmaf(qr[r], kc[c], s[r][c]);
          dp[r][c] = fmaf(orow[r], vc[c], dp[r][c]);
        }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int query = 4 * ty + r, key = tx + G * c;
        const float x = score(s[r][c], a.scale, sh.kb[key], uniform);
        const float p = expf(__fsub_rn(x, sh.lse[query]));
        const float z = dropout ? (sh.keep[query * L::kKeepLd + key] ? a.keep_scale : 0.0f) : 1.0f;
        sh.ts[query * L::kTileLd + key] = p * (dp[r][c] * z - sh.row_d[query]);
      }
    }
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < L::kTile; ++j) {
      float dr[4], kc[L::kCols];
#pragma unroll
      for (int r = 0; r < 4; ++r) dr[r] = sh.ts[(4 * ty + r) * L::kTileLd + j];
#pragma unroll
      for (int c = 0; c < L::kCols; ++c) kc[c] = ks[j * L::kLd + tx + G * c];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < L::kCols; ++c) dq_acc[r][c] = fmaf(dr[r], kc[c], dq_acc[r][c]);
    }
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = q0 + 4 * ty + r;
    if (i >= a.seq) continue;
    float* row = a.dq + head + static_cast<int64_t>(i) * a.hidden;
#pragma unroll
    for (int c = 0; c < L::kCols; ++c) {
      const int t = tx + G * c;
      if (t < a.head_dim) row[t] += a.scale * dq_acc[r][c];
    }
  }
}

// ---- launching -----------------------------------------------------------------------------------

// The per-block shared-memory limit with opt-in, read once (the backend uses one device).
int shared_memory_optin() {
  static const int bytes = [] {
    int device = 0, value = 0;
    BERTKIT_CUDA_CHECK(cudaGetDevice(&device));
    BERTKIT_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return value;
  }();
  return bytes;
}

// Allows Kernel its dynamic shared memory (above 48 KiB needs an opt-in), once per kernel.
template <auto Kernel>
void allow_shared_memory(size_t bytes, const char* name) {
  if (static_cast<int64_t>(bytes) > shared_memory_optin()) {
    throw Error(std::string("cuda ") + name + ": needs " + std::to_string(bytes) +
                " bytes of shared memory per block; this GPU allows " + std::to_string(shared_memory_optin()) +
                " (use BERTKIT_ATTENTION=materialized)");
  }
  static const cudaError_t status =
      cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  cuda::check(status, "cudaFuncSetAttribute");
}

void check_flash_dims(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, const char* op) {
  if (head_dim > 128) {
    throw Error(std::string("cuda ") + op + ": head_dim " + std::to_string(head_dim) +
                " is larger than the fused kernels' 128 (use BERTKIT_ATTENTION=materialized)");
  }
  // One block per (pair, tile of at least 32 rows) along grid x; positions are ints in the kernels.
  const int64_t tiles = (seq + 31) / 32;
  if (seq > INT_MAX / 2 || heads * head_dim > INT_MAX || batch * heads * tiles > INT_MAX) {
    throw Error(std::string("cuda ") + op + ": batch " + std::to_string(batch) + ", seq " + std::to_string(seq) +
                ", heads " + std::to_string(heads) + " need more blocks than one grid holds");
  }
}

Args make_args(int64_t seq, int64_t heads, int64_t head_dim, int tile, float scale, float dropout_p, uint64_t seed,
               uint64_t offset, const float* q, const float* k, const float* v, const int32_t* mask) {
  Args a{};
  a.seq = static_cast<int>(seq);
  a.heads = static_cast<int>(heads);
  a.head_dim = static_cast<int>(head_dim);
  a.tiles = static_cast<int>((seq + tile - 1) / tile);
  a.hidden = heads * head_dim;
  a.scale = scale;
  a.dropout_p = dropout_p;
  a.keep_scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(dropout_p)));
  a.seed = seed;
  a.offset = offset;
  a.q = q;
  a.k = k;
  a.v = v;
  a.mask = mask;
  return a;
}

template <int kDim>
void forward_for(cudaStream_t stream, int64_t pairs, Args a) {
  using L = Layout<kDim>;
  allow_shared_memory<flash_forward_kernel<kDim>>(L::kForwardBytes, "flash_attention_forward");
  const unsigned blocks = static_cast<unsigned>(pairs * a.tiles);
  flash_forward_kernel<kDim><<<blocks, L::kThreads, L::kForwardBytes, stream>>>(a);
  cuda::check_launch("flash_attention_forward");
}

template <int kDim>
void backward_for(cudaStream_t stream, int64_t pairs, Args a) {
  using L = Layout<kDim>;
  const unsigned blocks = static_cast<unsigned>(pairs * a.tiles);
  if (a.dk || a.dv) {
    allow_shared_memory<flash_backward_kv_kernel<kDim>>(L::kBackwardBytes, "flash_attention_backward");
    flash_backward_kv_kernel<kDim><<<blocks, L::kThreads, L::kBackwardBytes, stream>>>(a);
    cuda::check_launch("flash_attention_backward (dk dv)");
  }
  if (a.dq) {
    allow_shared_memory<flash_backward_q_kernel<kDim>>(L::kBackwardBytes, "flash_attention_backward");
    flash_backward_q_kernel<kDim><<<blocks, L::kThreads, L::kBackwardBytes, stream>>>(a);
    cuda::check_launch("flash_attention_backward (dq)");
  }
}

// The padded head dim of the kernel instance that serves head_dim (<= 128).
int padded_dim(int64_t head_dim) { return head_dim <= 32 ? 32 : head_dim <= 64 ? 64 : 128; }

}  // namespace

void CudaBackend::flash_attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                          float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                                          const float* k, const float* v, const int32_t* mask, float* lse,
                                          float* out) {
  if (batch == 0 || seq == 0) return;
  check_flash_dims(batch, seq, heads, head_dim, "flash_attention_forward");
  const int dim = padded_dim(head_dim);
  const int tile = dim <= 64 ? Layout<64>::kTile : Layout<128>::kTile;
  Args a = make_args(seq, heads, head_dim, tile, scale, dropout_p, seed, offset, q, k, v, mask);
  a.lse = lse;
  a.out = out;
  const int64_t pairs = batch * heads;
  if (dim == 32) forward_for<32>(stream_, pairs, a);
  else if (dim == 64) forward_for<64>(stream_, pairs, a);
  else forward_for<128>(stream_, pairs, a);
}

void CudaBackend::flash_attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                           float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                                           const float* k, const float* v, const int32_t* mask, const float* lse,
                                           const float* out, const float* dout, float* dq, float* dk, float* dv) {
  if (!dq && !dk && !dv) return;
  if (batch == 0 || seq == 0) return;
  check_flash_dims(batch, seq, heads, head_dim, "flash_attention_backward");
  const int dim = padded_dim(head_dim);
  const int tile = dim <= 64 ? Layout<64>::kTile : Layout<128>::kTile;
  Args a = make_args(seq, heads, head_dim, tile, scale, dropout_p, seed, offset, q, k, v, mask);
  a.lse_in = lse;
  a.out_in = out;
  a.dout = dout;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  const int64_t pairs = batch * heads;
  const int64_t rows = pairs * seq;
  // D = rowsum(dO * O) is needed by dS, i.e. for dq and dk only.
  cuda::Scratch row_d(*this, dq || dk ? static_cast<size_t>(rows) * sizeof(float) : 0);
  if (dq || dk) {
    constexpr int kRowsPerBlock = cuda::kThreads / cuda::kWarpSize;
    const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    if (blocks > INT32_MAX) throw Error("cuda flash_attention_backward: " + std::to_string(rows) + " rows is larger than the grid");
    row_dot_kernel<<<static_cast<unsigned>(blocks), cuda::kThreads, 0, stream_>>>(
        rows, a.seq, a.heads, a.head_dim, a.hidden, out, dout, row_d.as<float>());
    cuda::check_launch("flash_attention_backward (row dot)");
    a.row_d = row_d.as<float>();
  }
  if (dim == 32) backward_for<32>(stream_, pairs, a);
  else if (dim == 64) backward_for<64>(stream_, pairs, a);
  else backward_for<128>(stream_, pairs, a);
}

}  // namespace bertkit
