// The op interface shared by every backend, and the one dispatch point.
//
// A backend (cpu/cpu_backend.h, cuda/cuda_backend.h) implements memory and
// the ops of op_list.h. Callers do not call ops on a backend directly: they hand
// enqueue() a closure that calls one op, and the device decides when it runs.
// The CPU queues it on its stream thread (cpu/cpu_stream.h), so JavaScript
// only issues work; CUDA runs it at once, and the op itself enqueues kernels
// on the CUDA stream. Either way ops run in the order they were issued, and
// only download() and synchronize() wait.
//
// Reductions are deterministic for a given thread count; results may differ
// across thread counts only by floating-point rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "bertkit/dtype.h"
#include "bertkit/error.h"

namespace bertkit {

enum class Device : int { CPU = 0, CUDA = 1 };
inline constexpr int kDeviceCount = 2;  // device codes are 0 .. kDeviceCount - 1
const char* device_name(Device device);

// The activation kinds, one X(Name) each, codes in list order. The enum and
// the codes the addon exports to JavaScript (codes.activation) both come from
// this list, so a new kind is one entry here plus its kernels.
#define BERTKIT_ACTIVATION_KINDS(X)                                                                 \
  X(GeluErf) X(GeluTanh) X(Tanh) X(Relu) X(Silu) X(QuickGelu) X(Mish) X(Sigmoid) X(Relu6) X(LeakyRelu) \
  X(Identity) X(Relu2) X(GeluClip10) X(Laplace) X(Hardswish) X(SqrtSoftplus)

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Human-readable description: which GEMM, how many threads, which GPU.
  virtual std::string describe() const = 0;

  // ---- memory: at once on the calling thread (the dispatch below orders them) ----
  virtual void* allocate(size_t bytes) = 0;  // throws Error on failure
  virtual void release(void* ptr, size_t bytes) = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Throws Error("<what>[i] = v is out of range [0, limit)") unless every
  // index (token ids, labels; ignore_index skipped when allow_ignore) lies in
  // [0, limit). Enqueued before the op that reads the indices: where ops are
  // queued the error may surface at the next synchronize() or download(), and
  // the ops queued after it do not run.
  virtual void check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                             int32_t ignore_index, const std::string& what) = 0;

  enum class Activation : int {
#define BERTKIT_ACTIVATION_ENUMERATOR(name) name,
    BERTKIT_ACTIVATION_KINDS(BERTKIT_ACTIVATION_ENUMERATOR)
#undef BERTKIT_ACTIVATION_ENUMERATOR
  };

  // ---- the ops, declared once in op_list.h ------------------------------------
