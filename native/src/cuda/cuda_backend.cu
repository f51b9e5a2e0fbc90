// Device setup, error mapping, memory and the singleton of the CUDA backend.
#include "cuda/cuda_backend.h"
#include "cuda/cublas_api.h"
#include "bertkit/indices.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "bertkit_cuda_config.h"

namespace bertkit {
namespace cuda {

namespace {

std::string function_name(const char* call) {
  const char* paren = std::strchr(call, '(');
  return paren ? std::string(call, paren) : std::string(call);
}

const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

std::string version_text(int v) {  // CUDA encodes 12.4 as 12040
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

// Loading this kernel tells whether the build holds code this GPU can run.
__global__ void probe_kernel(int* out) {
  if (out) *out = 1;
}

}  // namespace

void check(cudaError_t err, const char* call) {
  if (err == cudaSuccess) return;
  // Clears the non-sticky "last error" so the next call does not report it again.
  cudaGetLastError();
  throw Error("cuda: " + function_name(call) + " failed: " + cudaGetErrorName(err) + " (" +
              cudaGetErrorString(err) + ")");
}

void check(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error("cuda: " + function_name(call) + " failed: " + cublas_status_name(status) + " (" +
              cublas_lib().status_string(status) + ")");
}

void check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return;
  throw Error(std::string("cuda: launching ") + kernel + " failed: " + cudaGetErrorName(err) + " (" +
              cudaGetErrorString(err) + ")");
}

}  // namespace cuda

CudaBackend::CudaBackend() {
  cudaRuntimeGetVersion(&runtime_version_);
  // 0 when no driver is installed at all (libcuda.so.1 cannot be loaded).
  cudaDriverGetVersion(&driver_version_);

  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    std::string detail = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + ", " +
                         cudaGetErrorString(err);
    if (err == cudaErrorInsufficientDriver && driver_version_ == 0) {
      throw Error("cuda: no NVIDIA driver found (" + detail + ")");
    }
    if (err == cudaErrorInsufficientDriver) {
      throw Error("cuda: the NVIDIA driver is too old: it supports CUDA " + cuda::version_text(driver_version_) +
                  ", this build uses the CUDA " + cuda::version_text(runtime_version_) +
                  " runtime; update the driver or rebuild with an older toolkit (" + detail + ")");
    }
    if (err == cudaErrorNoDevice) throw Error("cuda: no CUDA device found (" + detail + ")");
    throw Error("cuda: CUDA cannot be used (" + detail + ")");
  }
  if (count == 0) throw Error("cuda: no CUDA device found (cudaGetDeviceCount: 0 devices)");

  BERTKIT_CUDA_CHECK(cudaSetDevice(device_));
  BERTKIT_CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
  const std::string gpu = std::string(props_.name) + " (compute capability " +
                          std::to_string(props_.major) + "." + std::to_string(props_.minor) + ")";
  if (props_.major < 7) {
    throw Error("cuda: " + gpu + " is too old: bertkit needs compute capability 7.0 or newer");
  }

  cudaFuncAttributes attrs{};
  err = cudaFuncGetAttributes(&attrs, cuda::probe_kernel);
  if (err != cudaSuccess) {
    cudaGetLastError();
    std::string detail = std::string(cudaGetErrorName(err)) + ", " + cudaGetErrorString(err);
    if (err == cudaErrorUnsupportedPtxVersion) {
      throw Error("cuda: the driver (CUDA " + cuda::version_text(driver_version_) + ") is too old to compile this " +
                  "build's PTX for " + gpu + "; update the driver, or rebuild with BERTKIT_CUDA_ARCHS including " +
                  std::to_string(props_.major * 10 + props_.minor) + " (" + detail + ")");
    }
    throw Error("cuda: this build has no code for " + gpu + ": it was compiled for " BERTKIT_CUDA_ARCHS_TEXT
                "; rebuild with BERTKIT_CUDA_ARCHS including " +
                std::to_string(props_.major * 10 + props_.minor) + " (cudaFuncGetAttributes: " + detail + ")");
  }
  kernel_binary_version_ = attrs.binaryVersion;

  try {
    // Creates the context now, so a device that is busy or in a bad state says so here.
    BERTKIT_CUDA_CHECK(cudaFree(nullptr));
    // Non-blocking: legacy default-stream work from other libraries in the process
    // does not serialise with ours.
    BERTKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BERTKIT_CUDA_CHECK(cuda::cublas_lib().create(&cublas_));
    BERTKIT_CUDA_CHECK(cuda::cublas_lib().set_stream(cublas_, stream_));
    // fp32 means fp32: no TF32 tensor-core rounding unless a later switch asks for it.
    BERTKIT_CUDA_CHECK(cuda::cublas_lib().set_math_mode(cublas_, CUBLAS_DEFAULT_MATH));
    BERTKIT_CUDA_CHECK(cuda::cublas_lib().set_pointer_mode(cublas_, CUBLAS_POINTER_MODE_HOST));
    BERTKIT_CUDA_CHECK(cuda::cublas_lib().get_version(cublas_, &cublas_version_));
  } catch (...) {
    if (cublas_) cuda::cublas_lib().destroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
    cublas_ = nullptr;
    stream_ = nullptr;
    throw;
  }
}

