// The CPU backend as Node sees it: the ops of CpuBackend, run in call order on
// one background thread (a "stream", as on CUDA), so that JavaScript only
// queues work and the event loop stays free while a training step computes.
//
// Ordering is the whole contract. Every op, copy and release is queued and runs
// in the order it was issued; allocation happens at once (a block comes back
// to the allocator only when its queued release runs, so whatever allocate()
// returns is no longer used by any queued op). A host read (download) waits
// for the queue to drain; a host write (upload) is done at once when nothing
// is queued, else it is queued with a copy of the data.
//
// An op that throws while queued (an out-of-range token id found by
// check_indices, an allocation failure inside an op) makes the stream skip
// every later op except releases and uploads, so nothing computed from the bad
// input reaches a weight; the error is rethrown by the next synchronize() or
// download(), which clears it.
//
// Queueing is on by default; BERTKIT_CPU_ASYNC=0 (or set_async(false)) runs
// every op at once on the calling thread instead, as before.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "cpu_backend.h"

namespace bertkit {

class CpuStream final : public Backend {
 public:
  static CpuStream& instance();

  bool async() const { return async_; }
  // Drains the queue (rethrowing a pending error) before switching.
  void set_async(bool on);

  Device device() const override { return Device::CPU; }
  std::string describe() const override { return cpu_.describe(); }

  void* allocate(size_t bytes) override { return cpu_.allocate(bytes); }
  void release(void* ptr, size_t bytes) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  void check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                     int32_t ignore_index, const std::string& what) override;
  // Host work ordered with the queued ops (a process group's ready and wait
  // points, distributed/process_group.h); skipped like an op after an error.
  void enqueue_host(std::function<void()> fn) { submit(Kind::Compute, std::move(fn)); }

  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, const float* b, float beta, float* c, int64_t batch, int64_t stride_a,
            int64_t stride_b, int64_t stride_c) override;
  void gemm_mixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const void* a,
                  const void* b, DType ab_dtype, float beta, float* c, int64_t batch, int64_t stride_a,
                  int64_t stride_b, int64_t stride_c) override;

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

 private:
  CpuStream();

  // Skippable work is dropped after an error; memory bookkeeping never is.
  enum class Kind { Compute, Memory };
  struct Task {
    Kind kind;
    std::function<void()> run;
  };
  // Runs fn now (queueing off) or queues it.
  void submit(Kind kind, std::function<void()> fn);
  void worker_loop();
  void rethrow_pending_error();

  CpuBackend cpu_;
  bool async_ = true;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable drained_;
  std::deque<Task> queue_;
  bool busy_ = false;       // the worker is running a task
  bool sleeping_ = false;   // the worker waits for work_ready_
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace bertkit
