// ProcessGroupHandle: a process group (distributed/process_group.h) as JavaScript
// sees it. Collectives return a ticket at once; their completion, and any
// failure of the group, reach the onEvent callback given to distConnect on
// the event loop. No maths here.
#include "process_group_handle.h"

#include <memory>
#include <unordered_map>

#include "../distributed/process_group.h"
#include "native_buffer.h"

namespace bertkit {
namespace {

using dist::CollectiveArgs;
using dist::Collective;
using dist::Event;
using dist::ProcessGroup;

// Delivers events from the group's threads to the event loop. The function is
// referenced (keeps Node alive) only while collectives are in flight, and is
// never released: threads of a broken group may still report late.
struct Channel {
  Napi::ThreadSafeFunction tsfn;
  int pending = 0;  // event loop thread only
};

struct EventData {
  Event event;
};

std::vector<std::string> string_list(const Napi::Object& o, const char* key) {
  std::vector<std::string> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("distConnect: '") + key + "' must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value s = a.Get(i);
    if (!s.IsString()) throw Napi::TypeError::New(o.Env(), std::string("distConnect: '") + key + "' must be an array of strings");
    out.push_back(s.As<Napi::String>().Utf8Value());
  }
  return out;
}

int int_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("distConnect: '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::TypeError::New(o.Env(), std::string("distConnect: '") + key + "' must be an integer");
  }
  return static_cast<int>(d);
}

