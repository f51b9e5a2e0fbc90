// The parts of the bfloat16 GEMM both kernels share (gemm_bf16.h): packing
// depth pairs into 32-bit words, and the split of a product into tasks over
// the thread pool. Like gemm_driver.h it is included only from the kernel
// files (gemm_bf16_avx512.cpp, gemm_bf16_amx.cpp), after their target pragma
// and inside an anonymous namespace, so every function gets that file's
// instruction set and internal linkage; it includes nothing itself. The
// packing needs AVX-512 F and BW, which both kernels' CPUs have.
//
// A kernel type K provides:
//   kColBlock      columns of C per packed B panel unit (panel widths are multiples)
//   kPairAlign     the packed depth (in pairs) is a multiple of this
//   panel_cols(kp) how many columns one packed B panel holds for kp pairs
//   pack_b(src, j0, nc, kp, out)                   B panel [j0, j0 + nc)
//   pack_parts(kp), pack_b_part(src, j0, nc, kp, part, parts, out)
//                                                  the same panel in disjoint parts
//   b_words(nc, kp)                                its size in 32-bit words
//   rows(p, a, i0, i1, bpanel, j0, nc, kp, c)      C rows [i0, i1) x the panel's columns
//   reads_a_in_place(p)                            rows() packs no part of A for p

// float32 bits -> bfloat16 bits in the low half of each 32-bit lane: round to
// nearest even, NaN kept quiet (the cast op's floats_to_bf16, lane by lane).
inline __m512i bf16_bits(__m512i u) {
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

// An operand as a product reads it: element (x, d) at depth d, x a row of
// op(A) or a column of op(B). k_contig: the depth runs along a stored row
// (A not transposed, B transposed), else x does. Elements are bfloat16, or
// float32 rounded to bfloat16 as they are loaded (f32).
struct PairSource {
  const void* base;
  bool f32;
  int64_t ld;
  bool k_contig;
  int64_t depth;

  // The 32 elements from element offset i on, as bfloat16 halves; lanes
  // outside `mask` read nothing and are zero.
  __m512i load32(int64_t i, __mmask32 mask) const {
    if (!f32) return _mm512_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(base) + i);
    const float* src = static_cast<const float*>(base) + i;
    const __m512i lo = bf16_bits(_mm512_maskz_loadu_epi32(static_cast<__mmask16>(mask), src));
    const __m512i hi = bf16_bits(_mm512_maskz_loadu_epi32(static_cast<__mmask16>(mask >> 16), src + 16));
    const __m512i even = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32,
                                          30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutex2var_epi16(lo, even, hi);
  }
};

// Operand `base` (bfloat16 or float32 elements) advanced by `offset` elements.
inline PairSource pair_source(const void* base, bool f32, int64_t offset, int64_t ld, bool k_contig, int64_t depth) {
  const void* at = f32 ? static_cast<const void*>(static_cast<const float*>(base) + offset)
                       : static_cast<const void*>(static_cast<const uint16_t*>(base) + offset);
  return PairSource{at, f32, ld, k_contig, depth};
}

inline __mmask32 first_halves(int64_t count) {
  return count >= 32 ? static_cast<__mmask32>(0xffffffffu) : static_cast<__mmask32>((1u << count) - 1u);
}
inline __mmask16 first_words(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffffu) : static_cast<__mmask16>((1u << count) - 1u);
}

