// PLACEHOLDER (helper-owned).
#include "cpu_backend.h"
namespace bertkit {
void CpuBackend::fill(float*, int64_t, float) { throw Error("not implemented yet"); }
void CpuBackend::axpby(int64_t, float, const float*, float, float*) { throw Error("not implemented yet"); }
void CpuBackend::mul(int64_t, const float*, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::add_bias_rows(int64_t, int64_t, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::sum_rows(int64_t, int64_t, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::sum(int64_t, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::sum_squares(int64_t, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::cast(int64_t, DType, const void*, DType, void*) { throw Error("not implemented yet"); }
void CpuBackend::slice_rows_forward(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) { throw Error("not implemented yet"); }
void CpuBackend::slice_rows_backward(int64_t, int64_t, int64_t, int64_t, int64_t, const float*, float*) { throw Error("not implemented yet"); }
}
