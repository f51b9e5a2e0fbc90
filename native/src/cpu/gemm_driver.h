// The blocked SGEMM driver, written once over a "vector traits" type T and
// compiled once per instruction set by gemm_isa_*.cpp.
//
// Include this only from those files, after their `#pragma GCC target`, and
// inside an anonymous namespace: every function here must get that file's
// instruction set and internal linkage, so the linker can never swap in an
// AVX-512 copy where the scalar one was meant (one-definition-rule folding of
// identical inline names across files compiled for different CPUs).
//
// T provides: V (a vector of L floats), zero/load/loadu/storeu/set1/fma/mul/add,
// loadu_partial/storeu_partial (the first n < L lanes; the rest untouched and
// never faulting), prefetch_c,
// and the blocking: MR (rows of a micro-tile, broadcast from packed A), NV
// (vectors across a micro-tile, so NR = NV * L columns, loaded from packed B),
// KC (depth of one packed block), NC (columns of one packed B block) and MC
// (rows of one packed A block, a multiple of MR).
//
// Loop nest per task (a tile of C: one batch item, a row range, <= NC columns):
//   for each KC block of k:            pack op(B)[k block, task columns] (L2-sized)
//     for each MC rows:                pack op(A)[rows, k block]
//       for each MR rows:              (this MR x KC panel of A stays in L1)
//         for each NR columns:         micro-kernel: MR x NR accumulators in registers
// The A micro-panel is the broadcast operand and is reused across the whole
// row of B panels; B panels stream from L2. Every C element sums its k terms
// block after block in the same order, whatever the tiling of C into tasks, so
// the thread count changes nothing in the result.

// It includes nothing itself (it sits inside a namespace): the including file
// brings <algorithm>, <cstdint>, <cstdlib>, <string>, bertkit/error.h,
// gemm_builtin.h and thread_pool.h first.

// The depth step must be inlined into the kernel for its accumulators to stay
// in registers.
#if defined(__GNUC__) || defined(__clang__)
#define BERTKIT_GEMM_INLINE __attribute__((always_inline))
#else
#define BERTKIT_GEMM_INLINE
#endif

// Packing buffers live for the life of each thread: allocating ~1 MB per call
// would go to mmap and page-fault on every product.
struct PackBuffer {
  float* ptr = nullptr;
  size_t capacity = 0;  // floats
  float* get(size_t floats) {
    if (floats > capacity) {
      std::free(ptr);
      ptr = nullptr;
      capacity = 0;
      size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
      ptr = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!ptr) throw bertkit::Error("gemm: out of memory for packing buffers (" + std::to_string(bytes) + " bytes)");
      capacity = floats;
    }
    return ptr;
  }
  ~PackBuffer() { std::free(ptr); }
};

// Transposing packs in plain C++, for the scalar build and for edge panels.
// out[p * ld_out + i] = src[i * ld_src + p] for i < rows, zero for rows..ld_out.
inline void pack_transpose_scalar(const float* src, int64_t ld_src, int rows, int64_t kc, int ld_out,
                                  float* __restrict out) {
  for (int i = 0; i < rows; ++i) {
    const float* s = src + i * ld_src;
    for (int64_t p = 0; p < kc; ++p) out[p * ld_out + i] = s[p];
  }
  for (int64_t p = 0; p < kc; ++p)
    for (int i = rows; i < ld_out; ++i) out[p * ld_out + i] = 0.f;
}

template <class T>
struct Driver {
  using V = typename T::V;
  static constexpr int L = T::L;
  static constexpr int MR = T::MR;
  static constexpr int NV = T::NV;
  static constexpr int NR = NV * L;

  // How a micro-tile lands in C: the first k block applies beta (or ignores C
  // when beta == 0), later blocks accumulate.
  enum Mode { kOverwrite = 0, kScaleC = 1, kAccumulate = 2 };