// Transposes the 16 x 16 block of 32-bit words in r[0..15] (rows) into r[0..15] (columns).
inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int h = 0; h < 2; ++h) {
    for (int i = 0; i < 4; ++i) {
      t[8 * h + i] = _mm512_shuffle_i32x4(r[8 * h + i], r[8 * h + i + 4], 0x88);
      t[8 * h + i + 4] = _mm512_shuffle_i32x4(r[8 * h + i], r[8 * h + i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

// out[q * ld_out + x] = word(x0 + x, q0 + q) for q < nq, x < nx; zero for
// nx <= x < ld_out. (Depth-major: what a B panel, or a broadcast A panel, reads.)
inline void pairs_depth_major(const PairSource& s, int64_t x0, int64_t nx, int64_t q0, int64_t nq, int64_t ld_out,
                              uint32_t* __restrict out) {
  if (!s.k_contig) {
    // Depth runs across stored rows: interleave rows 2q and 2q + 1, 32 x at a time.
    const __m512i lo_index = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                              39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi_index = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24,
                                              55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
    for (int64_t q = 0; q < nq; ++q) {
      const int64_t d0 = 2 * (q0 + q), d1 = d0 + 1;
      uint32_t* o = out + q * ld_out;
      for (int64_t x = 0; x < ld_out; x += 32) {
        const __mmask32 load = x < nx ? first_halves(nx - x) : 0;
        const __m512i v0 = d0 < s.depth ? s.load32(d0 * s.ld + x0 + x, load) : _mm512_setzero_si512();
        const __m512i v1 = d1 < s.depth ? s.load32(d1 * s.ld + x0 + x, load) : _mm512_setzero_si512();
        const int64_t room = ld_out - x;
        _mm512_mask_storeu_epi32(o + x, first_words(room), _mm512_permutex2var_epi16(v0, lo_index, v1));
        if (room > 16) _mm512_mask_storeu_epi32(o + x + 16, first_words(room - 16), _mm512_permutex2var_epi16(v0, hi_index, v1));
      }
    }
    return;
  }
  // Depth runs along stored rows: pairs are adjacent halves, a 32-bit word
  // each; transpose 16 x 16 blocks of words. A pair past the depth (or half
  // of one, for an odd depth) loads as zero.
  for (int64_t qb = 0; qb < nq; qb += 16) {
    const int64_t qn = std::min<int64_t>(16, nq - qb);
    const int64_t d = 2 * (q0 + qb);
    const __mmask32 halves = d < s.depth ? first_halves(std::min<int64_t>(2 * qn, s.depth - d)) : 0;
    for (int64_t xb = 0; xb < ld_out; xb += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) {
        r[i] = xb + i < nx ? s.load32((x0 + xb + i) * s.ld + d, halves) : _mm512_setzero_si512();
      }
      transpose16x16(r);
      const __mmask16 store = first_words(ld_out - xb);
      for (int64_t q = 0; q < qn; ++q) _mm512_mask_storeu_epi32(out + (qb + q) * ld_out + xb, store, r[q]);
    }
  }
}

// out[x * ld_out + q] = word(x0 + x, q0 + q) for x < nx, q < nq; zero for
// nq <= q < ld_out. (Row-major pairs: what an AMX A tile reads.)
inline void pairs_row_major(const PairSource& s, int64_t x0, int64_t nx, int64_t q0, int64_t nq, int64_t ld_out,
                            uint32_t* __restrict out) {
  if (s.k_contig) {
    // A row of pairs is a run of halves: copy it (masked at the depth's end).
    const int64_t d0 = 2 * q0;
    for (int64_t x = 0; x < nx; ++x) {
      const int64_t row = (x0 + x) * s.ld;
      uint32_t* o = out + x * ld_out;
      for (int64_t q = 0; q < ld_out; q += 16) {
        const int64_t d = d0 + 2 * q;
        const __mmask32 halves = q < nq && d < s.depth ? first_halves(std::min<int64_t>(2 * std::min<int64_t>(16, nq - q), s.depth - d)) : 0;
        const __m512i v = halves ? s.load32(row + d, halves) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(o + q, first_words(ld_out - q), v);
      }
    }
    return;
  }
  // Depth runs across stored rows: per block of 16 pairs x 16 x, interleave
  // rows 2q and 2q + 1 into 16 words each, then transpose the block in registers.
  const __m512i lo_index = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                            39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  for (int64_t qb = 0; qb < ld_out; qb += 16) {
    const __mmask16 store = first_words(ld_out - qb);
    for (int64_t xb = 0; xb < nx; xb += 16) {
      const int64_t xn = std::min<int64_t>(16, nx - xb);
      const __mmask32 load = first_halves(xn);
      __m512i r[16];
      for (int j = 0; j < 16; ++j) {
        const int64_t d0 = 2 * (q0 + qb + j), d1 = d0 + 1;
        if (qb + j >= nq || d0 >= s.depth) {
          r[j] = _mm512_setzero_si512();
          continue;
        }
        const __m512i v0 = s.load32(d0 * s.ld + x0 + xb, load);
        const __m512i v1 = d1 < s.depth ? s.load32(d1 * s.ld + x0 + xb, load) : _mm512_setzero_si512();
        r[j] = _mm512_permutex2var_epi16(v0, lo_index, v1);
      }
      transpose16x16(r);
      for (int64_t x = 0; x < xn; ++x) _mm512_mask_storeu_epi32(out + (xb + x) * ld_out + qb, store, r[x]);
    }
  }
}

// 32-bit words held per thread for the life of the thread (packing buffers).
struct WordBuffer {
  uint32_t* ptr = nullptr;
  size_t capacity = 0;
  uint32_t* get(size_t words) {
    if (words > capacity) {
      std::free(ptr);
      ptr = nullptr;
      capacity = 0;
      size_t bytes = (words * sizeof(uint32_t) + 63) / 64 * 64;
      ptr = static_cast<uint32_t*>(std::aligned_alloc(64, bytes));
      if (!ptr) throw bertkit::Error("gemm (bf16): out of memory for packing buffers (" + std::to_string(bytes) + " bytes)");
      capacity = words;
    }
    return ptr;
  }
  ~WordBuffer() { std::free(ptr); }
};

// Writes 16 lanes of C (those in mask). stream: a whole 64-byte line goes
// around the caches (a non-temporal store, no read of the line first); a
// partial or unaligned one is stored as usual. A task that streamed ends with
// an sfence (end_task), so its stores are seen before the pool's join.
inline void store_lanes(float* c, __mmask16 mask, __m512 v, bool stream) {
  if (stream && mask == 0xffff && (reinterpret_cast<uintptr_t>(c) & 63) == 0) _mm512_stream_ps(c, v);
  else _mm512_mask_storeu_ps(c, mask, v);
}
inline void end_task(const bertkit::gemm::Bf16Problem& p) {
  if (p.stream_c) _mm_sfence();
}

// C[i, j0 .. j0 + cols) = alpha * acc[0 .. cols) (+ beta * C) (+ bias), acc
// float32; beta == 0 ignores what C held (NaN included). bias (null for none)
// points at the bias of column j0; it is added last, in its own rounding, as
// a separate add_bias_rows would.
inline void store_row(float* c, const float* acc, int64_t cols, float alpha, float beta, const float* bias,
                      bool stream) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 mask = first_words(cols - j);
    __m512 r = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(mask, acc + j));
    if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, c + j), r);
    if (bias) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, bias + j));
    store_lanes(c + j, mask, r, stream);
  }
}

