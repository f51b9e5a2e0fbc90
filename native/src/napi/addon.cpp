// Module entry: exports NativeBuffer, the ops, and a few runtime queries.
#include <napi.h>

#include "../cpu/cpu_backend.h"
#include "../cpu/gemm.h"
#include "../cpu/thread_pool.h"
#include "bertkit/backend.h"
#include "native_buffer.h"
#include "ops.h"

namespace bertkit {
namespace {

Device device_arg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected a device number (0 = cpu, 1 = cuda)");
  }
  int d = info[0].As<Napi::Number>().Int32Value();
  if (d != 0 && d != 1) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": unknown device " + std::to_string(d));
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
    backend_for(d).synchronize();
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("synchronize: ") + e.what());
  }
  return info.Env().Undefined();
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
  ThreadPool::instance().set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

// setCpuGemm(path) -> the name now in use: "auto" | "openblas" | "builtin" | "builtin-avx512" | ...
Napi::Value SetCpuGemm(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "setCpuGemm: expected a path name string");
  try {
    select_cpu_gemm(info[0].As<Napi::String>().Utf8Value());
  } catch (const Error& e) {
    throw Napi::Error::New(info.Env(), std::string("setCpuGemm: ") + e.what());
  }
  return Napi::String::New(info.Env(), cpu_gemm_name());
}

Napi::Value GetCpuGemm(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cpu_gemm_name()); }

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
  cpu_release_cache();
  return info.Env().Undefined();
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  NativeBuffer::Stats& s = NativeBuffer::stats();
  s.peak_cpu_bytes = s.cpu_bytes;
  s.peak_cuda_bytes = s.cuda_bytes;
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeBuffer", NativeBuffer::Define(env));
  RegisterOps(env, exports);
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDevice, "probeDevice"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
  exports.Set("cudaCompiled", Napi::Boolean::New(env, backend_compiled(Device::CUDA)));
  exports.Set("cpuGemm", Napi::String::New(env, bertkit::cpu_gemm_name()));
  exports.Set("setCpuGemm", Napi::Function::New(env, SetCpuGemm, "setCpuGemm"));
  exports.Set("getCpuGemm", Napi::Function::New(env, GetCpuGemm, "getCpuGemm"));
  return exports;
}

}  // namespace
}  // namespace bertkit

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return bertkit::Init(env, exports); }

NODE_API_MODULE(bertkit, InitAddon)
