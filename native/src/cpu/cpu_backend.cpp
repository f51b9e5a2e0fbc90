#include "cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "thread_pool.h"

namespace bertkit {

std::string CpuBackend::describe() const {
  return std::string("cpu (") + std::to_string(ThreadPool::instance().num_threads()) +
         " threads, gemm: " + cpu_gemm_name() + ")";
}

void* CpuBackend::allocate(size_t bytes) {
  // 64-byte alignment suits AVX-512 loads; aligned_alloc needs a multiple of it.
  size_t rounded = ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64;
  void* ptr = std::aligned_alloc(64, rounded);
  if (!ptr) {
    throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes) + " bytes", bytes);
  }
  return ptr;
}

void CpuBackend::release(void* ptr, size_t) { std::free(ptr); }

void CpuBackend::upload(void* dst, const void* host_src, size_t bytes) {
  if (bytes) std::memcpy(dst, host_src, bytes);
}

void CpuBackend::download(void* host_dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(host_dst, src, bytes);
}

void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}

}  // namespace bertkit
