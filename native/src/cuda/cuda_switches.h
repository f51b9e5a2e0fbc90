// Switches of the CUDA backend that the Node-API layer sets. Plain C++ with no
// CUDA headers: the Node-API sources are compiled by the host compiler alone.
#pragma once

namespace bertkit {

// torch.backends.cuda.matmul.allow_tf32 for the CUDA backend's fp32 products.
// Starts the backend if needed; throws Error when it cannot start.
void cuda_set_allow_tf32(bool allow);

}  // namespace bertkit
