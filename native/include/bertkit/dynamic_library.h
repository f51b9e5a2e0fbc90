// Looking up entry points of a library opened at run time (cuBLAS, NCCL, the
// Gloo shim), so that each caller can name every symbol it did not find.
#pragma once

#include <dlfcn.h>

#include <string>

namespace bertkit {

// slot = lib's `symbol`; a missing one is appended to `missing` (", "-separated).
template <typename Fn>
bool bind_symbol(void* lib, const char* symbol, Fn& slot, std::string& missing) {
  void* p = dlsym(lib, symbol);
  if (!p) {
    missing += missing.empty() ? symbol : std::string(", ") + symbol;
    return false;
  }
  slot = reinterpret_cast<Fn>(p);
  return true;
}

}  // namespace bertkit
