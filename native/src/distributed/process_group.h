// A process group: the ranks of one data-parallel run and the collectives
// among them, run by Gloo (CPU tensors, bertkit_gloo.so) or NCCL (CUDA
// tensors, libnccl.so.2), both opened at run time.
//
// Ordering follows the device's stream, as torch's ProcessGroup does:
//  * issue() returns at once. The collective starts after every op issued to
//    the device before it (on the CPU: once the CPU stream reaches it; on
//    CUDA: an event on the compute stream), and runs on the group's own
//    thread or stream, so the device computes meanwhile (backward overlapping
//    gradient all-reduce).
//  * stream_wait(ticket) makes work issued to the device afterwards wait for
//    the collective; a buffer in a collective must not be read, written or
//    freed by later work before that.
//  * Completion (or failure) of each collective is reported through the
//    Listener, on a background thread.
//
// Faults: the rendezvous store watches every rank (tcp_store.h). A rank that
// dies, or leaves with a failure, breaks the group at once on every other
// rank: pending and later collectives fail with a message naming that rank,
// and stream waits stop waiting. Every collective is also bounded by the
// group's timeout.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bertkit/backend.h"
#include "tcp_store.h"

namespace bertkit {
namespace dist {

// AllReduceCoalesced: several tensors reduced as one bucket (DDP's gradient
// buckets) without the caller packing them: Gloo packs them into its own
// staging buffer on the group's thread, NCCL fuses the calls in a group.
enum class Collective : int { AllReduce = 0, Broadcast = 1, AllGather = 2, Barrier = 3, AllReduceCoalesced = 4 };
// Avg: the sum divided by the world size (torch's ReduceOp.AVG), float32 only.
enum class ReduceOp : int { Sum = 0, Max = 1, Min = 2, Avg = 3 };

struct GroupOptions {
  std::string backend;  // "gloo" or "nccl"
  int rank = 0;
  int world_size = 1;
  std::string master_addr;
  int master_port = 0;
  Milliseconds timeout{1800000};
  // Candidate files for bertkit_gloo.so, tried in order.
  std::vector<std::string> gloo_library_paths;
  // Directories searched for libnccl.so.2 before the dynamic linker's paths.
  std::vector<std::string> nccl_library_dirs;
  // GLOO_SOCKET_IFNAME: the interface Gloo listens on (else the address
  // that routes to master_addr).
  std::string gloo_iface;
};

// Arguments of one collective; pointers are device memory of the group's
// device, checked by the caller (the Node-API layer).
struct CollectiveArgs {
  Collective kind = Collective::Barrier;
  DType dtype = DType::F32;
  ReduceOp op = ReduceOp::Sum;
  void* data = nullptr;         // in place (all-reduce, broadcast) or the input (all-gather)
  void* output = nullptr;       // all-gather: world_size * count elements
  int64_t count = 0;
  int root = 0;
  std::vector<void*> parts;            // all-reduce coalesced: the tensors ...
  std::vector<int64_t> part_counts;    // ... and their element counts
};

struct Event {
  enum Kind { Completed, GroupFailed, PeerLeft } kind;
  uint64_t ticket = 0;  // Completed
  std::string error;    // Completed: empty on success; otherwise the message
};
using Listener = std::function<void(const Event&)>;

// State of one issued collective.
struct Op {
  uint64_t ticket = 0;
  CollectiveArgs args;
  std::mutex mutex;
  std::condition_variable cv;
  bool ready = false;          // the device reached it (CPU path)
  bool input_skipped = false;  // the device skipped it after an earlier failure
  bool done = false;
  std::string error;
  void* impl = nullptr;                // backend-owned (CUDA events) ...
  std::function<void()> release_impl;  // ... freed with the op
  ~Op() {
    if (release_impl) release_impl();
  }
};

class ProcessGroup : public std::enable_shared_from_this<ProcessGroup> {
 public:
  // Rendezvous at master_addr:master_port (rank 0 hosts the store), then the
  // backend's own connection. Blocks up to options.timeout; throws Error
  // naming the address and the ranks that never came.
  static std::shared_ptr<ProcessGroup> connect(const GroupOptions& options, Listener listener);
  virtual ~ProcessGroup();

  int rank() const { return rank_; }
  int size() const { return size_; }
  Device device() const { return device_; }
  const std::string& backend() const { return backend_; }
  // What the backend reports about itself (library path and version).
  virtual std::string describe() const = 0;

  uint64_t issue(const CollectiveArgs& args);
  void stream_wait(uint64_t ticket);
  // The message that broke the group, or empty.
  std::string failure() const;
  // Says goodbye to the other ranks (exit_code 0: a normal end; otherwise a
  // failure they are told about), waits for the collectives in flight, and
  // on rank 0 keeps the store up until the others have left (bounded).
  void leave(int exit_code, const std::string& reason);

 protected:
  ProcessGroup(const GroupOptions& options, Device device, Listener listener);

  // Backends: start the collective (CPU: on the comm thread; CUDA: on the
  // comm stream), and make later device work wait for it.
  virtual void start(const std::shared_ptr<Op>& op) = 0;
  virtual void wait_on_device(const std::shared_ptr<Op>& op) = 0;
  virtual void shutdown() = 0;

  // Backends report the end of a collective here (any thread).
  void complete(const std::shared_ptr<Op>& op, const std::string& error);
  // Breaks the group (first message wins) and fails what is pending.
  void fail(const std::string& message);
  // Appends "(rank r)" after a peer address found in a backend's message.
  std::string name_ranks(const std::string& message) const;
  // Everyone announces itself and waits for the others; then join().
  void rendezvous(const GroupOptions& options, const std::string& me, std::chrono::steady_clock::time_point deadline);
  // Called once after rendezvous: exchanges whatever the backend needs.
  virtual void join(TcpStoreClient& store, const GroupOptions& options) = 0;

  int rank_;
  int size_;
  Device device_;
  std::string backend_;
  Milliseconds timeout_;
  std::string url_;
  Listener listener_;
  std::map<std::string, int> peer_addresses_;  // filled by backends that can name peers

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string failure_;
  std::map<uint64_t, std::shared_ptr<Op>> in_flight_;
  uint64_t next_ticket_ = 1;
  bool left_ = false;

  std::unique_ptr<TcpStoreServer> server_;  // rank 0
  std::unique_ptr<TcpStoreClient> store_;
  std::unique_ptr<TcpStoreWatch> watch_;

  friend class GlooGroup;
  friend std::shared_ptr<ProcessGroup> make_nccl_group(const GroupOptions&, Listener);
};

// The CPU backend of a group: Gloo collectives, one at a time in issue order
// on the group's thread. process_group.cpp.
std::shared_ptr<ProcessGroup> make_gloo_group(const GroupOptions& options, Listener listener);
// nccl_group.cu in the CUDA variant; elsewhere a stub that says why not.
std::shared_ptr<ProcessGroup> make_nccl_group(const GroupOptions& options, Listener listener);
// What the NCCL lookup found, for `bertkit doctor` (empty when not compiled).
std::string nccl_status(const std::vector<std::string>& dirs);

// Runs fn after the work issued to the CPU stream so far. If the stream skips
// it (an earlier op failed), fn is still destroyed, never run: callers that
// must always hear back put that in a destructor (see process_group.cpp).
void after_cpu_work(std::function<void()> fn);

}  // namespace dist
}  // namespace bertkit
