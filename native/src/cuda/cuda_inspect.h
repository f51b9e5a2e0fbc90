// What `bertkit doctor` reports about CUDA, gathered without creating the
// backend (so it works, and explains, when the backend cannot be created).
// Plain C++ on purpose: the Node-API layer includes it without CUDA headers.
#pragma once

#include <string>
#include <vector>

namespace bertkit {
namespace cuda {

struct GpuInfo {
  int index = 0;
  std::string name;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
  double total_bytes = 0;
};

struct CudaReport {
  int driver_version = 0;   // CUDA version the driver supports (12040 = 12.4); 0: no driver
  int runtime_version = 0;  // the statically linked cudart's
  std::string build_toolkit;
  std::string build_archs;
  std::string cudart;       // how cudart is linked
  std::string device_error; // why the device count could not be read, if it could not
  std::vector<GpuInfo> gpus;
  std::string cublas_path;  // empty: not found
  std::vector<std::string> cublas_tried;
  // The directories given to set_library_dirs, in search order.
  std::vector<std::string> library_dirs;
};

CudaReport inspect();

// Directories to look for cuBLAS in before the dynamic linker's paths.
void set_library_dirs(const std::vector<std::string>& dirs);

}  // namespace cuda
}  // namespace bertkit
