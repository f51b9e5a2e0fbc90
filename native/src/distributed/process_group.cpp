#include "process_group.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "bertkit/error.h"

namespace bertkit {
namespace dist {

void after_cpu_work(std::function<void()> fn) {
  enqueue(Device::CPU, [fn = std::move(fn)](Backend&) { fn(); });
}

namespace {

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

// "key=value" fields of a rank's announcement.
std::string field(const std::string& record, const std::string& key) {
  size_t start = 0;
  while (start < record.size()) {
    size_t end = record.find('\n', start);
    if (end == std::string::npos) end = record.size();
    std::string line = record.substr(start, end - start);
    if (line.compare(0, key.size() + 1, key + "=") == 0) return line.substr(key.size() + 1);
    start = end + 1;
  }
  return "";
}

std::string seconds_text(Milliseconds ms) {
  std::string s = std::to_string(ms.count() / 1000.0);
  s = s.substr(0, s.find('.') + 2);
  return s;
}

}  // namespace

ProcessGroup::ProcessGroup(const GroupOptions& o, Device device, Listener listener)
    : rank_(o.rank),
      size_(o.world_size),
      device_(device),
      backend_(o.backend),
      timeout_(o.timeout),
      url_(store_url(o.master_addr, o.master_port)),
      listener_(std::move(listener)) {}

ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::connect(const GroupOptions& o, Listener listener) {
  if (o.world_size < 1) throw Error("init_process_group: world size must be at least 1, got " + std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size) {
    throw Error("init_process_group: rank " + std::to_string(o.rank) + " is outside [0, " + std::to_string(o.world_size - 1) +
                "] for a world size of " + std::to_string(o.world_size));
  }
  if (o.master_port < 1 || o.master_port > 65535) {
    throw Error("init_process_group: MASTER_PORT must be in [1, 65535], got " + std::to_string(o.master_port));
  }
  if (o.master_addr.empty()) throw Error("init_process_group: MASTER_ADDR is empty");
  std::shared_ptr<ProcessGroup> g;
  if (o.backend == "gloo") g = make_gloo_group(o, listener);
  else if (o.backend == "nccl") g = make_nccl_group(o, listener);
  else throw Error("init_process_group: unknown backend '" + o.backend + "' (gloo for CPU tensors, nccl for CUDA tensors)");

  const std::string me = "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
  auto deadline = std::chrono::steady_clock::now() + o.timeout;
  auto left = [&] {
    auto ms = std::chrono::duration_cast<Milliseconds>(deadline - std::chrono::steady_clock::now());
    return std::max(ms, Milliseconds(1));
  };
  if (o.rank == 0) g->server_ = std::make_unique<TcpStoreServer>(o.master_port, o.world_size);
  g->store_ = std::make_unique<TcpStoreClient>(o.master_addr, o.master_port, left(), me);
  std::weak_ptr<ProcessGroup> weak = g;
  g->store_->set_interrupt([weak] {
    auto self = weak.lock();
    return self ? self->failure() : std::string();
  });
  g->watch_ = std::make_unique<TcpStoreWatch>(o.master_addr, o.master_port, o.rank, left(), [weak](bool fatal, const std::string& m) {
    auto self = weak.lock();
    if (!self) return;
    if (fatal) self->fail(m);
    else if (self->listener_) self->listener_(Event{Event::PeerLeft, 0, m});
  });

  try {
    g->rendezvous(o, me, deadline);
  } catch (const Error& e) {
    // The others learn at once why this rank cannot go on.
    g->leave(1, e.what());
    throw;
  }
  return g;
}

void ProcessGroup::rendezvous(const GroupOptions& o, const std::string& me, std::chrono::steady_clock::time_point deadline) {
  ProcessGroup* g = this;
  auto left = [&] {
    auto ms = std::chrono::duration_cast<Milliseconds>(deadline - std::chrono::steady_clock::now());
    return std::max(ms, Milliseconds(1));
  };
  // Everyone announces itself, then waits for the others: a missing or
  // mismatched rank is named here rather than inside a backend's handshake.
  const std::string record = "world_size=" + std::to_string(o.world_size) + "\nbackend=" + o.backend +
                             "\nhost=" + hostname() + "\npid=" + std::to_string(::getpid());
  g->store_->set("bk/rank/" + std::to_string(o.rank), bytes(record));
  for (;;) {
    std::vector<int> missing;
    for (int r = 0; r < o.world_size; r++) {
      if (!g->store_->check("bk/rank/" + std::to_string(r))) missing.push_back(r);
    }
    if (missing.empty()) break;
    std::string why = g->failure();
    if (!why.empty()) throw Error("rendezvous at " + g->url_ + " failed: " + why);
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string names;
      for (size_t i = 0; i < missing.size() && i < 16; i++) names += (i ? ", " : "") + std::to_string(missing[i]);
      if (missing.size() > 16) names += ", ...";
      throw Error("rendezvous at " + g->url_ + " timed out after " + seconds_text(o.timeout) + " s: " + me + " waited for rank" +
                  (missing.size() > 1 ? "s " : " ") + names + ", which never joined (were they started, with the same MASTER_ADDR and MASTER_PORT?)");
    }
    std::this_thread::sleep_for(Milliseconds(50));
  }
  for (int r = 0; r < o.world_size; r++) {
    std::string other = text(g->store_->get("bk/rank/" + std::to_string(r), left()));
    if (field(other, "world_size") != std::to_string(o.world_size)) {
      throw Error("rendezvous at " + g->url_ + ": rank " + std::to_string(r) + " (pid " + field(other, "pid") + " on " + field(other, "host") +
                  ") was started with WORLD_SIZE=" + field(other, "world_size") + " but " + me + " with WORLD_SIZE=" + std::to_string(o.world_size));
    }
    if (field(other, "backend") != o.backend) {
      throw Error("rendezvous at " + g->url_ + ": rank " + std::to_string(r) + " uses backend " + field(other, "backend") + " but " + me +
                  " uses " + o.backend + " (every rank must train on the same kind of device)");
    }
  }
  try {
    join(*store_, o);
  } catch (const Error& e) {
    throw Error(me + ": " + e.what());
  }
}

std::string ProcessGroup::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

std::string ProcessGroup::name_ranks(const std::string& message) const {
  std::string out = message;
  for (const auto& [address, r] : peer_addresses_) {
    size_t at = out.find(address);
    if (at != std::string::npos) {
      out.insert(at + address.size(), " (rank " + std::to_string(r) + ")");
      return out;
    }
  }
  // No known address in it: with a single peer there is still no doubt which.
  if (size_ == 2) out += " (the peer is rank " + std::to_string(1 - rank_) + ")";
  return out;
}

void ProcessGroup::fail(const std::string& message) {
  std::vector<std::shared_ptr<Op>> ops;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!failure_.empty()) return;
    failure_ = message;
    for (auto& [ticket, op] : in_flight_) ops.push_back(op);
  }
  changed_.notify_all();
  // Wakes stream waits blocked on collectives that will not finish now.
  for (auto& op : ops) {
    std::lock_guard<std::mutex> lock(op->mutex);
    op->cv.notify_all();
  }
  if (listener_) listener_(Event{Event::GroupFailed, 0, message});
}

