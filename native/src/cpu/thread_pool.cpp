#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define BERTKIT_CPU_RELAX() _mm_pause()
#else
#define BERTKIT_CPU_RELAX() std::this_thread::yield()
#endif

namespace bertkit {

namespace {
// Set while a thread runs a chunk of a parallel region: a parallel call made
// from inside one (an op calling another op) runs inline instead of waiting
// for workers that are busy running the outer region.
thread_local bool in_parallel_region = false;

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  char* end = nullptr;
  long v = std::strtol(env, &end, 10);
  if (end == env || *end != '\0' || v < lo) return fallback;
  return static_cast<int>(std::min<long>(v, hi));
}

int default_thread_count() {
  unsigned hw = std::thread::hardware_concurrency();
  return env_int("BERTKIT_NUM_THREADS", hw == 0 ? 1 : static_cast<int>(hw), 1, 256);
}
}  // namespace

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  spin_micros_ = env_int("BERTKIT_SPIN_US", kDefaultSpinMicros, 0, 1000000);
  set_num_threads(default_thread_count());
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::set_num_threads(int n) {
  n = std::max(1, std::min(n, 256));
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  stop_workers();
  num_threads_ = n;
  start_workers(n - 1);  // the calling thread does a share of the work too
}

void ThreadPool::start_workers(int count) {
  stopping_.store(false);
  for (int i = 0; i < count; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true);
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

// Spins until ready() or until the spin budget is spent; says which.
template <typename Ready>
bool ThreadPool::spin_until(Ready ready) const {
  if (ready()) return true;
  if (spin_micros_ == 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_micros_);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      BERTKIT_CPU_RELAX();
      if (ready()) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

void ThreadPool::take_chunks(uint32_t generation) {
  for (;;) {
    uint64_t ticket = ticket_.load(std::memory_order_acquire);
    if (static_cast<uint32_t>(ticket >> 32) != generation) return;
    const uint32_t chunk = static_cast<uint32_t>(ticket);
    const int chunks = job_chunks_.load(std::memory_order_acquire);
    if (chunk == kClosed || chunk >= static_cast<uint32_t>(chunks)) return;
    if (!ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel)) continue;
    // The job cannot close while this chunk is unfinished, so job_ is this job's.
    (*job_.load(std::memory_order_acquire))(static_cast<int>(chunk));
    if (chunks_finished_.fetch_add(1, std::memory_order_seq_cst) + 1 == chunks &&
        caller_sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lock(mutex_);
      work_done_.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  uint32_t seen = static_cast<uint32_t>(ticket_.load() >> 32);
  for (;;) {
    auto has_news = [&] {
      return stopping_.load(std::memory_order_acquire) ||
             static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32) != seen;
    };
    if (!spin_until(has_news)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      work_ready_.wait(lock, has_news);
      sleeping_workers_.fetch_sub(1, std::memory_order_seq_cst);
    }
    if (stopping_.load(std::memory_order_acquire)) return;
    seen = static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32);
    take_chunks(seen);
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

  const uint32_t generation = ++generation_;
  job_.store(&guarded, std::memory_order_relaxed);
  job_chunks_.store(chunks, std::memory_order_relaxed);
  chunks_finished_.store(0, std::memory_order_relaxed);
  ticket_.store(static_cast<uint64_t>(generation) << 32, std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    work_ready_.notify_all();
  }

  take_chunks(generation);  // the calling thread takes chunks too

  auto all_done = [&] { return chunks_finished_.load(std::memory_order_seq_cst) == chunks; };
  if (!spin_until(all_done)) {
    std::unique_lock<std::mutex> lock(mutex_);
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    work_done_.wait(lock, all_done);
    caller_sleeping_.store(false, std::memory_order_seq_cst);
  }
  // Closed before the next job's fields are written, so a late worker's
  // compare-exchange on this job's ticket fails.
  ticket_.store((static_cast<uint64_t>(generation) << 32) | kClosed, std::memory_order_seq_cst);
  job_.store(nullptr, std::memory_order_relaxed);
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
