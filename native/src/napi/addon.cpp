// Module entry: exports NativeBuffer, the ops, and a few runtime queries.
#include <napi.h>

#include "../cpu/cpu_backend.h"
#include "../cpu/cpu_stream.h"
#include "../cpu/gemm.h"
#include "../cpu/gemm_bf16.h"
#include "../cpu/thread_pool.h"
#include "bertkit/backend.h"
#include "native_buffer.h"
#include "ops.h"
#include "process_group_handle.h"
#include "runtime_info.h"

namespace bertkit {
namespace {

Device device_arg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected a device number (0 = cpu, 1 = cuda)");
  }
  int d = info[0].As<Napi::Number>().Int32Value();
  if (d < 0 || d >= kDeviceCount) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": unknown device " + std::to_string(d));
  return static_cast<Device>(d);
}

// probeDevice(device) -> { ok: boolean, description?: string, reason?: string }
// Never throws for an unusable device: `auto` selection relies on that.
Napi::Value ProbeDevice(const Napi::CallbackInfo& info) {
  Device d = device_arg(info, "probeDevice");
  Napi::Object result = Napi::Object::New(info.Env());
  try {
    Backend& be = backend_for(d);
    result.Set("ok", true);
    result.Set("description", be.describe());
  } catch (const std::exception& e) {
    result.Set("ok", false);
    result.Set("reason", e.what());
  }
  return result;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Device d = device_arg(info, "synchronize");
  try {
    synchronize(d);
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("synchronize: ") + e.what());
  }
  return info.Env().Undefined();
}

// synchronizeAsync(device) -> Promise<void>: waits for the device's queued work on
// a libuv worker thread, so the event loop keeps running meanwhile. Rejects with
// the error of a queued op that failed.
class SynchronizeWorker final : public Napi::AsyncWorker {
 public:
  SynchronizeWorker(Napi::Env env, Device device)
      : Napi::AsyncWorker(env, "bertkit.synchronize"), device_(device), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      synchronize(device_);
    } catch (const std::exception& e) {
      SetError(std::string("synchronize: ") + e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Device device_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value SynchronizeAsync(const Napi::CallbackInfo& info) {
  Device d = device_arg(info, "synchronizeAsync");
  try {
    backend_for(d);  // on this thread: an unusable device fails here, not in the worker
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("synchronizeAsync: ") + e.what());
  }
  auto* worker = new SynchronizeWorker(info.Env(), d);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Waits for the CPU stream before changing what its ops use (threads, GEMM, cache).
void drain_cpu_stream(const Napi::CallbackInfo& info, const char* fn) {
  try {
    synchronize(Device::CPU);
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string(fn) + ": a queued op failed before it: " + e.what());
  }
}

// setCpuAsync(flag): queue CPU ops on the stream thread (true, the default) or run
// each at once on the calling thread (false; BERTKIT_CPU_ASYNC=0 at load).
Napi::Value SetCpuAsync(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), "setCpuAsync: expected a boolean");
  try {
    CpuStream::instance().set_async(info[0].As<Napi::Boolean>().Value());
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("setCpuAsync: a queued op failed before it: ") + e.what());
  }
  return info.Env().Undefined();
}

Napi::Value GetCpuAsync(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), CpuStream::instance().async());
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ThreadPool::instance().num_threads());
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "setNumThreads: expected a number");
  }
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 1 && n <= 256) || n != static_cast<int>(n)) {
    throw Napi::RangeError::New(info.Env(), "setNumThreads: expected an integer in [1, 256]");
  }
  drain_cpu_stream(info, "setNumThreads");
  ThreadPool::instance().set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

// setCpuGemm(path) -> the name now in use: "auto" | "openblas" | "builtin" | "builtin-avx512" | ...
Napi::Value SetCpuGemm(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setCpuGemm: expected a path name string");
  drain_cpu_stream(info, "setCpuGemm");
  try {
    select_cpu_gemm(info[0].As<Napi::String>().Utf8Value());
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("setCpuGemm: ") + e.what());
  }
  return Napi::String::New(info.Env(), cpu_gemm_name());
}

Napi::Value GetCpuGemm(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cpu_gemm_name()); }

