#include "cpu_stream.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace bertkit {

CpuStream& CpuStream::instance() {
  // Never destroyed: buffers may be released while the process exits. The
  // worker is detached for the same reason; the addon drains the queue in its
  // environment cleanup hook, so no queued op outlives Node's teardown.
  static CpuStream* stream = new CpuStream();
  return *stream;
}

CpuStream::CpuStream() {
  const char* env = std::getenv("BERTKIT_CPU_ASYNC");
  async_ = !(env && std::string(env) == "0");
  worker_ = std::thread([this] { worker_loop(); });
  worker_.detach();
}

void CpuStream::set_async(bool on) {
  synchronize();
  async_ = on;
}

void CpuStream::submit(Kind kind, std::function<void()> fn) {
  if (!async_) {
    fn();
    return;
  }
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(Task{kind, std::move(fn)});
    wake = sleeping_;
  }
  if (wake) work_ready_.notify_one();
}

void CpuStream::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (queue_.empty()) {
      sleeping_ = true;
      work_ready_.wait(lock, [&] { return !queue_.empty(); });
      sleeping_ = false;
    }
    Task task = std::move(queue_.front());
    queue_.pop_front();
    bool skip = task.kind == Kind::Compute && error_ != nullptr;
    busy_ = true;
    lock.unlock();
    std::exception_ptr failure;
    if (!skip) {
      try {
        task.run();
      } catch (const Error&) {
        failure = std::current_exception();
      } catch (const std::bad_alloc&) {
        failure = std::make_exception_ptr(OutOfMemory("cpu: out of memory inside a queued op", 0));
      } catch (const std::exception& e) {
        failure = std::make_exception_ptr(Error(std::string("cpu: a queued op failed: ") + e.what()));
      }
    }
    task.run = nullptr;  // drop captured state outside the lock
    lock.lock();
    busy_ = false;
    if (failure && !error_) error_ = failure;
    if (queue_.empty()) drained_.notify_all();
  }
}

void CpuStream::rethrow_pending_error() {
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void CpuStream::synchronize() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    drained_.wait(lock, [&] { return queue_.empty() && !busy_; });
  }
  rethrow_pending_error();
}

// ---- memory ---------------------------------------------------------------------

void CpuStream::release(void* ptr, size_t bytes) {
  submit(Kind::Memory, [this, ptr, bytes] { cpu_.release(ptr, bytes); });
}

void CpuStream::upload(void* dst, const void* host_src, size_t bytes) {
  bool idle = true;
  if (async_) {
    std::lock_guard<std::mutex> lock(mutex_);
    idle = queue_.empty() && !busy_;
  }
  // Idle: nothing queued can read or write dst, and only this thread queues work.
  if (idle) {
    cpu_.upload(dst, host_src, bytes);
    return;
  }
  auto staged = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(host_src),
                                                       static_cast<const uint8_t*>(host_src) + bytes);
  submit(Kind::Memory, [this, dst, staged] { cpu_.upload(dst, staged->data(), staged->size()); });
}

void CpuStream::download(void* host_dst, const void* src, size_t bytes) {
  synchronize();
  cpu_.download(host_dst, src, bytes);
}

void CpuStream::copy(void* dst, const void* src, size_t bytes) {
  submit(Kind::Compute, [=, this] { cpu_.copy(dst, src, bytes); });
}

void CpuStream::check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                              int32_t ignore_index, const std::string& what) {
  submit(Kind::Compute, [=, this] { cpu_.check_indices(indices, n, limit, allow_ignore, ignore_index, what); });
}

// ---- ops: each queues the CpuBackend op with its arguments -------------------------

void CpuStream::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* a, const float* b, float beta, float* c, int64_t batch,
                     int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  submit(Kind::Compute, [=, this] {
    cpu_.gemm(trans_a, trans_b, m, n, k, alpha, a, b, beta, c, batch, stride_a, stride_b, stride_c);
  });
}

