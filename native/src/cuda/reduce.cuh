// Warp and block reductions shared by the kernels. Each one combines values in
// an order fixed by lane and thread numbers alone, so a result never depends
// on scheduling: the CUDA backend is as deterministic as the CPU backend.
#pragma once

#include <cuda_runtime.h>

namespace bertkit {
namespace cuda {

constexpr int kWarpSize = 32;

// Butterfly (xor) sums: partners add the same two operands, and a + b == b + a
// exactly, so every lane ends with bit-identical results. Needs all 32 lanes.
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over a block of exactly kBlock threads (a power of two) as a fixed tree
// in shared memory. Every thread must call it; every thread gets the total.
template <int kBlock>
__device__ __forceinline__ double block_sum(double v) {
  static_assert((kBlock & (kBlock - 1)) == 0, "block_sum needs a power-of-two block");
  __shared__ double partial[kBlock];
  partial[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const double total = partial[0];
  // A second call in the same kernel must not overwrite partial[0] before
  // every thread has read it.
  __syncthreads();
  return total;
}

}  // namespace cuda
}  // namespace bertkit