std::string string_field(const Napi::Object& o, const char* key, bool optional = false) {
  Napi::Value v = o.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return "";
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("distConnect: '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

class ProcessGroupHandle : public Napi::ObjectWrap<ProcessGroupHandle> {
 public:
  static Napi::FunctionReference constructor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ProcessGroupHandle",
                       {InstanceAccessor<&ProcessGroupHandle::Rank>("rank"),
                        InstanceAccessor<&ProcessGroupHandle::WorldSize>("worldSize"),
                        InstanceAccessor<&ProcessGroupHandle::Backend>("backend"),
                        InstanceAccessor<&ProcessGroupHandle::DeviceCode>("device"),
                        InstanceMethod<&ProcessGroupHandle::Describe>("describe"),
                        InstanceMethod<&ProcessGroupHandle::AllReduce>("allReduce"),
                        InstanceMethod<&ProcessGroupHandle::AllReduceCoalesced>("allReduceCoalesced"),
                        InstanceMethod<&ProcessGroupHandle::Broadcast>("broadcast"),
                        InstanceMethod<&ProcessGroupHandle::AllGather>("allGather"),
                        InstanceMethod<&ProcessGroupHandle::Barrier>("barrier"),
                        InstanceMethod<&ProcessGroupHandle::Wait>("wait"),
                        InstanceMethod<&ProcessGroupHandle::Failure>("failure"),
                        InstanceMethod<&ProcessGroupHandle::Leave>("leave")});
  }

  explicit ProcessGroupHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcessGroupHandle>(info) {}

  void Attach(std::shared_ptr<ProcessGroup> group, std::shared_ptr<Channel> channel) {
    group_ = std::move(group);
    channel_ = std::move(channel);
  }

  // Completion on the event loop: drop the buffers held for the collective.
  void Completed(Napi::Env env, uint64_t ticket) {
    held_.erase(ticket);
    if (channel_ && channel_->pending > 0 && --channel_->pending == 0) channel_->tsfn.Unref(env);
  }

 private:
  ProcessGroup& group(const Napi::CallbackInfo& info) {
    if (!group_) throw Napi::Error::New(info.Env(), "ProcessGroupHandle: not connected");
    return *group_;
  }

  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), group(info).rank()); }
  Napi::Value WorldSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), group(info).size()); }
  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), group(info).backend()); }
  Napi::Value DeviceCode(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<int>(group(info).device()));
  }
  Napi::Value Describe(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), group(info).describe()); }

  NativeBuffer* buffer_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
    if (info.Length() <= i || !NativeBuffer::Is(info[i])) {
      throw Napi::TypeError::New(info.Env(), std::string(fn) + ": '" + name + "' must be a NativeBuffer");
    }
    NativeBuffer* b = NativeBuffer::Unwrap(info[i]);
    if (b->freed()) throw Napi::Error::New(info.Env(), std::string(fn) + ": tensor '" + name + "' was freed");
    if (b->dtype() != DType::F32 && b->dtype() != DType::I32) {
      throw Napi::TypeError::New(info.Env(), std::string(fn) + ": tensor '" + name + "' has dtype " + dtype_name(b->dtype()) +
                                                 "; collectives take float32 or int32");
    }
    if (b->device() != group(info).device()) {
      throw Napi::Error::New(info.Env(), std::string(fn) + ": tensor '" + name + "' is on " + device_name(b->device()) + " but this " +
                                             group(info).backend() + " group works on " + device_name(group(info).device()) +
                                             " tensors (gloo: cpu, nccl: cuda)");
    }
    return b;
  }

  int64_t count_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, NativeBuffer* b, int64_t factor = 1) {
    if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": 'count' must be a number");
    double d = info[i].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != static_cast<double>(static_cast<int64_t>(d))) {
      throw Napi::RangeError::New(info.Env(), std::string(fn) + ": 'count' must be a non-negative integer");
    }
    int64_t n = static_cast<int64_t>(d);
    if (n * factor > b->numel()) {
      throw Napi::RangeError::New(info.Env(), std::string(fn) + ": count " + std::to_string(n) + " needs " + std::to_string(n * factor) +
                                                  " elements but the tensor holds " + std::to_string(b->numel()));
    }
    return n;
  }

  Napi::Value Issue(const Napi::CallbackInfo& info, const CollectiveArgs& args, std::vector<size_t> buffer_indices) {
    Napi::Env env = info.Env();
    uint64_t ticket;
    try {
      ticket = group(info).issue(args);
    } catch (const Error& e) {
      throw Napi::Error::New(env, e.what());
    }
    // The JavaScript buffers stay reachable until the collective ends.
    std::vector<Napi::ObjectReference>& refs = held_[ticket];
    for (size_t i : buffer_indices) refs.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    if (channel_->pending++ == 0) channel_->tsfn.Ref(env);
    return Napi::Number::New(env, static_cast<double>(ticket));
  }

  // allReduce(buffer, count, op: 0 sum | 1 max | 2 min | 3 avg) -> ticket
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    NativeBuffer* b = buffer_arg(info, 0, "allReduce", "tensor");
    CollectiveArgs a;
    a.kind = Collective::AllReduce;
    a.dtype = b->dtype();
    a.data = b->data();
    a.count = count_arg(info, 1, "allReduce", b);
    b->forget_host_indices();  // the collective writes it: any host copy of its int32 values is stale
    a.op = reduce_op(info, 2, "allReduce", b->dtype());
    return Issue(info, a, {0});
  }

  dist::ReduceOp reduce_op(const Napi::CallbackInfo& info, size_t i, const char* fn, DType dtype) {
    int op = info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : -1;
    if (op < 0 || op > 3) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": op must be 0 (sum), 1 (max), 2 (min) or 3 (avg)");
    if (op == 3 && dtype != DType::F32) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": avg takes float32 tensors");
    return static_cast<dist::ReduceOp>(op);
  }

  // allReduceCoalesced(buffers[], op) -> ticket: the float32 tensors reduced as
  // one bucket, each in place.
  Napi::Value AllReduceCoalesced(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "allReduceCoalesced: expected an array of NativeBuffers");
    Napi::Array list = info[0].As<Napi::Array>();
    if (list.Length() == 0) throw Napi::RangeError::New(env, "allReduceCoalesced: the bucket is empty");
    CollectiveArgs a;
    a.kind = Collective::AllReduceCoalesced;
    a.dtype = DType::F32;
    a.op = reduce_op(info, 1, "allReduceCoalesced", DType::F32);
    std::vector<Napi::Object> objects;
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!NativeBuffer::Is(v)) throw Napi::TypeError::New(env, "allReduceCoalesced: element " + std::to_string(i) + " is not a NativeBuffer");
      NativeBuffer* b = NativeBuffer::Unwrap(v);
      if (b->freed()) throw Napi::Error::New(env, "allReduceCoalesced: tensor " + std::to_string(i) + " was freed");
      if (b->dtype() != DType::F32) throw Napi::TypeError::New(env, "allReduceCoalesced: tensor " + std::to_string(i) + " is not float32");
      if (b->device() != group(info).device()) {
        throw Napi::Error::New(env, "allReduceCoalesced: tensor " + std::to_string(i) + " is on " + device_name(b->device()) + " but this " +
                                        group(info).backend() + " group works on " + device_name(group(info).device()) + " tensors");
      }
      for (void* seen : a.parts) {
        if (seen == b->data()) throw Napi::Error::New(env, "allReduceCoalesced: tensor " + std::to_string(i) + " appears twice in the bucket");
      }
      a.parts.push_back(b->data());
      a.part_counts.push_back(b->numel());
      objects.push_back(v.As<Napi::Object>());
    }
    uint64_t ticket;
    try {
      ticket = group(info).issue(a);
    } catch (const Error& e) {
      throw Napi::Error::New(env, e.what());
    }
    std::vector<Napi::ObjectReference>& refs = held_[ticket];
    for (Napi::Object& o : objects) refs.push_back(Napi::Persistent(o));
    if (channel_->pending++ == 0) channel_->tsfn.Ref(env);
    return Napi::Number::New(env, static_cast<double>(ticket));
  }

  // broadcast(buffer, count, root) -> ticket
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    NativeBuffer* b = buffer_arg(info, 0, "broadcast", "tensor");
    CollectiveArgs a;
    a.kind = Collective::Broadcast;
    a.dtype = b->dtype();
    a.data = b->data();
    a.count = count_arg(info, 1, "broadcast", b);
    b->forget_host_indices();
    int root = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
    if (root < 0 || root >= group(info).size()) {
      throw Napi::RangeError::New(info.Env(), "broadcast: root must be a rank in [0, " + std::to_string(group(info).size() - 1) + "]");
    }
    a.root = root;
    return Issue(info, a, {0});
  }

  // allGather(input, output, count) -> ticket; output holds worldSize * count.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    NativeBuffer* in = buffer_arg(info, 0, "allGather", "input");
    NativeBuffer* out = buffer_arg(info, 1, "allGather", "output");
    if (in->dtype() != out->dtype()) throw Napi::TypeError::New(info.Env(), "allGather: input and output dtypes differ");
    if (in == out) throw Napi::Error::New(info.Env(), "allGather: input and output must be different tensors");
    CollectiveArgs a;
    a.kind = Collective::AllGather;
    a.dtype = in->dtype();
    a.data = in->data();
    a.output = out->data();
    a.count = count_arg(info, 2, "allGather", in);
    count_arg(info, 2, "allGather (output)", out, group(info).size());
    out->forget_host_indices();
    return Issue(info, a, {0, 1});
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    CollectiveArgs a;
    a.kind = Collective::Barrier;
    return Issue(info, a, {});
  }

  // wait(ticket): work issued to the device after this waits for the collective.
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "wait: expected a ticket number");
    try {
      group(info).stream_wait(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()));
    } catch (const Error& e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
    return info.Env().Undefined();
  }

  Napi::Value Failure(const Napi::CallbackInfo& info) {
    std::string f = group(info).failure();
    return f.empty() ? info.Env().Null() : Napi::String::New(info.Env(), f);
  }

  // leave(exitCode, reason): goodbye to the other ranks (see ProcessGroup::leave).
  Napi::Value Leave(const Napi::CallbackInfo& info) {
    int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    std::string reason = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    group(info).leave(code, reason);
    if (channel_ && channel_->pending > 0) {
      channel_->pending = 0;
      channel_->tsfn.Unref(info.Env());
    }
    held_.clear();
    return info.Env().Undefined();
  }

  std::shared_ptr<ProcessGroup> group_;
  std::shared_ptr<Channel> channel_;
  std::unordered_map<uint64_t, std::vector<Napi::ObjectReference>> held_;
};

