// TEMPORARY: the ops the CUDA backend does not have yet. Each one says so
// through the normal error path (a JavaScript Error naming the op), so a model
// that reaches one fails clearly instead of computing garbage. The kernels are
// the CUDA issue's work (issue 5); delete each stub as its .cu file lands.
#include "cuda/cuda_backend.h"

namespace bertkit {

namespace {
[[noreturn]] void not_yet(const char* op) {
  throw Error(std::string(op) + ": not implemented on CUDA yet (issue 5)");
}
}  // namespace

void CudaBackend::sum(int64_t, const float*, float*) { not_yet("sum"); }
void CudaBackend::sum_squares(int64_t, const float*, float*) { not_yet("sum_squares"); }
void CudaBackend::cast(int64_t, DType, const void*, DType, void*) { not_yet("cast"); }
void CudaBackend::slice_rows_forward(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) {
  not_yet("slice_rows_forward");
}
void CudaBackend::slice_rows_backward(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) {
  not_yet("slice_rows_backward");
}

void CudaBackend::layernorm_forward(int64_t, int64_t, float, const float*, const float*, const float*,
                                    const float*, float*, float*, float*, float*) {
  not_yet("layernorm_forward");
}
void CudaBackend::layernorm_backward(int64_t, int64_t, const float*, const float*, const float*, const float*,
                                     const float*, float*, float*, float*) {
  not_yet("layernorm_backward");
}

void CudaBackend::embedding_forward(int64_t, int64_t, const int32_t*, const float*, float*) {
  not_yet("embedding_forward");
}
void CudaBackend::embedding_backward(int64_t, int64_t, int64_t, int64_t, const int32_t*, const float*, float*) {
  not_yet("embedding_backward");
}

void CudaBackend::attention_forward(int64_t, int64_t, int64_t, int64_t, float, float, uint64_t, uint64_t,
                                    const float*, const float*, const float*, const int32_t*, float*, float*) {
  not_yet("attention_forward");
}
void CudaBackend::attention_backward(int64_t, int64_t, int64_t, int64_t, float, float, uint64_t, uint64_t,
                                     const float*, const float*, const float*, const float*, const float*, float*,
                                     float*, float*) {
  not_yet("attention_backward");
}

void CudaBackend::cross_entropy_forward(int64_t, int64_t, const float*, const int32_t*, int32_t, const float*,
                                        float*) {
  not_yet("cross_entropy_forward");
}
void CudaBackend::cross_entropy_backward(int64_t, int64_t, const float*, const int32_t*, int32_t, const float*,
                                         const float*, float*) {
  not_yet("cross_entropy_backward");
}

void CudaBackend::adamw_step(int64_t, double, double, double, double, double, int64_t, const float*, const float*,
                             float*, float*, float*) {
  not_yet("adamw_step");
}
void CudaBackend::clip_coefficient(const float*, float, float*) { not_yet("clip_coefficient"); }

}  // namespace bertkit
