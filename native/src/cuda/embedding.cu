// Embedding lookup: a row gather forward, a deterministic scatter-add backward.
//
// Backward must not lose updates when ids repeat (padding, [CLS], token type 0
// for every token of a batch), and the CPU backend sums each id's rows in
// double, in token order, and rounds once into the table. Float atomics would
// both drift (a thousand float adds into one row) and change from run to run,
// so instead the tokens are sorted by id, stably, and each id's rows are
// summed in that order:
//
//   1. counts[id] = tokens with that id (integer atomics: exact);
//   2. starts = exclusive scan of counts, so id's tokens go to sorted
//      positions [starts[id], starts[id + 1]);
//   3. rank[i] = tokens before i with the same id, by direct comparison
//      (n is at most batch x seq, so n^2 / 4 compares per block row is cheap);
//   4. order[starts[id] + rank[i]] = i: a stable counting sort;
//   5. the sorted positions are cut into chunks of kChunk; a block sums each
//      chunk's runs of equal ids per column in double. A run that is a whole
//      id (it starts and ends inside the chunk) goes straight into the table;
//      the run touching the chunk's start or end is saved as first / last;
//   6. an id spanning chunks is finished by the block of the chunk where it
//      starts: last of that chunk plus first of each following chunk it covers.
// Every sum is in token order and every table row is written by one thread
// per column, once, so the result is the same on every run, and it differs
// from the CPU's only by the grouping of double additions.
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

constexpr int kScanThreads = 1024;
constexpr int kRankTokens = 64;                              // tokens per block in step 3
constexpr int kRankSplit = cuda::kThreads / kRankTokens;     // threads sharing one token's comparisons
constexpr int kChunk = 64;                                   // sorted positions per chunk in steps 5 and 6
constexpr int kColumnThreads = 128;                          // columns per block in steps 5 and 6

__global__ void embedding_forward_kernel(int64_t total, int64_t dim, const int32_t* ids, const float* table,
                                         float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t token = i / dim, c = i - token * dim;
    out[i] = table[static_cast<int64_t>(ids[token]) * dim + c];
  }
}

__global__ void count_ids_kernel(int n, const int32_t* ids, int* counts) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) atomicAdd(&counts[ids[i]], 1);
}

// starts[v] = counts[0] + ... + counts[v - 1] for v <= len (starts[len] = total).
// One block: each thread owns a contiguous range of ids, the block scans the
// range totals, then each thread writes its range.
__global__ void exclusive_scan_kernel(int len, const int* counts, int* starts) {
  __shared__ int totals[kScanThreads];
  const int t = threadIdx.x;
  const int64_t per = (int64_t{len} + kScanThreads - 1) / kScanThreads;
  const int begin = static_cast<int>(min(int64_t{len}, t * per));
  const int end = static_cast<int>(min(int64_t{len}, begin + per));
  int local = 0;
  for (int v = begin; v < end; ++v) local += counts[v];
  totals[t] = local;
  __syncthreads();
  // Inclusive Hillis-Steele scan of the range totals.
  for (int offset = 1; offset < kScanThreads; offset <<= 1) {
    const int add = t >= offset ? totals[t - offset] : 0;
    __syncthreads();
    totals[t] += add;
    __syncthreads();
  }
  int running = totals[t] - local;
  for (int v = begin; v < end; ++v) {
    starts[v] = running;
    running += counts[v];
  }
  if (t == kScanThreads - 1) starts[len] = totals[t];
}

