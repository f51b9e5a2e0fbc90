// Which bfloat16 GEMM kernel runs (gemm_bf16.h): what the CPU reports in
// CPUID, what the OS enabled in XCR0, and, for AMX, whether Linux grants the
// process the tile data state (arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA), asked once; without the grant the first tile
// instruction would kill the process with SIGILL).
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "bertkit/error.h"
#include "gemm_bf16.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace bertkit {
namespace gemm {

namespace {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
struct CpuidRegs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) r = CpuidRegs{};
  return r;
}

// XCR0: which register states the OS saves (0 when it did not enable XSAVE).
uint64_t xcr0() {
  if (!(cpuid(1, 0).ecx & (1u << 27))) return 0;  // OSXSAVE
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool has_avx512_bf16() {
#if !defined(__clang__) && __GNUC__ < 10
  return false;  // the build has no AVX512-BF16 kernel
#endif
  const CpuidRegs l7 = cpuid(7, 0), l71 = cpuid(7, 1);
  const bool f = l7.ebx & (1u << 16), bw = l7.ebx & (1u << 30), vl = l7.ebx & (1u << 31);
  const bool bf16 = l71.eax & (1u << 5);
  const bool fma = cpuid(1, 0).ecx & (1u << 12);
  // SSE, AVX and the three AVX-512 states (opmask, upper ZMM0-15, ZMM16-31).
  const uint64_t want = 0x2 | 0x4 | 0x20 | 0x40 | 0x80;
  return f && bw && vl && bf16 && fma && (xcr0() & want) == want;
}

bool tile_state_granted() {
#if defined(__linux__)
  constexpr long kGetPerm = 0x1022, kRequestPerm = 0x1023, kXtileData = 18;
  if (syscall(SYS_arch_prctl, kRequestPerm, kXtileData) != 0) return false;
  unsigned long granted = 0;
  if (syscall(SYS_arch_prctl, kGetPerm, &granted) != 0) return false;
  return granted & (1ul << kXtileData);
#else
  return false;
#endif
}

bool has_amx_bf16() {
#if defined(__clang__) || __GNUC__ >= 11
  const CpuidRegs l7 = cpuid(7, 0);
  const bool tile = l7.edx & (1u << 24), bf16 = l7.edx & (1u << 22);
  const uint64_t want = (1ull << 17) | (1ull << 18);  // XTILECFG, XTILEDATA
  return tile && bf16 && has_avx512_bf16() && (xcr0() & want) == want && tile_state_granted();
#else
  return false;  // the build has no AMX kernel
#endif
}
#endif

const char* const kPaths = "auto, amx, avx512-bf16 or widen";

struct Selection {
  Bf16Path path = Bf16Path::Widen;
  std::string name;
};

Selection select(const std::string& want) {
  const Bf16Path best = best_bf16_path();
  Selection s;
  s.path = best;
  std::string note;
  Bf16Path asked = best;
  if (want == "amx") asked = Bf16Path::Amx;
  else if (want == "avx512-bf16") asked = Bf16Path::Avx512Bf16;
  else if (want == "widen") asked = Bf16Path::Widen;
  else if (want != "auto") note = " (BERTKIT_GEMM_BF16=" + want + " not understood, so auto; expected " + kPaths + ")";
  if (static_cast<int>(asked) > static_cast<int>(best)) {
    note = std::string(" (") + bf16_path_name(asked) + " asked for, not available on this CPU)";
    asked = best;
  }
  s.path = asked;
  s.name = bf16_path_name(asked) + note;
  return s;
}

std::mutex selections_mutex;
std::atomic<const Selection*> current{nullptr};

const Selection& install(const std::string& want) {
  static std::map<std::string, Selection> made;
  std::lock_guard<std::mutex> lock(selections_mutex);
  auto it = made.find(want);
  if (it == made.end()) it = made.emplace(want, select(want)).first;
  current.store(&it->second, std::memory_order_release);
  return it->second;
}

const Selection& selection() {
  if (const Selection* s = current.load(std::memory_order_acquire)) return *s;
  const char* env = std::getenv("BERTKIT_GEMM_BF16");
  return install(env && *env ? env : "auto");
}

}  // namespace

Bf16Path best_bf16_path() {
  static const Bf16Path best = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (has_amx_bf16()) return Bf16Path::Amx;
    if (has_avx512_bf16()) return Bf16Path::Avx512Bf16;
#endif
    return Bf16Path::Widen;
  }();
  return best;
}

const char* bf16_path_name(Bf16Path path) {
  switch (path) {
    case Bf16Path::Amx: return "AMX-BF16 tiles";
    case Bf16Path::Avx512Bf16: return "AVX512-BF16";
    case Bf16Path::Widen: return "widened to float32";
  }
  return "?";
}

Bf16Path current_bf16_path() { return selection().path; }

}  // namespace gemm

const char* select_cpu_gemm_bf16(const std::string& path) {
  if (path != "auto" && path != "amx" && path != "avx512-bf16" && path != "widen") {
    throw Error("unknown CPU bfloat16 GEMM path '" + path + "': expected auto, amx, avx512-bf16 or widen");
  }
  return gemm::install(path).name.c_str();
}

const char* cpu_gemm_bf16_name() { return gemm::selection().name.c_str(); }

}  // namespace bertkit
