// The CPU backend: the readable reference implementation of every op, in fp32,
// multithreaded through ThreadPool. Each op family lives in its own file, named
// after it (gemm.cpp, layernorm.cpp, ...); memory lives in cpu_backend.cpp. Its
// methods run at once on the calling thread: the CPU stream (cpu_stream.h)
// is what queues them.
#pragma once

#include "bertkit/backend.h"

namespace bertkit {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string describe() const override;

  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}
  void check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                     int32_t ignore_index, const std::string& what) override;

#define BERTKIT_OP(name, params) void name params override;
#include "bertkit/op_list.h"
#undef BERTKIT_OP
};

// The one CpuBackend (never destroyed: buffers may be released while the process exits).
CpuBackend& cpu_backend();

// Idle bytes held by the CPU block cache, and a way to give them back.
size_t cpu_cached_bytes();
void cpu_release_cache();

// Which GEMM implementation this build uses ("OpenBLAS" or "built-in AVX2/FMA ...").
const char* cpu_gemm_name();

}  // namespace bertkit
