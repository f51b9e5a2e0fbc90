// Transposing pack with 256-bit AVX shuffles, shared by the AVX2 and AVX-512
// builds. Like gemm_driver.h it is included inside an anonymous namespace
// after the file's target pragma, and includes nothing itself (<immintrin.h>
// comes first).
//
// out[p * ld_out + i] = src[i * ld_src + p] for i < rows, p < kc, and zero for
// rows <= i < ld_out. Packs op(A) when A is [m, k] and op(B) when B is [n, k]:
// the transposes that plain copies cannot do, and at BERT shapes the packing
// would otherwise cost several percent of the product.

// Transposes the 8 x 8 block in r[0..7] (rows) into r[0..7] (columns).
inline void transpose8x8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

inline void pack_transpose_avx(const float* src, int64_t ld_src, int rows, int64_t kc, int ld_out,
                               float* __restrict out) {
  int64_t p0 = 0;
  for (; p0 + 8 <= kc; p0 += 8) {
    int i0 = 0;
    for (; i0 + 8 <= rows; i0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (i0 + i) * ld_src + p0);
      transpose8x8(r);
      for (int q = 0; q < 8; ++q) _mm256_storeu_ps(out + (p0 + q) * ld_out + i0, r[q]);
    }
    if (i0 + 4 <= rows) {
      // Four rows: two 4 x 4 transposes, one per 128-bit half of the depth run.
      __m256 r0 = _mm256_loadu_ps(src + (i0 + 0) * ld_src + p0);
      __m256 r1 = _mm256_loadu_ps(src + (i0 + 1) * ld_src + p0);
      __m256 r2 = _mm256_loadu_ps(src + (i0 + 2) * ld_src + p0);
      __m256 r3 = _mm256_loadu_ps(src + (i0 + 3) * ld_src + p0);
      __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      __m256 c0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));  // depth 0 | 4
      __m256 c1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));  // depth 1 | 5
      __m256 c2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));  // depth 2 | 6
      __m256 c3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));  // depth 3 | 7
      float* o = out + p0 * ld_out + i0;
      _mm_storeu_ps(o + 0 * ld_out, _mm256_castps256_ps128(c0));
      _mm_storeu_ps(o + 1 * ld_out, _mm256_castps256_ps128(c1));
      _mm_storeu_ps(o + 2 * ld_out, _mm256_castps256_ps128(c2));
      _mm_storeu_ps(o + 3 * ld_out, _mm256_castps256_ps128(c3));
      _mm_storeu_ps(o + 4 * ld_out, _mm256_extractf128_ps(c0, 1));
      _mm_storeu_ps(o + 5 * ld_out, _mm256_extractf128_ps(c1, 1));
      _mm_storeu_ps(o + 6 * ld_out, _mm256_extractf128_ps(c2, 1));
      _mm_storeu_ps(o + 7 * ld_out, _mm256_extractf128_ps(c3, 1));
      i0 += 4;
    }
    for (; i0 < rows; ++i0) {
      const float* s = src + i0 * ld_src + p0;
      for (int q = 0; q < 8; ++q) out[(p0 + q) * ld_out + i0] = s[q];
    }
  }
  for (int i = 0; i < rows; ++i) {
    const float* s = src + i * ld_src;
    for (int64_t p = p0; p < kc; ++p) out[p * ld_out + i] = s[p];
  }
  if (rows < ld_out) {
    for (int64_t p = 0; p < kc; ++p)
      for (int i = rows; i < ld_out; ++i) out[p * ld_out + i] = 0.f;
  }
}