// rank[i] = #{ j < i : ids[j] == ids[i] }. A block handles kRankTokens tokens;
// the kRankSplit threads of a token each compare it with a quarter of every
// tile of earlier ids, and their counts are added at the end.
__global__ void rank_kernel(int n, const int32_t* ids, int* rank) {
  __shared__ int32_t tile[cuda::kThreads];
  __shared__ int partial[kRankSplit][kRankTokens];
  const int local = threadIdx.x % kRankTokens, group = threadIdx.x / kRankTokens;
  const int i = blockIdx.x * kRankTokens + local;
  const int32_t mine = i < n ? ids[i] : -1;
  const int block_end = min(n, (blockIdx.x + 1) * kRankTokens);  // no token of this block looks at j >= this
  int count = 0;
  for (int j0 = 0; j0 < block_end; j0 += cuda::kThreads) {
    const int j = j0 + threadIdx.x;
    tile[threadIdx.x] = j < n ? ids[j] : -1;
    __syncthreads();
    const int first = group * kRankTokens;
    for (int k = first; k < first + kRankTokens; ++k) {
      if (j0 + k < i && tile[k] == mine) ++count;
    }
    __syncthreads();
  }
  partial[group][local] = count;
  __syncthreads();
  if (group == 0 && i < n) {
    int total = 0;
    for (int g = 0; g < kRankSplit; ++g) total += partial[g][local];
    rank[i] = total;
  }
}

__global__ void scatter_sorted_kernel(int n, const int32_t* ids, const int* starts, const int* rank, int* order,
                                      int32_t* sorted_ids) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int pos = starts[ids[i]] + rank[i];
    order[pos] = i;
    sorted_ids[pos] = ids[i];
  }
}

__device__ __forceinline__ void add_into(float* target, double sum) {
  *target = static_cast<float>(static_cast<double>(*target) + sum);
}

// Step 5. Grid (chunks, column blocks).
__global__ void chunk_sums_kernel(int n, int64_t dim, int64_t padding_idx, const int* order, const int32_t* sorted_ids,
                                  const int* starts, const float* dout, float* dtable, double* first, double* last) {
  const int64_t c = blockIdx.y * int64_t{kColumnThreads} + threadIdx.x;
  if (c >= dim) return;
  const int chunk = blockIdx.x;
  const int p0 = chunk * kChunk;
  const int p_end = min(n, p0 + kChunk);
  int32_t run_id = sorted_ids[p0];
  int run_start = p0;
  double acc = 0.0;
  for (int p = p0; p <= p_end; ++p) {
    const bool run_ends = p == p_end || sorted_ids[p] != run_id;
    if (run_ends) {
      if (run_id != padding_idx) {
        const int id_start = starts[run_id], id_end = starts[run_id + 1];
        if (run_start == id_start && p == id_end) {
          add_into(&dtable[static_cast<int64_t>(run_id) * dim + c], acc);
        } else {
          // Not the whole id, so the run touches the chunk's start or end.
          if (run_start == p0) first[chunk * dim + c] = acc;
          if (p == p_end) last[chunk * dim + c] = acc;
        }
      }
      if (p == p_end) break;
      run_id = sorted_ids[p];
      run_start = p;
      acc = 0.0;
    }
    acc += static_cast<double>(dout[static_cast<int64_t>(order[p]) * dim + c]);
  }
}

// Step 6. Grid (chunks, column blocks): the block of the chunk where an id
// starts, when that id runs past the chunk's end.
__global__ void spanning_sums_kernel(int n, int64_t dim, int64_t padding_idx, const int32_t* sorted_ids,
                                     const int* starts, const double* first, const double* last, float* dtable) {
  const int64_t c = blockIdx.y * int64_t{kColumnThreads} + threadIdx.x;
  if (c >= dim) return;
  const int chunk = blockIdx.x;
  const int p0 = chunk * kChunk;
  const int p_end = min(n, p0 + kChunk);
  if (p_end == n) return;
  const int32_t id = sorted_ids[p_end - 1];
  if (id == padding_idx) return;
  const int id_start = starts[id], id_end = starts[id + 1];
  if (id_start < p0 || id_end <= p_end) return;
  double total = last[chunk * dim + c];
  const int last_chunk = (id_end - 1) / kChunk;
  for (int k = chunk + 1; k <= last_chunk; ++k) total += first[k * dim + c];
  add_into(&dtable[static_cast<int64_t>(id) * dim + c], total);
}

}  // namespace

void CudaBackend::embedding_forward(int64_t n, int64_t dim, const int32_t* ids, const float* table, float* out) {
  const int64_t total = n * dim;
  if (total == 0) return;
  embedding_forward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, dim, ids, table, out);
  cuda::check_launch("embedding_forward");
}

