// The small-batch tile's instructions as a stand-alone loop (3 f16 rows x 8 rows of X, 24 FMAs a
// 16-column step, a reduction after each tile), one thread: what smallbatch.c's tile could reach.
// Dev-time only.  clang -O2 tools/kernel_ab/tile_loop.c -o /tmp/tile_loop
//   /tmp/tile_loop ROWS MODE [PF DIST]   ROWS 3 or 48: weights in L1/L2; 60000: streamed from memory.
//   MODE 0: reduce after each tile, 1: no reduction. PF 0 none, 1 prefetcht0 DIST rows ahead (6 = two
//   tiles, as the kernel), 2 prefetcht1, 3 prefetcht0 6 rows and prefetcht1 DIST rows ahead.
//   COLS=N in the environment sets the row length (default 768, not a compile-time constant).
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static size_t Cg = 768;
// rows x C f16 W (tiles of 3 rows), X 8 x C; mode 0: reduce per tile to Y; mode 1: keep accumulating (no reduce)
static int PFD = 6; static int PFMODE = 0;
__attribute__((target("avx512f,f16c"), noinline)) float run(const unsigned short *W, size_t rows, const float *X, float *Y, long iters, int mode) {
  const size_t C = Cg;
  __m512 keep = _mm512_setzero_ps();
  for (long it = 0; it < iters; it++) {
    for (size_t r = 0; r + 3 <= rows; r += 3) {
      __m512 acc[24]; for (int i = 0; i < 24; i++) acc[i] = _mm512_setzero_ps();
      const unsigned short *w = W + r * C;
      for (int k = 0; k < C; k += 16) {
        if (PFMODE == 1 && (k & 31) == 0) { for (int i = 0; i < 3; i++) _mm_prefetch((const char *)(w + (PFD + i) * C + k), _MM_HINT_T0); }
        if (PFMODE == 3 && (k & 31) == 0) { for (int i = 0; i < 3; i++) { _mm_prefetch((const char *)(w + (6 + i) * C + k), _MM_HINT_T0); _mm_prefetch((const char *)(w + (PFD + i) * C + k), _MM_HINT_T1); } }
        if (PFMODE == 2 && (k & 31) == 0) { for (int i = 0; i < 3; i++) _mm_prefetch((const char *)(w + (PFD + i) * C + k), _MM_HINT_T1); }
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + k)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + C + k)));
        __m512 w2 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * C + k)));
        for (int t = 0; t < 8; t++) { __m512 x = _mm512_loadu_ps(X + t * C + k); acc[t] = _mm512_fmadd_ps(w0, x, acc[t]); acc[8 + t] = _mm512_fmadd_ps(w1, x, acc[8 + t]); acc[16 + t] = _mm512_fmadd_ps(w2, x, acc[16 + t]); }
      }
      if (mode == 0) { for (int i = 0; i < 24; i++) Y[(i % 8) * rows + r + i / 8] = _mm512_reduce_add_ps(acc[i]); }
      else { for (int i = 0; i < 24; i++) keep = _mm512_add_ps(keep, acc[i]); }
    }
  }
  return _mm512_reduce_add_ps(keep) + Y[0];
}
int main(int argc, char **argv) {
  size_t rows = atoi(argv[1]); int mode = atoi(argv[2]); if (getenv("COLS")) Cg = atoi(getenv("COLS")); PFMODE = argc > 3 ? atoi(argv[3]) : 0; PFD = argc > 4 ? atoi(argv[4]) : 6;
  size_t C = Cg; unsigned short *W = aligned_alloc(64, rows * C * 2); float *X = aligned_alloc(64, 8 * C * 4); float *Y = aligned_alloc(64, 8 * rows * 4); (void)C;
  for (size_t i = 0; i < rows * C; i++) W[i] = 0x3c00; for (int i = 0; i < 8 * C; i++) X[i] = 1e-6f;
  long iters = rows > 10000 ? 2 : 20000000 / rows; double best = 1e9; float sink = 0;
  for (int r = 0; r < 5; r++) { double t0 = now(); sink += run(W, rows, X, Y, iters, mode); double d = now() - t0; if (d < best) best = d; }
  printf("rows %zu mode %d: %.1f GFLOP/s (%.3f)\n", rows, mode, iters * (double)(rows / 3 * 3) * C * 8 * 2 / best / 1e9, sink);
}
