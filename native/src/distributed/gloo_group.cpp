// The Gloo backend of a process group: bertkit_gloo.so opened at run time,
// one thread running the collectives in issue order, each once the CPU
// stream has reached it.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "gloo_shim.h"
#include "process_group.h"

#include "bertkit/dynamic_library.h"

namespace bertkit {
namespace dist {

namespace {

struct GlooApi {
  std::string path;
  bk_gloo_connect_fn connect;
  bk_gloo_pair_address_fn pair_address;
  bk_gloo_allreduce_fn allreduce;
  bk_gloo_broadcast_fn broadcast;
  bk_gloo_allgather_fn allgather;
  bk_gloo_barrier_fn barrier;
  bk_gloo_destroy_fn destroy;
};

std::mutex g_api_mutex;
GlooApi* g_api = nullptr;

// Opens the first candidate that loads; the shim is never closed.
const GlooApi& gloo_api(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(g_api_mutex);
  if (g_api) return *g_api;
  std::string tried;
  for (const std::string& file : candidates) {
    dlerror();
    void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      std::string why = e ? e : "dlopen failed";
      if (why.find("cannot open shared object file: No such file") != std::string::npos && why.find(file) != std::string::npos) {
        why = "not found";
      }
      tried += "\n  " + file + ": " + why;
      continue;
    }
    auto version = reinterpret_cast<bk_gloo_abi_version_fn>(dlsym(lib, "bk_gloo_abi_version"));
    if (!version || version() != BK_GLOO_ABI_VERSION) {
      tried += "\n  " + file + ": interface version " + (version ? std::to_string(version()) : std::string("unknown")) +
               ", this addon needs " + std::to_string(BK_GLOO_ABI_VERSION) + " (rebuild: npm run build:native)";
      dlclose(lib);
      continue;
    }
    auto api = std::make_unique<GlooApi>();
    std::string missing;
    bool ok = bind_symbol(lib, "bk_gloo_connect", api->connect, missing) & bind_symbol(lib, "bk_gloo_pair_address", api->pair_address, missing) &
              bind_symbol(lib, "bk_gloo_allreduce", api->allreduce, missing) & bind_symbol(lib, "bk_gloo_broadcast", api->broadcast, missing) &
              bind_symbol(lib, "bk_gloo_allgather", api->allgather, missing) & bind_symbol(lib, "bk_gloo_barrier", api->barrier, missing) &
              bind_symbol(lib, "bk_gloo_destroy", api->destroy, missing);
    if (!ok) {
      tried += "\n  " + file + ": missing symbols " + missing;
      dlclose(lib);
      continue;
    }
    api->path = file;
    g_api = api.release();
    return *g_api;
  }
  throw Error(
      "init_process_group: backend 'gloo' is not available in this build: bertkit_gloo.so (the Gloo shim) was not "
      "found or did not load. It is built from source when Gloo is installed (Debian/Ubuntu: apt-get install "
      "libgloo-dev, then npm run build:native, or npm rebuild bertkit --foreground-scripts); prebuilt binaries do "
      "not include it. BERTKIT_GLOO_LIBRARY may name the file. Tried:" +
      tried);
}

// The local address whose interface routes to the master: the one the other
// ranks can reach this process on (127.0.0.1 for a run on one machine).
std::string route_address(const std::string& master, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(master.c_str(), std::to_string(port).c_str(), &hints, &list) != 0) return "";
  std::string out;
  for (addrinfo* a = list; a && out.empty(); a = a->ai_next) {
    int fd = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    // connect() on UDP sends nothing: it only picks the route.
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char buf[INET6_ADDRSTRLEN] = {0};
      const void* src = local.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                                                     : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
      if (::inet_ntop(local.ss_family, src, buf, sizeof buf)) out = buf;
    }
    ::close(fd);
  }
  ::freeaddrinfo(list);
  return out;
}

