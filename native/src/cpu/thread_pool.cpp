#include "thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <exception>

namespace bertkit {

namespace {
// Set while a thread runs a chunk of a parallel region: a parallel call made
// from inside one (an op calling another op) runs inline instead of waiting
// for workers that are busy running the outer region.
thread_local bool in_parallel_region = false;

int default_thread_count() {
  if (const char* env = std::getenv("BERTKIT_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return std::min(n, 256);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}
}  // namespace

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() { set_num_threads(default_thread_count()); }

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::set_num_threads(int n) {
  n = std::max(1, std::min(n, 256));
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  stop_workers();
  num_threads_ = n;
  start_workers(n - 1);  // the calling thread does a share of the work too
}

void ThreadPool::start_workers(int count) {
  stopping_ = false;
  for (int i = 0; i < count; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) return;
    seen = generation_;
    while (next_chunk_ < job_chunks_) {
      int chunk = next_chunk_++;
      const auto* job = job_;
      lock.unlock();
      (*job)(chunk);
      lock.lock();
      if (++chunks_finished_ == job_chunks_) work_done_.notify_all();
    }
  }
}

void ThreadPool::run_chunks(int chunks, const std::function<void(int)>& fn) {
  if (chunks <= 0) return;
  if (chunks == 1 || num_threads_ == 1 || in_parallel_region) {
    for (int c = 0; c < chunks; ++c) fn(c);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::function<void(int)> guarded = [&](int chunk) {
    bool was = in_parallel_region;
    in_parallel_region = true;
    try {
      fn(chunk);
      in_parallel_region = was;
    } catch (...) {
      in_parallel_region = was;
      std::lock_guard<std::mutex> l(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &guarded;
  job_chunks_ = chunks;
  next_chunk_ = 0;
  chunks_finished_ = 0;
  ++generation_;
  work_ready_.notify_all();
  // The calling thread takes chunks too.
  while (next_chunk_ < job_chunks_) {
    int chunk = next_chunk_++;
    lock.unlock();
    guarded(chunk);
    lock.lock();
    ++chunks_finished_;
  }
  work_done_.wait(lock, [&] { return chunks_finished_ == job_chunks_; });
  job_ = nullptr;
  job_chunks_ = 0;
  lock.unlock();
  if (failure) std::rethrow_exception(failure);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (in_parallel_region) {
    fn(0, n);
    return;
  }
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = (n + grain - 1) / grain;
  int chunks = static_cast<int>(std::min<int64_t>(num_threads_, max_chunks));
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  run_chunks(chunks, [&](int c) {
    int64_t begin = n * c / chunks;
    int64_t end = n * (c + 1) / chunks;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace bertkit
