// A fixed pool of worker threads for the CPU backend. Sized to the machine's
// cores, or BERTKIT_NUM_THREADS when set. parallel_for splits a range into
// contiguous chunks, one per thread; chunk boundaries depend only on the range
// and the thread count, so results are deterministic for a given count.
//
// A training step makes hundreds of parallel calls of 10-500 us each. Waking a
// sleeping thread costs tens of microseconds on a VM, often longer than the
// work, so idle workers (and a caller waiting for its last chunk) first spin
// for a short while (BERTKIT_SPIN_US, default kDefaultSpinMicros) and only
// then sleep on a condition variable, as OpenMP runtimes do.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bertkit {

class ThreadPool {
 public:
  static constexpr int kDefaultSpinMicros = 100;

  static ThreadPool& instance();

  int num_threads() const { return num_threads_; }
  // Changes the number of threads used by later calls (1 = run inline).
  void set_num_threads(int n);

  // Calls fn(begin, end) on disjoint sub-ranges covering [0, n). Ranges are at
  // least `grain` long so tiny loops stay on the calling thread.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Calls fn(chunk) once for each chunk in [0, chunks), spread over the threads.
  // For reductions that keep one partial result per chunk. An exception thrown
  // by fn is rethrown on the calling thread after every chunk has finished.
  void run_chunks(int chunks, const std::function<void(int)>& fn);

  ~ThreadPool();

 private:
  ThreadPool();
  void start_workers(int count);
  void stop_workers();
  void worker_loop();
  // Takes and runs chunks of job `generation` until none is left to take.
  void take_chunks(uint32_t generation);
  template <typename Ready>
  bool spin_until(Ready ready) const;

  int num_threads_ = 1;
  int spin_micros_ = kDefaultSpinMicros;
  std::vector<std::thread> workers_;

  // The job being run. `ticket_` holds the job's generation (high 32 bits)
  // and the next chunk to hand out (low 32 bits) in one word, so a worker
  // that takes a chunk by compare-exchange can never take one of a later
  // job by mistake; kClosed in the low half marks a finished job.
  static constexpr uint32_t kClosed = 0xffffffffu;
  std::atomic<uint64_t> ticket_{kClosed};
  std::atomic<const std::function<void(int)>*> job_{nullptr};
  std::atomic<int> job_chunks_{0};
  std::atomic<int> chunks_finished_{0};
  uint32_t generation_ = 0;  // written only by the caller, under call_mutex_

  std::atomic<bool> stopping_{false};
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::mutex mutex_;  // guards the sleeps only
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  std::mutex call_mutex_;  // one parallel region at a time
};

}  // namespace bertkit
