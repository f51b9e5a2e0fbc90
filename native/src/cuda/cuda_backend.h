// The CUDA backend: one device (0), one non-blocking stream, one cuBLAS handle
// bound to it, and a caching allocator. Every op is enqueued on that stream, so
// ops run in program order without host waits; only download() and
// synchronize() block. CUDA and cuBLAS failures become bertkit::Error (never an
// abort) naming the call and the error.
//
// Each op family lives in its own .cu file, named as the CPU backend's .cpp
// file of that family (gemm.cu, layernorm.cu, ...); warp and block reductions
// shared by them are in reduce.cuh.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "bertkit/backend.h"

namespace bertkit {
namespace cuda {

// Throws Error("cuda: <call> failed: <cudaErrorName> (<description>)").
// `call` may be the whole expression; only the function name is kept.
void check(cudaError_t err, const char* call);
void check(cublasStatus_t status, const char* call);
// After a kernel launch: turns a bad launch configuration (or an earlier
// asynchronous fault, which CUDA reports at the next call) into an Error.
void check_launch(const char* kernel);

#define BERTKIT_CUDA_CHECK(expr) ::bertkit::cuda::check((expr), #expr)

constexpr int kThreads = 256;

// Grid for a grid-stride loop over n elements. Capped so huge tensors reuse
// threads instead of launching millions of blocks; n > 0.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t cap = int64_t{1} << 16;
  return static_cast<unsigned>(std::min<int64_t>((n + threads - 1) / threads, cap));
}

// A temporary device block from the backend's caching allocator, returned on
// scope exit. Releasing before the kernels that use it have run is safe: every
// op is on the one stream, so the next owner's work is queued behind them.
class Scratch {
 public:
  Scratch(Backend& backend, size_t bytes)
      : backend_(backend), bytes_(bytes), ptr_(bytes ? backend.allocate(bytes) : nullptr) {}
  ~Scratch() {
    try {
      if (ptr_) backend_.release(ptr_, bytes_);
    } catch (...) {
      // release() throws only for a pointer it never handed out; not this one.
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  Backend& backend_;
  size_t bytes_;
  void* ptr_;
};

}  // namespace cuda

class CudaBackend final : public Backend {
 public:
  // Throws Error with the reason when no usable GPU is there.
  CudaBackend();
  // Never runs: the singleton is leaked on purpose (see cuda_backend()).
  ~CudaBackend() override = default;

  Device device() const override { return Device::CUDA; }
  std::string describe() const override;

  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  void check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                     int32_t ignore_index, const std::string& what) override;

#define BERTKIT_OP(name, params) void name params override;
#include "bertkit/op_list.h"
#undef BERTKIT_OP

  // torch.backends.cuda.matmul.allow_tf32: fp32 GEMMs (gemm and attention's
  // products) may round their inputs to TF32 on tensor cores. Off by default.
  void set_allow_tf32(bool allow);
  bool allow_tf32() const { return allow_tf32_; }

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }

  // Returns every cached (free) block to the driver. Called before giving up on
  // an allocation; the caller must not hold mutex_.
  void empty_cache();

 private:
  static size_t size_class(size_t bytes);

  int device_ = 0;
  cudaDeviceProp props_{};
  int driver_version_ = 0;
  int runtime_version_ = 0;
  int cublas_version_ = 0;
  int kernel_binary_version_ = 0;  // SM of the SASS the driver picked (or JIT'ed) for this GPU
  bool allow_tf32_ = false;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;

  // Caching allocator: freed blocks go to a free list of their size class and
  // are handed out again for the next request of that class. Reuse is safe
  // without events because every op runs on the one stream, in order.
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;  // size class -> blocks
  std::unordered_map<void*, size_t> live_blocks_;                // block -> size class
  size_t cached_bytes_ = 0;
  size_t live_bytes_ = 0;
};

}  // namespace bertkit