void CpuStream::gemm_mixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const void* a, const void* b, DType ab_dtype, float beta, float* c,
                           int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  submit(Kind::Compute, [=, this] {
    cpu_.gemm_mixed(trans_a, trans_b, m, n, k, alpha, a, b, ab_dtype, beta, c, batch, stride_a, stride_b,
                    stride_c);
  });
}

void CpuStream::fill(float* x, int64_t n, float value) {
  submit(Kind::Compute, [=, this] { cpu_.fill(x, n, value); });
}

void CpuStream::axpby(int64_t n, float alpha, const float* x, float beta, float* y) {
  submit(Kind::Compute, [=, this] { cpu_.axpby(n, alpha, x, beta, y); });
}

void CpuStream::mul(int64_t n, const float* a, const float* b, float* out) {
  submit(Kind::Compute, [=, this] { cpu_.mul(n, a, b, out); });
}

void CpuStream::add_bias_rows(int64_t rows, int64_t cols, const float* bias, float* y) {
  submit(Kind::Compute, [=, this] { cpu_.add_bias_rows(rows, cols, bias, y); });
}

void CpuStream::sum_rows(int64_t rows, int64_t cols, const float* x, float* out) {
  submit(Kind::Compute, [=, this] { cpu_.sum_rows(rows, cols, x, out); });
}

void CpuStream::sum(int64_t n, const float* x, float* out) {
  submit(Kind::Compute, [=, this] { cpu_.sum(n, x, out); });
}

void CpuStream::sum_squares(int64_t n, const float* x, float* out) {
  submit(Kind::Compute, [=, this] { cpu_.sum_squares(n, x, out); });
}

void CpuStream::cast(int64_t n, DType src_dtype, const void* src, DType dst_dtype, void* dst) {
  submit(Kind::Compute, [=, this] { cpu_.cast(n, src_dtype, src, dst_dtype, dst); });
}

void CpuStream::slice_rows_forward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                                   int64_t count, const float* src, float* dst) {
  submit(Kind::Compute, [=, this] { cpu_.slice_rows_forward(batch, src_rows, cols, start, count, src, dst); });
}

void CpuStream::slice_rows_backward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                                    int64_t count, const float* ddst, float* dsrc) {
  submit(Kind::Compute, [=, this] { cpu_.slice_rows_backward(batch, src_rows, cols, start, count, ddst, dsrc); });
}

void CpuStream::activation_forward(Activation kind, int64_t n, const float* x, float* y) {
  submit(Kind::Compute, [=, this] { cpu_.activation_forward(kind, n, x, y); });
}

void CpuStream::activation_backward(Activation kind, int64_t n, const float* x, const float* dy,
                                    float* dx) {
  submit(Kind::Compute, [=, this] { cpu_.activation_backward(kind, n, x, dy, dx); });
}

void CpuStream::dropout_forward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                                float* y) {
  submit(Kind::Compute, [=, this] { cpu_.dropout_forward(n, p, seed, offset, x, y); });
}

void CpuStream::dropout_backward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* dy,
                                 float* dx) {
  submit(Kind::Compute, [=, this] { cpu_.dropout_backward(n, p, seed, offset, dy, dx); });
}

void CpuStream::layernorm_forward(int64_t rows, int64_t cols, float eps, const float* x,
                                  const float* residual, const float* gamma, const float* beta,
                                  float* y, float* sum_out, float* mean, float* rstd) {
  submit(Kind::Compute, [=, this] {
    cpu_.layernorm_forward(rows, cols, eps, x, residual, gamma, beta, y, sum_out, mean, rstd);
  });
}

