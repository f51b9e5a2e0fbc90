// PLACEHOLDER (helper-owned).
#include "cpu_backend.h"
namespace bertkit {
void CpuBackend::dropout_forward(int64_t, float, uint64_t, uint64_t, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::dropout_backward(int64_t, float, uint64_t, uint64_t, const float*, float*) { throw Error("not implemented yet"); }
}
