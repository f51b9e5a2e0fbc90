// PLACEHOLDER (helper-owned).
#include "cpu_backend.h"
namespace bertkit {
void CpuBackend::attention_forward(int64_t, int64_t, int64_t, int64_t, float, float, uint64_t, uint64_t, const float*, const float*, const float*, const int32_t*, float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::attention_backward(int64_t, int64_t, int64_t, int64_t, float, float, uint64_t, uint64_t, const float*, const float*, const float*, const float*, const float*, float*, float*, float*) { throw Error("not implemented yet"); }
}
