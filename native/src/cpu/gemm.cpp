// CpuBackend::gemm: OpenBLAS when the build found it, else the built-in SGEMM
// (gemm_builtin.h). BERTKIT_GEMM picks one at run time, read at the first
// product (select_cpu_gemm in gemm.h switches later):
//   auto (default)   OpenBLAS when compiled in, except on a CPU with AVX-512
//                    where OpenBLAS runs kernels without it (an OpenBLAS too
//                    old to know the CPU, or OPENBLAS_CORETYPE set to an AVX2
//                    core): there the built-in AVX-512 kernel is about twice
//                    as fast (benchmarks/ops-cpu.md)
//   openblas         OpenBLAS (the built-in one when not compiled in)
//   builtin          built-in, widest kernel the CPU runs
//   builtin-avx512 | builtin-avx2 | builtin-scalar
//                    built-in with at most that instruction set, so the
//                    narrower kernels can be tested on a wide CPU
#include <atomic>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "cpu_backend.h"
#include "gemm.h"
#include "gemm_builtin.h"
#include "thread_pool.h"

#ifdef BERTKIT_USE_OPENBLAS
#include <cblas.h>
#endif

namespace bertkit {
namespace gemm {

Isa best_isa() {
  static const Isa isa = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (fma && __builtin_cpu_supports("avx512f")) return Isa::Avx512;
    if (fma) return Isa::Avx2;
#endif
    return Isa::Scalar;
  }();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "AVX-512";
    case Isa::Avx2: return "AVX2+FMA";
    case Isa::Scalar: return "scalar";
  }
  return "?";
}

void scale_c(const Problem& p) {
  for (int64_t bi = 0; bi < p.batch; ++bi) {
    for (int64_t i = 0; i < p.m; ++i) {
      float* row = p.c + bi * p.stride_c + i * p.ld_c();
      if (p.beta == 0.f) {
        // Write-only: NaN already in C must not survive as 0 * NaN would.
        std::memset(row, 0, static_cast<size_t>(p.n) * sizeof(float));
      } else if (p.beta != 1.f) {
        for (int64_t j = 0; j < p.n; ++j) row[j] *= p.beta;
      }
    }
  }
}

void builtin_sgemm(const Problem& p, Isa isa, bool threaded) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa())) isa = best_isa();
  switch (isa) {
#if defined(__x86_64__)
    case Isa::Avx512: sgemm_avx512(p, threaded); return;
    case Isa::Avx2: sgemm_avx2(p, threaded); return;
#endif
    default: sgemm_scalar(p, threaded); return;
  }
}

}  // namespace gemm

