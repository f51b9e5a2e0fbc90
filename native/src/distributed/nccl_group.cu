// The NCCL backend of a process group (CUDA tensors). libnccl.so.2 is opened
// at run time, as cuBLAS is (cuda/cublas_api.h): the CUDA addon links no NCCL,
// loads where NCCL is missing, and says where it looked when a group asks.
//
// Each collective waits for an event recorded on the compute stream, runs on
// the group's own stream (so backward keeps computing while gradients are
// reduced) and records a done event; wait(ticket) makes the compute stream
// wait for that event. A watch thread polls the done events (completion),
// the communicator's asynchronous error, and each collective's age against
// the timeout; when a peer dies, the communicator is aborted so no kernel
// waits forever for it.
#include "process_group.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "bertkit/dynamic_library.h"
#include "bertkit/error.h"
#include "cuda/cuda_backend.h"

#ifdef BERTKIT_WITH_NCCL
#include <nccl.h>
#endif

namespace bertkit {
namespace dist {

#ifdef BERTKIT_WITH_NCCL

namespace {

struct NcclApi {
  std::string path;
  decltype(&ncclGetVersion) get_version;
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRankConfig) comm_init_rank_config;
  decltype(&ncclCommGetAsyncError) comm_get_async_error;
  decltype(&ncclCommAbort) comm_abort;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclGetErrorString) get_error_string;
  decltype(&ncclGetLastError) get_last_error;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclBroadcast) broadcast;
  decltype(&ncclAllGather) all_gather;
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
};

std::mutex g_mutex;
NcclApi* g_api = nullptr;
std::string g_tried;

bool try_open(const std::string& file, NcclApi& api, std::string& why) {
  dlerror();
  void* lib = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    why = e ? e : "dlopen failed";
    if (why.find("No such file") != std::string::npos) why = "not found";
    return false;
  }
  std::string missing;
  bool ok = bind_symbol(lib, "ncclGetVersion", api.get_version, missing) & bind_symbol(lib, "ncclGetUniqueId", api.get_unique_id, missing) &
            bind_symbol(lib, "ncclCommInitRankConfig", api.comm_init_rank_config, missing) &
            bind_symbol(lib, "ncclCommGetAsyncError", api.comm_get_async_error, missing) & bind_symbol(lib, "ncclCommAbort", api.comm_abort, missing) &
            bind_symbol(lib, "ncclCommDestroy", api.comm_destroy, missing) & bind_symbol(lib, "ncclGetErrorString", api.get_error_string, missing) &
            bind_symbol(lib, "ncclGetLastError", api.get_last_error, missing) & bind_symbol(lib, "ncclAllReduce", api.all_reduce, missing) &
            bind_symbol(lib, "ncclBroadcast", api.broadcast, missing) & bind_symbol(lib, "ncclAllGather", api.all_gather, missing) &
            bind_symbol(lib, "ncclGroupStart", api.group_start, missing) & bind_symbol(lib, "ncclGroupEnd", api.group_end, missing);
  if (!ok) {
    why = "missing symbols " + missing + " (NCCL 2.14 or newer is needed)";
    dlclose(lib);
    return false;
  }
  api.path = file;
  return true;
}

const NcclApi* lookup(const std::vector<std::string>& dirs) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_api) return g_api;
  g_tried.clear();
  std::vector<std::string> candidates;
  for (const std::string& d : dirs) {
    if (!d.empty()) candidates.push_back((d.back() == '/' ? d : d + "/") + "libnccl.so.2");
  }
  candidates.push_back("libnccl.so.2");  // the dynamic linker's own search
  for (const std::string& file : candidates) {
    auto api = std::make_unique<NcclApi>();
    std::string why;
    if (try_open(file, *api, why)) {
      if (file.find('/') == std::string::npos) {
        Dl_info info{};
        if (dladdr(reinterpret_cast<void*>(api->get_version), &info) && info.dli_fname) api->path = info.dli_fname;
      }
      g_api = api.release();
      return g_api;
    }
    g_tried += "\n  " + file + ": " + why;
  }
  return nullptr;
}

const NcclApi& nccl(const std::vector<std::string>& dirs) {
  const NcclApi* api = lookup(dirs);
  if (!api) {
    throw Error(
        "init_process_group: backend 'nccl' needs libnccl.so.2, which was not found. Install it with `pip install "
        "nvidia-nccl-cu13` (CUDA 13; nvidia-nccl-cu12 for CUDA 12) or a system NCCL, or point BERTKIT_CUDA_LIB_PATH at "
        "its directory. Tried:" + g_tried);
  }
  return *api;
}

std::string version_text(const NcclApi& api) {
  int v = 0;
  if (api.get_version(&v) != ncclSuccess) return "?";
  // Since 2.9: major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

ncclDataType_t nccl_dtype(DType d) { return d == DType::I32 ? ncclInt32 : ncclFloat32; }
ncclRedOp_t nccl_op(ReduceOp op) {
  return op == ReduceOp::Max ? ncclMax : op == ReduceOp::Min ? ncclMin : op == ReduceOp::Avg ? ncclAvg : ncclSum;
}

struct Events {
  cudaEvent_t ready = nullptr;
  cudaEvent_t done = nullptr;
  std::chrono::steady_clock::time_point started;
};

}  // namespace