// The store, as the shim's C interface sees it.
int store_set(void* self, const char* key, const void* value, size_t size, char* err, size_t err_len) {
  try {
    static_cast<TcpStoreClient*>(self)->set(key, std::vector<uint8_t>(static_cast<const uint8_t*>(value),
                                                                      static_cast<const uint8_t*>(value) + size));
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

int store_get(void* self, const char* key, int64_t timeout_ms, void** value, size_t* size, char* err, size_t err_len) {
  try {
    std::vector<uint8_t> v = static_cast<TcpStoreClient*>(self)->get(key, Milliseconds(timeout_ms));
    *value = std::malloc(v.empty() ? 1 : v.size());
    if (!*value) throw Error("out of memory");
    if (!v.empty()) std::memcpy(*value, v.data(), v.size());
    *size = v.size();
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

void store_free(void* value) { std::free(value); }

int dtype_code(DType d) { return d == DType::I32 ? BK_GLOO_I32 : BK_GLOO_F32; }

}  // namespace

class GlooGroup final : public ProcessGroup {
 public:
  GlooGroup(const GroupOptions& o, Listener listener, const GlooApi& api)
      : ProcessGroup(o, Device::CPU, std::move(listener)), api_(api) {}

  ~GlooGroup() override {
    // Only after the thread let go of the group (it runs this destructor then).
    if (thread_.joinable()) thread_.detach();
  }

  std::string describe() const override { return "gloo (" + api_.path + ")"; }

 protected:
  void join(TcpStoreClient& store, const GroupOptions& o) override {
    std::string host = route_address(o.master_addr, o.master_port);
    if (host.empty() && o.gloo_iface.empty()) host = "127.0.0.1";
    bk_gloo_store s{&store, store_set, store_get, store_free};
    char err[1024] = {0};
    group_ = api_.connect(&s, rank_, size_, host.c_str(), o.gloo_iface.c_str(), timeout_.count(), err, sizeof err);
    if (!group_) throw Error(std::string("gloo could not connect the ranks: ") + err);
    // Each rank's listening address toward every peer, so a message of
    // Gloo's that names an address can name the rank too.
    std::string mine;
    for (int r = 0; r < size_; r++) {
      char addr[256] = {0};
      if (r != rank_ && api_.pair_address(group_, r, addr, sizeof addr) == 0) {
        mine += addr;
        peer_addresses_[addr] = r;
      }
      mine += "\n";
    }
    store.set("bk/gloo-pairs/" + std::to_string(rank_), std::vector<uint8_t>(mine.begin(), mine.end()));
    for (int r = 0; r < size_; r++) {
      if (r == rank_) continue;
      std::vector<uint8_t> v = store.get("bk/gloo-pairs/" + std::to_string(r), timeout_);
      std::string lines(v.begin(), v.end());
      size_t start = 0;
      for (int k = 0; k <= rank_ && start <= lines.size(); k++) {
        size_t end = lines.find('\n', start);
        if (end == std::string::npos) end = lines.size();
        if (k == rank_ && end > start) peer_addresses_[lines.substr(start, end - start)] = r;
        start = end + 1;
      }
    }
    // The thread holds the group: it is never destroyed under a running thread.
    auto self = std::static_pointer_cast<GlooGroup>(shared_from_this());
    thread_ = std::thread([self] { self->run(); });
  }

  void start(const std::shared_ptr<Op>& op) override {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.push_back(op);
    }
    queue_cv_.notify_one();
    // Tells the group's thread when the CPU stream reaches this point; if the
    // stream skips it (an earlier op failed), the destructor says so instead,
    // so the thread never waits for a signal that cannot come.
    struct Ready {
      explicit Ready(std::shared_ptr<Op> o) : op(std::move(o)) {}
      std::shared_ptr<Op> op;
      bool fired = false;
      void fire(bool skipped) {
        fired = true;
        {
          std::lock_guard<std::mutex> lock(op->mutex);
          op->ready = true;
          op->input_skipped = skipped;
        }
        op->cv.notify_all();
      }
      ~Ready() {
        if (!fired) fire(true);
      }
    };
    auto ready = std::make_shared<Ready>(op);
    after_cpu_work([ready] { ready->fire(false); });
  }

  void wait_on_device(const std::shared_ptr<Op>& op) override {
    // Later CPU work waits for the collective. The wait happens even when the
    // stream skips this point after an error (in the destructor), so a queued
    // release never hands the buffer back while Gloo still writes into it.
    struct Done {
      Done(std::shared_ptr<Op> o, std::shared_ptr<ProcessGroup> g) : op(std::move(o)), group(std::move(g)) {}
      std::shared_ptr<Op> op;
      std::shared_ptr<ProcessGroup> group;
      bool waited = false;
      std::string wait() {
        waited = true;
        std::unique_lock<std::mutex> lock(op->mutex);
        op->cv.wait(lock, [&] { return op->done || !group->failure().empty(); });
        if (op->done) return op->error;
        return "process group is broken: " + group->failure();
      }
      ~Done() {
        if (!waited) wait();
      }
    };
    auto done = std::make_shared<Done>(op, shared_from_this());
    after_cpu_work([done] {
      std::string error = done->wait();
      if (!error.empty()) throw Error(error);
    });
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (group_) api_.destroy(group_);
    group_ = nullptr;
  }

 private:
  void run() {
    for (;;) {
      std::shared_ptr<Op> op;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        op = queue_.front();
        queue_.pop_front();
      }
      {
        std::unique_lock<std::mutex> lock(op->mutex);
        op->cv.wait(lock, [&] { return op->ready || !failure().empty(); });
      }
      std::string broken = failure();
      if (!broken.empty()) {
        complete(op, "process group is broken: " + broken);
        continue;
      }
      if (op->input_skipped) {
        std::string m = "rank " + std::to_string(rank_) + " cannot take part in collective #" + std::to_string(op->ticket) +
                        ": an op queued before it on its CPU stream failed";
        fail(m);
        if (watch_) watch_->leave(1, m);
        complete(op, m);
        continue;
      }
      const CollectiveArgs& a = op->args;
      char err[2048] = {0};
      uint32_t tag = static_cast<uint32_t>(op->ticket);
      int rc = 0;
      // Gloo sums; an average divides afterwards, here, on this thread.
      const int gloo_op = a.op == ReduceOp::Avg ? BK_GLOO_SUM : static_cast<int>(a.op);
      const float avg = 1.0f / static_cast<float>(size_);
      switch (a.kind) {
        case Collective::AllReduce:
          rc = api_.allreduce(group_, a.data, a.count, dtype_code(a.dtype), gloo_op, tag, err, sizeof err);
          if (rc == 0 && a.op == ReduceOp::Avg) scale(static_cast<float*>(a.data), a.count, avg);
          break;
        case Collective::AllReduceCoalesced: {
          // Packed into one staging buffer, reduced once, unpacked (and
          // averaged) in place: copies on this thread, not on the CPU stream.
          int64_t total = 0;
          for (int64_t n : a.part_counts) total += n;
          if (staging_.size() < static_cast<size_t>(total)) staging_.resize(static_cast<size_t>(total));
          int64_t at = 0;
          for (size_t i = 0; i < a.parts.size(); i++) {
            std::memcpy(staging_.data() + at, a.parts[i], static_cast<size_t>(a.part_counts[i]) * sizeof(float));
            at += a.part_counts[i];
          }
          rc = api_.allreduce(group_, staging_.data(), total, BK_GLOO_F32, gloo_op, tag, err, sizeof err);
          if (rc == 0) {
            at = 0;
            for (size_t i = 0; i < a.parts.size(); i++) {
              float* dst = static_cast<float*>(a.parts[i]);
              const float* src = staging_.data() + at;
              if (a.op == ReduceOp::Avg) {
                for (int64_t k = 0; k < a.part_counts[i]; k++) dst[k] = src[k] * avg;
              } else {
                std::memcpy(dst, src, static_cast<size_t>(a.part_counts[i]) * sizeof(float));
              }
              at += a.part_counts[i];
            }
          }
          break;
        }
        case Collective::Broadcast:
          rc = api_.broadcast(group_, a.data, a.count, dtype_code(a.dtype), a.root, tag, err, sizeof err);
          break;
        case Collective::AllGather:
          rc = api_.allgather(group_, a.data, a.output, a.count, dtype_code(a.dtype), tag, err, sizeof err);
          break;
        case Collective::Barrier:
          rc = api_.barrier(group_, tag, err, sizeof err);
          break;
      }
      if (rc != 0) {
        // A peer that died closes its sockets and its store connection at once;
        // the store's word names the cause better than a socket error, so it
        // gets a moment to arrive.
        {
          std::unique_lock<std::mutex> lock(mutex_);
          changed_.wait_for(lock, std::chrono::milliseconds(500), [&] { return !failure_.empty(); });
        }
        // A failed collective leaves the ranks out of step: the group is done.
        std::string m = "gloo " + std::string(kind_name(a.kind)) + " failed on rank " + std::to_string(rank_) + ": " + name_ranks(err);
        std::string cause = failure();
        if (!cause.empty()) m += " (" + cause + ")";
        fail(m);
        complete(op, m);
      } else {
        complete(op, "");
      }
    }
  }

  static const char* kind_name(Collective k) {
    switch (k) {
      case Collective::AllReduce: return "all_reduce";
      case Collective::AllReduceCoalesced: return "all_reduce (coalesced bucket)";
      case Collective::Broadcast: return "broadcast";
      case Collective::AllGather: return "all_gather";
      case Collective::Barrier: return "barrier";
    }
    return "collective";
  }

  static void scale(float* x, int64_t n, float factor) {
    for (int64_t k = 0; k < n; k++) x[k] *= factor;
  }

  const GlooApi& api_;
  bk_gloo_group* group_ = nullptr;
  std::vector<float> staging_;  // coalesced all-reduces, reused
  std::thread thread_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::shared_ptr<Op>> queue_;
  bool stopping_ = false;
};

std::shared_ptr<ProcessGroup> make_gloo_group(const GroupOptions& options, Listener listener) {
  const GlooApi& api = gloo_api(options.gloo_library_paths);
  return std::make_shared<GlooGroup>(options, std::move(listener), api);
}

}  // namespace dist
}  // namespace bertkit