// setCpuGemmBf16(path) -> the name now in use: "auto" | "amx" | "avx512-bf16" | "widen"
Napi::Value SetCpuGemmBf16(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setCpuGemmBf16: expected a path name string");
  drain_cpu_stream(info, "setCpuGemmBf16");
  try {
    return Napi::String::New(info.Env(), select_cpu_gemm_bf16(info[0].As<Napi::String>().Utf8Value()));
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("setCpuGemmBf16: ") + e.what());
  }
}

Napi::Value GetCpuGemmBf16(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cpu_gemm_bf16_name()); }

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  const NativeBuffer::Stats& s = NativeBuffer::stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveBuffers", static_cast<double>(s.live_buffers));
  o.Set("cpuBytes", static_cast<double>(s.cpu_bytes));
  o.Set("cudaBytes", static_cast<double>(s.cuda_bytes));
  o.Set("peakCpuBytes", static_cast<double>(s.peak_cpu_bytes));
  o.Set("peakCudaBytes", static_cast<double>(s.peak_cuda_bytes));
  o.Set("cpuCachedBytes", static_cast<double>(cpu_cached_bytes()));
  return o;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  drain_cpu_stream(info, "emptyCache");  // queued releases return their blocks first
  cpu_release_cache();
  return info.Env().Undefined();
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  NativeBuffer::Stats& s = NativeBuffer::stats();
  s.peak_cpu_bytes = s.cpu_bytes;
  s.peak_cuda_bytes = s.cuda_bytes;
  return info.Env().Undefined();
}

// codes: the numbers JavaScript passes for dtypes, devices and activation
// kinds, by name ({ dtype: { float32: 0, ... }, device: { cpu: 0, cuda: 1 },
// activation: { GeluErf: 0, ... } }), read from the enums themselves.
Napi::Object Codes(Napi::Env env) {
  Napi::Object dtype = Napi::Object::New(env), device = Napi::Object::New(env), activation = Napi::Object::New(env);
  for (int c = 0; c < kDTypeCount; ++c) dtype.Set(dtype_name(static_cast<DType>(c)), c);
  for (int c = 0; c < kDeviceCount; ++c) device.Set(device_name(static_cast<Device>(c)), c);
  for (int c = 0; c < kActivationCount; ++c) activation.Set(kActivationNames[c], c);
  Napi::Object codes = Napi::Object::New(env);
  codes.Set("dtype", dtype);
  codes.Set("device", device);
  codes.Set("activation", activation);
  for (Napi::Object o : {dtype, device, activation, codes}) o.Freeze();
  return codes;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeBuffer", NativeBuffer::Define(env));
  exports.Set("codes", Codes(env));
  RegisterOps(env, exports);
  RegisterRuntimeInfo(env, exports);
  RegisterProcessGroup(env, exports);
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDevice, "probeDevice"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  exports.Set("synchronizeAsync", Napi::Function::New(env, SynchronizeAsync, "synchronizeAsync"));
  exports.Set("setCpuAsync", Napi::Function::New(env, SetCpuAsync, "setCpuAsync"));
  exports.Set("getCpuAsync", Napi::Function::New(env, GetCpuAsync, "getCpuAsync"));
  // No queued CPU op may outlive the environment that issued it.
  napi_add_env_cleanup_hook(
      env,
      [](void*) {
        try {
          synchronize(Device::CPU);
        } catch (...) {
          // Teardown: a failed op's error has nobody left to reach.
        }
      },
      nullptr);
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
  exports.Set("cudaCompiled", Napi::Boolean::New(env, backend_compiled(Device::CUDA)));
  exports.Set("cpuGemm", Napi::String::New(env, bertkit::cpu_gemm_name()));
  exports.Set("setCpuGemm", Napi::Function::New(env, SetCpuGemm, "setCpuGemm"));
  exports.Set("getCpuGemm", Napi::Function::New(env, GetCpuGemm, "getCpuGemm"));
  exports.Set("setCpuGemmBf16", Napi::Function::New(env, SetCpuGemmBf16, "setCpuGemmBf16"));
  exports.Set("getCpuGemmBf16", Napi::Function::New(env, GetCpuGemmBf16, "getCpuGemmBf16"));
  return exports;
}

}  // namespace
}  // namespace bertkit

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return bertkit::Init(env, exports); }

NODE_API_MODULE(bertkit, InitAddon)
