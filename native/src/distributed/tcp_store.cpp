#include "tcp_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "bertkit/error.h"

namespace bertkit {
namespace dist {

namespace {

// Frame types. Client -> server:
constexpr uint8_t kSet = 'S';    // u32 key length, key, value        -> kOk
constexpr uint8_t kGet = 'G';    // key                               -> kValue once the key exists
constexpr uint8_t kAdd = 'A';    // u32 key length, key, i64 delta    -> kValue (i64 sum)
constexpr uint8_t kCheck = 'C';  // key                               -> kValue (1 byte: 1 set, 0 not)
constexpr uint8_t kWatch = 'W';  // i32 rank: this is rank's watch    -> kOk, or kRefused
constexpr uint8_t kLeave = 'L';  // i32 exit code, reason             -> kOk
// Server -> client:
constexpr uint8_t kOk = 'K';
constexpr uint8_t kValue = 'V';
constexpr uint8_t kRefused = 'E';  // message
constexpr uint8_t kDied = 'D';     // i32 rank: its watch closed without a goodbye
constexpr uint8_t kLeft = 'F';     // i32 rank, i32 exit code, reason

constexpr size_t kMaxFrame = 64u << 20;

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_i64(std::vector<uint8_t>& out, int64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
int64_t get_i64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= uint64_t(p[i]) << (8 * i);
  return static_cast<int64_t>(v);
}

std::vector<uint8_t> frame(uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out;
  out.reserve(5 + payload.size());
  out.push_back(type);
  put_u32(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> keyed(const std::string& key, const std::vector<uint8_t>& rest) {
  std::vector<uint8_t> out;
  put_u32(out, static_cast<uint32_t>(key.size()));
  out.insert(out.end(), key.begin(), key.end());
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

// Whole-buffer send; false when the peer is gone.
bool send_all(int fd, const std::vector<uint8_t>& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string seconds(Milliseconds ms) {
  std::string s = std::to_string(ms.count() / 1000.0);
  return s.substr(0, s.find('.') + 2);
}

int64_t remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return left < 0 ? 0 : left;
}

// Reads exactly n bytes before the deadline. 0: ok, 1: timed out, 2: closed / error.
int recv_exact(int fd, uint8_t* out, size_t n, std::chrono::steady_clock::time_point deadline, bool forever) {
  size_t done = 0;
  while (done < n) {
    pollfd p{fd, POLLIN, 0};
    int64_t wait = forever ? -1 : remaining_ms(deadline);
    int r = ::poll(&p, 1, forever ? -1 : static_cast<int>(std::min<int64_t>(wait, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return 1;
    if (r < 0) return 2;
    ssize_t got = ::recv(fd, out + done, n - done, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 2;
    done += static_cast<size_t>(got);
  }
  return 0;
}

// One frame, or why not (1: timeout, 2: closed).
int read_frame(int fd, uint8_t& type, std::vector<uint8_t>& payload, std::chrono::steady_clock::time_point deadline,
               bool forever = false) {
  uint8_t head[5];
  int rc = recv_exact(fd, head, 5, deadline, forever);
  if (rc != 0) return rc;
  type = head[0];
  uint32_t len = get_u32(head + 1);
  if (len > kMaxFrame) return 2;
  payload.assign(len, 0);
  return len ? recv_exact(fd, payload.data(), len, deadline, forever) : 0;
}

std::string errno_text(int e) { return std::strerror(e); }

// Connects to host:port once; -1 and a reason on failure.
int connect_once(const std::string& host, int port, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
  if (rc != 0) {
    why = std::string("cannot resolve host '") + host + "': " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = list; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = errno_text(errno);
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    why = errno_text(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(list);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

// Retries while the server is not up yet, until the deadline.
int connect_retrying(const std::string& host, int port, Milliseconds timeout, const std::string& who) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why;
  for (;;) {
    int fd = connect_once(host, port, why);
    if (fd >= 0) return fd;
    if (remaining_ms(deadline) == 0) break;
    std::this_thread::sleep_for(Milliseconds(std::min<int64_t>(100, remaining_ms(deadline))));
  }
  throw Error("rendezvous timed out: " + who + " found no rendezvous store at " + store_url(host, port) + " within " + seconds(timeout) +
              " s (last attempt: " + why +
              "). Rank 0 hosts it: is rank 0 running, and are MASTER_ADDR and MASTER_PORT the same on every rank?");
}

}  // namespace

std::string store_url(const std::string& host, int port) {
  bool v6 = host.find(':') != std::string::npos;
  return "tcp://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// ---- server ------------------------------------------------------------------------

TcpStoreServer::TcpStoreServer(int port, int world_size) : world_size_(world_size) {
  // IPv6 socket accepting IPv4 too; plain IPv4 where IPv6 is off.
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool v6 = fd >= 0;
  if (!v6) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error("rendezvous: cannot create a socket for the store: " + errno_text(errno));
  int one = 1, zero = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (v6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0 || ::listen(fd, 128) != 0) {
    int e = errno;
    ::close(fd);
    throw Error("rendezvous: rank 0 cannot host the store on port " + std::to_string(port) + ": " + errno_text(e) +
                (e == EADDRINUSE ? " (another run, or another program, holds it: pick a free MASTER_PORT)" : ""));
  }
  listen_fd_ = fd;
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) {
    ::close(fd);
    throw Error("rendezvous: pipe() failed: " + errno_text(errno));
  }
  thread_ = std::thread([this] { loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  stop_ = true;
  char b = 1;
  if (::write(wake_pipe_[1], &b, 1) < 0) {
    // The loop also wakes on its poll timeout.
  }
  if (thread_.joinable()) thread_.join();
  for (Conn& c : conns_) ::close(c.fd);
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

bool TcpStoreServer::wait_for_others(int self_rank, Milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      int others = 0;
      for (const Conn& c : conns_) others += c.watch_rank >= 0 && c.watch_rank != self_rank && !c.left;
      if (others == 0) return true;
    }
    if (remaining_ms(deadline) == 0) return false;
    std::this_thread::sleep_for(Milliseconds(20));
  }
}

void TcpStoreServer::tell_watchers(int except_rank, uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f = frame(type, payload);
  for (Conn& c : conns_) {
    if (c.watch_rank >= 0 && c.watch_rank != except_rank && !c.left) send_all(c.fd, f);
  }
}

void TcpStoreServer::close_conn(size_t index) {
  Conn c = conns_[index];
  conns_.erase(conns_.begin() + static_cast<long>(index));
  ::close(c.fd);
  for (auto& entry : waiting_) {
    std::vector<int>& fds = entry.second;
    fds.erase(std::remove(fds.begin(), fds.end(), c.fd), fds.end());
  }
  if (c.watch_rank >= 0 && !c.left) {
    // Gone without a goodbye: killed, crashed, or its machine went away.
    std::vector<uint8_t> p;
    put_u32(p, static_cast<uint32_t>(c.watch_rank));
    tell_watchers(c.watch_rank, kDied, p);
  }
}

bool TcpStoreServer::handle_frame(Conn& c, uint8_t type, const std::vector<uint8_t>& p) {
  auto key_of = [&](size_t& pos) -> std::string {
    if (p.size() < 4) return {};
    uint32_t n = get_u32(p.data());
    if (4 + n > p.size()) return {};
    pos = 4 + n;
    return std::string(p.begin() + 4, p.begin() + 4 + n);
  };
  if (type == kSet) {
    size_t pos = 0;
    std::string key = key_of(pos);
    if (pos == 0) return false;
    std::vector<uint8_t> value(p.begin() + static_cast<long>(pos), p.end());
    values_[key] = value;
    if (!send_all(c.fd, frame(kOk, {}))) return false;
    auto it = waiting_.find(key);
    if (it != waiting_.end()) {
      std::vector<uint8_t> f = frame(kValue, value);
      for (int fd : it->second) send_all(fd, f);
      waiting_.erase(it);
    }
    return true;
  }
  if (type == kGet) {
    std::string key(p.begin(), p.end());
    auto it = values_.find(key);
    if (it != values_.end()) return send_all(c.fd, frame(kValue, it->second));
    waiting_[key].push_back(c.fd);
    return true;
  }
  if (type == kAdd) {
    size_t pos = 0;
    std::string key = key_of(pos);
    if (pos == 0 || p.size() != pos + 8) return false;
    int64_t sum = get_i64(p.data() + pos);
    auto it = values_.find(key);
    if (it != values_.end() && it->second.size() == 8) sum += get_i64(it->second.data());
    std::vector<uint8_t> v;
    put_i64(v, sum);
    values_[key] = v;
    return send_all(c.fd, frame(kValue, v));
  }
  if (type == kCheck) {
    std::string key(p.begin(), p.end());
    return send_all(c.fd, frame(kValue, {static_cast<uint8_t>(values_.count(key) ? 1 : 0)}));
  }
  if (type == kWatch) {
    if (p.size() != 4) return false;
    int rank = static_cast<int>(get_u32(p.data()));
    if (rank < 0 || rank >= world_size_) {
      std::string m = "rank " + std::to_string(rank) + " is outside a group of " + std::to_string(world_size_) +
                      " (rank 0 was started with WORLD_SIZE=" + std::to_string(world_size_) + ")";
      return send_all(c.fd, frame(kRefused, std::vector<uint8_t>(m.begin(), m.end())));
    }
    for (const Conn& o : conns_) {
      if (o.watch_rank == rank && !o.left) {
        std::string m = "rank " + std::to_string(rank) + " is already held by another process: each process needs its own RANK";
        return send_all(c.fd, frame(kRefused, std::vector<uint8_t>(m.begin(), m.end())));
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    c.watch_rank = rank;
    return send_all(c.fd, frame(kOk, {}));
  }
  if (type == kLeave) {
    if (p.size() < 4 || c.watch_rank < 0) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      c.left = true;
    }
    std::vector<uint8_t> f;
    put_u32(f, static_cast<uint32_t>(c.watch_rank));
    f.insert(f.end(), p.begin(), p.end());
    tell_watchers(c.watch_rank, kLeft, f);
    return send_all(c.fd, frame(kOk, {}));
  }
  return false;
}

void TcpStoreServer::loop() {
  std::vector<pollfd> fds;
  while (!stop_) {
    fds.clear();
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    for (const Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
    int r = ::poll(fds.data(), fds.size(), 500);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0 || stop_) continue;
    if (fds[0].revents & POLLIN) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::lock_guard<std::mutex> lock(mutex_);
        conns_.push_back(Conn{fd, {}, -1, false});
      }
    }
    // Walk connections by fd: handling one may close others' entries.
    for (size_t k = 2; k < fds.size(); k++) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      size_t i = 0;
      while (i < conns_.size() && conns_[i].fd != fds[k].fd) i++;
      if (i == conns_.size()) continue;
      uint8_t buf[65536];
      ssize_t n = ::recv(conns_[i].fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      bool ok = n > 0;
      if (ok) {
        Conn& c = conns_[i];
        c.in.insert(c.in.end(), buf, buf + n);
        while (ok && c.in.size() >= 5) {
          uint32_t len = get_u32(c.in.data() + 1);
          if (len > kMaxFrame) {
            ok = false;
            break;
          }
          if (c.in.size() < 5 + len) break;
          uint8_t type = c.in[0];
          std::vector<uint8_t> payload(c.in.begin() + 5, c.in.begin() + 5 + len);
          c.in.erase(c.in.begin(), c.in.begin() + 5 + len);
          ok = handle_frame(c, type, payload);
        }
      }
      if (!ok) {
        std::lock_guard<std::mutex> lock(mutex_);
        close_conn(i);
      }
    }
  }
}

// ---- client ------------------------------------------------------------------------

TcpStoreClient::TcpStoreClient(const std::string& host, int port, Milliseconds timeout, const std::string& who)
    : url_(store_url(host, port)) {
  fd_ = connect_retrying(host, port, timeout, who);
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<uint8_t> TcpStoreClient::request(uint8_t type, const std::vector<uint8_t>& payload, Milliseconds timeout,
                                             const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0) throw Error("rendezvous store " + url_ + ": the connection was dropped after an earlier timeout");
  if (!send_all(fd_, frame(type, payload))) {
    throw Error("rendezvous store " + url_ + " closed the connection (" + what + "): rank 0, which hosts it, has exited");
  }
  uint8_t got = 0;
  std::vector<uint8_t> reply;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int rc = 1;
  for (;;) {
    // Wait for the reply's first byte in slices, to notice an interruption.
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(remaining_ms(deadline), 200)));
    if (r < 0 && errno == EINTR) continue;
    if (r > 0) {
      rc = read_frame(fd_, got, reply, deadline);
      break;
    }
    if (r < 0) {
      rc = 2;
      break;
    }
    std::string why = interrupted_ ? interrupted_() : std::string();
    if (!why.empty()) {
      ::close(fd_);
      fd_ = -1;
      throw Error(why);
    }
    if (remaining_ms(deadline) == 0) break;
  }
  if (rc == 1) {
    // A late answer would arrive out of turn: this connection is done.
    ::close(fd_);
    fd_ = -1;
    throw Error("rendezvous timed out after " + seconds(timeout) + " s waiting for " +
                what + " at " + url_);
  }
  if (rc != 0) {
    throw Error("rendezvous store " + url_ + " closed the connection (" + what + "): rank 0, which hosts it, has exited");
  }
  if (got == kRefused) throw Error(std::string(reply.begin(), reply.end()));
  return reply;
}

void TcpStoreClient::set(const std::string& key, const std::vector<uint8_t>& value) {
  request(kSet, keyed(key, value), Milliseconds(60000), "setting '" + key + "'");
}

std::vector<uint8_t> TcpStoreClient::get(const std::string& key, Milliseconds timeout) {
  return request(kGet, std::vector<uint8_t>(key.begin(), key.end()), timeout, "'" + key + "'");
}

bool TcpStoreClient::check(const std::string& key) {
  std::vector<uint8_t> reply = request(kCheck, std::vector<uint8_t>(key.begin(), key.end()), Milliseconds(60000),
                                       "checking '" + key + "'");
  return reply.size() == 1 && reply[0] == 1;
}

int64_t TcpStoreClient::add(const std::string& key, int64_t delta) {
  std::vector<uint8_t> d;
  put_i64(d, delta);
  std::vector<uint8_t> reply = request(kAdd, keyed(key, d), Milliseconds(60000), "adding to '" + key + "'");
  if (reply.size() != 8) throw Error("rendezvous store " + url_ + ": bad reply to add");
  return get_i64(reply.data());
}

// ---- watch -------------------------------------------------------------------------

TcpStoreWatch::TcpStoreWatch(const std::string& host, int port, int rank, Milliseconds timeout, Listener on_event)
    : rank_(rank), url_(store_url(host, port)), on_event_(std::move(on_event)) {
  fd_ = connect_retrying(host, port, timeout, "rank " + std::to_string(rank));
  std::vector<uint8_t> p;
  put_u32(p, static_cast<uint32_t>(rank));
  uint8_t type = 0;
  std::vector<uint8_t> reply;
  if (!send_all(fd_, frame(kWatch, p)) ||
      read_frame(fd_, type, reply, std::chrono::steady_clock::now() + timeout) != 0) {
    ::close(fd_);
    throw Error("rendezvous store " + url_ + " did not answer rank " + std::to_string(rank) + "'s registration");
  }
  if (type == kRefused) {
    ::close(fd_);
    throw Error("rendezvous at " + url_ + " refused rank " + std::to_string(rank) + ": " + std::string(reply.begin(), reply.end()));
  }
  thread_ = std::thread([this] { loop(); });
}

TcpStoreWatch::~TcpStoreWatch() {
  leave(0, "");
  ::shutdown(fd_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

void TcpStoreWatch::leave(int exit_code, const std::string& reason) {
  if (leaving_.exchange(true)) return;
  std::vector<uint8_t> p;
  put_u32(p, static_cast<uint32_t>(exit_code));
  p.insert(p.end(), reason.begin(), reason.end());
  // The server's acknowledgement arrives on the watch thread, which stops there.
  send_all(fd_, frame(kLeave, p));
}

void TcpStoreWatch::loop() {
  for (;;) {
    uint8_t type = 0;
    std::vector<uint8_t> p;
    int rc = read_frame(fd_, type, p, std::chrono::steady_clock::now(), /*forever=*/true);
    if (rc != 0) {
      if (!leaving_) {
        on_event_(true, "the rendezvous store at " + url_ + " closed: rank 0, which hosts it, has exited or lost its network");
      }
      return;
    }
    if (leaving_) {
      if (type == kOk) return;
      continue;  // this rank is on its way out: others' news no longer matters
    }
    if (type == kDied && p.size() == 4) {
      int r = static_cast<int>(get_u32(p.data()));
      on_event_(true, "rank " + std::to_string(r) + " died: its connection closed without a goodbye (killed, crashed, or its machine went away)");
    } else if (type == kLeft && p.size() >= 8) {
      int r = static_cast<int>(get_u32(p.data()));
      int code = static_cast<int>(get_u32(p.data() + 4));
      std::string reason(p.begin() + 8, p.end());
      if (code == 0) {
        on_event_(false, "rank " + std::to_string(r) + " has finished and left the group");
      } else {
        on_event_(true, "rank " + std::to_string(r) + " failed (exit code " + std::to_string(code) + ")" +
                            (reason.empty() ? "" : ": " + reason));
      }
    }
  }
}

}  // namespace dist
}  // namespace bertkit
