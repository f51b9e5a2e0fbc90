// cuBLAS, opened at run time rather than linked.
//
// A prebuilt CUDA addon must load on machines where cuBLAS lives in different
// places (a pip wheel's site-packages, /usr/local/cuda, a conda env) or is
// missing altogether, and say which. So the addon has no link-time dependency
// on libcublas: the first CUDA backend dlopen()s it from the directories the
// TypeScript loader passes in (BERTKIT_CUDA_LIB_PATH, the nvidia-* wheels, a
// system toolkit), then from the dynamic linker's own search, and reports
// every place it tried when none works. cudart is linked statically, so cuBLAS
// is the only CUDA library looked up this way (libcuda.so.1, the driver, is
// opened by cudart itself).
#pragma once

#include <cublas_v2.h>

#include <string>
#include <vector>

namespace bertkit {
namespace cuda {

// The entry points the backend uses. Types are spelled out (not decltype)
// because cublas_api.h overloads some names in C++.
struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_math_mode)(cublasHandle_t, cublasMath_t);
  cublasStatus_t (*set_pointer_mode)(cublasHandle_t, cublasPointerMode_t);
  cublasStatus_t (*get_version)(cublasHandle_t, int*);
  const char* (*status_string)(cublasStatus_t);
  cublasStatus_t (*sgemm_strided_batched)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                          const float*, const float*, int, long long, const float*, int, long long,
                                          const float*, float*, int, long long, int);
  cublasStatus_t (*sgemm_batched)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const float*,
                                  const float* const[], int, const float* const[], int, const float*, float* const[],
                                  int, int);
  cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                            const void*, const void*, cudaDataType, int, long long, const void*,
                                            cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                            long long, int, cublasComputeType_t, cublasGemmAlgo_t);
};

// Where the last lookup stands: `path` is the library that was opened (empty
// when none), `tried` every candidate with the reason it was refused.
struct CublasLookup {
  std::string path;
  std::vector<std::string> tried;
};

// Directories searched before the dynamic linker's own paths, in order. Takes
// effect for a lookup that has not succeeded yet (a failed one is retried).
void set_cublas_search_dirs(std::vector<std::string> dirs);

// Opens cuBLAS once (thread-safe); throws bertkit::Error listing what was
// tried and what to install when no candidate works.
const CublasApi& cublas_lib();

// The lookup's state for `bertkit doctor`; attempts the lookup if none has
// succeeded, never throws.
CublasLookup cublas_lookup();

}  // namespace cuda
}  // namespace bertkit
