// One thread, the small-batch product (the build's smallbatch.c) with T = 8 on ROWS x 768 f16 weights, best of 7:
// in cache (48 rows) or streamed from memory (60,000 rows). Dev-time only.
//   clang -O2 -I Sources/CG2W/include -I Sources/CG2W tools/kernel_ab/small_one_thread.c Sources/CG2W/smallbatch.c \
//     Sources/CG2W/isa.c Sources/CG2W/convert.c -lm -lpthread -o /tmp/small_one_thread && /tmp/small_one_thread 60000
#include "cg2w.h"
#include "cg2w_batch.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
  size_t rows = atoi(argv[1]), cols = 768, T = 8;
  uint16_t *W = aligned_alloc(64, rows * cols * 2); for (size_t i = 0; i < rows * cols; i++) W[i] = 0x3c00 + (i % 64);
  float *X = aligned_alloc(64, T * cols * 4); for (size_t i = 0; i < T * cols; i++) X[i] = (float)(i % 7) * 0.01f;
  float *Y = aligned_alloc(64, T * rows * 4);
  double best = 1e9; size_t reps = rows > 10000 ? 2 : 20000000 / rows + 1;
  for (int r = 0; r < 7; r++) { double t0 = now(); for (size_t k = 0; k < reps; k++) g2w_matmul_small(1, W, X, NULL, Y, T, cols, rows, 0, rows); double d = (now() - t0) / reps; if (d < best) best = d; }
  printf("rows %zu: %.1f GFLOP/s one thread\n", rows, 2.0 * rows * cols * T / best / 1e9);
}
