// The op interface shared by every backend. One op family per group below; each
// forward sits beside its backward. All tensors are dense, contiguous and
// row-major; shapes are passed explicitly and were validated by the caller
// (the Node-API layer) before any pointer reaches a backend.
//
// Conventions every implementation follows:
//  * Pointers point into memory of the backend's own device.
//  * Backward ops ACCUMULATE into gradient outputs (dx += ...), never overwrite,
//    so the autograd engine can sum contributions from several consumers.
//    A null gradient pointer means "nobody needs this gradient": skip the work.
//  * Reductions are deterministic for a given thread count; results may differ
//    across thread counts only by floating-point rounding.
//  * Every op is asynchronous with respect to the host on devices that can be
//    (CUDA); only download() and synchronize() wait.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bertkit/dtype.h"
#include "bertkit/error.h"

namespace bertkit {

enum class Device : int { CPU = 0, CUDA = 1 };
const char* device_name(Device device);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Human-readable description: which GEMM, how many threads, which GPU.
  virtual std::string describe() const = 0;

  // ---- memory -------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;  // throws Error on failure
  virtual void release(void* ptr, size_t bytes) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;

  // ---- matrix products (gemm) -----------------------------------------------
  // For each of `batch` problems (pointers advance by the strides, in elements):
  //   C[M,N] = alpha * op(A) * op(B) + beta * C
  // op(A) is A[M,K] (row-major), or A stored as [K,M] when trans_a.
  // op(B) is B[K,N], or B stored as [N,K] when trans_b.
  // beta == 0 means C is write-only (its old contents, even NaN, are ignored).
  virtual void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, const float* b, float beta, float* c, int64_t batch,
                    int64_t stride_a, int64_t stride_b, int64_t stride_c) = 0;
  // The same product with A and B in F16 or BF16 (both the same dtype, given by
  // ab_dtype) and C in float32; products are accumulated in float32, as torch's
  // autocast matmuls are. Strides count elements of each operand's own dtype.
  virtual void gemm_mixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                          const void* a, const void* b, DType ab_dtype, float beta, float* c,
                          int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) = 0;

  // ---- elementwise and reductions (elementwise.cpp) -------------------------
  virtual void fill(float* x, int64_t n, float value) = 0;
  // y = alpha * x + beta * y   (beta == 0: y write-only)
  virtual void axpby(int64_t n, float alpha, const float* x, float beta, float* y) = 0;
  // out = a * b (elementwise)
  virtual void mul(int64_t n, const float* a, const float* b, float* out) = 0;
  // y[r, c] += bias[c]
  virtual void add_bias_rows(int64_t rows, int64_t cols, const float* bias, float* y) = 0;
  // out[c] += sum over r of x[r, c]
  virtual void sum_rows(int64_t rows, int64_t cols, const float* x, float* out) = 0;
  // out[0] += sum of x
  virtual void sum(int64_t n, const float* x, float* out) = 0;
  // out[0] += sum of x^2   (for global gradient norms)
  virtual void sum_squares(int64_t n, const float* x, float* out) = 0;
  // Converts between dtypes (F32 <-> F16 / BF16, I32 -> F32).
  virtual void cast(int64_t n, DType src_dtype, const void* src, DType dst_dtype, void* dst) = 0;
  // dst[b, j, :] = src[b, start + j, :] for j < count; src is [batch, src_rows, cols],
  // dst is [batch, count, cols]. Backward of a row slice: scatter-add back.
  virtual void slice_rows_forward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                                  int64_t count, const float* src, float* dst) = 0;
  virtual void slice_rows_backward(int64_t batch, int64_t src_rows, int64_t cols, int64_t start,
                                   int64_t count, const float* ddst, float* dsrc) = 0;

  // ---- activations (activation.cpp) ---------------------------------------
  enum class Activation : int { GeluErf = 0, GeluTanh = 1, Tanh = 2, Relu = 3 };
  virtual void activation_forward(Activation kind, int64_t n, const float* x, float* y) = 0;
  // dx += dy * f'(x). Takes x (not y) for every kind, so no output needs keeping.
  virtual void activation_backward(Activation kind, int64_t n, const float* x, const float* dy,
                                   float* dx) = 0;

  // ---- dropout (dropout.cpp) ------------------------------------------------
  // Keeps element i with probability 1-p and scales it by 1/(1-p). The mask comes
  // from philox.h keyed by (seed, offset + i), identically on every backend, so
  // backward regenerates it instead of storing it.
  virtual void dropout_forward(int64_t n, float p, uint64_t seed, uint64_t offset, const float* x,
                               float* y) = 0;
  virtual void dropout_backward(int64_t n, float p, uint64_t seed, uint64_t offset,
                                const float* dy, float* dx) = 0;

  // ---- layer norm (layernorm.cpp) -------------------------------------------
  // y = (x + residual - mean) * rstd * gamma + beta over the last dim `cols`.
  // residual may be null. mean / rstd ([rows]) are saved for backward.
  // When residual is non-null, x + residual is also written to `sum_out`
  // (backward needs the normalised input); sum_out is ignored otherwise.
  virtual void layernorm_forward(int64_t rows, int64_t cols, float eps, const float* x,
                                 const float* residual, const float* gamma, const float* beta,
                                 float* y, float* sum_out, float* mean, float* rstd) = 0;
  // x here is the normalised input (x + residual when forward had a residual).
  // dx (if non-null) += dL/dx; the same gradient flows to the residual.
  virtual void layernorm_backward(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                  const float* mean, const float* rstd, const float* dy, float* dx,
                                  float* dgamma, float* dbeta) = 0;

  // ---- embedding (embedding.cpp) --------------------------------------------
  // out[i, :] = table[ids[i], :]. ids were range-checked by the caller.
  virtual void embedding_forward(int64_t n, int64_t dim, const int32_t* ids, const float* table,
                                 float* out) = 0;
  // dtable[ids[i], :] += dout[i, :]; repeated ids must not lose updates.
  // Tokens whose id equals padding_idx contribute nothing (torch's
  // nn.Embedding(padding_idx=...)); padding_idx < 0 means none.
  virtual void embedding_backward(int64_t n, int64_t dim, int64_t vocab, int64_t padding_idx,
                                  const int32_t* ids, const float* dout, float* dtable) = 0;

  // ---- attention (attention.cpp) --------------------------------------------
  // q, k, v, out: [batch, seq, heads * head_dim] (the layout Linear produces).
  // mask: [batch, seq] of 0/1 (int32); key positions with 0 get the additive
  // bias -FLT_MAX, as transformers does, so fully padded rows give a uniform
  // softmax instead of NaN. probs: [batch, heads, seq, seq] softmax before
  // dropout, saved for backward. Dropout on probs uses (seed, offset) like
  // dropout_forward, element index = flat index into probs.
  virtual void attention_forward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                 float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                 const float* q, const float* k, const float* v,
                                 const int32_t* mask, float* probs, float* out) = 0;
  // dq / dk / dv may each be null (not needed); otherwise accumulated into.
  virtual void attention_backward(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                                  float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                  const float* q, const float* k, const float* v,
                                  const float* probs, const float* dout, float* dq, float* dk,
                                  float* dv) = 0;

  // ---- losses (loss.cpp) ------------------------------------------------------
  // Mean cross-entropy over rows whose label != ignore_index (torch semantics:
  // 0/0 = NaN when every row is ignored). loss[0] is written. Labels were
  // range-checked by the caller. Class weights may be null.
  virtual void cross_entropy_forward(int64_t rows, int64_t classes, const float* logits,
                                     const int32_t* labels, int32_t ignore_index,
                                     const float* class_weights, float* loss) = 0;
  // dlogits += dloss[0] * d(mean CE)/dlogits. dloss lives on the device.
  virtual void cross_entropy_backward(int64_t rows, int64_t classes, const float* logits,
                                      const int32_t* labels, int32_t ignore_index,
                                      const float* class_weights, const float* dloss,
                                      float* dlogits) = 0;

  // ---- optimizer (adamw.cpp) --------------------------------------------------
  // torch.optim.AdamW, one tensor: param -= lr*wd*param; m,v moments; bias
  // correction with `step` (1-based); grad is multiplied by *grad_scale first
  // (clipping coefficient / loss-scale inverse, kept on the device; null = 1).
  // Hyperparameters are double: torch computes 1 - beta2 etc. in double.
  virtual void adamw_step(int64_t n, double lr, double beta1, double beta2, double eps,
                          double weight_decay, int64_t step, const float* grad_scale,
                          const float* grad, float* param, float* exp_avg,
                          float* exp_avg_sq) = 0;
  // clip_coef[0] = min(1, max_norm / (sqrt(sum_sq[0]) + 1e-6)), torch's clip_grad_norm_.
  virtual void clip_coefficient(const float* sum_sq, float max_norm, float* clip_coef) = 0;
};

// The one dispatch point: the backend for a device. Throws Error with a clear
// reason when that device is unavailable (e.g. "not compiled with CUDA").
Backend& backend_for(Device device);
// True when this build contains a backend for the device (not whether it runs).
bool backend_compiled(Device device);

}  // namespace bertkit
