/* Measured arithmetic peaks of this CPU, for bench/bench-gemm-bf16.ts: register-only
 * loops of one instruction with enough independent accumulators to hide its latency, on
 * T threads at once (one per core), so the figure is what the core delivers now (its
 * clock, the neighbours' load), not a data-sheet number.
 *   fp32        VFMADD231PS zmm     32 FLOP each (16 lanes x multiply-add)
 *   avx512bf16  VDPBF16PS zmm       64 FLOP each (16 lanes x 2 products x multiply-add)
 *   amx         TDPBF16PS           16384 FLOP each (16 x 16 outputs x 32 products x 2)
 * usage: peak_flops KIND THREADS [SECONDS]    prints {"kind", "threads", "gflops"}
 * build: cc -O2 -pthread -mavx512f -mavx512bf16 -mamx-tile -mamx-bf16 peak_flops.c -o peak_flops */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static const char* kind;
static long iterations;
static volatile float sink;

static void* fp32(void* arg) {
  (void)arg;
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
  __m512 x = _mm512_set1_ps(1e-7f);
  for (long n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(x, x, acc[i]);
    __asm__ volatile("" : "+v"(x));
  }
  float s = 0;
  for (int i = 0; i < 12; ++i) s += _mm512_reduce_add_ps(acc[i]);
  sink = s;
  return NULL;
}

static void* bf16(void* arg) {
  (void)arg;
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);
  for (long n = 0; n < iterations; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  float s = 0;
  for (int i = 0; i < 12; ++i) s += _mm512_reduce_add_ps(acc[i]);
  sink = s;
  return NULL;
}

struct tile_config {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

static void* amx(void* arg) {
  (void)arg;
  struct tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  static uint16_t ones[16 * 32];
  for (int i = 0; i < 16 * 32; ++i) ones[i] = 0x3f80;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  for (long n = 0; n < iterations; ++n) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  float out[256];
  _tile_stored(0, out, 64);
  sink = out[0];
  _tile_release();
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: peak_flops fp32|avx512bf16|amx THREADS [SECONDS]\n");
    return 2;
  }
  kind = argv[1];
  int threads = atoi(argv[2]);
  double seconds = argc > 3 ? atof(argv[3]) : 1.0;
  void* (*fn)(void*) = NULL;
  double flop_per_iteration = 0;
  if (!strcmp(kind, "fp32")) { fn = fp32; flop_per_iteration = 12 * 32; }
  else if (!strcmp(kind, "avx512bf16")) { fn = bf16; flop_per_iteration = 12 * 64; }
  else if (!strcmp(kind, "amx")) {
    /* Linux grants the tile state on request (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA). */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) { fprintf(stderr, "AMX tile state not granted\n"); return 3; }
    fn = amx;
    flop_per_iteration = 4 * 16384.0;
  } else {
    fprintf(stderr, "unknown kind %s\n", kind);
    return 2;
  }
  /* Calibrate on one thread, then run every thread for about `seconds`. */
  iterations = 1000;
  double t;
  for (;;) {
    t = now();
    fn(NULL);
    t = now() - t;
    if (t > 0.05) break;
    iterations *= 4;
  }
  iterations = (long)(iterations * seconds / t);
  pthread_t ids[256];
  t = now();
  for (int i = 0; i < threads; ++i) pthread_create(&ids[i], NULL, fn, NULL);
  for (int i = 0; i < threads; ++i) pthread_join(ids[i], NULL);
  t = now() - t;
  printf("{\"kind\": \"%s\", \"threads\": %d, \"gflops\": %.1f}\n", kind, threads, flop_per_iteration * iterations * threads / t / 1e9);
  return 0;
}