  // One depth step of the micro-kernel: NVA vectors of packed B times MR
  // broadcasts of packed A.
  template <int NVA>
  static inline BERTKIT_GEMM_INLINE void step(const float* __restrict ap,
                                                         const float* __restrict bp, V (&acc)[MR][NVA]) {
    V b[NVA];
#pragma GCC unroll 8
    for (int j = 0; j < NVA; ++j) b[j] = T::load(bp + j * L);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      V a = T::set1(ap[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NVA; ++j) acc[i][j] = T::fma(a, b[j], acc[i][j]);
    }
  }

  // acc = Ap(MR x kc) * Bp(kc x NVA*L) with Bp rows NR apart; then
  // C(mr x nr) = alpha * acc (+ beta * C | + C). NVA < NV serves the last
  // panel of a row whose width leaves whole vectors of the tile empty, so no
  // FMA is spent on zero padding; the columns past nr inside a vector are
  // masked, the rows past mr are skipped.
  template <int NVA>
  static void micro_kernel(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c,
                           int64_t ldc, int mr, int nr, float alpha, float beta, Mode mode) {
    V acc[MR][NVA];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NVA; ++j) acc[i][j] = T::zero();

    T::prefetch_c(c, ldc, mr, nr);

    int64_t p = 0;
    // Unrolled by 4 so the loop overhead hides behind the FMAs.
    for (; p + 4 <= kc; p += 4) {
      step<NVA>(ap, bp, acc);
      step<NVA>(ap + MR, bp + NR, acc);
      step<NVA>(ap + 2 * MR, bp + 2 * NR, acc);
      step<NVA>(ap + 3 * MR, bp + 3 * NR, acc);
      ap += 4 * MR;
      bp += 4 * NR;
    }
    for (; p < kc; ++p) {
      step<NVA>(ap, bp, acc);
      ap += MR;
      bp += NR;
    }

