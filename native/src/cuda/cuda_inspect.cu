// CUDA facts for `bertkit doctor` (cuda_inspect.h).
#include "cuda/cuda_inspect.h"

#include <cuda_runtime.h>

#include <mutex>

#include "bertkit_cuda_config.h"
#include "cuda/cublas_api.h"

namespace bertkit {
namespace cuda {

namespace {
std::mutex dirs_mutex;
std::vector<std::string> dirs_given;
}  // namespace

void set_library_dirs(const std::vector<std::string>& dirs) {
  {
    std::lock_guard<std::mutex> lock(dirs_mutex);
    dirs_given = dirs;
  }
  set_cublas_search_dirs(dirs);
}

CudaReport inspect() {
  CudaReport r;
  r.build_toolkit = BERTKIT_CUDA_BUILD_VERSION;
  r.build_archs = BERTKIT_CUDA_ARCHS_TEXT;
  r.cudart = BERTKIT_CUDART_LINKAGE;
  {
    std::lock_guard<std::mutex> lock(dirs_mutex);
    r.library_dirs = dirs_given;
  }
  cudaRuntimeGetVersion(&r.runtime_version);
  cudaDriverGetVersion(&r.driver_version);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    r.device_error = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  } else {
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      GpuInfo g;
      g.index = i;
      g.name = p.name;
      g.major = p.major;
      g.minor = p.minor;
      g.multiprocessors = p.multiProcessorCount;
      g.total_bytes = static_cast<double>(p.totalGlobalMem);
      r.gpus.push_back(g);
    }
  }
  CublasLookup lookup = cublas_lookup();
  r.cublas_path = lookup.path;
  r.cublas_tried = lookup.tried;
  return r;
}

}  // namespace cuda
}  // namespace bertkit
