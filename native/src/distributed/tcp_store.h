// The rendezvous store of a process group: a key-value server that rank 0
// hosts on MASTER_ADDR:MASTER_PORT, and the clients every rank opens to it
// (the role c10d's TCPStore plays for torch.distributed). Gloo's rendezvous
// writes its pair addresses here and NCCL's unique id travels through it;
// the collectives themselves never touch it.
//
// It also watches the ranks. Each rank keeps one extra connection open for
// its whole life and says goodbye on it before it exits. When that connection
// closes without a goodbye (the process was killed or crashed), or a rank
// leaves with a failure, the server tells every other rank at once, so a
// survivor stops with a message naming the rank instead of waiting on a
// collective that can never finish.
//
// Frames: one type byte, a 4-byte little-endian length, the payload.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bertkit {
namespace dist {

using Milliseconds = std::chrono::milliseconds;

// "tcp://host:port", as messages name an address.
std::string store_url(const std::string& host, int port);

class TcpStoreServer {
 public:
  // Listens on every interface at `port`; throws bertkit::Error naming the
  // port when it cannot (in use, no permission).
  TcpStoreServer(int port, int world_size);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  // Waits until no other rank's watch connection is open, at most `timeout`;
  // false when some are still open. Rank 0 calls it before it closes the
  // server, so ranks that finish a moment later still find it.
  bool wait_for_others(int self_rank, Milliseconds timeout);

 private:
  struct Conn {
    int fd = -1;
    std::vector<uint8_t> in;
    int watch_rank = -1;  // >= 0: this is rank's watch connection
    bool left = false;    // said goodbye
  };
  void loop();
  bool handle_frame(Conn& c, uint8_t type, const std::vector<uint8_t>& payload);
  void close_conn(size_t index);
  void tell_watchers(int except_rank, uint8_t type, const std::vector<uint8_t>& payload);

  int world_size_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::thread thread_;

  std::mutex mutex_;  // guards what wait_for_others reads
  std::vector<Conn> conns_;
  std::map<std::string, std::vector<uint8_t>> values_;
  std::map<std::string, std::vector<int>> waiting_;  // key -> fds of pending gets
};

class TcpStoreClient {
 public:
  // Connects, retrying while nothing listens yet, until `timeout` has passed;
  // the error then names the address and what the last attempt saw.
  TcpStoreClient(const std::string& host, int port, Milliseconds timeout, const std::string& who);
  ~TcpStoreClient();
  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;

  void set(const std::string& key, const std::vector<uint8_t>& value);
  // Waits for the key; throws after `timeout` naming the key and address.
  std::vector<uint8_t> get(const std::string& key, Milliseconds timeout);
  // Adds delta to an integer key (0 when absent) and returns the sum.
  int64_t add(const std::string& key, int64_t delta);
  // Whether the key is set, without waiting.
  bool check(const std::string& key);
  // Long waits (get) also stop, with this message, as soon as it returns
  // non-empty: a group broken by a dead rank need not sit out the timeout.
  void set_interrupt(std::function<std::string()> interrupted) { interrupted_ = std::move(interrupted); }

  const std::string& url() const { return url_; }

 private:
  std::vector<uint8_t> request(uint8_t type, const std::vector<uint8_t>& payload, Milliseconds timeout,
                               const std::string& what);
  std::mutex mutex_;
  int fd_ = -1;
  std::string url_;
  std::function<std::string()> interrupted_;
};

// One rank's watch connection. `on_event` runs on the watch thread with a
// message whenever another rank dies or leaves with a failure, or the server
// itself goes away; `fatal` says whether the group is now broken.
class TcpStoreWatch {
 public:
  using Listener = std::function<void(bool fatal, const std::string& message)>;
  // Throws when the server refuses the rank (another process holds it).
  TcpStoreWatch(const std::string& host, int port, int rank, Milliseconds timeout, Listener on_event);
  ~TcpStoreWatch();
  TcpStoreWatch(const TcpStoreWatch&) = delete;
  TcpStoreWatch& operator=(const TcpStoreWatch&) = delete;

  // Says goodbye: exit_code 0 is a normal end, anything else a failure that
  // the other ranks are told about, with `reason`. Idempotent.
  void leave(int exit_code, const std::string& reason);

 private:
  void loop();
  int fd_ = -1;
  int rank_;
  std::string url_;
  Listener on_event_;
  std::atomic<bool> leaving_{false};
  std::thread thread_;
};

}  // namespace dist
}  // namespace bertkit
