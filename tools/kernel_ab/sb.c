// Small-batch product A/B (continuous batching): see tools/kernel_ab/build.sh.
// small-batch harness: T rows through the 124M step (48 layer matrices + head), 2 threads, f16
#include "cg2w.h"
#include "cg2w_batch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static const size_t R[5] = {2304, 768, 3072, 768, 50257}, C[5] = {768, 768, 768, 3072, 768};
typedef int (*sb_fn)(int, const void *, const float *, const float *, float *, size_t, size_t, size_t, size_t, size_t);
int A_sb(int, const void *, const float *, const float *, float *, size_t, size_t, size_t, size_t, size_t);
int B_sb(int, const void *, const float *, const float *, float *, size_t, size_t, size_t, size_t, size_t);
static struct { const char *W; size_t off[49], rows[49], cols[49]; int n, m; float *X, *Y; sb_fn f; size_t T; int code; size_t es; } G;
static void task(void *c, size_t job, size_t worker) {
  (void)c; (void)worker; int m = G.m; size_t r = G.rows[m], per = (r + 7) / 8, chunk = (per + 11) / 12 * 12;
  size_t a = job * chunk, b = a + chunk < r ? a + chunk : r; if (a >= r) return; if (getenv("JOBS4") && job >= 4) return;
  G.f(G.code, G.W + G.off[m], G.X, NULL, G.Y, G.T, G.cols[m], r, a, b);
}
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  G.T = argc > 1 ? atoi(argv[1]) : 8; G.code = getenv("F32") ? 0 : 1; G.es = G.code ? 2 : 4; int rounds = argc > 2 ? atoi(argv[2]) : 7;
  size_t total = 0; int n = 0;
  for (int l = 0; l < 12; l++) for (int m = 0; m < 4; m++) { G.rows[n] = R[m]; G.cols[n] = C[m]; G.off[n] = total; total += (R[m] * C[m] * G.es + 63) & ~63UL; n++; }
  G.rows[n] = R[4]; G.cols[n] = C[4]; G.off[n] = total; total += (R[4] * C[4] * G.es + 63) & ~63UL; n++; G.n = n;
  char *W;
  if (getenv("FILE")) { int fd = open(getenv("FILE"), O_RDONLY); struct stat st; fstat(fd, &st); W = (char *)mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0) + (1 << 20); volatile uint64_t s = g2w_bench_read(W, total & ~127UL); (void)s; }
  else { W = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (G.code) for (size_t i = 0; i < total / 2; i++) ((uint16_t *)W)[i] = 0x3000 + (i % 512); else for (size_t i = 0; i < total / 4; i++) ((float *)W)[i] = (float)(i % 512) * 1e-3f; }
  G.W = W; G.X = aligned_alloc(64, 8 * 3072 * 4); for (int i = 0; i < 8 * 3072; i++) G.X[i] = (float)(i % 7) * 0.1f;
  G.Y = aligned_alloc(64, 8 * 50257 * 4);
  g2w_pool *pool = g2w_pool_create(2);
  double flops = 0; for (int m = 0; m < n; m++) flops += 2.0 * G.rows[m] * G.cols[m] * G.T; if (getenv("HOT")) { if (getenv("HOT_ROWS")) G.rows[1] = atoi(getenv("HOT_ROWS")); flops = 50 * 2.0 * G.rows[1] * 768 * G.T; total = 50 * G.rows[1] * 768 * G.es; }
  double t[2][64];
  for (int r = 0; r < rounds; r++) for (int v = 0; v < 2; v++) {
    G.f = v ? B_sb : A_sb; double best = 1e9;
    for (int k = 0; k < 3; k++) { double t0 = now(); if (getenv("HOT")) { for (int m = 0; m < 50; m++) { G.m = 1; g2w_pool_run(pool, 8, task, NULL); } } else for (int m = 0; m < n; m++) { G.m = m; g2w_pool_run(pool, 8, task, NULL); } double d = now() - t0; if (d < best) best = d; }
    t[v][r] = best;
  }
  for (int v = 0; v < 2; v++) { qsort(t[v], rounds, sizeof(double), cmp); double s = t[v][rounds / 2];
    printf("%c: T %zu step %.2f ms, %.0f GFLOP/s, %.1f GB/s of weights\n", 'A' + v, G.T, s * 1e3, flops / s / 1e9, total / s / 1e9); }
}
