#include "cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <deque>
#include <map>
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
// class (or a little larger). A training step allocates and frees the same few hundred activation
// and gradient buffers every step; returning them to the OS and faulting
// fresh zeroed pages back in cost tens of thousands of page faults a step.
// Small blocks (< 64 KiB) go straight to malloc, which caches them already.
// Blocks of the cached classes are mapped from the OS directly, not taken
// from malloc: a run whose activation sizes keep growing (a warm-up over every
// padded length, longest last) left malloc's heap fragmented, each new block
// a little larger than any freed one, and the process grew to ~9 GB for
// ~400 MB of live tensors. A mapped block goes back to the OS when evicted.
void* map_block(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void unmap_block(void* p, size_t bytes) { munmap(p, bytes); }

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

  // A cached block of class cls, or failing that the smallest cached one up
  // to twice as large: unpadded batches change their token count every step,
  // so activations fall in neighbouring classes from step to step, and an
  // exact match alone left the cache full of idle blocks of other classes
  // while every step faulted fresh pages in (measured, MiniLM shape, batch 16
  // of the recipe's sentences: ~19k page faults a step; with the larger
  // blocks and eviction of the oldest, ~200 once the cache has warmed up). A
  // larger block is remembered, so that its release files it under its own
  // class.
  void* take(size_t cls) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.lower_bound(cls); it != free_.end() && it->first <= 2 * cls; ++it) {
      if (it->second.empty()) continue;
      void* p = it->second.back().ptr;
      it->second.pop_back();
      cached_bytes_ -= it->first;
      if (it->first != cls) larger_[p] = it->first;
      return p;
    }
    return nullptr;
  }

  // The class a block was cut for: cls, unless take() handed out a larger one.
  size_t class_of(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = larger_.find(p);
    if (it == larger_.end()) return cls;
    const size_t actual = it->second;
    larger_.erase(it);
    return actual;
  }

  // Keeps a block released as class cls (filed under the larger class take()
  // handed out, if so), first dropping the blocks cached longest ago when the
  // cache would exceed its limit (blocks of classes no step asks for any more
  // are the ones that grow old); false, changing nothing, when the block
  // alone exceeds it. The dropped blocks go to `evicted` for the caller to
  // unmap (at once, or after the queued ops that may still use them).
  bool give(void* p, size_t cls, std::vector<CpuBlock>& evicted) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto larger = larger_.find(p);
    const size_t actual = larger == larger_.end() ? cls : larger->second;
    if (actual > limit()) return false;
    if (larger != larger_.end()) larger_.erase(larger);
    while (cached_bytes_ + actual > limit()) evicted.push_back(evict_oldest());
    free_[actual].push_back(Cached{p, ++clock_});
    cached_bytes_ += actual;
    return true;
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [cls, blocks] : free_) {
      for (const Cached& b : blocks) unmap_block(b.ptr, cls);
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

  struct Cached {
    void* ptr;
    uint64_t given;  // when it was cached (clock_)
  };

  // Takes out the block cached longest ago (each class's deque is oldest first).
  CpuBlock evict_oldest() {
    auto oldest = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (!it->second.empty() && (oldest == free_.end() || it->second.front().given < oldest->second.front().given)) oldest = it;
    }
    const CpuBlock block{oldest->second.front().ptr, oldest->first};
    oldest->second.pop_front();
    cached_bytes_ -= oldest->first;
    return block;
  }

  std::mutex mutex_;
  std::map<size_t, std::deque<Cached>> free_;  // ordered: take() looks for the next classes up
  uint64_t clock_ = 0;
  std::unordered_map<void*, size_t> larger_;
  size_t cached_bytes_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();  // never destroyed: buffers may be freed at exit
  return *cache;
}

}  // namespace

void* CpuBackend::allocate_or_null(size_t bytes) {
  // 64-byte alignment suits AVX-512 loads; aligned_alloc needs a multiple of it.
  size_t cls = BlockCache::size_class(bytes == 0 ? 1 : bytes);
  if (cls < BlockCache::kMinCached) return std::aligned_alloc(64, cls);
  if (void* p = block_cache().take(cls)) return p;
  return map_block(cls);
}

void* CpuBackend::allocate(size_t bytes) {
  void* ptr = allocate_or_null(bytes);
  if (!ptr) {
    block_cache().clear();  // idle cached blocks are the first thing to give back
    ptr = allocate_or_null(bytes);
  }
  if (!ptr) throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes) + " bytes", bytes);
  return ptr;
}

void CpuBackend::release(void* ptr, size_t bytes) {
  std::vector<CpuBlock> evicted;
  if (!cache_block(ptr, bytes, evicted)) {
    const size_t cls = BlockCache::size_class(bytes == 0 ? 1 : bytes);
    if (cls < BlockCache::kMinCached) std::free(ptr);
    else unmap_block(ptr, block_cache().class_of(ptr, cls));
  }
  for (const CpuBlock& b : evicted) unmap_cpu_block(b);
}

bool CpuBackend::cache_block(void* ptr, size_t bytes, std::vector<CpuBlock>& evicted) {
  const size_t cls = BlockCache::size_class(bytes == 0 ? 1 : bytes);
  return cls >= BlockCache::kMinCached && block_cache().give(ptr, cls, evicted);
}

void unmap_cpu_block(const CpuBlock& block) { unmap_block(block.ptr, block.bytes); }

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
