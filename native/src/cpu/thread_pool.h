// A fixed pool of worker threads for the CPU backend. Sized to the machine's
// cores, or BERTKIT_NUM_THREADS when set. parallel_for splits a range into
// contiguous chunks, one per thread; chunk boundaries depend only on the range
// and the thread count, so results are deterministic for a given count.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bertkit {

class ThreadPool {
 public:
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
  void worker_loop(int index);

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const std::function<void(int)>* job_ = nullptr;
  int job_chunks_ = 0;
  int next_chunk_ = 0;
  int chunks_finished_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::mutex call_mutex_;  // one parallel region at a time
};

}  // namespace bertkit
