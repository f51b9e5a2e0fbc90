#include "cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "bertkit/indices.h"
#include "thread_pool.h"

namespace bertkit {

CpuBackend& cpu_backend() {
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

std::string CpuBackend::describe() const {
  return std::string("cpu (") + std::to_string(ThreadPool::instance().num_threads()) +
         " threads, gemm: " + cpu_gemm_name() + ")";
}

namespace {

// A cache of freed large blocks, reused by later allocations of the same size
// class. A training step allocates and frees the same few hundred activation
// and gradient buffers every step; returning them to the OS and faulting
// fresh zeroed pages back in cost tens of thousands of page faults a step.
// Small blocks (< 64 KiB) go straight to malloc, which caches them already.
class BlockCache {
 public:
  static constexpr size_t kMinCached = 64 * 1024;

  // Size classes: 8 per power of two, so a block is at most 12.5 % larger than asked.
  static size_t size_class(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded < kMinCached) return rounded;
    size_t top = size_t{1} << (63 - __builtin_clzll(rounded));
    size_t step = top / 8;
    return (rounded + step - 1) / step * step;
  }

  void* take(size_t cls) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(cls);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_bytes_ -= cls;
    return p;
  }

  // Keeps the block unless the cache would exceed its limit.
  bool give(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_bytes_ + cls > limit()) return false;
    free_[cls].push_back(p);
    cached_bytes_ += cls;
    return true;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [cls, blocks] : free_) {
      for (void* p : blocks) std::free(p);
    }
    free_.clear();
    cached_bytes_ = 0;
  }

  size_t cached_bytes() const { return cached_bytes_; }

 private:
  // BERTKIT_CPU_CACHE_MB bounds the idle memory kept (default 1024; 0 disables).
  static size_t limit() {
    static const size_t value = [] {
      const char* env = std::getenv("BERTKIT_CPU_CACHE_MB");
      long mb = env ? std::atol(env) : 1024;
      return static_cast<size_t>(mb < 0 ? 0 : mb) * 1024 * 1024;
    }();
    return value;
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed: buffers may be freed at exit
  return *cache;
}

}  // namespace

void* CpuBackend::allocate(size_t bytes) {
  // 64-byte alignment suits AVX-512 loads; aligned_alloc needs a multiple of it.
  size_t cls = BlockCache::size_class(bytes == 0 ? 1 : bytes);
  if (cls >= BlockCache::kMinCached) {
    if (void* p = block_cache().take(cls)) return p;
  }
  void* ptr = std::aligned_alloc(64, cls);
  if (!ptr && cls >= BlockCache::kMinCached) {
    block_cache().clear();  // idle cached blocks are the first thing to give back
    ptr = std::aligned_alloc(64, cls);
  }
  if (!ptr) {
    throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes) + " bytes", bytes);
  }
  return ptr;
}

void CpuBackend::release(void* ptr, size_t bytes) {
  size_t cls = BlockCache::size_class(bytes == 0 ? 1 : bytes);
  if (cls >= BlockCache::kMinCached && block_cache().give(ptr, cls)) return;
  std::free(ptr);
}

size_t cpu_cached_bytes() { return block_cache().cached_bytes(); }

void cpu_release_cache() { block_cache().clear(); }

void CpuBackend::upload(void* dst, const void* host_src, size_t bytes) {
  if (bytes) std::memcpy(dst, host_src, bytes);
}

void CpuBackend::download(void* host_dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(host_dst, src, bytes);
}

void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memmove(dst, src, bytes);
}

void CpuBackend::check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                               int32_t ignore_index, const std::string& what) {
  check_index_range(indices, n, limit, allow_ignore, ignore_index, what);
}

}  // namespace bertkit
