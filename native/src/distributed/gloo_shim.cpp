// bertkit_gloo.so: Gloo's TCP transport and collectives behind the C interface
// of gloo_shim.h. No bertkit code runs here beyond turning exceptions into
// messages; the addon decides when each collective runs.
#include "gloo_shim.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#define BK_EXPORT extern "C" __attribute__((visibility("default")))

struct bk_gloo_group {
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
};

namespace {

void put_error(char* err, size_t err_len, const std::string& message) {
  if (!err || err_len == 0) return;
  std::snprintf(err, err_len, "%s", message.c_str());
}

// Gloo's rendezvous over the addon's store.
class ForwardingStore final : public gloo::rendezvous::Store {
 public:
  ForwardingStore(const bk_gloo_store& store, std::chrono::milliseconds timeout) : store_(store), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    char err[512] = {0};
    if (store_.set(store_.self, key.c_str(), data.data(), data.size(), err, sizeof err) != 0) throw std::runtime_error(err);
  }

  std::vector<char> get(const std::string& key) override {
    char err[512] = {0};
    void* value = nullptr;
    size_t size = 0;
    if (store_.get(store_.self, key.c_str(), timeout_.count(), &value, &size, err, sizeof err) != 0) {
      throw std::runtime_error(err);
    }
    std::vector<char> out(static_cast<char*>(value), static_cast<char*>(value) + size);
    store_.free_value(value);
    return out;
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    for (const std::string& key : keys) {
      char err[512] = {0};
      void* value = nullptr;
      size_t size = 0;
      if (store_.get(store_.self, key.c_str(), timeout.count(), &value, &size, err, sizeof err) != 0) {
        throw std::runtime_error(err);
      }
      store_.free_value(value);
    }
  }

 private:
  bk_gloo_store store_;
  std::chrono::milliseconds timeout_;
};

// gloo::sum and friends are overloaded; this picks the four-argument form.
using ReduceFn = void (*)(void*, const void*, const void*, size_t);

ReduceFn reduce_function(int dtype, int op) {
  if (dtype == BK_GLOO_F32) {
    if (op == BK_GLOO_SUM) return static_cast<ReduceFn>(&gloo::sum<float>);
    if (op == BK_GLOO_MAX) return static_cast<ReduceFn>(&gloo::max<float>);
    if (op == BK_GLOO_MIN) return static_cast<ReduceFn>(&gloo::min<float>);
  } else if (dtype == BK_GLOO_I32) {
    if (op == BK_GLOO_SUM) return static_cast<ReduceFn>(&gloo::sum<int32_t>);
    if (op == BK_GLOO_MAX) return static_cast<ReduceFn>(&gloo::max<int32_t>);
    if (op == BK_GLOO_MIN) return static_cast<ReduceFn>(&gloo::min<int32_t>);
  }
  throw std::invalid_argument("unsupported dtype " + std::to_string(dtype) + " / reduction " + std::to_string(op));
}

size_t element_size(int dtype) {
  if (dtype == BK_GLOO_F32 || dtype == BK_GLOO_I32) return 4;
  throw std::invalid_argument("unsupported dtype " + std::to_string(dtype));
}

// Runs fn, turning any exception into a message; returns 0 on success.
template <typename Fn>
int guarded(char* err, size_t err_len, Fn&& fn) {
  try {
    fn();
    return 0;
  } catch (const std::exception& e) {
    put_error(err, err_len, e.what());
  } catch (...) {
    put_error(err, err_len, "unknown exception inside Gloo");
  }
  return 1;
}

}  // namespace

BK_EXPORT int bk_gloo_abi_version(void) { return BK_GLOO_ABI_VERSION; }

BK_EXPORT bk_gloo_group* bk_gloo_connect(const bk_gloo_store* store, int rank, int size, const char* host,
                                         const char* iface, int64_t timeout_ms, char* err, size_t err_len) {
  std::unique_ptr<bk_gloo_group> group(new bk_gloo_group());
  int rc = guarded(err, err_len, [&] {
    gloo::transport::tcp::attr attr;
    if (iface && *iface) attr.iface = iface;
    else attr.hostname = host ? host : "";
    group->device = gloo::transport::tcp::CreateDevice(attr);
    auto timeout = std::chrono::milliseconds(timeout_ms);
    ForwardingStore forwarding(*store, timeout);
    gloo::rendezvous::PrefixStore prefixed("gloo", forwarding);
    group->context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    group->context->setTimeout(timeout);
    group->context->connectFullMesh(prefixed, group->device);
  });
  return rc == 0 ? group.release() : nullptr;
}

BK_EXPORT int bk_gloo_pair_address(bk_gloo_group* group, int peer, char* out, size_t out_len) {
  return guarded(out, out_len, [&] {
    auto& pair = group->context->getPair(peer);
    if (!pair) throw std::invalid_argument("no pair for rank " + std::to_string(peer));
    put_error(out, out_len, pair->address().str());
  });
}

BK_EXPORT int bk_gloo_allreduce(bk_gloo_group* group, void* data, int64_t count, int dtype, int op, uint32_t tag,
                                char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    gloo::AllreduceOptions opts(group->context);
    auto fn = reduce_function(dtype, op);
    if (dtype == BK_GLOO_F32) opts.setOutput(static_cast<float*>(data), static_cast<size_t>(count));
    else opts.setOutput(static_cast<int32_t*>(data), static_cast<size_t>(count));
    opts.setReduceFunction(fn);
    opts.setTag(tag);
    gloo::allreduce(opts);
  });
}

BK_EXPORT int bk_gloo_broadcast(bk_gloo_group* group, void* data, int64_t count, int dtype, int root, uint32_t tag,
                                char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    element_size(dtype);
    gloo::BroadcastOptions opts(group->context);
    // Bytes: broadcast does no arithmetic, so the element type does not matter.
    opts.setOutput(static_cast<uint8_t*>(data), static_cast<size_t>(count) * 4);
    opts.setRoot(root);
    opts.setTag(tag);
    gloo::broadcast(opts);
  });
}

BK_EXPORT int bk_gloo_allgather(bk_gloo_group* group, const void* input, void* output, int64_t count, int dtype,
                                uint32_t tag, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    size_t bytes = static_cast<size_t>(count) * element_size(dtype);
    gloo::AllgatherOptions opts(group->context);
    opts.setInput(const_cast<uint8_t*>(static_cast<const uint8_t*>(input)), bytes);
    opts.setOutput(static_cast<uint8_t*>(output), bytes * static_cast<size_t>(group->context->size));
    opts.setTag(tag);
    gloo::allgather(opts);
  });
}

BK_EXPORT int bk_gloo_barrier(bk_gloo_group* group, uint32_t tag, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    gloo::BarrierOptions opts(group->context);
    opts.setTag(tag);
    gloo::barrier(opts);
  });
}

BK_EXPORT void bk_gloo_destroy(bk_gloo_group* group) { delete group; }
