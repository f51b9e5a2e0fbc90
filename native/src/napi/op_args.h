// Unpacking and validation of op arguments at the Node-API boundary, and the
// hand-over of the op to its device. Every check happens here, before any
// pointer reaches a backend, and every failure is a JavaScript Error that
// starts with the op's name.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "bertkit/backend.h"
#include "native_buffer.h"

namespace bertkit {

class OpArgs {
 public:
  OpArgs(const Napi::CallbackInfo& info, const char* op, size_t expected_count);
  // For ops whose last arguments are optional: between min_count and max_count arguments.
  OpArgs(const Napi::CallbackInfo& info, const char* op, size_t min_count, size_t max_count);

  // A live buffer of the given dtype; null when optional and the argument is null/undefined.
  NativeBuffer* buffer(size_t index, const char* name, DType dtype, bool optional = false);
  int64_t dim(size_t index, const char* name);            // non-negative integer
  int64_t positive_dim(size_t index, const char* name);   // >= 1
  float number(size_t index, const char* name);           // finite number, as float
  double real(size_t index, const char* name);            // finite number, as double
  uint64_t u64(size_t index, const char* name);           // non-negative integer or BigInt
  int32_t i32(size_t index, const char* name);
  bool flag(size_t index, const char* name);
  bool optional_flag(size_t index, const char* name);      // false when absent or undefined

  // Fails unless `buf` (when non-null) holds at least `numel` elements; `shape` names the layout.
  void need(NativeBuffer* buf, const char* name, int64_t numel, const std::string& shape);
  // Fails when an output aliases an input that the op still reads.
  void distinct(NativeBuffer* out, const char* out_name, NativeBuffer* in, const char* in_name);
  // The device shared by every buffer seen so far; fails when they differ, or
  // when this build or machine cannot run it.
  Device device();
  // Hands work (a closure that calls one backend op, capturing data pointers
  // by value) to enqueue() on device(). An error thrown at once becomes a
  // JavaScript Error starting with the op's name (out of memory: code
  // ERR_BERTKIT_OOM). Returns undefined, the value of every op binding.
  Napi::Value enqueue(Work work);
  // The same on a given device (ops whose tensors come in arrays).
  Napi::Value enqueue(Device device, Work work);

  [[noreturn]] void fail(const std::string& message) const;
  const char* op() const { return op_; }
  Napi::Env env() const { return info_.Env(); }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
  std::vector<NativeBuffer*> buffers_;
  std::vector<const char*> names_;
};

std::string shape_str(std::initializer_list<int64_t> dims);
int64_t checked_mul(const OpArgs& args, std::initializer_list<int64_t> factors);
float* f32(NativeBuffer* b);
const int32_t* i32p(NativeBuffer* b);

}  // namespace bertkit
