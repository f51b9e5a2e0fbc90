#include "op_args.h"

#include <cmath>

namespace bertkit {

OpArgs::OpArgs(const Napi::CallbackInfo& info, const char* op, size_t expected_count)
    : info_(info), op_(op) {
  if (info.Length() != expected_count) {
    fail("expected " + std::to_string(expected_count) + " arguments, got " +
         std::to_string(info.Length()));
  }
}

OpArgs::OpArgs(const Napi::CallbackInfo& info, const char* op, size_t min_count, size_t max_count)
    : info_(info), op_(op) {
  if (info.Length() < min_count || info.Length() > max_count) {
    fail("expected " + std::to_string(min_count) + " to " + std::to_string(max_count) + " arguments, got " +
         std::to_string(info.Length()));
  }
}

void OpArgs::fail(const std::string& message) const {
  throw Napi::Error::New(info_.Env(), std::string(op_) + ": " + message);
}

NativeBuffer* OpArgs::buffer(size_t index, const char* name, DType dtype, bool optional) {
  Napi::Value v = info_[index];
  if (optional && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!NativeBuffer::Is(v)) fail(std::string("argument '") + name + "' must be a NativeBuffer");
  NativeBuffer* b = NativeBuffer::Unwrap(v);
  if (b->freed()) fail(std::string("tensor '") + name + "' was already freed (use after free)");
  if (b->dtype() != dtype) {
    fail(std::string("tensor '") + name + "' has dtype " + dtype_name(b->dtype()) + ", expected " +
         dtype_name(dtype));
  }
  buffers_.push_back(b);
  names_.push_back(name);
  return b;
}

int64_t OpArgs::dim(size_t index, const char* name) {
  Napi::Value v = info_[index];
  if (!v.IsNumber()) fail(std::string("'") + name + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9.0e15) {
    fail(std::string("'") + name + "' must be a non-negative integer, got " + std::to_string(d));
  }
  return static_cast<int64_t>(d);
}

int64_t OpArgs::positive_dim(size_t index, const char* name) {
  int64_t d = dim(index, name);
  if (d < 1) fail(std::string("'") + name + "' must be at least 1, got 0");
  return d;
}

float OpArgs::number(size_t index, const char* name) {
  Napi::Value v = info_[index];
  if (!v.IsNumber()) fail(std::string("'") + name + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) fail(std::string("'") + name + "' must be finite, got " + std::to_string(d));
  return static_cast<float>(d);
}

double OpArgs::real(size_t index, const char* name) {
  Napi::Value v = info_[index];
  if (!v.IsNumber()) fail(std::string("'") + name + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) fail(std::string("'") + name + "' must be finite, got " + std::to_string(d));
  return d;
}

uint64_t OpArgs::u64(size_t index, const char* name) {
  Napi::Value v = info_[index];
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t u = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) fail(std::string("'") + name + "' does not fit in 64 bits");
    return u;
  }
  return static_cast<uint64_t>(dim(index, name));
}

int32_t OpArgs::i32(size_t index, const char* name) {
  Napi::Value v = info_[index];
  if (!v.IsNumber()) fail(std::string("'") + name + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != std::floor(d) || d < -2147483648.0 || d > 2147483647.0) {
    fail(std::string("'") + name + "' must be a 32-bit integer");
  }
  return static_cast<int32_t>(d);
}

bool OpArgs::flag(size_t index, const char* name) {
  Napi::Value v = info_[index];
  if (!v.IsBoolean()) fail(std::string("'") + name + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

bool OpArgs::optional_flag(size_t index, const char* name) {
  if (index >= info_.Length() || info_[index].IsUndefined()) return false;
  return flag(index, name);
}

void OpArgs::need(NativeBuffer* buf, const char* name, int64_t numel, const std::string& shape) {
  if (buf == nullptr) return;
  if (buf->numel() < numel) {
    fail(std::string("tensor '") + name + "' holds " + std::to_string(buf->numel()) +
         " elements but shape " + shape + " needs " + std::to_string(numel));
  }
}

void OpArgs::distinct(NativeBuffer* out, const char* out_name, NativeBuffer* in, const char* in_name) {
  if (out != nullptr && in != nullptr && out->data() == in->data()) {
    fail(std::string("output '") + out_name + "' must not be the same buffer as input '" + in_name + "'");
  }
}

Device OpArgs::device() {
  if (buffers_.empty()) fail("no tensor arguments");
  Device d = buffers_[0]->device();
  for (size_t i = 1; i < buffers_.size(); ++i) {
    if (buffers_[i]->device() != d) {
      fail(std::string("tensors on different devices: '") + names_[0] + "' is on " + device_name(d) +
           ", '" + names_[i] + "' is on " + device_name(buffers_[i]->device()));
    }
  }
  try {
    backend_for(d);  // not compiled with CUDA, no usable GPU: say so before any work is issued
  } catch (const Error& e) {
    fail(e.what());
  }
  return d;
}

Napi::Value OpArgs::enqueue(Work work) { return enqueue(device(), std::move(work)); }

Napi::Value OpArgs::enqueue(Device device, Work work) {
  try {
    bertkit::enqueue(device, std::move(work));
  } catch (const OutOfMemory& e) {
    Napi::Error err = Napi::Error::New(env(), std::string(op_) + ": " + e.what());
    err.Set("code", Napi::String::New(env(), "ERR_BERTKIT_OOM"));
    throw err;
  } catch (const Error& e) {
    fail(e.what());
  }
  return env().Undefined();
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  bool first = true;
  for (int64_t d : dims) {
    if (!first) s += ", ";
    s += std::to_string(d);
    first = false;
  }
  return s + "]";
}

int64_t checked_mul(const OpArgs& args, std::initializer_list<int64_t> factors) {
  int64_t total = 1;
  for (int64_t f : factors) {
    if (f != 0 && total > INT64_C(4503599627370496) / f) args.fail("shape is too large");
    total *= f;
  }
  return total;
}

float* f32(NativeBuffer* b) { return b ? static_cast<float*>(b->data()) : nullptr; }
const int32_t* i32p(NativeBuffer* b) { return b ? static_cast<const int32_t*>(b->data()) : nullptr; }

}  // namespace bertkit
