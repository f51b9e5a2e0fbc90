// The CPU backend: the readable reference implementation of every op, in fp32,
// multithreaded through ThreadPool. Each op family lives in its own file, named
// after it (gemm.cpp, layernorm.cpp, ...); memory lives in cpu_backend.cpp. Its
// methods run at once on the calling thread: the CPU stream (cpu_stream.h)
// is what queues them.
#pragma once

#include <vector>

#include "bertkit/backend.h"

namespace bertkit {

// A mapped block of the CPU block cache.
struct CpuBlock {
  void* ptr;
  size_t bytes;
};

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string describe() const override;

  void* allocate(size_t bytes) override;
  // A cached block or a fresh one, or null when the OS refuses (allocate()
  // then empties the cache and tries again).
  void* allocate_or_null(size_t bytes);
  void release(void* ptr, size_t bytes) override;
  // Puts a released block in the block cache at once; false when it is not a
  // cached size (or too large for the cache), and then nothing changed. Blocks
  // the cache drops to stay within its limit are appended to `evicted`, still
  // mapped: the caller unmaps them (unmap_cpu_block) once nothing uses them.
  bool cache_block(void* ptr, size_t bytes, std::vector<CpuBlock>& evicted);
  void upload(void* dst, const void* host_src, size_t bytes) override;
  void download(void* host_dst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}
  void check_indices(const int32_t* indices, int64_t n, int64_t limit, bool allow_ignore,
                     int32_t ignore_index, const std::string& what) override;

#define BERTKIT_OP(name, params) void name params override;
#include "bertkit/op_list.h"
#undef BERTKIT_OP
  void activation_backward_write(Activation kind, int64_t n, const float* x, const float* dy, float* dx) override;
  void sum_rows_write(int64_t rows, int64_t cols, const float* x, float* out) override;
  void activation_forward_half(Activation kind, int64_t n, const float* x, float* y, DType half_dtype,
                               void* half) override;
  void layernorm_forward_half(int64_t rows, int64_t cols, float eps, const float* x, const float* residual,
                              const float* gamma, const float* beta, float* y, float* sum_out, float* mean,
                              float* rstd, DType half_dtype, void* half) override;
  void activation_backward_cast_sum_rows(Activation kind, int64_t rows, int64_t cols, const float* h, const float* dy,
                                         float* scratch, DType dst_dtype, void* dst, float* sums,
                                         bool write_sums) override;
  void layernorm_backward_dx_write(int64_t rows, int64_t cols, const float* x, const float* gamma, const float* mean,
                                   const float* rstd, const float* dy, float* dx, float* dx_copy, float* dgamma,
                                   float* dbeta, bool write_dgamma, bool write_dbeta) override;
  void cast_sum_rows(int64_t rows, int64_t cols, const float* x, DType dst_dtype, void* dst, float* sums,
                     bool write_sums) override;
  void dropout_rows_backward_write(int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t offset,
                                   const int32_t* row_index, const float* dy, float* dx) override;
  void varlen_attention_backward_write(int64_t batch, int64_t tokens, int64_t seq, int64_t heads, int64_t head_dim,
                                       float scale, float dropout_p, uint64_t seed, uint64_t offset,
                                       const int32_t* cu_seqlens, const float* q, const float* k, const float* v,
                                       const float* probs, const float* dout, float* dq, float* dk, float* dv,
                                       bool write_q, bool write_k, bool write_v) override;
  void layernorm_backward_write(int64_t rows, int64_t cols, const float* x, const float* gamma, const float* mean,
                                const float* rstd, const float* dy, float* dx, float* dgamma, float* dbeta,
                                bool write_dgamma, bool write_dbeta) override;
};

// The one CpuBackend (never destroyed: buffers may be released while the process exits).
CpuBackend& cpu_backend();

void unmap_cpu_block(const CpuBlock& block);

// Idle bytes held by the CPU block cache, and a way to give them back.
size_t cpu_cached_bytes();
void cpu_release_cache();

// Which GEMM implementation this build uses ("OpenBLAS" or "built-in AVX2/FMA ...").
const char* cpu_gemm_name();

}  // namespace bertkit
