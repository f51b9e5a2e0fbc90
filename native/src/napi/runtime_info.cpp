// What `bertkit doctor` shows about the loaded addon, and where the CUDA
// variant looks for cuBLAS. No maths: it gathers and converts.
#include <napi.h>

#include "../cpu/cpu_backend.h"
#include "../cpu/vecmath.h"
#include "bertkit/backend.h"
#include "runtime_info.h"
#ifdef BERTKIT_WITH_CUDA
#include "../cuda/cuda_inspect.h"
#endif

namespace bertkit {
namespace {

Napi::Value InspectRuntime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("gemm", cpu_gemm_name());
  cpu.Set("vecmath", vecmath::simd_isa_name());
  out.Set("cpu", cpu);
#ifdef BERTKIT_WITH_CUDA
  cuda::CudaReport r = cuda::inspect();
  Napi::Object c = Napi::Object::New(env);
  c.Set("compiled", true);
  c.Set("driverVersion", r.driver_version);
  c.Set("runtimeVersion", r.runtime_version);
  c.Set("buildToolkit", r.build_toolkit);
  c.Set("buildArchs", r.build_archs);
  c.Set("cudart", r.cudart);
  if (!r.device_error.empty()) c.Set("deviceError", r.device_error);
  Napi::Array gpus = Napi::Array::New(env, r.gpus.size());
  for (size_t i = 0; i < r.gpus.size(); ++i) {
    const cuda::GpuInfo& g = r.gpus[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", g.index);
    o.Set("name", g.name);
    o.Set("computeCapability", std::to_string(g.major) + "." + std::to_string(g.minor));
    o.Set("multiprocessors", g.multiprocessors);
    o.Set("totalBytes", g.total_bytes);
    gpus.Set(i, o);
  }
  c.Set("gpus", gpus);
  c.Set("cublasPath", r.cublas_path.empty() ? env.Null() : Napi::String::New(env, r.cublas_path));
  Napi::Array tried = Napi::Array::New(env, r.cublas_tried.size());
  for (size_t i = 0; i < r.cublas_tried.size(); ++i) tried.Set(i, r.cublas_tried[i]);
  c.Set("cublasTried", tried);
  Napi::Array dirs = Napi::Array::New(env, r.library_dirs.size());
  for (size_t i = 0; i < r.library_dirs.size(); ++i) dirs.Set(i, r.library_dirs[i]);
  c.Set("libraryDirs", dirs);
  out.Set("cuda", c);
#else
  Napi::Object c = Napi::Object::New(env);
  c.Set("compiled", false);
  out.Set("cuda", c);
#endif
  return out;
}

// setCudaLibraryDirs(dirs: string[]): where cuBLAS is looked for first. A
// no-op in the CPU-only addon.
Napi::Value SetCudaLibraryDirs(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArray()) {
    throw Napi::TypeError::New(info.Env(), "setCudaLibraryDirs: expected an array of directory paths");
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> dirs;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), "setCudaLibraryDirs: entry " + std::to_string(i) + " is not a string");
    dirs.push_back(v.As<Napi::String>().Utf8Value());
  }
#ifdef BERTKIT_WITH_CUDA
  cuda::set_library_dirs(dirs);
#endif
  return info.Env().Undefined();
}

}  // namespace

void RegisterRuntimeInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("inspectRuntime", Napi::Function::New(env, InspectRuntime, "inspectRuntime"));
  exports.Set("setCudaLibraryDirs", Napi::Function::New(env, SetCudaLibraryDirs, "setCudaLibraryDirs"));
}

}  // namespace bertkit
