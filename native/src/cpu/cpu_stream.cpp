#include "cpu_stream.h"

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cpu_backend.h"

namespace bertkit {

CpuStream& CpuStream::instance() {
  // Never destroyed: buffers may be released while the process exits. The
  // worker is detached for the same reason; the addon drains the queue in its
  // environment cleanup hook, so no queued op outlives Node's teardown.
  static CpuStream* stream = new CpuStream(cpu_backend());
  return *stream;
}

CpuStream::CpuStream(CpuBackend& backend) : backend_(backend) {
  const char* env = std::getenv("BERTKIT_CPU_ASYNC");
  async_ = !(env && std::string(env) == "0");
  worker_ = std::thread([this] { worker_loop(); });
  worker_.detach();
}

void CpuStream::set_async(bool on) {
  synchronize();
  async_ = on;
}

void CpuStream::submit(Kind kind, Work work) {
  if (!async_) {
    work(backend_);
    return;
  }
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(Task{kind, std::move(work)});
    wake = sleeping_;
  }
  if (wake) work_ready_.notify_one();
}

void CpuStream::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (queue_.empty()) {
      sleeping_ = true;
      work_ready_.wait(lock, [&] { return !queue_.empty(); });
      sleeping_ = false;
    }
    Task task = std::move(queue_.front());
    queue_.pop_front();
    bool skip = task.kind == Kind::Compute && error_ != nullptr;
    busy_ = true;
    lock.unlock();
    std::exception_ptr failure;
    if (!skip) {
      try {
        task.work(backend_);
      } catch (const Error&) {
        failure = std::current_exception();
      } catch (const std::bad_alloc&) {
        failure = std::make_exception_ptr(OutOfMemory("cpu: out of memory inside a queued op", 0));
      } catch (const std::exception& e) {
        failure = std::make_exception_ptr(Error(std::string("cpu: a queued op failed: ") + e.what()));
      }
    }
    task.work = nullptr;  // drop captured state outside the lock
    lock.lock();
    busy_ = false;
    if (failure && !error_) error_ = failure;
    if (queue_.empty()) drained_.notify_all();
  }
}

void CpuStream::rethrow_pending_error() {
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void CpuStream::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  drained_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void CpuStream::synchronize() {
  drain();
  rethrow_pending_error();
}

// ---- memory ---------------------------------------------------------------------

void* CpuStream::allocate(size_t bytes) {
  if (void* p = backend_.allocate_or_null(bytes)) return p;
  // The backend empties the cache before it gives up: first let every queued op
  // that may still use a cached block run.
  drain();
  return backend_.allocate(bytes);
}

void CpuStream::release(void* ptr, size_t bytes) {
  if (async_) {
    std::vector<CpuBlock> evicted;
    if (backend_.cache_block(ptr, bytes, evicted)) {
      for (const CpuBlock& block : evicted) submit(Kind::Memory, [block](Backend&) { unmap_cpu_block(block); });
      return;
    }
  }
  submit(Kind::Memory, [ptr, bytes](Backend& be) { be.release(ptr, bytes); });
}

void CpuStream::upload(void* dst, const void* host_src, size_t bytes) {
  bool idle = true;
  if (async_) {
    std::lock_guard<std::mutex> lock(mutex_);
    idle = queue_.empty() && !busy_;
  }
  // Idle: nothing queued can read or write dst, and only this thread queues work.
  if (idle) {
    backend_.upload(dst, host_src, bytes);
    return;
  }
  auto staged = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(host_src),
                                                       static_cast<const uint8_t*>(host_src) + bytes);
  submit(Kind::Memory, [dst, staged](Backend& be) { be.upload(dst, staged->data(), staged->size()); });
}

void CpuStream::download(void* host_dst, const void* src, size_t bytes) {
  synchronize();
  backend_.download(host_dst, src, bytes);
}

}  // namespace bertkit
