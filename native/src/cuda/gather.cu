// Picking columns by index along the last dimension, with the semantics of
// cpu/gather.cpp: out[n, s, t] = x[n, s, index[s, t]], the index [rows, picks]
// shared by every n.
//
// Backward must add every repeated index of a row (DeBERTa's clamped and
// log-bucketed relative positions repeat a lot) without float atomics, whose
// order changes from run to run. The index is shared by the whole batch, so it
// is inverted once per call: for each row s, the picks t sorted by the column
// they read (a stable counting sort, one thread per row: starts[s, w] ..
// starts[s, w + 1] list, in increasing t, the picks of column w). Then one
// thread per dx element (n, s, w) sums its picks in double, in increasing t
// as the CPU does, and adds the sum once.
#include <climits>

#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {

__global__ void gather_columns_forward_kernel(int64_t total, int64_t rows, int64_t width, int64_t picks,
                                              const float* x, const int32_t* index, float* out) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = e / picks, t = e - row * picks;
    const int64_t s = row % rows;
    out[e] = x[row * width + index[s * picks + t]];
  }
}

// One thread per index row s: starts[s, 0..width] (exclusive prefix counts)
// and order[s, ...] = picks t grouped by index[s, t], stable.
__global__ void invert_index_kernel(int64_t rows, int64_t width, int64_t picks, const int32_t* index, int* starts,
                                    int* order) {
  for (int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; s < rows; s += int64_t{gridDim.x} * blockDim.x) {
    int* st = starts + s * (width + 1);
    const int32_t* idx = index + s * picks;
    int* ord = order + s * picks;
    for (int64_t w = 0; w <= width; ++w) st[w] = 0;
    for (int64_t t = 0; t < picks; ++t) ++st[idx[t] + 1];
    for (int64_t w = 0; w < width; ++w) st[w + 1] += st[w];
    // Fill, using st[w] as the next free slot of column w, then shift back.
    for (int64_t t = 0; t < picks; ++t) ord[st[idx[t]]++] = static_cast<int>(t);
    for (int64_t w = width; w > 0; --w) st[w] = st[w - 1];
    st[0] = 0;
  }
}

__global__ void gather_columns_backward_kernel(int64_t total, int64_t rows, int64_t width, int64_t picks,
                                               const int* starts, const int* order, const float* dout, float* dx) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = e / width, w = e - row * width;
    const int64_t s = row % rows;
    const int* st = starts + s * (width + 1);
    const int* ord = order + s * picks;
    const float* from = dout + row * picks;
    const int begin = st[w], end = st[w + 1];
    if (begin == end) continue;
    double acc = 0.0;
    for (int k = begin; k < end; ++k) acc += static_cast<double>(from[ord[k]]);
    dx[e] = static_cast<float>(static_cast<double>(dx[e]) + acc);
  }
}

}  // namespace

void CudaBackend::gather_columns_forward(int64_t batch, int64_t rows, int64_t width, int64_t picks, const float* x,
                                         const int32_t* index, float* out) {
  const int64_t total = batch * rows * picks;
  if (total == 0) return;
  gather_columns_forward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(total, rows, width, picks, x,
                                                                                        index, out);
  cuda::check_launch("gather_columns_forward");
}

void CudaBackend::gather_columns_backward(int64_t batch, int64_t rows, int64_t width, int64_t picks,
                                          const int32_t* index, const float* dout, float* dx) {
  const int64_t total = batch * rows * width;
  if (total == 0 || picks == 0) return;
  if (picks >= INT_MAX) throw Error("cuda gather_columns_backward: " + std::to_string(picks) + " picks per row exceed 32-bit indices");
  cuda::Scratch starts(*this, static_cast<size_t>(rows * (width + 1)) * sizeof(int));
  cuda::Scratch order(*this, static_cast<size_t>(rows * picks) * sizeof(int));
  invert_index_kernel<<<cuda::grid_for(rows), cuda::kThreads, 0, stream_>>>(rows, width, picks, index,
                                                                             starts.as<int>(), order.as<int>());
  cuda::check_launch("gather_columns_backward (invert index)");
  gather_columns_backward_kernel<<<cuda::grid_for(total), cuda::kThreads, 0, stream_>>>(
      total, rows, width, picks, starts.as<int>(), order.as<int>(), dout, dx);
  cuda::check_launch("gather_columns_backward");
}

}  // namespace bertkit
