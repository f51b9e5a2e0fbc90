// The one dispatch point from a device to its backend.
#include "bertkit/backend.h"
#include "../cpu/cpu_stream.h"

namespace bertkit {

#ifdef BERTKIT_WITH_CUDA
Backend& cuda_backend();  // cuda/cuda_backend.cu; throws Error when no usable GPU
#endif

const char* device_name(Device device) {
  return device == Device::CUDA ? "cuda" : "cpu";
}

bool backend_compiled([[maybe_unused]] Device device) {
#ifdef BERTKIT_WITH_CUDA
  return true;
#else
  return device == Device::CPU;
#endif
}

Backend& backend_for(Device device) {
  if (device == Device::CPU) {
    return CpuStream::instance();
  }
#ifdef BERTKIT_WITH_CUDA
  return cuda_backend();
#else
  throw Error(
      "cuda: this bertkit addon was not compiled with CUDA (linux-x64 packages ship a prebuilt CUDA addon; "
      "elsewhere build one with `BERTKIT_CUDA=on npm rebuild bertkit --foreground-scripts`, or `npm run build:cuda` "
      "in a clone, on a machine with nvcc and the cuBLAS headers)");
#endif
}

}  // namespace bertkit
