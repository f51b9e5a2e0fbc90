// PLACEHOLDER (helper-owned).
#include "cpu_backend.h"
namespace bertkit {
void CpuBackend::embedding_forward(int64_t, int64_t, const int32_t*, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::embedding_backward(int64_t, int64_t, int64_t, const int32_t*, const float*, float*) { throw Error("not implemented yet"); }
}
