// Decoding kernels A/B: see tools/kernel_ab/build.sh for how to build and run it.
// A/B harness: median over rounds of (kernel GB/s) / (2-thread plain read GB/s, measured next to it)
#include "cg2w.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static const size_t R[5] = {2304, 768, 3072, 768, 50257}, C[5] = {768, 768, 768, 3072, 768};
typedef void (*mv_fn)(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1);
void A_q8(const void *, size_t, size_t, const void *, const float *, float *, size_t, size_t);
void A_q4(const void *, size_t, size_t, const void *, const float *, float *, size_t, size_t);
void B_q8(const void *, size_t, size_t, const void *, const float *, float *, size_t, size_t);
void B_q4(const void *, size_t, size_t, const void *, const float *, float *, size_t, size_t);
void A_f16(const uint16_t *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1);
void B_f16(const uint16_t *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1);
static void A_f16w(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) { (void)rows; A_f16(W, xp, bias, y, cols, r0, r1); }
static void B_f16w(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) { (void)rows; B_f16(W, xp, bias, y, cols, r0, r1); }
static struct { const char *W; size_t off[49], rows[49], cols[49]; void *xp[49]; int n; float *y; mv_fn f; size_t total; int m; int nt; } G;
static int JOBS = 2; static double GAP = 0; static int LAYERS_ONLY = 0;
static void task(void *c, size_t job, size_t worker) {
  (void)c; (void)worker; int m = G.m; size_t r = G.rows[m];
  size_t per = (r + JOBS - 1) / JOBS, chunk = (per + 11) / 12 * 12; if (chunk < 12) chunk = 12; if (chunk > r) chunk = r;
  size_t a = job * chunk, b = a + chunk < r ? a + chunk : r; if (a >= r) return;
  G.f(G.W + G.off[m], r, G.cols[m], G.xp[m], NULL, G.y, a, b);
}
static void gap(void) { if (GAP <= 0) return; struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0); do clock_gettime(CLOCK_MONOTONIC, &t1); while ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec) < GAP); }
static volatile uint64_t sink;
static void rtask(void *c, size_t job, size_t worker) { (void)c; (void)worker; size_t h = (G.total / G.nt) & ~127UL; sink ^= g2w_bench_read(G.W + job * h, h); }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  if (getenv("JOBS")) JOBS = atoi(getenv("JOBS")); if (getenv("GAP")) GAP = atof(getenv("GAP")); if (getenv("LAYERS")) LAYERS_ONLY = 1;
  int code = atoi(argv[1]); int rounds = argc > 2 ? atoi(argv[2]) : 9; G.nt = 2;
  const g2w_type_traits *t = g2w_type(code);
  int nv = 2; mv_fn fs[2] = { code == 1 ? A_f16w : code == 3 ? A_q8 : A_q4, code == 1 ? B_f16w : code == 3 ? B_q8 : B_q4 };
  size_t total = 0; int n = 0;
  for (int l = 0; l < 12; l++) for (int m = 0; m < 4; m++) { G.rows[n] = R[m]; G.cols[n] = C[m]; G.off[n] = total; total += (R[m] * C[m] / t->block_elements * t->block_bytes + 63) & ~63UL; n++; }
  G.rows[n] = R[4]; G.cols[n] = C[4]; G.off[n] = total; total += (R[4] * C[4] / t->block_elements * t->block_bytes + 63) & ~63UL; n++;
  G.n = n; G.total = total;
  char *W;
  if (getenv("FILE")) { int fd = open(getenv("FILE"), O_RDONLY); struct stat st; fstat(fd, &st); if ((size_t)st.st_size < total + (1 << 20)) { fprintf(stderr, "file too small\n"); return 1; }
    W = (char *)mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0) + (1 << 20); goto mapped; }
  W = mmap(NULL, total + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(W, total, MADV_HUGEPAGE);
  srand(1); for (size_t i = 0; i < total; i++) W[i] = (char)(rand() & 0x3f);
  if (code == 1) for (size_t i = 0; i < total / 2; i++) ((uint16_t *)W)[i] = 0x3c00 + (i % 64);
  if (t->block_elements > 1) for (int m = 0; m < n; m++) { size_t q = G.rows[m] * G.cols[m] / 32 * t->quant_bytes; uint16_t *s = (uint16_t *)(W + G.off[m] + q); for (size_t i = 0; i < G.rows[m] * G.cols[m] / 32; i++) s[i] = 0x3c00; }
  mapped: G.W = W;
  float *x = malloc(3072 * 4); for (int i = 0; i < 3072; i++) x[i] = (float)(i % 7) - 3;
  for (int m = 0; m < n; m++) { size_t pb = t->prepared_bytes(G.cols[m]); if (!pb) { G.xp[m] = x; continue; } G.xp[m] = aligned_alloc(64, (pb + 63) & ~63UL); t->prepare(x, G.cols[m], G.xp[m]); }
  G.y = malloc(60000 * 4); float *y2 = malloc(60000 * 4);
  g2w_pool *pool = g2w_pool_create(2);
  double ratio[2][64], gbs[2][64], rd[64];
  for (int r = 0; r < rounds; r++) {
    double t0 = now(); for (int k = 0; k < 3; k++) g2w_pool_run(pool, 2, rtask, NULL); double dr = (now() - t0) / 3; rd[r] = total / dr / 1e9;
    for (int v = 0; v < nv; v++) {
      G.f = fs[v];
      double best = 1e9;
      for (int k = 0; k < 3; k++) { double t1 = now(); for (int m = 0; m < n - LAYERS_ONLY; m++) { G.m = m; gap(); g2w_pool_run(pool, JOBS, task, NULL); } double d = now() - t1; if (d < best) best = d; }
      gbs[v][r] = (total - (LAYERS_ONLY ? total - G.off[n - 1] : 0)) / best / 1e9; ratio[v][r] = gbs[v][r] / rd[r];
    }
  }
  // check equality of outputs of last matrix
  G.f = fs[0]; G.m = n - 1; g2w_pool_run(pool, JOBS, task, NULL); memcpy(y2, G.y, 50257 * 4); G.f = fs[1]; g2w_pool_run(pool, JOBS, task, NULL);
  double md = 0; for (int i = 0; i < 50257; i++) { double d = y2[i] - G.y[i]; if (d < 0) d = -d; if (d > md) md = d; }
  qsort(rd, rounds, sizeof(double), cmp);
  printf("%s: read median %.1f GB/s; max |A-B| %.3g\n", t->name, rd[rounds / 2], md);
  for (int v = 0; v < nv; v++) { qsort(ratio[v], rounds, sizeof(double), cmp); qsort(gbs[v], rounds, sizeof(double), cmp); printf("  %c: median %.1f GB/s, ratio to read median %.3f (min %.3f max %.3f)\n", 'A' + v, gbs[v][rounds / 2], ratio[v][rounds / 2], ratio[v][0], ratio[v][rounds - 1]); }
}