#define BERTKIT_OP(name, params) virtual void name params = 0;
#include "bertkit/op_list.h"
#undef BERTKIT_OP

  // ---- writing variants of accumulating backward ops ----------------------------
  // The op's result written into a gradient buffer that holds nothing yet (the
  // autograd engine's fresh buffers), instead of zero-filling it and adding:
  // bit for bit fill(0) followed by the op, -0 included (0 + -0 is +0, so a
  // backend writes g + 0.0f where it writes a product g). These defaults do
  // exactly fill + op; a backend overrides those it can write directly.
  virtual void activation_backward_write(Activation kind, int64_t n, const float* x, const float* dy, float* dx) {
    fill(dx, n, 0.0f);
    activation_backward(kind, n, x, dy, dx);
  }
  virtual void sum_rows_write(int64_t rows, int64_t cols, const float* x, float* out) {
    fill(out, cols, 0.0f);
    sum_rows(rows, cols, x, out);
  }
  virtual void dropout_rows_backward_write(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                           const int32_t* row_index, const float* dy, float* dx) {
    fill(dx, rows * cols, 0.0f);
    dropout_rows_backward(rows, cols, p, seed, offset, row_index, dy, dx);
  }
  // layernorm_backward_write with dx written rather than added to, and also
  // written into dx_copy when non-null (the same gradient flows to x and to
  // the residual, and both buffers may hold nothing yet).
  virtual void layernorm_backward_dx_write(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                           const float* mean, const float* rstd, const float* dy, float* dx,
                                           float* dx_copy, float* dgamma, float* dbeta, bool write_dgamma,
                                           bool write_dbeta) {
    fill(dx, rows * cols, 0.0f);
    layernorm_backward_write(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, write_dgamma, write_dbeta);
    if (dx_copy) axpby(rows * cols, 1.0f, dx, 0.0f, dx_copy);
  }

  // ---- forward ops that also write a half copy of their output ---------------
  // Under autocast the next Linear reads a F16 / BF16 copy of an activation or
  // a LayerNorm output; writing it beside the float32 result saves a second
  // read of that result. Bit for bit the op followed by cast.
  virtual void activation_forward_half(Activation kind, int64_t n, const float* x, float* y, DType half_dtype,
                                       void* half) {
    activation_forward(kind, n, x, y);
    cast(n, DType::F32, y, half_dtype, half);
  }
  virtual void layernorm_forward_half(int64_t rows, int64_t cols, float eps, const float* x, const float* residual,
                                      const float* gamma, const float* beta, float* y, float* sum_out, float* mean,
                                      float* rstd, DType half_dtype, void* half) {
    layernorm_forward(rows, cols, eps, x, residual, gamma, beta, y, sum_out, mean, rstd);
    cast(rows * cols, DType::F32, y, half_dtype, half);
  }

  // The backward of activation(linear(x)) under autocast, up to its products:
  // dh = dy * f'(h) for h [rows, cols] (activation_backward_write), cast to
  // dst_dtype into dst, and its column sums (the bias gradient) into sums
  // (added to, or written when write_sums; none when sums is null), so the
  // float32 dh need never be stored. scratch: a float32 [rows, cols] buffer
  // this default stores dh in; a backend that fuses the steps leaves it alone.
  virtual void activation_backward_cast_sum_rows(Activation kind, int64_t rows, int64_t cols, const float* h,
                                                 const float* dy, float* scratch, DType dst_dtype, void* dst,
                                                 float* sums, bool write_sums) {
    activation_backward_write(kind, rows * cols, h, dy, scratch);
    if (sums) cast_sum_rows(rows, cols, scratch, dst_dtype, dst, sums, write_sums);
    else cast(rows * cols, DType::F32, scratch, dst_dtype, dst);
  }

  // A [rows, cols] float32 matrix cast to F16 / BF16 (dst_dtype) and, from the
  // same read, its column sums into sums (added to, or written when
  // write_sums): a Linear's backward under autocast needs both of its
  // gradient. Bit for bit cast followed by sum_rows / sum_rows_write.
  virtual void cast_sum_rows(int64_t rows, int64_t cols, const float* x, DType dst_dtype, void* dst, float* sums,
                             bool write_sums) {
    cast(rows * cols, DType::F32, x, dst_dtype, dst);
    if (write_sums) sum_rows_write(rows, cols, x, sums);
    else sum_rows(rows, cols, x, sums);
  }
  // write_q / write_k / write_v: which of dq / dk / dv ([tokens, heads * head_dim]) to write.
  virtual void varlen_attention_backward_write(int64_t batch, int64_t tokens, int64_t seq, int64_t heads,
                                               int64_t head_dim, float scale, float dropout_p, uint64_t seed,
                                               uint64_t offset, const int32_t* cu_seqlens, const float* q,
                                               const float* k, const float* v, const float* probs,
                                               const float* dout, float* dq, float* dk, float* dv, bool write_q,
                                               bool write_k, bool write_v) {
    const int64_t n = tokens * heads * head_dim;
    if (dq && write_q) fill(dq, n, 0.0f);
    if (dk && write_k) fill(dk, n, 0.0f);
    if (dv && write_v) fill(dv, n, 0.0f);
    varlen_attention_backward(batch, tokens, seq, heads, head_dim, scale, dropout_p, seed, offset, cu_seqlens, q, k,
                              v, probs, dout, dq, dk, dv);
  }
  // layernorm_backward with dgamma / dbeta written rather than added to (dx still added to).
  virtual void layernorm_backward_write(int64_t rows, int64_t cols, const float* x, const float* gamma,
                                        const float* mean, const float* rstd, const float* dy, float* dx,
                                        float* dgamma, float* dbeta, bool write_dgamma, bool write_dbeta) {
    if (dgamma && write_dgamma) fill(dgamma, cols, 0.0f);
    if (dbeta && write_dbeta) fill(dbeta, cols, 0.0f);
    layernorm_backward(rows, cols, x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
  }
};

// Every activation kind's name, indexed by its code.
inline constexpr const char* kActivationNames[] = {
#define BERTKIT_ACTIVATION_NAME(name) #name,
    BERTKIT_ACTIVATION_KINDS(BERTKIT_ACTIVATION_NAME)
#undef BERTKIT_ACTIVATION_NAME
};
inline constexpr int kActivationCount = static_cast<int>(sizeof kActivationNames / sizeof kActivationNames[0]);

// ---- the one dispatch point ---------------------------------------------------

// The backend of a device. Throws Error with a clear reason when that device
// is unavailable (e.g. "not compiled with CUDA").
Backend& backend_for(Device device);
// True when this build contains a backend for the device (not whether it runs).
bool backend_compiled(Device device);

// Work on a device: a closure that calls one backend op. It must capture
// what it needs by value (data pointers, never a NativeBuffer, which may be
// freed before queued work runs).
using Work = std::function<void(Backend&)>;
// Runs `work` against the device's backend after everything issued to that
// device before it. On the CPU an error thrown by queued work surfaces at the
// next synchronize() or download(), and the compute work queued after it is
// skipped; on CUDA (and on the CPU with queueing off) it is thrown here.
void enqueue(Device device, Work work);

// Memory, ordered with enqueued work the same way.
void* allocate(Device device, size_t bytes);                // at once
void release(Device device, void* ptr, size_t bytes);       // after the work issued before it
void upload(Device device, void* dst, const void* host_src, size_t bytes);  // host_src reusable on return
void download(Device device, void* host_dst, const void* src, size_t bytes);  // waits for issued work
void synchronize(Device device);  // waits; rethrows the error of failed queued work

}  // namespace bertkit
