// The one dispatch point: a device's backend, and where its work runs (the
// CPU stream's queue, or at once for CUDA, whose ops enqueue on its stream).
#include "bertkit/backend.h"
#include "../cpu/cpu_backend.h"
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
    return cpu_backend();
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

void enqueue(Device device, Work work) {
  if (device == Device::CPU) {
    CpuStream::instance().submit(CpuStream::Kind::Compute, std::move(work));
  } else {
    work(backend_for(device));
  }
}

void* allocate(Device device, size_t bytes) {
  return device == Device::CPU ? CpuStream::instance().allocate(bytes) : backend_for(device).allocate(bytes);
}

void release(Device device, void* ptr, size_t bytes) {
  if (device == Device::CPU) CpuStream::instance().release(ptr, bytes);
  else backend_for(device).release(ptr, bytes);
}

void upload(Device device, void* dst, const void* host_src, size_t bytes) {
  if (device == Device::CPU) CpuStream::instance().upload(dst, host_src, bytes);
  else backend_for(device).upload(dst, host_src, bytes);
}

void download(Device device, void* host_dst, const void* src, size_t bytes) {
  if (device == Device::CPU) CpuStream::instance().download(host_dst, src, bytes);
  else backend_for(device).download(host_dst, src, bytes);
}

void synchronize(Device device) {
  if (device == Device::CPU) CpuStream::instance().synchronize();
  else backend_for(device).synchronize();
}

}  // namespace bertkit