template <class K>
struct Bf16Driver {
  struct Plan {
    int64_t kp;             // packed depth in pairs
    int64_t nc_block;       // columns per task (multiple of K::kColBlock)
    int64_t n_tasks_n;
    int64_t blocks;         // row blocks of K::kRowBlock rows
    int64_t n_tasks_m;      // row tasks: task tm takes blocks [tm * blocks / n_tasks_m, (tm + 1) * blocks / n_tasks_m)
  };

  static Plan plan(const bertkit::gemm::Bf16Problem& p, int threads) {
    Plan pl;
    const int64_t pairs = (p.k + 1) / 2;
    pl.kp = (pairs + K::kPairAlign - 1) / K::kPairAlign * K::kPairAlign;
    const int64_t widest = K::panel_cols(pl.kp);
    const int64_t nb = (p.n + widest - 1) / widest;
    pl.nc_block = ((p.n + nb - 1) / nb + K::kColBlock - 1) / K::kColBlock * K::kColBlock;
    pl.n_tasks_n = (p.n + pl.nc_block - 1) / pl.nc_block;
    const int64_t blocks = (p.m + K::kRowBlock - 1) / K::kRowBlock;
    // As the float32 driver: a few tasks per thread, each worth waking a thread for.
    int64_t want = threads > 1 ? 4 * static_cast<int64_t>(threads) : 1;
    const double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
    const int64_t by_size = static_cast<int64_t>(flops * static_cast<double>(p.batch) / 4e6);
    want = std::max<int64_t>(1, std::min(want, by_size));
    // A kernel that reads A in place packs nothing per row: split the columns
    // instead, one run of column blocks per task, each task packing its own
    // slice of B, so a product needs no shared packing pass and no second
    // fork/join (the step's products are small enough for that to matter).
    if (threads > 1 && K::reads_a_in_place(p) && p.batch == 1 && want > 1) {
      const int64_t col_blocks = (p.n + K::kColBlock - 1) / K::kColBlock;
      const int64_t by_panel = (col_blocks + widest / K::kColBlock - 1) / (widest / K::kColBlock);
      const int64_t tasks_n = std::max(by_panel, std::min<int64_t>(col_blocks, threads));
      if (tasks_n > 1) {
        pl.nc_block = (col_blocks + tasks_n - 1) / tasks_n * K::kColBlock;
        pl.n_tasks_n = (p.n + pl.nc_block - 1) / pl.nc_block;
        pl.blocks = blocks;
        pl.n_tasks_m = 1;
        return pl;
      }
    }
    const int64_t have = p.batch * pl.n_tasks_n;
    const int64_t splits = have >= want ? 1 : std::min(blocks, (want + have - 1) / have);
    // Row tasks of floor or ceil(blocks / splits) blocks, so the threads get
    // equal shares (14 blocks in 8 tasks: 6 of 2 and 2 of 1, not 7 of 2).
    pl.blocks = blocks;
    pl.n_tasks_m = splits;
    return pl;
  }

