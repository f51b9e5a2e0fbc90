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
