// dlopen()/dlsym() of cuBLAS (see cublas_api.h for why).
#include "cuda/cublas_api.h"

#include <dlfcn.h>

#include <mutex>

#include "bertkit/dynamic_library.h"
#include "bertkit/error.h"

namespace bertkit {
namespace cuda {

namespace {

// The major versions this build can call, newest first. The entry points used
// here have the same C signatures in cuBLAS 12 and 13.
const char* const kSonames[] = {"libcublas.so.13", "libcublas.so.12"};

struct State {
  std::mutex mutex;
  std::vector<std::string> dirs;
  bool loaded = false;
  CublasApi api{};
  CublasLookup lookup;
};

State& state() {
  static State s;
  return s;
}

// Opens one candidate and binds every entry point; on failure says why.
bool try_open(const std::string& file, CublasApi& api, std::string& why) {
  dlerror();
  void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    why = e ? e : "dlopen failed";
    return false;
  }
  std::string missing;
  bool ok = true;
  ok &= bind_symbol(lib, "cublasCreate_v2", api.create, missing);
  ok &= bind_symbol(lib, "cublasDestroy_v2", api.destroy, missing);
  ok &= bind_symbol(lib, "cublasSetStream_v2", api.set_stream, missing);
  ok &= bind_symbol(lib, "cublasSetMathMode", api.set_math_mode, missing);
  ok &= bind_symbol(lib, "cublasSetPointerMode_v2", api.set_pointer_mode, missing);
  ok &= bind_symbol(lib, "cublasGetVersion_v2", api.get_version, missing);
  ok &= bind_symbol(lib, "cublasGetStatusString", api.status_string, missing);
  ok &= bind_symbol(lib, "cublasSgemmStridedBatched", api.sgemm_strided_batched, missing);
  ok &= bind_symbol(lib, "cublasSgemmBatched", api.sgemm_batched, missing);
  ok &= bind_symbol(lib, "cublasGemmStridedBatchedEx", api.gemm_strided_batched_ex, missing);
  if (!ok) {
    why = "missing symbols: " + missing;
    dlclose(lib);
    return false;
  }
  // Never closed: handles and kernels from it live as long as the process.
  return true;
}

// Caller holds s.mutex.
void lookup_locked(State& s) {
  if (s.loaded) return;
  s.lookup = CublasLookup{};
  std::vector<std::string> candidates;
  for (const std::string& dir : s.dirs) {
    if (dir.empty()) continue;
    const std::string base = dir.back() == '/' ? dir : dir + "/";
    for (const char* soname : kSonames) candidates.push_back(base + soname);
  }
  // Last, the dynamic linker's own search: LD_LIBRARY_PATH, ld.so.cache.
  for (const char* soname : kSonames) candidates.push_back(soname);

  for (const std::string& file : candidates) {
    CublasApi api{};
    std::string why;
    if (try_open(file, api, why)) {
      s.api = api;
      s.loaded = true;
      s.lookup.path = file;
      if (file.find('/') == std::string::npos) {
        // Found by the linker's search: report the file it picked.
        Dl_info info{};
        if (dladdr(reinterpret_cast<void*>(api.create), &info) && info.dli_fname) s.lookup.path = info.dli_fname;
      }
      return;
    }
    // A directory without the file is the common case: keep the message short.
    if (why.find("No such file") != std::string::npos || why.find("cannot open shared object") != std::string::npos) {
      why = "not found";
    }
    s.lookup.tried.push_back(file + ": " + why);
  }
}

}  // namespace

void set_cublas_search_dirs(std::vector<std::string> dirs) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.dirs = std::move(dirs);
}

const CublasApi& cublas_lib() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  lookup_locked(s);
  if (!s.loaded) {
    std::string tried;
    // One line: `auto` device selection prints it as the reason for using the CPU.
    for (const std::string& t : s.lookup.tried) tried += (tried.empty() ? " " : "; ") + t;
    throw Error(
        "cuda: cuBLAS (libcublas.so.13 or .so.12) was not found. Install it with `pip install nvidia-cublas` "
        "(CUDA 13; `pip install nvidia-cublas-cu12` for CUDA 12) or a CUDA toolkit, or point "
        "BERTKIT_CUDA_LIB_PATH at the directory that holds it. Tried:" +
        tried);
  }
  return s.api;
}

CublasLookup cublas_lookup() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  lookup_locked(s);
  return s.lookup;
}

}  // namespace cuda
}  // namespace bertkit
