// Matrix products for a few rows of activations (2-8): the decoding step of continuous batching.
//
// Decoding one sequence reads every weight once per token (matrix x vector, memory-bound). With T
// sequences in one step the weights should still be read once, and the T x more arithmetic must
// hide under that read. The prompt kernels of matmul.c do not: the AVX2 3 x 4 tile covers T < 4
// with row-by-row passes, and the packed GEMM (T >= 8 for f16) repacks every weight panel for only
// 8 rows. Here a register tile holds R rows of W against all T rows of X (R x T zmm accumulators,
// R = 3 for T 7-8, 4 for T <= 6): per 16 columns, R loads of W (converted from f16 in the
// register), T loads of X (L1, or L2 for the 3072-wide product), R x T FMAs; W is read once, in
// order, with a software prefetch of the tiles ahead; X stays in cache. The dot products' summation order
// differs from the matrix-vector kernel's (results agree to float rounding, not bit for bit).
#include "cg2w.h"
#include "cg2w_batch.h"
#include "half.h"
#include "simd.h"

void g2w_matmul_small_reference(int type_code, const void *W, const float *X, const float *bias, float *Y, size_t T, size_t cols,
                                size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < T; t++)
        for (size_t r = r0; r < r1; r++) {
            double s = 0;
            for (size_t k = 0; k < cols; k++) {
                float w = type_code == G2W_TYPE_F16 ? half_to_float(((const uint16_t *)W)[r * cols + k]) : ((const float *)W)[r * cols + k];
                s += (double)w * X[t * cols + k];
            }
            Y[t * ldy + r] = (float)s + (bias ? bias[r] : 0.0f);
        }
}

#if G2W_X86
// Prefetch: while a tile reads its R rows, the same columns of the rows SMALL_AHEAD tiles further
// (a prefetch past the matrix's end is harmless: prefetches do not fault).
enum { SMALL_AHEAD = 2 };

// One tile: rows r..r+R-1 of W against the T rows of X. R and T are compile-time constants at
// every call (the function is inlined into a switch), so the accumulators live in registers.
// The horizontal sums of 8 accumulators at once (halves added, then two rounds of hadd and a
// lane merge: ~40 % fewer instructions than 8 separate reductions).
AVX512 static inline void reduce8(const __m512 *a, float *out) {
    __m256 v[8];
    for (int i = 0; i < 8; i++) v[i] = _mm256_add_ps(_mm512_castps512_ps256(a[i]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[i]), 1)));
    __m256 h01 = _mm256_hadd_ps(v[0], v[1]), h23 = _mm256_hadd_ps(v[2], v[3]), h45 = _mm256_hadd_ps(v[4], v[5]), h67 = _mm256_hadd_ps(v[6], v[7]);
    __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
    // h0123: lane 0 = partial sums of 0..3 (low halves), lane 1 = the same from the high halves.
    __m256 lo = _mm256_permute2f128_ps(h0123, h4567, 0x20), hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
    _mm256_storeu_ps(out, _mm256_add_ps(lo, hi));
}