void ProcessGroup::complete(const std::shared_ptr<Op>& op, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(op->mutex);
    op->done = true;
    op->error = error;
  }
  op->cv.notify_all();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_.erase(op->ticket);
  }
  changed_.notify_all();
  if (listener_) listener_(Event{Event::Completed, op->ticket, error});
}

uint64_t ProcessGroup::issue(const CollectiveArgs& args) {
  auto op = std::make_shared<Op>();
  op->args = args;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (left_) throw Error("process group: rank " + std::to_string(rank_) + " has already left the group");
    if (!failure_.empty()) throw Error("process group is broken: " + failure_);
    op->ticket = next_ticket_++;
    in_flight_[op->ticket] = op;
  }
  start(op);
  return op->ticket;
}

void ProcessGroup::stream_wait(uint64_t ticket) {
  std::shared_ptr<Op> op;
  std::string broken;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = in_flight_.find(ticket);
    if (it != in_flight_.end()) op = it->second;
    broken = failure_;
  }
  if (op) {
    wait_on_device(op);
  } else if (!broken.empty()) {
    // Finished or not, nothing computed after a broken group may reach a weight.
    if (device_ == Device::CPU) after_cpu_work([broken] { throw Error("process group is broken: " + broken); });
    else throw Error("process group is broken: " + broken);
  }
  // Otherwise the collective already finished, before the host issues anything that could read it.
}

void ProcessGroup::leave(int exit_code, const std::string& reason) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (left_) return;
    left_ = true;
    if (exit_code == 0 && failure_.empty()) {
      // A normal end: collectives still running finish first.
      changed_.wait_for(lock, timeout_, [&] { return in_flight_.empty() || !failure_.empty(); });
    }
  }
  bool clean = exit_code == 0 && failure().empty();
  if (watch_) watch_->leave(exit_code, reason);
  if (clean) shutdown();
  // Rank 0 hosts the store: the others may still need it to say goodbye.
  if (server_) server_->wait_for_others(rank_, std::min(timeout_, Milliseconds(clean ? 60000 : 2000)));
  if (clean) {
    watch_.reset();
    store_.reset();
    server_.reset();
  }
  // After a failure, threads may sit inside a collective that will never end:
  // everything is left as is for the process to exit.
}

#ifndef BERTKIT_WITH_CUDA
std::shared_ptr<ProcessGroup> make_nccl_group(const GroupOptions&, Listener) {
  throw Error(
      "init_process_group: backend 'nccl' needs the CUDA variant of the bertkit addon, and this one is CPU only "
      "(use backend 'gloo' for CPU tensors)");
}

std::string nccl_status(const std::vector<std::string>&) { return ""; }
#endif

}  // namespace dist
}  // namespace bertkit
