#include "native_buffer.h"

#include <algorithm>
#include <string>

namespace bertkit {

namespace {
Napi::FunctionReference* constructor_ref = nullptr;

int64_t& device_bytes(NativeBuffer::Stats& s, Device d) {
  return d == Device::CUDA ? s.cuda_bytes : s.cpu_bytes;
}
int64_t& device_peak(NativeBuffer::Stats& s, Device d) {
  return d == Device::CUDA ? s.peak_cuda_bytes : s.peak_cpu_bytes;
}
}  // namespace

NativeBuffer::Stats& NativeBuffer::stats() {
  static Stats s;
  return s;
}

Napi::Function NativeBuffer::Define(Napi::Env env) {
  Napi::Function ctor = DefineClass(
      env, "NativeBuffer",
      {
          InstanceMethod<&NativeBuffer::Free>("free"),
          InstanceMethod<&NativeBuffer::Read>("read"),
          InstanceMethod<&NativeBuffer::Write>("write"),
          InstanceAccessor<&NativeBuffer::GetFreed>("freed"),
          InstanceAccessor<&NativeBuffer::GetNumel>("numel"),
          InstanceAccessor<&NativeBuffer::GetDType>("dtype"),
          InstanceAccessor<&NativeBuffer::GetDevice>("device"),
      });
  constructor_ref = new Napi::FunctionReference(Napi::Persistent(ctor));
  return ctor;
}

bool NativeBuffer::Is(const Napi::Value& value) {
  if (!value.IsObject() || constructor_ref == nullptr) return false;
  return value.As<Napi::Object>().InstanceOf(constructor_ref->Value());
}

// new NativeBuffer(device, dtype, numel): device and dtype by their codes (the addon exports them)
NativeBuffer::NativeBuffer(const Napi::CallbackInfo& info) : ObjectWrap(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "NativeBuffer(device, dtype, numel): expected three numbers");
  }
  int device = info[0].As<Napi::Number>().Int32Value();
  int dtype = info[1].As<Napi::Number>().Int32Value();
  double numel = info[2].As<Napi::Number>().DoubleValue();
  if (device < 0 || device >= kDeviceCount) throw Napi::RangeError::New(env, "NativeBuffer: unknown device " + std::to_string(device));
  if (dtype < 0 || dtype >= kDTypeCount) throw Napi::RangeError::New(env, "NativeBuffer: unknown dtype " + std::to_string(dtype));
  if (!(numel >= 0) || numel != static_cast<double>(static_cast<int64_t>(numel)) || numel > 9.0e15) {
    throw Napi::RangeError::New(env, "NativeBuffer: numel must be a non-negative integer, got " + std::to_string(numel));
  }
  device_ = static_cast<Device>(device);
  dtype_ = static_cast<DType>(dtype);
  numel_ = static_cast<int64_t>(numel);
  try {
    data_ = bertkit::allocate(device_, bytes());
  } catch (const OutOfMemory& e) {
    Napi::Error err = Napi::Error::New(env, e.what());
    err.Set("code", Napi::String::New(env, "ERR_BERTKIT_OOM"));
    err.Set("bytesRequested", Napi::Number::New(env, static_cast<double>(e.bytes_requested)));
    throw err;
  } catch (const Error& e) {
    throw Napi::Error::New(env, e.what());
  }
  Stats& s = stats();
  s.live_buffers++;
  device_bytes(s, device_) += static_cast<int64_t>(bytes());
  device_peak(s, device_) = std::max(device_peak(s, device_), device_bytes(s, device_));
}

NativeBuffer::~NativeBuffer() { Release(); }

void NativeBuffer::Release() {
  if (!data_) return;
  try {
    bertkit::release(device_, data_, bytes());
  } catch (...) {
    // Releasing must never throw out of a finalizer; the backend reports its own errors.
  }
  data_ = nullptr;
  host_indices_.clear();
  host_indices_.shrink_to_fit();
  host_indices_known_ = false;
  Stats& s = stats();
  s.live_buffers--;
  device_bytes(s, device_) -= static_cast<int64_t>(bytes());
}

Napi::Value NativeBuffer::Free(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

// read(): a copy of the contents as Float32Array (F32), Int32Array (I32) or
// Uint16Array (F16 / BF16 raw bits).
Napi::Value NativeBuffer::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (freed()) throw Napi::Error::New(env, "read: buffer was already freed");
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes());
  if (host_indices_known_) {  // ids and masks: no device read, no wait for queued work
    std::copy(host_indices_.begin(), host_indices_.end(), static_cast<int32_t*>(ab.Data()));
    return Napi::Int32Array::New(env, numel_, ab, 0);
  }
  try {
    bertkit::download(device_, ab.Data(), data_, bytes());
  } catch (const Error& e) {
    throw Napi::Error::New(env, std::string("read: ") + e.what());
  }
  switch (dtype_) {
    case DType::F32: return Napi::Float32Array::New(env, numel_, ab, 0);
    case DType::I32: return Napi::Int32Array::New(env, numel_, ab, 0);
    default: return Napi::Uint16Array::New(env, numel_, ab, 0);
  }
}

// write(typedArray[, offsetElements]): copies host values into the buffer. The
// typed array's element type must match the dtype (Float32Array for float32,
// Int32Array for int32, Uint16Array for float16/bfloat16 bits).
Napi::Value NativeBuffer::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (freed()) throw Napi::Error::New(env, "write: buffer was already freed");
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    throw Napi::TypeError::New(env, "write: expected a typed array");
  }
  Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
  napi_typedarray_type want = dtype_ == DType::F32   ? napi_float32_array
                              : dtype_ == DType::I32 ? napi_int32_array
                                                     : napi_uint16_array;
  if (arr.TypedArrayType() != want) {
    throw Napi::TypeError::New(env, std::string("write: a ") + dtype_name(dtype_) +
                                        " buffer needs a matching typed array");
  }
  double offset = 0;
  if (info.Length() >= 2 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "write: offset must be a number");
    offset = info[1].As<Napi::Number>().DoubleValue();
  }
  int64_t count = static_cast<int64_t>(arr.ElementLength());
  if (!(offset >= 0) || offset != static_cast<double>(static_cast<int64_t>(offset)) ||
      static_cast<int64_t>(offset) + count > numel_) {
    throw Napi::RangeError::New(env, "write: " + std::to_string(count) + " elements at offset " +
                                         std::to_string(offset) + " do not fit a buffer of " +
                                         std::to_string(numel_));
  }
  const uint8_t* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  size_t elem = dtype_size(dtype_);
  try {
    bertkit::upload(device_, static_cast<uint8_t*>(data_) + static_cast<size_t>(offset) * elem, src,
                    static_cast<size_t>(count) * elem);
  } catch (const Error& e) {
    throw Napi::Error::New(env, std::string("write: ") + e.what());
  }
  if (dtype_ == DType::I32) {
    const int32_t* values = reinterpret_cast<const int32_t*>(src);
    int64_t start = static_cast<int64_t>(offset);
    if (start == 0 && count == numel_) {
      host_indices_.assign(values, values + count);
      host_indices_known_ = true;
    } else if (host_indices_known_) {
      std::copy(values, values + count, host_indices_.begin() + start);
    }
  }
  return env.Undefined();
}

Napi::Value NativeBuffer::GetFreed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), freed()); }
Napi::Value NativeBuffer::GetNumel(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(numel_)); }
Napi::Value NativeBuffer::GetDType(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<int>(dtype_)); }
Napi::Value NativeBuffer::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<int>(device_)); }

}  // namespace bertkit