#define SMALL_TILE(NAME, WT, LOAD16, ELEM)                                                                       \
    __attribute__((always_inline, target("avx512f,avx2,fma,f16c"))) static inline void NAME(                  \
        const WT *W, const float *X, const float *bias, float *Y, size_t cols, size_t ldy, size_t r, size_t k0, size_t k1, \
        int accumulate, const int R, const int T) {                                                             \
        __m512 acc[4][8];                                                                                       \
        for (int i = 0; i < R; i++)                                                                             \
            for (int t = 0; t < T; t++) acc[i][t] = _mm512_setzero_ps();                                        \
        const WT *w0 = W + r * cols;                                                                            \
        size_t n16 = k0 + ((k1 - k0) & ~(size_t)15), k = k0;                                                    \
        for (; k < n16; k += 16) {                                                                              \
            __m512 w[4];                                                                                        \
            for (int i = 0; i < R; i++) {                                                                       \
                if ((k * sizeof(WT)) % 64 == 0) _mm_prefetch((const char *)(w0 + (SMALL_AHEAD * R + i) * cols + k), _MM_HINT_T0); \
                w[i] = LOAD16(w0 + i * cols + k);                                                               \
            }                                                                                                   \
            for (int t = 0; t < T; t++) {                                                                       \
                __m512 x = _mm512_loadu_ps(X + t * cols + k);                                                   \
                for (int i = 0; i < R; i++) acc[i][t] = _mm512_fmadd_ps(w[i], x, acc[i][t]);                    \
            }                                                                                                   \
        }                                                                                                       \
        for (int i = 0; i < R; i++) {                                                                           \
            float sums[8];                                                                                      \
            if (T == 8) reduce8(acc[i], sums);                                                                  \
            else for (int t = 0; t < T; t++) sums[t] = _mm512_reduce_add_ps(acc[i][t]);                         \
            for (int t = 0; t < T; t++) {                                                                       \
                float s = sums[t];                                                                              \
                for (size_t j = k; j < k1; j++) s += ELEM(w0 + i * cols, j) * X[t * cols + j];                  \
                float *y = Y + t * ldy + r + i;                                                                 \
                *y = accumulate ? *y + s : s + (bias ? bias[r + i] : 0.0f);                                     \
            }                                                                                                   \
        }                                                                                                       \
    }

#define LOAD16_F32(p) _mm512_loadu_ps(p)
#define LOAD16_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define ELEM_F32(row, j) (row)[j]
#define ELEM_F16(row, j) half_to_float((row)[j])
SMALL_TILE(small_tile_f32, float, LOAD16_F32, ELEM_F32)
SMALL_TILE(small_tile_f16, uint16_t, LOAD16_F16, ELEM_F16)

// The tile for T = 8 with f16 weights (a full batch of 8 sequences: the server's case) as a
// function of its own, columns [k0, n16) of rows w, w + cols, w + 2 cols: the generic tile,
// inlined into the eight-way switch, had its row pointers reloaded from the stack every 16
// columns; this one runs the 124M step's products 3-6 % faster (tools/kernel_ab, 2 threads:
// 319-335 -> 340-346 GFLOP/s) with the same sums in the same order. `out` gets the 24
// accumulators, row-major (3 x 8).
__attribute__((target("avx512f,avx2,fma,f16c"), noinline)) static void tile_f16_3x8(const uint16_t *w, const float *X, size_t cols,
                                                                                    size_t n16, size_t k0, size_t pf_rows, __m512 *out) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_setzero_ps();
    for (size_t k = k0; k < n16; k += 16) {
        if ((k & 31) == 0)
            for (int i = 0; i < 3; i++) _mm_prefetch((const char *)(w + (pf_rows + i) * cols + k), _MM_HINT_T0);
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + k)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + cols + k)));
        __m512 w2 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * cols + k)));
        for (int t = 0; t < 8; t++) {
            __m512 x = _mm512_loadu_ps(X + t * cols + k);
            acc[t] = _mm512_fmadd_ps(w0, x, acc[t]);
            acc[8 + t] = _mm512_fmadd_ps(w1, x, acc[8 + t]);
            acc[16 + t] = _mm512_fmadd_ps(w2, x, acc[16 + t]);
        }
    }
    for (int i = 0; i < 24; i++) out[i] = acc[i];
}

