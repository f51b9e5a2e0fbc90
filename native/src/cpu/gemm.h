// Run-time choice of the CPU GEMM path (gemm.cpp). The first product reads
// BERTKIT_GEMM; this switches afterwards, e.g. for a test or benchmark that
// compares paths in one process.
#pragma once

#include <string>

namespace bertkit {

// Selects the path for every later CpuBackend::gemm call: "auto", "openblas",
// "builtin", "builtin-avx512", "builtin-avx2" or "builtin-scalar" (the
// meanings are BERTKIT_GEMM's). Returns what is now used, as cpu_gemm_name()
// would (e.g. "built-in AVX2+FMA", or a note when the request cannot be met).
// Throws bertkit::Error for any other string. Not to be called while another
// thread is inside gemm.
const char* select_cpu_gemm(const std::string& path);

}  // namespace bertkit