class NcclGroup final : public ProcessGroup {
 public:
  NcclGroup(const GroupOptions& o, Listener listener, const NcclApi& api)
      : ProcessGroup(o, Device::CUDA, std::move(listener)), api_(api) {}

  ~NcclGroup() override {
    if (thread_.joinable()) thread_.detach();
  }

  std::string describe() const override { return "nccl " + version_text(api_) + " (" + api_.path + ")"; }

 protected:
  void join(TcpStoreClient& store, const GroupOptions& o) override {
    auto& backend = static_cast<CudaBackend&>(cuda_backend_for_group());
    compute_ = backend.stream();
    check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaMalloc(&barrier_buf_, sizeof(float)), "cudaMalloc");
    ncclUniqueId id;
    if (rank_ == 0) {
      nccl_check(api_.get_unique_id(&id), "ncclGetUniqueId");
      store.set("bk/nccl-id", std::vector<uint8_t>(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof id));
    } else {
      std::vector<uint8_t> v = store.get("bk/nccl-id", o.timeout);
      if (v.size() != sizeof id) throw Error("the NCCL unique id from rank 0 has " + std::to_string(v.size()) + " bytes, expected " + std::to_string(sizeof id) + " (different NCCL versions?)");
      std::memcpy(&id, v.data(), sizeof id);
    }
    // Non-blocking init, polled: a rank that never comes is a timeout, not a hang.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = api_.comm_init_rank_config(&comm_, size_, id, rank_, &config);
    if (r != ncclSuccess && r != ncclInProgress) nccl_check(r, "ncclCommInitRankConfig");
    auto deadline = std::chrono::steady_clock::now() + o.timeout;
    settle("ncclCommInitRankConfig", deadline);
    auto self = std::static_pointer_cast<NcclGroup>(shared_from_this());
    thread_ = std::thread([self] { self->watch(); });
  }

  void start(const std::shared_ptr<Op>& op) override {
    std::lock_guard<std::mutex> lock(comm_mutex_);
    if (!comm_) throw Error("process group is broken: " + failure());
    auto* ev = new Events();
    op->impl = ev;
    // Freed with the op, which every stream wait on it holds.
    op->release_impl = [ev] {
      if (ev->ready) cudaEventDestroy(ev->ready);
      if (ev->done) cudaEventDestroy(ev->done);
      delete ev;
    };
    ev->started = std::chrono::steady_clock::now();
    check(cudaEventCreateWithFlags(&ev->ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check(cudaEventCreateWithFlags(&ev->done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check(cudaEventRecord(ev->ready, compute_), "cudaEventRecord");
    check(cudaStreamWaitEvent(comm_stream_, ev->ready, 0), "cudaStreamWaitEvent");
    const CollectiveArgs& a = op->args;
    ncclResult_t r = ncclSuccess;
    switch (a.kind) {
      case Collective::AllReduce:
        r = api_.all_reduce(a.data, a.data, static_cast<size_t>(a.count), nccl_dtype(a.dtype), nccl_op(a.op), comm_, comm_stream_);
        break;
      case Collective::AllReduceCoalesced:
        // One launch for the bucket: NCCL fuses the calls of a group.
        r = api_.group_start();
        for (size_t i = 0; i < a.parts.size() && (r == ncclSuccess || r == ncclInProgress); i++) {
          r = api_.all_reduce(a.parts[i], a.parts[i], static_cast<size_t>(a.part_counts[i]), ncclFloat32, nccl_op(a.op), comm_, comm_stream_);
        }
        {
          ncclResult_t end = api_.group_end();
          if (r == ncclSuccess || r == ncclInProgress) r = end;
        }
        break;
      case Collective::Broadcast:
        r = api_.broadcast(a.data, a.data, static_cast<size_t>(a.count), nccl_dtype(a.dtype), a.root, comm_, comm_stream_);
        break;
      case Collective::AllGather:
        r = api_.all_gather(a.data, a.output, static_cast<size_t>(a.count), nccl_dtype(a.dtype), comm_, comm_stream_);
        break;
      case Collective::Barrier:
        // NCCL has no barrier: a one-element all-reduce stands in, as in torch.
        r = api_.all_reduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, comm_, comm_stream_);
        break;
    }
    if (r == ncclInProgress) {
      settle("the collective", std::chrono::steady_clock::now() + timeout_);
    } else if (r != ncclSuccess) {
      std::string m = "nccl collective #" + std::to_string(op->ticket) + " on rank " + std::to_string(rank_) + " failed: " + error_text(r);
      fail(m);
      throw Error(m);
    }
    check(cudaEventRecord(ev->done, comm_stream_), "cudaEventRecord");
    {
      std::lock_guard<std::mutex> pending(pending_mutex_);
      pending_.push_back(op);
    }
  }

  void wait_on_device(const std::shared_ptr<Op>& op) override {
    auto* ev = static_cast<Events*>(op->impl);
    if (ev) check(cudaStreamWaitEvent(compute_, ev->done, 0), "cudaStreamWaitEvent");
  }

  void shutdown() override {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    if (comm_) {
      api_.comm_destroy(comm_);
      comm_ = nullptr;
    }
  }

 private:
  static Backend& cuda_backend_for_group() {
    try {
      return backend_for(Device::CUDA);
    } catch (const Error& e) {
      throw Error(std::string("backend 'nccl' needs a usable GPU: ") + e.what());
    }
  }

  static void check(cudaError_t e, const char* call) {
    if (e != cudaSuccess) throw Error(std::string("nccl group: ") + call + " failed: " + cudaGetErrorString(e));
  }

  std::string error_text(ncclResult_t r) const {
    std::string s = api_.get_error_string(r);
    const char* last = comm_ ? api_.get_last_error(comm_) : nullptr;
    if (last && *last) s += " (" + std::string(last) + ")";
    return s;
  }

  void nccl_check(ncclResult_t r, const char* call) const {
    if (r != ncclSuccess) throw Error(std::string(call) + " failed: " + error_text(r));
  }

  // Polls a non-blocking communicator until its last call has finished.
  void settle(const char* what, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      api_.comm_get_async_error(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        std::string m = std::string(what) + " failed: " + error_text(state);
        api_.comm_abort(comm_);
        comm_ = nullptr;
        throw Error(m);
      }
      std::string broken = failure();
      if (!broken.empty() || std::chrono::steady_clock::now() >= deadline) {
        api_.comm_abort(comm_);
        comm_ = nullptr;
        throw Error(std::string(what) + (broken.empty() ? " timed out after " + std::to_string(timeout_.count() / 1000) + " s" : " stopped: " + broken));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Completion, asynchronous errors and timeouts, polled.
  void watch() {
    (void)cudaSetDevice(0);
    bool aborted = false;
    while (!stopping_ || !pending_empty()) {
      std::vector<std::shared_ptr<Op>> finished;
      std::string error;
      {
        std::lock_guard<std::mutex> lock(pending_mutex_);
        for (size_t i = 0; i < pending_.size();) {
          auto* ev = static_cast<Events*>(pending_[i]->impl);
          cudaError_t q = cudaEventQuery(ev->done);
          if (q == cudaSuccess) {
            finished.push_back(pending_[i]);
            pending_.erase(pending_.begin() + static_cast<long>(i));
            continue;
          }
          if (q != cudaErrorNotReady) error = std::string("cudaEventQuery: ") + cudaGetErrorString(q);
          if (std::chrono::steady_clock::now() - ev->started > timeout_) {
            error = "nccl collective #" + std::to_string(pending_[i]->ticket) + " did not finish within " +
                    std::to_string(timeout_.count() / 1000) + " s on rank " + std::to_string(rank_) + " (a peer stopped or hangs)";
          }
          i++;
        }
      }
      for (auto& op : finished) complete(op, "");
      if (comm_ && !aborted) {
        ncclResult_t state = ncclSuccess;
        api_.comm_get_async_error(comm_, &state);
        if (state != ncclSuccess && state != ncclInProgress) error = "nccl on rank " + std::to_string(rank_) + ": " + error_text(state);
      }
      std::string broken = failure();
      if (!aborted && (!error.empty() || !broken.empty())) {
        // Kernels waiting on a dead peer exit only when the communicator is aborted.
        if (!error.empty()) fail(error);
        std::lock_guard<std::mutex> lock(comm_mutex_);
        if (comm_) api_.comm_abort(comm_);
        comm_ = nullptr;
        aborted = true;
      }
      if (aborted) {
        std::lock_guard<std::mutex> lock(pending_mutex_);
        for (auto& op : pending_) complete(op, "process group is broken: " + failure());
        pending_.clear();
        if (stopping_) return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  bool pending_empty() {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    return pending_.empty();
  }

  const NcclApi& api_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t compute_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;
  float* barrier_buf_ = nullptr;
  std::mutex comm_mutex_;
  std::mutex pending_mutex_;
  std::vector<std::shared_ptr<Op>> pending_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

std::shared_ptr<ProcessGroup> make_nccl_group(const GroupOptions& options, Listener listener) {
  const NcclApi& api = nccl(options.nccl_library_dirs);
  return std::make_shared<NcclGroup>(options, std::move(listener), api);
}

std::string nccl_status(const std::vector<std::string>& dirs) {
  const NcclApi* api = lookup(dirs);
  if (api) return "nccl " + version_text(*api) + " (" + api->path + ")";
  return "libnccl.so.2 not found; tried:" + g_tried;
}

#else  // CUDA without nccl.h at build time

std::shared_ptr<ProcessGroup> make_nccl_group(const GroupOptions&, Listener) {
  throw Error(
      "init_process_group: backend 'nccl' is not in this build: nccl.h was not found when the CUDA addon was built "
      "(pip install nvidia-nccl-cu13, then npm run build:cuda)");
}

std::string nccl_status(const std::vector<std::string>&) { return "not compiled (nccl.h was not found at build time)"; }

#endif

}  // namespace dist
}  // namespace bertkit
