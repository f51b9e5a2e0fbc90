// PLACEHOLDER until the GEMM work lands (helper-owned).
#include "cpu_backend.h"
namespace bertkit {
const char* cpu_gemm_name() { return "none"; }
void CpuBackend::gemm(bool, bool, int64_t, int64_t, int64_t, float, const float*, const float*, float, float*, int64_t, int64_t, int64_t, int64_t) { throw Error("gemm: not implemented yet"); }
}
