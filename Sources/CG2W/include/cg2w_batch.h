// Matrix products for a few rows of activations (continuous batching: 2-8 sequences decoding
// together). The prompt kernels of matmul.c are built for many rows (they pack or tile for them);
// these stream each weight row once and apply it to all T rows in registers.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/// Largest T the small-batch product takes.
enum { G2W_SMALL_BATCH_MAX = 8 };
/// 1 when g2w_matmul_small runs a vector kernel for element type `type_code` (G2W_TYPE_F32 or
/// G2W_TYPE_F16) and T rows (2...G2W_SMALL_BATCH_MAX) on this CPU (AVX-512F), else 0.
int g2w_matmul_small_available(int type_code, size_t T);
/// Y[t * ldy + r] = dot(X[t, :], W[r, :]) (+ bias[r]) for t < T, r in [r0, r1): W is rows x cols
/// (row-major, f32 or f16 by `type_code`), X is T x cols (row stride cols). Each row of W is read
/// once for all T rows. Returns 0 (and does nothing) when g2w_matmul_small_available is 0.
int g2w_matmul_small(int type_code, const void *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy,
                     size_t r0, size_t r1);
/// The same product in plain C (reference for tests).
void g2w_matmul_small_reference(int type_code, const void *W, const float *X, const float *bias, float *Y, size_t T, size_t cols,
                                size_t ldy, size_t r0, size_t r1);
#ifdef __cplusplus
}
#endif