    const V va = T::set1(alpha);
    const V vb = T::set1(beta);
    if (mr == MR && nr == NVA * L) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) {
        float* row = c + i * ldc;
#pragma GCC unroll 8
        for (int j = 0; j < NVA; ++j) {
          V r = T::mul(va, acc[i][j]);
          if (mode == kScaleC) r = T::fma(vb, T::loadu(row + j * L), r);
          else if (mode == kAccumulate) r = T::add(r, T::loadu(row + j * L));
          T::storeu(row + j * L, r);
        }
      }
      return;
    }
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      float* row = c + i * ldc;
#pragma GCC unroll 8
      for (int j = 0; j < NVA; ++j) {
        int cols = nr - j * L;
        if (cols <= 0) break;
        if (cols > L) cols = L;
        V r = T::mul(va, acc[i][j]);
        if (mode == kScaleC) r = T::fma(vb, T::loadu_partial(row + j * L, cols), r);
        else if (mode == kAccumulate) r = T::add(r, T::loadu_partial(row + j * L, cols));
        T::storeu_partial(row + j * L, r, cols);
      }
    }
  }

  // The kernel for one tile: the full-width one, or the narrowest one that
  // covers the nr columns of the last panel.
  template <int NVA = NV>
  static inline void tile(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, int mr, int nr,
                          float alpha, float beta, Mode mode) {
    if constexpr (NVA > 1) {
      if (nr <= (NVA - 1) * L) return tile<NVA - 1>(kc, ap, bp, c, ldc, mr, nr, alpha, beta, mode);
    }
    micro_kernel<NVA>(kc, ap, bp, c, ldc, mr, nr, alpha, beta, mode);
  }

  // Packs rows [i0, i0 + rows) x depth [p0, p0 + kc) of op(A) as micro-panels
  // of MR rows, each kc groups of MR floats (rows past the end are zero, so
  // the kernel needs no row mask).
  static void pack_a(const float* a, bool trans, int64_t lda, int64_t i0, int64_t rows, int64_t p0,
                     int64_t kc, float* __restrict out) {
    if (trans) {
      // A is stored [k, m]: each depth step is a contiguous run of rows. A
      // whole block at a time, so the reads stream instead of touching one
      // line per row of A for every micro-panel.
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a + (p0 + p) * lda + i0;
        int64_t ip = 0;
        for (; ip + MR <= rows; ip += MR) {
          float* dst = out + ip * kc + p * MR;
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) dst[i] = src[ip + i];
        }
        if (ip < rows) {
          float* dst = out + ip * kc + p * MR;
          int i = 0;
          for (; ip + i < rows; ++i) dst[i] = src[ip + i];
          for (; i < MR; ++i) dst[i] = 0.f;
        }
      }
      return;
    }
    // A is stored [m, k]: a transpose; T does it in registers where it can.
    for (int64_t ip = 0; ip < rows; ip += MR) {
      int mr = static_cast<int>(std::min<int64_t>(MR, rows - ip));
      T::pack_a_rows(a + (i0 + ip) * lda + p0, lda, mr, kc, MR, out + ip * kc);
    }
  }

  // Packs depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) as panels of NR
  // columns, each panel kc rows of NR floats (columns past nc are zero).
  static void pack_b(const float* b, bool trans, int64_t ldb, int64_t j0, int64_t nc, int64_t p0,
                     int64_t kc, float* __restrict out) {
    for (int64_t jp = 0; jp < nc; jp += NR) {
      int nr = static_cast<int>(std::min<int64_t>(NR, nc - jp));
      float* panel = out + jp * kc;
      if (!trans) {
        // B is stored [k, n]: each depth step is a contiguous run of columns.
        const float* src = b + p0 * ldb + j0 + jp;
        if (nr == NR) {
          for (int64_t p = 0; p < kc; ++p) {
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) T::store(panel + p * NR + j * L, T::loadu(src + p * ldb + j * L));
          }
        } else {
          for (int64_t p = 0; p < kc; ++p) {
            int j = 0;
            for (; j < nr; ++j) panel[p * NR + j] = src[p * ldb + j];
            for (; j < NR; ++j) panel[p * NR + j] = 0.f;
          }
        }
      } else {
        // B is stored [n, k]: a transpose.
        T::pack_b_cols(b + (j0 + jp) * ldb + p0, ldb, nr, kc, NR, panel);
      }
    }
  }

  struct Plan {
    int64_t kc_block;      // depth of one packed block
    int64_t nc_block;      // columns per task (multiple of NR)
    int64_t n_tasks_n;     // column tasks per batch item
    int64_t rows_per_task; // multiple of MR
    int64_t n_tasks_m;     // row tasks per batch item
  };

  static Plan plan(const bertkit::gemm::Problem& p, int threads) {
    Plan pl;
    int64_t kb = (p.k + T::KC - 1) / T::KC;
    pl.kc_block = (p.k + kb - 1) / kb;
    int64_t nb = (p.n + T::NC - 1) / T::NC;
    pl.nc_block = ((p.n + nb - 1) / nb + NR - 1) / NR * NR;
    pl.n_tasks_n = (p.n + pl.nc_block - 1) / pl.nc_block;
    int64_t panels = (p.m + MR - 1) / MR;
    // Enough tasks that a thread slowed by a neighbour on the machine does not
    // hold up the others, but each row split re-packs B, so no more than that.
    int64_t want = threads > 1 ? 4 * static_cast<int64_t>(threads) : 1;
    double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
    // Splitting pays only when each piece is worth waking a thread for.
    int64_t by_size = static_cast<int64_t>(flops * static_cast<double>(p.batch) / 2e6);
    want = std::max<int64_t>(1, std::min(want, by_size));
    int64_t have = p.batch * pl.n_tasks_n;
    int64_t splits = have >= want ? 1 : std::min(panels, (want + have - 1) / have);
    int64_t per = (panels + splits - 1) / splits;
    pl.rows_per_task = per * MR;
    pl.n_tasks_m = (panels + per - 1) / per;
    return pl;
  }

  // Per thread, so the workers of the pool never share a packing buffer.
  static PackBuffer& a_buffer() {
    static thread_local PackBuffer buf;
    return buf;
  }
  static PackBuffer& b_buffer() {
    static thread_local PackBuffer buf;
    return buf;
  }

  static void run_task(const bertkit::gemm::Problem& p, const Plan& pl, int64_t task) {
    int64_t per_batch = pl.n_tasks_m * pl.n_tasks_n;
    int64_t bi = task / per_batch;
    int64_t rest = task % per_batch;
    int64_t tm = rest / pl.n_tasks_n;
    int64_t tn = rest % pl.n_tasks_n;
    int64_t i_begin = tm * pl.rows_per_task;
    int64_t i_end = std::min(p.m, i_begin + pl.rows_per_task);
    int64_t j0 = tn * pl.nc_block;
    int64_t nc = std::min(p.n - j0, pl.nc_block);
    const float* a = p.a + bi * p.stride_a;
    const float* b = p.b + bi * p.stride_b;
    float* c = p.c + bi * p.stride_c;
    const int64_t lda = p.ld_a(), ldb = p.ld_b(), ldc = p.ld_c();
    int64_t nc_padded = (nc + NR - 1) / NR * NR;
    float* bp = b_buffer().get(static_cast<size_t>(pl.kc_block * nc_padded));
    float* ap = a_buffer().get(static_cast<size_t>(pl.kc_block * T::MC));

    for (int64_t p0 = 0; p0 < p.k; p0 += pl.kc_block) {
      int64_t kc = std::min(pl.kc_block, p.k - p0);
      Mode mode = p0 > 0 ? kAccumulate : (p.beta == 0.f ? kOverwrite : kScaleC);
      pack_b(b, p.trans_b, ldb, j0, nc, p0, kc, bp);
      for (int64_t ic = i_begin; ic < i_end; ic += T::MC) {
        int64_t mc = std::min<int64_t>(T::MC, i_end - ic);
        pack_a(a, p.trans_a, lda, ic, mc, p0, kc, ap);
        for (int64_t ip = 0; ip < mc; ip += MR) {
          int mr = static_cast<int>(std::min<int64_t>(MR, mc - ip));
          const float* apanel = ap + ip * kc;
          float* crow = c + (ic + ip) * ldc + j0;
          for (int64_t jp = 0; jp < nc; jp += NR) {
            int nr = static_cast<int>(std::min<int64_t>(NR, nc - jp));
            tile(kc, apanel, bp + jp * kc, crow + jp, ldc, mr, nr, p.alpha, p.beta, mode);
          }
        }
      }
    }
  }

  static void run(const bertkit::gemm::Problem& p, bool threaded) {
    if (p.m <= 0 || p.n <= 0 || p.batch <= 0) return;
    if (p.k <= 0 || p.alpha == 0.f) {
      bertkit::gemm::scale_c(p);
      return;
    }
    bertkit::ThreadPool& pool = bertkit::ThreadPool::instance();
    Plan pl = plan(p, threaded ? pool.num_threads() : 1);
    int64_t tasks = p.batch * pl.n_tasks_m * pl.n_tasks_n;
    if (!threaded || tasks == 1) {
      for (int64_t t = 0; t < tasks; ++t) run_task(p, pl, t);
      return;
    }
    // run_chunks takes an int count; group tasks if a huge batch exceeds it.
    int64_t groups = std::min<int64_t>(tasks, 1 << 20);
    pool.run_chunks(static_cast<int>(groups), [&](int g) {
      int64_t t0 = tasks * g / groups, t1 = tasks * (g + 1) / groups;
      for (int64_t t = t0; t < t1; ++t) run_task(p, pl, t);
    });
  }
};