Napi::FunctionReference ProcessGroupHandle::constructor;

// The handle an event belongs to, looked up on the event loop (the handle may be gone).
struct Route {
  Napi::ObjectReference handle;  // weak until connected
};

// On the event loop: completions first settle the handle's bookkeeping, then
// JavaScript hears of every event as onEvent(kind, ticket, message). This
// also runs while Node tears the environment down (events of a group broken
// at exit), when no JavaScript can run: nothing may escape as a C++ exception.
void deliver(Napi::Env env, Napi::Function callback, Route* route, EventData* data) {
  std::unique_ptr<EventData> owned(data);
  if (env == nullptr || callback.IsEmpty()) return;
  try {
    const Event& e = owned->event;
    if (e.kind == Event::Completed && !route->handle.IsEmpty()) {
      Napi::Value v = route->handle.Value();
      if (v.IsObject()) ProcessGroupHandle::Unwrap(v.As<Napi::Object>())->Completed(env, e.ticket);
    }
    const char* kind = e.kind == Event::Completed ? "completed" : e.kind == Event::GroupFailed ? "failed" : "peer-left";
    callback.Call({Napi::String::New(env, kind), Napi::Number::New(env, static_cast<double>(e.ticket)), Napi::String::New(env, e.error)});
  } catch (const Napi::Error& err) {
    // A throwing handler's error reaches Node as an uncaught exception; at
    // teardown napi_throw fails and there is nobody left to tell.
    napi_value value = nullptr;
    try {
      value = err.Value();
    } catch (...) {
    }
    if (value != nullptr) napi_throw(env, value);
  } catch (...) {
  }
}