// Rows [r0, r1) in tiles of R rows (the last rows one at a time), for a constant T. When the T
// rows of X do not fit in L1 (the 3072-wide product), the columns go in blocks whose slice of X
// does, the partial sums added into Y.
enum { SMALL_X_BYTES = 24 * 1024 };
#define SMALL_RANGE(NAME, WT, TILE)                                                                              \
    __attribute__((always_inline, target("avx512f,avx2,fma,f16c"))) static inline void NAME(                  \
        const WT *W, const float *X, const float *bias, float *Y, size_t cols, size_t ldy, size_t r0, size_t r1, const int T) { \
        const int R = T <= 6 ? 4 : 3;                                                                           \
        size_t kb = cols;                                                                                       \
        if (cols * T * sizeof(float) > SMALL_X_BYTES) kb = (SMALL_X_BYTES / (T * sizeof(float))) & ~(size_t)63;  \
        for (size_t k0 = 0; k0 < cols; k0 += kb) {                                                              \
            size_t k1 = cols - k0 < kb ? cols : k0 + kb;                                                        \
            size_t r = r0;                                                                                      \
            if (T == 8 && sizeof(WT) == 2) { /* f16, a full batch: the tile above */                           \
                size_t n16 = k0 + ((k1 - k0) & ~(size_t)15);                                                    \
                for (; r + 3 <= r1; r += 3) {                                                                   \
                    __m512 acc[24];                                                                             \
                    tile_f16_3x8((const uint16_t *)W + r * cols, X, cols, n16, k0, SMALL_AHEAD * 3, acc);       \
                    for (int i = 0; i < 3; i++) {                                                               \
                        float sums[8];                                                                          \
                        reduce8(acc + 8 * i, sums);                                                             \
                        for (int t = 0; t < 8; t++) {                                                           \
                            float s = sums[t];                                                                  \
                            for (size_t j = n16; j < k1; j++)                                                   \
                                s += half_to_float(((const uint16_t *)W)[(r + i) * cols + j]) * X[t * cols + j];    \
                            float *y = Y + t * ldy + r + i;                                                     \
                            *y = k0 > 0 ? *y + s : s + (bias ? bias[r + i] : 0.0f);                              \
                        }                                                                                       \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (; r + R <= r1; r += R) TILE(W, X, bias, Y, cols, ldy, r, k0, k1, k0 > 0, R, T);                \
            for (; r < r1; r++) TILE(W, X, bias, Y, cols, ldy, r, k0, k1, k0 > 0, 1, T);                        \
        }                                                                                                       \
    }
SMALL_RANGE(small_range_f32, float, small_tile_f32)
SMALL_RANGE(small_range_f16, uint16_t, small_tile_f16)

#define SMALL_DISPATCH(NAME, WT, RANGE)                                                                          \
    AVX512 static void NAME(const WT *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t r0, size_t r1) { \
        switch (T) {                                                                                            \
        case 1: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 1); break;                                              \
        case 2: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 2); break;                                              \
        case 3: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 3); break;                                              \
        case 4: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 4); break;                                              \
        case 5: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 5); break;                                              \
        case 6: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 6); break;                                              \
        case 7: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 7); break;                                              \
        default: RANGE(W, X, bias, Y, cols, ldy, r0, r1, 8); break;                                             \
        }                                                                                                       \
    }
SMALL_DISPATCH(small_f32_avx512, float, small_range_f32)
SMALL_DISPATCH(small_f16_avx512, uint16_t, small_range_f16)
#endif

int g2w_matmul_small_available(int type_code, size_t T) {
#if G2W_X86
    return (type_code == G2W_TYPE_F32 || type_code == G2W_TYPE_F16) && T >= 1 && T <= G2W_SMALL_BATCH_MAX && use_avx512();
#else
    (void)type_code; (void)T;
    return 0;
#endif
}

int g2w_matmul_small(int type_code, const void *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy,
                     size_t r0, size_t r1) {
    if (!g2w_matmul_small_available(type_code, T)) return 0;
#if G2W_X86
    if (type_code == G2W_TYPE_F16) small_f16_avx512(W, X, bias, Y, T, cols, ldy, r0, r1);
    else small_f32_avx512(W, X, bias, Y, T, cols, ldy, r0, r1);
    return 1;
#else
    return 0;
#endif
}