namespace {

const char* const kPaths = "auto, openblas, builtin, builtin-avx512, builtin-avx2 or builtin-scalar";

enum class Path { OpenBlas, Builtin };

struct Selection {
  Path path = Path::Builtin;
  gemm::Isa isa = gemm::Isa::Scalar;
  std::string name;
};

#ifdef BERTKIT_USE_OPENBLAS
// OpenBLAS's kernel sets that use AVX-512 for SGEMM. Every other x86 one
// (Haswell, Zen, SandyBridge, ...) peaks at half the AVX-512 rate.
bool openblas_uses_avx512() {
  std::string core = openblas_get_corename();
  for (char& ch : core) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return core == "skylakex" || core == "cooperlake" || core == "sapphirerapids";
}

std::string openblas_description() {
  // openblas_get_config() reads "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...";
  // the kernel set (corename) is chosen when the library loads, from the CPU
  // or OPENBLAS_CORETYPE, and is what decides its speed.
  std::string config = openblas_get_config();
  std::string version = config.substr(0, config.find(' ', std::strlen("OpenBLAS ")));
  return version + " (" + openblas_get_corename() + " kernels)";
}
#endif

bool known_path(const std::string& want) {
  return want == "auto" || want == "openblas" || want == "builtin" || want == "builtin-avx512" ||
         want == "builtin-avx2" || want == "builtin-scalar";
}

// What `want` (a BERTKIT_GEMM value) selects on this CPU and build.
Selection select(const std::string& want) {
  Selection s;
  gemm::Isa best = gemm::best_isa();
  s.isa = best;
  std::string note;
  bool want_openblas = want == "auto" || want == "openblas";
  if (want == "builtin-avx512") s.isa = gemm::Isa::Avx512;
  else if (want == "builtin-avx2") s.isa = gemm::Isa::Avx2;
  else if (want == "builtin-scalar") s.isa = gemm::Isa::Scalar;
  else if (!known_path(want)) {
    note = " (BERTKIT_GEMM=" + want + " not understood, so auto; expected " + kPaths + ")";
    want_openblas = true;
  }
  if (static_cast<int>(s.isa) > static_cast<int>(best)) {
    note = std::string(" (") + gemm::isa_name(s.isa) + " asked for, not supported by this CPU)";
    s.isa = best;
  }
#ifdef BERTKIT_USE_OPENBLAS
  if (want_openblas && want != "openblas" && best == gemm::Isa::Avx512 && !openblas_uses_avx512()) {
    s.path = Path::Builtin;
    s.name = std::string("built-in ") + gemm::isa_name(s.isa) + " (chosen over " + openblas_description() + ")" + note;
    return s;
  }
  if (want_openblas) {
    s.path = Path::OpenBlas;
    s.name = openblas_description() + note;
    return s;
  }
#else
  if (want == "openblas") note = " (BERTKIT_GEMM=openblas ignored: not compiled with OpenBLAS)";
#endif
  s.path = Path::Builtin;
  s.name = std::string("built-in ") + gemm::isa_name(s.isa) + note;
  return s;
}

// Selections live as long as the process (a handful at most), so the name
// cpu_gemm_name() handed out stays valid after a later switch.
std::mutex selections_mutex;
std::atomic<const Selection*> current_selection{nullptr};

const Selection& install(const std::string& want) {
  static std::map<std::string, Selection> made;
  std::lock_guard<std::mutex> lock(selections_mutex);
  auto it = made.find(want);
  if (it == made.end()) it = made.emplace(want, select(want)).first;
  current_selection.store(&it->second, std::memory_order_release);
  return it->second;
}

const Selection& selection() {
  if (const Selection* s = current_selection.load(std::memory_order_acquire)) return *s;
  const char* env = std::getenv("BERTKIT_GEMM");
  return install(env && *env ? env : "auto");
}

#ifdef BERTKIT_USE_OPENBLAS
// OpenBLAS keeps its own threads. Running it with as many as our pool has, and
// following set_num_threads, keeps the two from oversubscribing the cores; the
// check is one relaxed load per call.
void set_openblas_threads(int want) {
  static std::atomic<int> current{-1};
  if (current.load(std::memory_order_relaxed) != want) {
    openblas_set_num_threads(want);
    current.store(want, std::memory_order_relaxed);
  }
}

bool fits_blasint(const gemm::Problem& p) {
  constexpr int64_t kMax = static_cast<int64_t>(sizeof(blasint) >= 8 ? INT64_MAX : INT_MAX);
  return p.m <= kMax && p.n <= kMax && p.k <= kMax && p.ld_a() <= kMax && p.ld_b() <= kMax && p.ld_c() <= kMax;
}

void openblas_gemm(const gemm::Problem& p) {
  const blasint m = static_cast<blasint>(p.m), n = static_cast<blasint>(p.n), k = static_cast<blasint>(p.k);
  const blasint lda = static_cast<blasint>(p.ld_a()), ldb = static_cast<blasint>(p.ld_b());
  const blasint ldc = static_cast<blasint>(p.ld_c());
  auto one = [&](int64_t bi) {
    cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
                m, n, k, p.alpha, p.a + bi * p.stride_a, lda, p.b + bi * p.stride_b, ldb, p.beta,
                p.c + bi * p.stride_c, ldc);
  };
  ThreadPool& pool = ThreadPool::instance();
  int threads = pool.num_threads();
  if (p.batch >= threads && threads > 1) {
    // Many products (attention heads): one single-threaded OpenBLAS call per
    // item on our threads. OpenBLAS barely speeds up one small product with
    // more threads, and this way its own threads stay asleep.
    set_openblas_threads(1);
    pool.parallel_for(p.batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) one(bi);
    });
    return;
  }
  set_openblas_threads(threads);
  for (int64_t bi = 0; bi < p.batch; ++bi) one(bi);
}
#endif

}  // namespace

const char* cpu_gemm_name() { return selection().name.c_str(); }

const char* select_cpu_gemm(const std::string& path) {
  if (!known_path(path)) throw Error("unknown CPU GEMM path '" + path + "': expected " + kPaths);
  return install(path).name.c_str();
}

void CpuBackend::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, const float* b, float beta, float* c, int64_t batch,
                      int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  if (m < 0 || n < 0 || k < 0 || batch < 0) {
    throw Error("gemm: negative size (m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " +
                std::to_string(k) + ", batch " + std::to_string(batch) + ")");
  }
  gemm::Problem p{trans_a, trans_b, m, n, k, alpha, a, b, beta, c, batch, stride_a, stride_b, stride_c};
  if (m == 0 || n == 0 || batch == 0) return;
  // BLAS rejects lda = 0 when k == 0, and alpha == 0 must not read A or B:
  // both reduce to scaling C.
  if (k == 0 || alpha == 0.f) {
    gemm::scale_c(p);
    return;
  }
  const Selection& s = selection();
#ifdef BERTKIT_USE_OPENBLAS
  if (s.path == Path::OpenBlas && fits_blasint(p)) {
    openblas_gemm(p);
    return;
  }
#endif
  gemm::builtin_sgemm(p, s.isa);
}

}  // namespace bertkit
