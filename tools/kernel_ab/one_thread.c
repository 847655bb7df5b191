// One thread, one decoding kernel (the build's own, matvec from the type's traits) over a rows x 768
// matrix of type CODE (1 f16, 3 q8_0, 4 q4_0), best of N: in cache (a few hundred rows) or streamed
// from memory (~100,000 rows). Dev-time only.
//   clang -O2 -I Sources/CG2W/include -I Sources/CG2W tools/kernel_ab/one_thread.c Sources/CG2W/quant.c \
//     Sources/CG2W/matmul.c Sources/CG2W/convert.c Sources/CG2W/isa.c Sources/CG2W/bench.c Sources/CG2W/gemm.c \
//     Sources/CG2W/pool.c Sources/CG2W/attention.c -lm -lpthread -o /tmp/one_thread
//   /tmp/one_thread 3 768; /tmp/one_thread 3 100000; /tmp/one_thread 1 50000
#include "cg2w.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
  int code = atoi(argv[1]); size_t rows = atoi(argv[2]), cols = 768;
  const g2w_type_traits *t = g2w_type(code);
  size_t bytes = rows * cols / t->block_elements * t->block_bytes;
  char *W = aligned_alloc(64, (bytes + 63) & ~63UL);
  for (size_t i = 0; i < bytes; i++) W[i] = (char)(rand() & 0x3f);
  if (t->block_elements > 1) { uint16_t *s = (uint16_t *)(W + rows * cols / 32 * t->quant_bytes); for (size_t i = 0; i < rows * cols / 32; i++) s[i] = 0x3c00; }
  else if (code == 1) for (size_t i = 0; i < bytes / 2; i++) ((uint16_t *)W)[i] = 0x3c00;
  float *x = malloc(cols * 4); for (size_t i = 0; i < cols; i++) x[i] = (float)(i % 7) - 3;
  void *xp = x; size_t pb = t->prepared_bytes ? t->prepared_bytes(cols) : 0; if (pb) { xp = aligned_alloc(64, (pb + 63) & ~63UL); t->prepare(x, cols, xp); }
  float *y = malloc(rows * 4);
  double best = 1e9;
  int reps = rows > 10000 ? 5 : 200; for (int r = 0; r < reps; r++) { double t0 = now(); t->matvec(W, rows, cols, xp, NULL, y, 0, rows); double d = now() - t0; if (d < best) best = d; }
  printf("%s rows %zu (%.0f KB): %.1f GB/s one thread, hot\n", t->name, rows, bytes / 1024.0, bytes / best / 1e9);
}