// Row-sparse gradients are a CPU backend feature (the TypeScript layer never asks for them on CUDA).
void CudaBackend::embedding_backward_rows(int64_t, int64_t, int64_t, int64_t, const int32_t*, const float*, float*,
                                          int32_t*, bool) {
  throw Error("embedding_backward_rows: row-sparse gradients are a CPU backend feature");
}

void CudaBackend::zero_unmarked_rows(int64_t, int64_t, const int32_t*, float*) {
  throw Error("zero_unmarked_rows: row-sparse gradients are a CPU backend feature");
}

void CudaBackend::embedding_backward(int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx, const int32_t* ids,
                                     const float* dout, float* dtable) {
  if (n == 0 || dim == 0) return;
  if (n >= INT32_MAX || vocab >= INT32_MAX) {
    throw Error("cuda embedding_backward: " + std::to_string(n) + " tokens / vocabulary " + std::to_string(vocab) +
                " exceed this kernel's 32-bit indices");
  }
  const int tokens = static_cast<int>(n);
  const int words = static_cast<int>(vocab);
  const int chunks = (tokens + kChunk - 1) / kChunk;
  const int64_t column_blocks = (dim + kColumnThreads - 1) / kColumnThreads;
  if (column_blocks > 65535) {
    throw Error("cuda embedding_backward: dim " + std::to_string(dim) + " is larger than this kernel's grid");
  }
  cuda::Scratch counts(*this, static_cast<size_t>(words + 1) * sizeof(int));
  cuda::Scratch starts(*this, static_cast<size_t>(words + 1) * sizeof(int));
  cuda::Scratch rank(*this, static_cast<size_t>(tokens) * sizeof(int));
  cuda::Scratch order(*this, static_cast<size_t>(tokens) * sizeof(int));
  cuda::Scratch sorted_ids(*this, static_cast<size_t>(tokens) * sizeof(int32_t));
  const size_t piece_bytes = static_cast<size_t>(chunks) * static_cast<size_t>(dim) * sizeof(double);
  cuda::Scratch first(*this, piece_bytes);
  cuda::Scratch last(*this, piece_bytes);

  BERTKIT_CUDA_CHECK(cudaMemsetAsync(counts.as<int>(), 0, static_cast<size_t>(words + 1) * sizeof(int), stream_));
  count_ids_kernel<<<cuda::grid_for(tokens), cuda::kThreads, 0, stream_>>>(tokens, ids, counts.as<int>());
  cuda::check_launch("embedding_backward (count)");
  exclusive_scan_kernel<<<1, kScanThreads, 0, stream_>>>(words, counts.as<int>(), starts.as<int>());
  cuda::check_launch("embedding_backward (scan)");
  rank_kernel<<<(tokens + kRankTokens - 1) / kRankTokens, cuda::kThreads, 0, stream_>>>(tokens, ids, rank.as<int>());
  cuda::check_launch("embedding_backward (rank)");
  scatter_sorted_kernel<<<cuda::grid_for(tokens), cuda::kThreads, 0, stream_>>>(
      tokens, ids, starts.as<int>(), rank.as<int>(), order.as<int>(), sorted_ids.as<int32_t>());
  cuda::check_launch("embedding_backward (sort)");
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(column_blocks));
  chunk_sums_kernel<<<grid, kColumnThreads, 0, stream_>>>(tokens, dim, padding_idx, order.as<int>(),
                                                           sorted_ids.as<int32_t>(), starts.as<int>(), dout, dtable,
                                                           first.as<double>(), last.as<double>());
  cuda::check_launch("embedding_backward (chunk sums)");
  spanning_sums_kernel<<<grid, kColumnThreads, 0, stream_>>>(tokens, dim, padding_idx, sorted_ids.as<int32_t>(),
                                                              starts.as<int>(), first.as<double>(), last.as<double>(),
                                                              dtable);
  cuda::check_launch("embedding_backward (spanning sums)");
}

}  // namespace bertkit