void CpuStream::layernorm_backward(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                   const float* mean, const float* rstd, const float* dy, float* dx,
                                   float* dgamma, float* dbeta) {
  submit(Kind::Compute, [=, this] {
    cpu_.layernorm_backward(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
  });
}

void CpuStream::embedding_forward(int64_t n, int64_t dim, const int32_t* ids, const float* table,
                                  float* out) {
  submit(Kind::Compute, [=, this] { cpu_.embedding_forward(n, dim, ids, table, out); });
}

void CpuStream::embedding_backward(int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx,
                                   const int32_t* ids, const float* dout, float* dtable) {
  submit(Kind::Compute, [=, this] { cpu_.embedding_backward(n, dim, vocab, padding_idx, ids, dout, dtable); });
}

void CpuStream::attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                  float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                  const float* q, const float* k, const float* v, const int32_t* mask,
                                  float* probs, float* out) {
  submit(Kind::Compute, [=, this] {
    cpu_.attention_forward(batch, seq, heads, head_dim, scale, dropout_p, seed, offset, q, k, v, mask, probs, out);
  });
}

void CpuStream::attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                   float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                   const float* q, const float* k, const float* v, const float* probs,
                                   const float* dout, float* dq, float* dk, float* dv) {
  submit(Kind::Compute, [=, this] {
    cpu_.attention_backward(batch, seq, heads, head_dim, scale, dropout_p, seed, offset, q, k, v, probs, dout,
                            dq, dk, dv);
  });
}

void CpuStream::flash_attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                        float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                        const float* q, const float* k, const float* v, const int32_t* mask,
                                        float* lse, float* out) {
  submit(Kind::Compute, [=, this] {
    cpu_.flash_attention_forward(batch, seq, heads, head_dim, scale, dropout_p, seed, offset, q, k, v, mask, lse,
                                 out);
  });
}

void CpuStream::flash_attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                         float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                         const float* q, const float* k, const float* v, const int32_t* mask,
                                         const float* lse, const float* out, const float* dout, float* dq,
                                         float* dk, float* dv) {
  submit(Kind::Compute, [=, this] {
    cpu_.flash_attention_backward(batch, seq, heads, head_dim, scale, dropout_p, seed, offset, q, k, v, mask, lse,
                                  out, dout, dq, dk, dv);
  });
}

void CpuStream::swap_axes_forward(int64_t outer, int64_t rows, int64_t cols, int64_t inner,
                                  const float* src, float* dst) {
  submit(Kind::Compute, [=, this] { cpu_.swap_axes_forward(outer, rows, cols, inner, src, dst); });
}

void CpuStream::swap_axes_backward(int64_t outer, int64_t rows, int64_t cols, int64_t inner,
                                   const float* ddst, float* dsrc) {
  submit(Kind::Compute, [=, this] { cpu_.swap_axes_backward(outer, rows, cols, inner, ddst, dsrc); });
}

void CpuStream::gather_columns_forward(int64_t batch, int64_t rows, int64_t width, int64_t picks,
                                       const float* x, const int32_t* index, float* out) {
  submit(Kind::Compute, [=, this] { cpu_.gather_columns_forward(batch, rows, width, picks, x, index, out); });
}

void CpuStream::gather_columns_backward(int64_t batch, int64_t rows, int64_t width, int64_t picks,
                                        const int32_t* index, const float* dout, float* dx) {
  submit(Kind::Compute, [=, this] { cpu_.gather_columns_backward(batch, rows, width, picks, index, dout, dx); });
}

void CpuStream::masked_softmax_forward(int64_t groups, int64_t batch, int64_t seq, float scale,
                                       const float* x, const int32_t* mask, float* probs) {
  submit(Kind::Compute, [=, this] { cpu_.masked_softmax_forward(groups, batch, seq, scale, x, mask, probs); });
}

void CpuStream::masked_softmax_backward(int64_t groups, int64_t batch, int64_t seq, float scale,
                                        const float* probs, const float* dprobs, const int32_t* mask,
                                        float* dx) {
  submit(Kind::Compute, [=, this] {
    cpu_.masked_softmax_backward(groups, batch, seq, scale, probs, dprobs, mask, dx);
  });
}

