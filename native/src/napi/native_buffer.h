// NativeBuffer: the only object that owns device or host memory for tensors.
// JavaScript frees it explicitly with free(); the finalizer is a backstop for
// buffers that leaked past the lifetime rules, never the plan (see
// lib/tensor/lifetimes.md).
#pragma once

#include <napi.h>

#include <vector>

#include "bertkit/backend.h"

namespace bertkit {

class NativeBuffer : public Napi::ObjectWrap<NativeBuffer> {
 public:
  static Napi::Function Define(Napi::Env env);
  static bool Is(const Napi::Value& value);
  static NativeBuffer* Unwrap(const Napi::Value& value) { return ObjectWrap::Unwrap(value.As<Napi::Object>()); }

  explicit NativeBuffer(const Napi::CallbackInfo& info);
  ~NativeBuffer() override;

  void* data() const { return data_; }
  bool freed() const { return data_ == nullptr; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  int64_t numel() const { return numel_; }
  size_t bytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  // For an int32 buffer: the values it holds when they all came from write(),
  // else null. Index range checks read these instead of the device, so they
  // neither wait for queued work nor copy from a GPU.
  const std::vector<int32_t>* host_indices() const { return host_indices_known_ ? &host_indices_ : nullptr; }
  // The one op that writes int32 (maskedMaxPoolForward's argmax) calls this
  // first: from then on the device holds values the host copy does not.
  void forget_host_indices() {
    host_indices_.clear();
    host_indices_.shrink_to_fit();
    host_indices_known_ = false;
  }

  struct Stats {
    int64_t live_buffers = 0;
    int64_t cpu_bytes = 0;
    int64_t cuda_bytes = 0;
    int64_t peak_cpu_bytes = 0;
    int64_t peak_cuda_bytes = 0;
  };
  static Stats& stats();

 private:
  void Release();
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value GetFreed(const Napi::CallbackInfo& info);
  Napi::Value GetNumel(const Napi::CallbackInfo& info);
  Napi::Value GetDType(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);

  void* data_ = nullptr;
  Device device_ = Device::CPU;
  DType dtype_ = DType::F32;
  int64_t numel_ = 0;
  std::vector<int32_t> host_indices_;
  bool host_indices_known_ = false;
};

}  // namespace bertkit
