// PLACEHOLDER (helper-owned).
#include "cpu_backend.h"
namespace bertkit {
void CpuBackend::adamw_step(int64_t, float, float, float, float, float, int64_t, const float*, const float*, float*, float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::clip_coefficient(const float*, float, float*) { throw Error("not implemented yet"); }
}
