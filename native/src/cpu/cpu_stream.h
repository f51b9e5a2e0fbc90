// The CPU's queue: work for the CPU backend, run in issue order on one
// background thread (a "stream", as on CUDA), so that JavaScript only queues
// work and the event loop stays free while a training step computes. It is
// not a backend: enqueue(Device::CPU, work) hands it closures that each call
// one CpuBackend op, and it knows nothing about the ops.
//
// Ordering is the whole contract. Every op is queued and runs in the order it
// was issued. Allocation happens at once. A released block of the block cache
// (64 KiB and up) goes back to the cache at once too, as a CUDA caching
// allocator reuses a block on its stream: the ops of its next owner are
// issued after the last op of its previous one, so they run after it. (Held
// back until its queued release ran, a block could not serve the next
// allocations of the same step; with the step queued ahead, every step mapped
// and faulted in fresh blocks: 3.7M page faults and 2 GB resident for an
// epoch that needs 0.8 GB.) What must wait is queued: unmapping a block the
// cache drops, and freeing a small (malloc) block, whose memory malloc may
// hand to code outside the stream. Emptying the cache, or refilling it after
// the OS refuses memory, drains the queue first. A host read (download) waits
// for the queue to drain; a host write (upload) is done at once when nothing
// is queued, else it is queued with a copy of the data.
//
// Work that throws while queued (an out-of-range token id found by
// check_indices, an allocation failure inside an op) makes the stream skip
// every later compute work (not releases and uploads), so nothing computed
// from the bad input reaches a weight; the error is rethrown by the next
// synchronize() or download(), which clears it.
//
// Queueing is on by default; BERTKIT_CPU_ASYNC=0 (or set_async(false)) runs
// all work at once on the calling thread instead.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "bertkit/backend.h"
#include "cpu_backend.h"

namespace bertkit {

class CpuStream final {
 public:
  // The stream of the CPU backend (cpu_backend()).
  static CpuStream& instance();

  bool async() const { return async_; }
  // Drains the queue (rethrowing a pending error) before switching.
  void set_async(bool on);

  // Skippable after an error (ops) or never skipped (memory bookkeeping).
  enum class Kind { Compute, Memory };
  // Runs work against the backend now (queueing off) or queues it.
  void submit(Kind kind, Work work);

  void* allocate(size_t bytes);
  void release(void* ptr, size_t bytes);
  void upload(void* dst, const void* host_src, size_t bytes);
  void download(void* host_dst, const void* src, size_t bytes);
  void synchronize();

 private:
  explicit CpuStream(CpuBackend& backend);

  struct Task {
    Kind kind;
    Work work;
  };
  void worker_loop();
  void rethrow_pending_error();
  // Waits until every queued task has run (a failed op's error stays pending).
  void drain();

  CpuBackend& backend_;
  bool async_ = true;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable drained_;
  std::deque<Task> queue_;
  bool busy_ = false;       // the worker is running a task
  bool sleeping_ = false;   // the worker waits for work_ready_
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace bertkit
