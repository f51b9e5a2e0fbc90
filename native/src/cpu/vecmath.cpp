// Run-time choice of the vecmath kernels (vecmath.h).
#include "vecmath.h"

#include <cctype>
#include <cstdlib>
#include <string>

namespace bertkit {
namespace vecmath {

namespace {

Isa best_isa() {
  static const Isa isa = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (fma && __builtin_cpu_supports("avx512f")) return Isa::Avx512;
    if (fma) return Isa::Avx2;
#endif
    return Isa::Scalar;
  }();
  return isa;
}

// BERTKIT_VECMATH lowers the choice, never raises it past what the CPU runs.
Isa capped_isa() {
  Isa isa = best_isa();
  if (const char* env = std::getenv("BERTKIT_VECMATH")) {
    std::string want(env);
    for (char& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    Isa cap = isa;
    if (want == "scalar") cap = Isa::Scalar;
    else if (want == "avx2") cap = Isa::Avx2;
    else if (want == "avx512") cap = Isa::Avx512;
    if (static_cast<int>(cap) < static_cast<int>(isa)) isa = cap;
  }
  return isa;
}

}  // namespace

const Kernels* kernels_for(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa())) return nullptr;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  switch (isa) {
    case Isa::Avx512: return &avx512_kernels();
    case Isa::Avx2: return &avx2_kernels();
    case Isa::Scalar: return nullptr;
  }
#endif
  return nullptr;
}

const Kernels* simd() {
  static const Kernels* const chosen = kernels_for(capped_isa());
  return chosen;
}

const char* simd_isa_name() {
  switch (simd() ? capped_isa() : Isa::Scalar) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    case Isa::Scalar: return "scalar";
  }
  return "scalar";
}

}  // namespace vecmath
}  // namespace bertkit
