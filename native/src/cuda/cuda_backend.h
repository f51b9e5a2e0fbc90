// The CUDA backend: one device (0), one non-blocking stream, one cuBLAS handle
// bound to it, and a caching allocator. Every op is enqueued on that stream, so
// ops run in program order without host waits; only download() and
// synchronize() block. CUDA and cuBLAS failures become bertkit::Error (never an
// abort) naming the call and the error.
//
// Each op family lives in its own .cu file (gemm.cu, elementwise.cu,
// activation.cu, dropout.cu, layernorm.cu, embedding.cu, attention.cu,
// transpose.cu, gather.cu, softmax.cu, pooling.cu, loss.cu, adamw.cu); warp and block reductions shared by them are in
// reduce.cuh.
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

  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, const float* b, float beta, float* c, int64_t batch, int64_t stride_a,
            int64_t stride_b, int64_t stride_c) override;
  void gemm_mixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const void* a,
                  const void* b, DType ab_dtype, float beta, float* c, int64_t batch, int64_t stride_a,
                  int64_t stride_b, int64_t stride_c) override;
  // torch.backends.cuda.matmul.allow_tf32: fp32 GEMMs (gemm and attention's
  // products) may round their inputs to TF32 on tensor cores. Off by default.
  void set_allow_tf32(bool allow);
  bool allow_tf32() const { return allow_tf32_; }

  void fill(float* x, int64_t n, float value) override;
  void axpby(int64_t n, float alpha, const float* x, float beta, float* y) override;
  void mul(int64_t n, const float* a, const float* b, float* out) override;
  void add_bias_rows(int64_t rows, int64_t cols, const float* bias, float* y) override;
  void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) override;
  void sum(int64_t n, const float* x, float* out) override;
  void sum_squares(int64_t n, const float* x, float* out) override;
  void cast(int64_t n, DType src_dtype, const void* src, DType dst_dtype, void* dst) override;
  void slice_rows_forward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                          int64_t count, const float* src, float* dst) override;
  void slice_rows_backward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                           int64_t count, const float* ddst, float* dsrc) override;

  void activation_forward(Activation kind, int64_t n, const float* x, float* y) override;
  void activation_backward(Activation kind, int64_t n, const float* x, const float* dy,
                           float* dx) override;

  void dropout_forward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                       float* y) override;
  void dropout_backward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                        float* dx) override;

  void layernorm_forward(int64_t rows, int64_t cols, float eps, const float* x,
                         const float* residual, const float* gamma, const float* beta, float* y,
                         float* sum_out, float* mean, float* rstd) override;
  void layernorm_backward(int64_t rows, int64_t cols, const float* x, const float* gamma,
                          const float* mean, const float* rstd, const float* dy, float* dx,
                          float* dgamma, float* dbeta) override;

  void embedding_forward(int64_t n, int64_t dim, const int32_t* ids, const float* table,
                         float* out) override;
  void embedding_backward(int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx,
                          const int32_t* ids, const float* dout, float* dtable) override;

  void attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                         float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                         const float* k, const float* v, const int32_t* mask, float* probs,
                         float* out) override;
  void attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                          float scale, float dropout_p, uint64_t seed, uint64_t offset,
                          const float* q, const float* k, const float* v, const float* probs,
                          const float* dout, float* dq, float* dk, float* dv) override;
  void flash_attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                               float dropout_p, uint64_t seed, uint64_t offset, const float* q,
                               const float* k, const float* v, const int32_t* mask, float* lse,
                               float* out) override;
  void flash_attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                const float* q, const float* k, const float* v, const int32_t* mask,
                                const float* lse, const float* out, const float* dout, float* dq,
                                float* dk, float* dv) override;

  void swap_axes_forward(int64_t outer, int64_t rows, int64_t cols, int64_t inner, const float* src,
                         float* dst) override;
  void swap_axes_backward(int64_t outer, int64_t rows, int64_t cols, int64_t inner, const float* ddst,
                          float* dsrc) override;
  void gather_columns_forward(int64_t batch, int64_t rows, int64_t width, int64_t picks, const float* x,
                              const int32_t* index, float* out) override;
  void gather_columns_backward(int64_t batch, int64_t rows, int64_t width, int64_t picks,
                               const int32_t* index, const float* dout, float* dx) override;
  void masked_softmax_forward(int64_t groups, int64_t batch, int64_t seq, float scale, const float* x,
                              const int32_t* mask, float* probs) override;
  void masked_softmax_backward(int64_t groups, int64_t batch, int64_t seq, float scale,
                               const float* probs, const float* dprobs, const int32_t* mask,
                               float* dx) override;

  void masked_max_pool_forward(int64_t batch, int64_t seq, int64_t dim, const float* h, const int32_t* mask,
                               float* out, int32_t* argmax) override;
  void masked_max_pool_backward(int64_t batch, int64_t seq, int64_t dim, const int32_t* argmax, const float* dout,
                                float* dh) override;

  void cross_entropy_forward(int64_t rows, int64_t classes, const float* logits,
                             const int32_t* labels, int32_t ignore_index,
                             const float* class_weights, float* loss) override;
  void cross_entropy_backward(int64_t rows, int64_t classes, const float* logits,
                              const int32_t* labels, int32_t ignore_index,
                              const float* class_weights, const float* dloss,
                              float* dlogits) override;

  void adamw_step(int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
                  int64_t step, const float* grad_scale, const float* grad, float* param,
                  float* exp_avg, float* exp_avg_sq) override;
  void clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) override;
  void multi_tensor_adamw(int64_t count, const int64_t* sizes, float* const* params, const float* const* grads,
                          float* const* exp_avgs, float* const* exp_avg_sqs, double lr, double beta1, double beta2,
                          double eps, double weight_decay, const int64_t* steps, const float* grad_scale,
                          const float* found_inf) override;
  void multi_tensor_sum_squares(int64_t count, const int64_t* sizes, const float* const* tensors,
                                float* out) override;
  void nonfinite_flag(const float* x, float* found_inf) override;

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