  static WordBuffer& b_buffer() {
    static thread_local WordBuffer buf;
    return buf;
  }

  // Packed B panels shared by the tasks of one product (the calling thread's
  // buffer: the pool runs one product at a time).
  static WordBuffer& shared_b_buffer() {
    static thread_local WordBuffer buf;
    return buf;
  }

  struct Split {
    int64_t bi, i0, i1, j0, nc, tn;
  };
  static Split split(const bertkit::gemm::Bf16Problem& p, const Plan& pl, int64_t task) {
    const int64_t per_batch = pl.n_tasks_m * pl.n_tasks_n;
    const int64_t bi = task / per_batch, rest = task % per_batch;
    const int64_t tm = rest / pl.n_tasks_n, tn = rest % pl.n_tasks_n;
    const int64_t i0 = tm * pl.blocks / pl.n_tasks_m * K::kRowBlock;
    const int64_t i1 = std::min(p.m, (tm + 1) * pl.blocks / pl.n_tasks_m * K::kRowBlock);
    const int64_t j0 = tn * pl.nc_block, nc = std::min(p.n - j0, pl.nc_block);
    return Split{bi, i0, i1, j0, nc, tn};
  }

  static PairSource b_source(const bertkit::gemm::Bf16Problem& p, int64_t bi) {
    return pair_source(p.b, p.b_f32, bi * p.stride_b, p.ld_b(), p.trans_b, p.k);
  }

  // packed: the product's B panels packed beforehand (panel tn of batch entry
  // bi at (bi * n_tasks_n + tn) * panel_words), or nullptr to pack here.
  static void run_task(const bertkit::gemm::Bf16Problem& p, const Plan& pl, int64_t task, const uint32_t* packed,
                       int64_t panel_words) {
    const Split t = split(p, pl, task);
    const PairSource a = pair_source(p.a, p.a_f32, t.bi * p.stride_a, p.ld_a(), !p.trans_a, p.k);
    const uint32_t* bpanel = packed ? packed + (t.bi * pl.n_tasks_n + t.tn) * panel_words : nullptr;
    if (!bpanel) {
      uint32_t* own = b_buffer().get(static_cast<size_t>(K::b_words(t.nc, pl.kp)));
      K::pack_b(b_source(p, t.bi), t.j0, t.nc, pl.kp, own);
      bpanel = own;
    }
    K::rows(p, a, t.i0, t.i1, bpanel, t.j0, t.nc, pl.kp, p.c + t.bi * p.stride_c);
  }

  static void run(const bertkit::gemm::Bf16Problem& p) {
    bertkit::ThreadPool& pool = bertkit::ThreadPool::instance();
    const Plan pl = plan(p, pool.num_threads());
    const int64_t tasks = p.batch * pl.n_tasks_m * pl.n_tasks_n;
    if (tasks == 1) {
      run_task(p, pl, 0, nullptr, 0);
      return;
    }
    // When row blocks share a B panel (a linear layer's weight), pack each
    // panel once, split over the threads by depth, instead of once per task.
    const uint32_t* packed = nullptr;
    const int64_t panel_words = K::b_words(pl.nc_block, pl.kp);
    if (pl.n_tasks_m > 1) {
      const int64_t panels = p.batch * pl.n_tasks_n;
      uint32_t* out = shared_b_buffer().get(static_cast<size_t>(panels * panel_words));
      const int64_t parts = K::pack_parts(pl.kp);
      const int64_t jobs = panels * parts, chunks = std::min<int64_t>(jobs, 1 << 20);
      pool.run_chunks(static_cast<int>(chunks), [&](int c) {
        for (int64_t job = jobs * c / chunks; job < jobs * (c + 1) / chunks; ++job) {
          const int64_t panel = job / parts, part = job % parts;
          const int64_t bi = panel / pl.n_tasks_n, tn = panel % pl.n_tasks_n;
          const int64_t j0 = tn * pl.nc_block, nc = std::min(p.n - j0, pl.nc_block);
          K::pack_b_part(b_source(p, bi), j0, nc, pl.kp, part, parts, out + panel * panel_words);
        }
      });
      packed = out;
    }
    const int64_t groups = std::min<int64_t>(tasks, 1 << 20);
    pool.run_chunks(static_cast<int>(groups), [&](int g) {
      const int64_t t0 = tasks * g / groups, t1 = tasks * (g + 1) / groups;
      for (int64_t t = t0; t < t1; ++t) run_task(p, pl, t, packed, panel_words);
    });
  }
};