void CpuStream::masked_max_pool_forward(int64_t batch, int64_t seq, int64_t dim, const float* h,
                                        const int32_t* mask, float* out, int32_t* argmax) {
  submit(Kind::Compute, [=, this] { cpu_.masked_max_pool_forward(batch, seq, dim, h, mask, out, argmax); });
}

void CpuStream::masked_max_pool_backward(int64_t batch, int64_t seq, int64_t dim, const int32_t* argmax,
                                         const float* dout, float* dh) {
  submit(Kind::Compute, [=, this] { cpu_.masked_max_pool_backward(batch, seq, dim, argmax, dout, dh); });
}

void CpuStream::cross_entropy_forward(int64_t rows, int64_t classes, const float* logits,
                                      const int32_t* labels, int32_t ignore_index,
                                      const float* class_weights, float* loss) {
  submit(Kind::Compute, [=, this] {
    cpu_.cross_entropy_forward(rows, classes, logits, labels, ignore_index, class_weights, loss);
  });
}

void CpuStream::cross_entropy_backward(int64_t rows, int64_t classes, const float* logits,
                                       const int32_t* labels, int32_t ignore_index,
                                       const float* class_weights, const float* dloss, float* dlogits) {
  submit(Kind::Compute, [=, this] {
    cpu_.cross_entropy_backward(rows, classes, logits, labels, ignore_index, class_weights, dloss, dlogits);
  });
}

void CpuStream::adamw_step(int64_t n, double lr, double beta1, double beta2, double eps,
                           double weight_decay, int64_t step, const float* grad_scale, const float* grad,
                           float* param, float* exp_avg, float* exp_avg_sq) {
  submit(Kind::Compute, [=, this] {
    cpu_.adamw_step(n, lr, beta1, beta2, eps, weight_decay, step, grad_scale, grad, param, exp_avg, exp_avg_sq);
  });
}

void CpuStream::clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) {
  submit(Kind::Compute, [=, this] { cpu_.clip_coefficient(sum_sq, max_norm, clip_coef); });
}

// The caller's arrays die when the call returns: the queued op gets copies.
void CpuStream::multi_tensor_adamw(int64_t count, const int64_t* sizes, float* const* params,
                                   const float* const* grads, float* const* exp_avgs, float* const* exp_avg_sqs,
                                   double lr, double beta1, double beta2, double eps, double weight_decay,
                                   const int64_t* steps, const float* grad_scale, const float* found_inf) {
  const size_t c = static_cast<size_t>(count);
  std::vector<int64_t> size_list(sizes, sizes + c), step_list(steps, steps + c);
  std::vector<float*> param_list(params, params + c), avg_list(exp_avgs, exp_avgs + c),
      avg_sq_list(exp_avg_sqs, exp_avg_sqs + c);
  std::vector<const float*> grad_list(grads, grads + c);
  submit(Kind::Compute, [=, this] {
    cpu_.multi_tensor_adamw(count, size_list.data(), param_list.data(), grad_list.data(), avg_list.data(),
                            avg_sq_list.data(), lr, beta1, beta2, eps, weight_decay, step_list.data(), grad_scale,
                            found_inf);
  });
}

void CpuStream::multi_tensor_sum_squares(int64_t count, const int64_t* sizes, const float* const* tensors,
                                         float* out) {
  const size_t c = static_cast<size_t>(count);
  std::vector<int64_t> size_list(sizes, sizes + c);
  std::vector<const float*> tensor_list(tensors, tensors + c);
  submit(Kind::Compute, [=, this] {
    cpu_.multi_tensor_sum_squares(count, size_list.data(), tensor_list.data(), out);
  });
}

void CpuStream::nonfinite_flag(const float* x, float* found_inf) {
  submit(Kind::Compute, [=, this] { cpu_.nonfinite_flag(x, found_inf); });
}

}  // namespace bertkit