std::string CudaBackend::describe() const {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
  size_t cached, live;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cached = cached_bytes_;
    live = live_bytes_;
  }
  int cub = cublas_version_;
  std::string s = "cuda:" + std::to_string(device_) + " " + props_.name + " (sm_" +
                  std::to_string(props_.major) + std::to_string(props_.minor) + ", " +
                  std::to_string(props_.multiProcessorCount) + " SMs, " + cuda::gib(total_bytes) + " total, " +
                  cuda::gib(free_bytes) + " free; bertkit holds " + cuda::mib(live) + " live + " + cuda::mib(cached) +
                  " cached), driver CUDA " + cuda::version_text(driver_version_) + ", runtime " +
                  cuda::version_text(runtime_version_) + ", cuBLAS " + std::to_string(cub / 10000) + "." +
                  std::to_string((cub / 100) % 100) + "." + std::to_string(cub % 100) +
                  ", kernels sm_" + std::to_string(kernel_binary_version_) + " (built for " +
                  BERTKIT_CUDA_ARCHS_TEXT + "), fp32 GEMM " + (allow_tf32_ ? "with TF32 allowed" : "without TF32");
  return s;
}

// ---- memory -------------------------------------------------------------------

// Quarter-octave classes (512 B minimum): at most 25% waste, and few enough
// classes that blocks are reused across steps whose shapes vary a little.
size_t CudaBackend::size_class(size_t bytes) {
  const size_t kMin = 512;
  if (bytes <= kMin) return kMin;
  size_t top = size_t{1} << (63 - __builtin_clzll(static_cast<unsigned long long>(bytes)));
  size_t step = std::max(kMin, top / 4);
  return (bytes + step - 1) / step * step;
}

void CudaBackend::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Blocks may have been released while kernels that use them are still queued.
  if (cudaStreamSynchronize(stream_) != cudaSuccess) cudaGetLastError();
  for (auto& entry : free_blocks_) {
    for (void* p : entry.second) {
      if (cudaFree(p) != cudaSuccess) cudaGetLastError();
    }
  }
  free_blocks_.clear();
  cached_bytes_ = 0;
}

void* CudaBackend::allocate(size_t bytes) {
  const size_t cls = size_class(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_blocks_.find(cls);
    if (it != free_blocks_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= cls;
      live_bytes_ += cls;
      live_blocks_[p] = cls;
      return p;
    }
  }
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, cls);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    empty_cache();
    err = cudaMalloc(&p, cls);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
    size_t live;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live = live_bytes_;
    }
    throw OutOfMemory("cuda: out of memory allocating " + cuda::mib(bytes) + " (" + std::to_string(bytes) +
                          " bytes) on " + props_.name + ": " + cuda::mib(free_bytes) + " free of " +
                          cuda::mib(total_bytes) + ", " + cuda::mib(live) +
                          " held by live bertkit tensors; lower the batch size (or the sequence length)",
                      bytes);
  }
  cuda::check(err, "cudaMalloc");
  std::lock_guard<std::mutex> lock(mutex_);
  live_blocks_[p] = cls;
  live_bytes_ += cls;
  return p;
}

void CudaBackend::release(void* ptr, size_t) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_blocks_.find(ptr);
  if (it == live_blocks_.end()) throw Error("cuda: release of a pointer this allocator did not hand out");
  const size_t cls = it->second;
  live_blocks_.erase(it);
  live_bytes_ -= cls;
  cached_bytes_ += cls;
  free_blocks_[cls].push_back(ptr);
}

void CudaBackend::upload(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  // From pageable memory the runtime stages the bytes before returning, so the
  // caller may reuse host_src at once even though the copy is asynchronous.
  BERTKIT_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::download(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  BERTKIT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  BERTKIT_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  const char* d = static_cast<const char*>(dst);
  const char* s = static_cast<const char*>(src);
  if (d < s + bytes && s < d + bytes) {
    // cudaMemcpy is undefined for overlapping ranges; the CPU backend's memmove is not.
    void* tmp = allocate(bytes);
    try {
      BERTKIT_CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, stream_));
      BERTKIT_CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, stream_));
    } catch (...) {
      release(tmp, bytes);
      throw;
    }
    release(tmp, bytes);
    return;
  }
  BERTKIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::synchronize() { BERTKIT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

// The indices are copied to the host and checked there before the op that reads
// them is launched. (A device-side check writing a flag read at the next sync
// would spare this round trip; it is not done yet.)
void CudaBackend::check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                                int32_t ignore_index, const std::string& what) {
  std::vector<int32_t> host(static_cast<size_t>(n));
  if (n > 0) download(host.data(), indices, static_cast<size_t>(n) * sizeof(int32_t));
  check_index_range(host.data(), n, limit, allow_ignore, ignore_index, what);
}

// ---- the singleton --------------------------------------------------------------

// Created on first use and never destroyed: at process exit the CUDA runtime may
// already be torn down, and freeing memory or a cuBLAS handle then can crash.
// A failure is remembered so every later call gives the same reason quickly.
Backend& cuda_backend() {
  static std::atomic<CudaBackend*> instance{nullptr};
  static std::mutex init_mutex;
  static std::string failure;
  if (CudaBackend* b = instance.load(std::memory_order_acquire)) return *b;
  std::lock_guard<std::mutex> lock(init_mutex);
  if (CudaBackend* b = instance.load(std::memory_order_relaxed)) return *b;
  if (!failure.empty()) throw Error(failure);
  try {
    CudaBackend* b = new CudaBackend();
    instance.store(b, std::memory_order_release);
    return *b;
  } catch (const Error& e) {
    failure = e.what();
    throw;
  } catch (const std::bad_alloc&) {
    throw Error("cuda: out of host memory while starting the CUDA backend");
  }
}

}  // namespace bertkit