class ConnectWorker final : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, dist::GroupOptions options, std::shared_ptr<Channel> channel, Route* route)
      : Napi::AsyncWorker(env, "bertkit.distConnect"),
        options_(std::move(options)),
        channel_(std::move(channel)),
        route_(route),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::shared_ptr<Channel> channel = channel_;
    Route* route = route_;
    try {
      group_ = ProcessGroup::connect(options_, [channel, route](const Event& e) {
        auto* data = new EventData{e};
        if (channel->tsfn.NonBlockingCall(data, [route](Napi::Env env, Napi::Function cb, EventData* d) { deliver(env, cb, route, d); }) != napi_ok) {
          delete data;  // the environment is shutting down
        }
      });
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object obj = ProcessGroupHandle::constructor.New({});
    ProcessGroupHandle* h = ProcessGroupHandle::Unwrap(obj);
    h->Attach(group_, channel_);
    route_->handle = Napi::Weak(obj);
    channel_->tsfn.Unref(env);
    deferred_.Resolve(obj);
  }

  void OnError(const Napi::Error& error) override {
    channel_->tsfn.Unref(Env());
    deferred_.Reject(error.Value());
  }

 private:
  dist::GroupOptions options_;
  std::shared_ptr<Channel> channel_;
  Route* route_;
  std::shared_ptr<ProcessGroup> group_;
  Napi::Promise::Deferred deferred_;
};

// distConnect(options, onEvent(kind, ticket, message)) -> Promise<ProcessGroupHandle>
Napi::Value DistConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    throw Napi::TypeError::New(env, "distConnect: expected (options, onEvent)");
  }
  Napi::Object o = info[0].As<Napi::Object>();
  dist::GroupOptions options;
  options.backend = string_field(o, "backend");
  options.rank = int_field(o, "rank");
  options.world_size = int_field(o, "worldSize");
  options.master_addr = string_field(o, "masterAddr");
  options.master_port = int_field(o, "masterPort");
  int timeout = int_field(o, "timeoutMs");
  if (timeout < 1) throw Napi::RangeError::New(env, "distConnect: timeoutMs must be at least 1");
  options.timeout = dist::Milliseconds(timeout);
  options.gloo_library_paths = string_list(o, "glooLibraryPaths");
  options.nccl_library_dirs = string_list(o, "ncclLibraryDirs");
  options.gloo_iface = string_field(o, "glooIface", true);

  auto channel = std::make_shared<Channel>();
  // Never freed: it holds a JavaScript reference, which only the event loop
  // may delete, and the group's threads (which may outlive everything) reach it.
  Route* route = new Route();
  channel->tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "bertkit.processGroupEvents", 0, 1);
  auto* worker = new ConnectWorker(env, std::move(options), channel, route);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void RegisterProcessGroup(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ProcessGroupHandle::Define(env);
  ProcessGroupHandle::constructor = Napi::Persistent(ctor);
  ProcessGroupHandle::constructor.SuppressDestruct();
  exports.Set("ProcessGroupHandle", ctor);
  exports.Set("distConnect", Napi::Function::New(env, DistConnect, "distConnect"));
#ifdef BERTKIT_WITH_NCCL
  exports.Set("ncclCompiled", Napi::Boolean::New(env, true));
#else
  exports.Set("ncclCompiled", Napi::Boolean::New(env, false));
#endif
  // ncclStatus(dirs) -> what the NCCL lookup finds ("" in the CPU-only addon).
  exports.Set("ncclStatus", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::vector<std::string> dirs;
    if (info.Length() > 0 && info[0].IsArray()) {
      Napi::Array a = info[0].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        if (a.Get(i).IsString()) dirs.push_back(a.Get(i).As<Napi::String>().Utf8Value());
      }
    }
    return Napi::String::New(info.Env(), dist::nccl_status(dirs));
  }, "ncclStatus"));
}

}  // namespace bertkit
