// Matrix products of inference: the matrix-vector product of decoding (four far-apart prefetched
// streams per thread), the batched products of a prompt (AVX2 3 x 4 tile, AVX-512 4 x 4 tile and
// the packed 8 x 32 outer-product GEMM), and the strided GEMM of prompt attention. Training's
// general product is in gemm.c and reuses this file's panel packing.
#include "cg2w.h"
#include "half.h"
#include "simd.h"
#include "panel.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Portable matvec / matmul (also the tail handling of the vector versions).
static inline float dot_f32(const float *a, const float *b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) { s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]; s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3]; }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static inline float dot_f16(const uint16_t *w, const float *x, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += half_to_float(w[i]) * x[i];
    return s;
}

static void matvec_f32_generic(const float *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = dot_f32(W + r * cols, x, cols) + (bias ? bias[r] : 0.0f);
}
static void matvec_f16_generic(const uint16_t *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = dot_f16(W + r * cols, x, cols) + (bias ? bias[r] : 0.0f);
}
static void matmul_f32_generic(const float *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < T; t++) matvec_f32_generic(W, X + t * cols, bias, Y + t * ldy, cols, r0, r1);
}
static void matmul_f16_generic(const uint16_t *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < T; t++) matvec_f16_generic(W, X + t * cols, bias, Y + t * ldy, cols, r0, r1);
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C
#if G2W_X86

AVX2 static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
AVX2 static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

// Four rows at a time share each load of x; two accumulators per row hide FMA latency. Software
// prefetch PF elements ahead on each row keeps enough cache lines in flight for DRAM streaming.
// (For f32: the rows the streams kernel below leaves, and the edges of the AVX2 matmul tile.)
#define MATVEC_AVX2(NAME, WT, LOAD, DOT_TAIL)                                                                      \
    AVX2 static void NAME(const WT *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) { \
        size_t r = r0;                                                                                               \
        size_t n16 = cols & ~(size_t)15, n8 = cols & ~(size_t)7;                                                     \
        for (; r + 4 <= r1; r += 4) {                                                                                \
            const WT *w0 = W + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;                          \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;        \
            size_t k = 0;                                                                                            \
            for (; k < n16; k += 16) {                                                                               \
                _mm_prefetch((const char *)(w0 + k + PF), _MM_HINT_T0); _mm_prefetch((const char *)(w1 + k + PF), _MM_HINT_T0); \
                _mm_prefetch((const char *)(w2 + k + PF), _MM_HINT_T0); _mm_prefetch((const char *)(w3 + k + PF), _MM_HINT_T0); \
                __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);                                 \
                a0 = _mm256_fmadd_ps(LOAD(w0 + k), xa, a0); b0 = _mm256_fmadd_ps(LOAD(w0 + k + 8), xb, b0);         \
                a1 = _mm256_fmadd_ps(LOAD(w1 + k), xa, a1); b1 = _mm256_fmadd_ps(LOAD(w1 + k + 8), xb, b1);         \
                a2 = _mm256_fmadd_ps(LOAD(w2 + k), xa, a2); b2 = _mm256_fmadd_ps(LOAD(w2 + k + 8), xb, b2);         \
                a3 = _mm256_fmadd_ps(LOAD(w3 + k), xa, a3); b3 = _mm256_fmadd_ps(LOAD(w3 + k + 8), xb, b3);         \
            }                                                                                                        \
            for (; k < n8; k += 8) {                                                                                 \
                __m256 xa = _mm256_loadu_ps(x + k);                                                                  \
                a0 = _mm256_fmadd_ps(LOAD(w0 + k), xa, a0); a1 = _mm256_fmadd_ps(LOAD(w1 + k), xa, a1);             \
                a2 = _mm256_fmadd_ps(LOAD(w2 + k), xa, a2); a3 = _mm256_fmadd_ps(LOAD(w3 + k), xa, a3);             \
            }                                                                                                        \
            float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));                              \
            float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));                              \
            if (k < cols) {                                                                                          \
                s0 += DOT_TAIL(w0 + k, x + k, cols - k); s1 += DOT_TAIL(w1 + k, x + k, cols - k);                    \
                s2 += DOT_TAIL(w2 + k, x + k, cols - k); s3 += DOT_TAIL(w3 + k, x + k, cols - k);                    \
            }                                                                                                        \
            y[r] = s0 + (bias ? bias[r] : 0.0f); y[r + 1] = s1 + (bias ? bias[r + 1] : 0.0f);                       \
            y[r + 2] = s2 + (bias ? bias[r + 2] : 0.0f); y[r + 3] = s3 + (bias ? bias[r + 3] : 0.0f);               \
        }                                                                                                            \
        for (; r < r1; r++) {                                                                                        \
            const WT *w0 = W + r * cols;                                                                             \
            __m256 a0 = _mm256_setzero_ps();                                                                         \
            size_t k = 0;                                                                                            \
            for (; k < n8; k += 8) a0 = _mm256_fmadd_ps(LOAD(w0 + k), _mm256_loadu_ps(x + k), a0);                 \
            float s0 = hsum(a0);                                                                                     \
            if (k < cols) s0 += DOT_TAIL(w0 + k, x + k, cols - k);                                                   \
            y[r] = s0 + (bias ? bias[r] : 0.0f);                                                                     \
        }                                                                                                            \
    }

#define PF 384
MATVEC_AVX2(matvec_f32_avx2, float, load8_f32, dot_f32)
#undef PF

// f16 rows: one row at a time, four accumulators over a cache line (32 halves) per step, with a
// software prefetch 4 KB ahead on the single sequential stream (~15 % faster than four adjacent
// rows interleaved). For the rows the streams kernel below leaves, and the AVX2 matmul's edges.
AVX2 static void matvec_f16_avx2(const uint16_t *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) {
    size_t n32 = cols & ~(size_t)31, n8 = cols & ~(size_t)7;
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *w = W + r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t k = 0;
        for (; k < n32; k += 32) {
            _mm_prefetch((const char *)(w + k) + 4096, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(load8_f16(w + k), _mm256_loadu_ps(x + k), a0);
            a1 = _mm256_fmadd_ps(load8_f16(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
            a2 = _mm256_fmadd_ps(load8_f16(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
            a3 = _mm256_fmadd_ps(load8_f16(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
        }
        for (; k < n8; k += 8) a0 = _mm256_fmadd_ps(load8_f16(w + k), _mm256_loadu_ps(x + k), a0);
        float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        if (k < cols) s += dot_f16(w + k, x + k, cols - k);
        y[r] = s + (bias ? bias[r] : 0.0f);
    }
}

// Decoding's kernel: rows [r0, r1) are read as four sequential streams far apart (the quarters of
// the range, one row of each at a time) with a software prefetch PF_STREAM bytes ahead on each.
// The hardware prefetchers follow several streams at once, so four far-apart streams keep more
// lines in flight than one: measured on the 124M decoding step, one core, f16 went from 0.83-0.85
// of a plain read of the same mapped bytes (`tools/matvec_stream.c`) to 0.96-0.97; with two
// threads, tg128 went up 13 % (f16) and 8 % (f32). Two accumulators per stream cover FMA latency.
// Rows left over (fewer than four, or the range's last r mod 4) and rows whose length is not a
// whole number of cache lines take the kernels above. The prefetch distance is the machine's
// (g2w_prefetch_bytes, isa.c: 1 KB on Sapphire Rapids, 2 KB on AMD Zen 4/5).
#define MATVEC_STREAMS_AVX2(NAME, WT, LOAD, REST)                                                                  \
    AVX2 static void NAME(const WT *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) { \
        const size_t line = 64 / sizeof(WT); /* elements per cache line */                                        \
        size_t per = (r1 - r0) / 4;                                                                                \
        if (cols % line != 0 || per == 0) { REST(W, x, bias, y, cols, r0, r1); return; }                           \
        const size_t PF_STREAM = g2w_prefetch_bytes();                                                             \
        for (size_t i = 0; i < per; i++) {                                                                         \
            size_t r = r0 + i;                                                                                     \
            const WT *w0 = W + r * cols, *w1 = w0 + per * cols, *w2 = w1 + per * cols, *w3 = w2 + per * cols;     \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;        \
            for (size_t k = 0; k < cols; k += line) {                                                              \
                _mm_prefetch((const char *)(w0 + k) + PF_STREAM, _MM_HINT_T0);                                     \
                _mm_prefetch((const char *)(w1 + k) + PF_STREAM, _MM_HINT_T0);                                     \
                _mm_prefetch((const char *)(w2 + k) + PF_STREAM, _MM_HINT_T0);                                     \
                _mm_prefetch((const char *)(w3 + k) + PF_STREAM, _MM_HINT_T0);                                     \
                for (size_t j = k; j < k + line; j += 16) {                                                        \
                    __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);                           \
                    a0 = _mm256_fmadd_ps(LOAD(w0 + j), x0, a0); a1 = _mm256_fmadd_ps(LOAD(w0 + j + 8), x1, a1);     \
                    b0 = _mm256_fmadd_ps(LOAD(w1 + j), x0, b0); b1 = _mm256_fmadd_ps(LOAD(w1 + j + 8), x1, b1);     \
                    c0 = _mm256_fmadd_ps(LOAD(w2 + j), x0, c0); c1 = _mm256_fmadd_ps(LOAD(w2 + j + 8), x1, c1);     \
                    d0 = _mm256_fmadd_ps(LOAD(w3 + j), x0, d0); d1 = _mm256_fmadd_ps(LOAD(w3 + j + 8), x1, d1);     \
                }                                                                                                  \
            }                                                                                                      \
            y[r] = hsum(_mm256_add_ps(a0, a1)) + (bias ? bias[r] : 0.0f);                                          \
            y[r + per] = hsum(_mm256_add_ps(b0, b1)) + (bias ? bias[r + per] : 0.0f);                              \
            y[r + 2 * per] = hsum(_mm256_add_ps(c0, c1)) + (bias ? bias[r + 2 * per] : 0.0f);                      \
            y[r + 3 * per] = hsum(_mm256_add_ps(d0, d1)) + (bias ? bias[r + 3 * per] : 0.0f);                      \
        }                                                                                                          \
        if (4 * per < r1 - r0) REST(W, x, bias, y, cols, r0 + 4 * per, r1);                                        \
    }

MATVEC_STREAMS_AVX2(matvec_f32_streams_avx2, float, load8_f32, matvec_f32_avx2)
MATVEC_STREAMS_AVX2(matvec_f16_streams_avx2, uint16_t, load8_f16, matvec_f16_avx2)

// Register tile: 3 rows of W x 4 rows of X = 12 accumulators (+3 W vectors + 1 X vector = 16 ymm).
// W rows are reused across all T rows of X while they sit in L1/L2; X blocks of 4 rows stay in L1.
#define MATMUL_AVX2(NAME, WT, LOAD, DOT_TAIL)                                                                        \
    AVX2 static void NAME(const WT *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, \
                          size_t r0, size_t r1) {                                                                      \
        size_t n8 = cols & ~(size_t)7;                                                                                 \
        const size_t RB = 48; /* rows of W per cache block */                                                        \
        for (size_t rb = r0; rb < r1; rb += RB) {                                                                      \
            size_t re = rb + RB < r1 ? rb + RB : r1;                                                                   \
            size_t t = 0;                                                                                              \
            for (; t + 4 <= T; t += 4) {                                                                               \
                const float *x0 = X + t * cols, *x1 = x0 + cols, *x2 = x1 + cols, *x3 = x2 + cols;                     \
                size_t r = rb;                                                                                         \
                for (; r + 3 <= re; r += 3) {                                                                          \
                    const WT *w0 = W + r * cols, *w1 = w0 + cols, *w2 = w1 + cols;                                     \
                    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;          \
                    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;                          \
                    size_t k = 0;                                                                                      \
                    for (; k < n8; k += 8) {                                                                           \
                        __m256 v0 = LOAD(w0 + k), v1 = LOAD(w1 + k), v2 = LOAD(w2 + k), xv;                            \
                        xv = _mm256_loadu_ps(x0 + k);                                                                  \
                        c00 = _mm256_fmadd_ps(xv, v0, c00); c01 = _mm256_fmadd_ps(xv, v1, c01); c02 = _mm256_fmadd_ps(xv, v2, c02); \
                        xv = _mm256_loadu_ps(x1 + k);                                                                  \
                        c10 = _mm256_fmadd_ps(xv, v0, c10); c11 = _mm256_fmadd_ps(xv, v1, c11); c12 = _mm256_fmadd_ps(xv, v2, c12); \
                        xv = _mm256_loadu_ps(x2 + k);                                                                  \
                        c20 = _mm256_fmadd_ps(xv, v0, c20); c21 = _mm256_fmadd_ps(xv, v1, c21); c22 = _mm256_fmadd_ps(xv, v2, c22); \
                        xv = _mm256_loadu_ps(x3 + k);                                                                  \
                        c30 = _mm256_fmadd_ps(xv, v0, c30); c31 = _mm256_fmadd_ps(xv, v1, c31); c32 = _mm256_fmadd_ps(xv, v2, c32); \
                    }                                                                                                  \
                    float s[4][3] = {{hsum(c00), hsum(c01), hsum(c02)}, {hsum(c10), hsum(c11), hsum(c12)},            \
                                     {hsum(c20), hsum(c21), hsum(c22)}, {hsum(c30), hsum(c31), hsum(c32)}};           \
                    const float *xs[4] = {x0, x1, x2, x3};                                                             \
                    const WT *ws[3] = {w0, w1, w2};                                                                    \
                    for (int i = 0; i < 4; i++)                                                                        \
                        for (int j = 0; j < 3; j++) {                                                                  \
                            float v = s[i][j];                                                                         \
                            if (k < cols) v += DOT_TAIL(ws[j] + k, xs[i] + k, cols - k);                               \
                            Y[(t + i) * ldy + r + j] = v + (bias ? bias[r + j] : 0.0f);                                \
                        }                                                                                              \
                }                                                                                                      \
                for (int i = 0; i < 4; i++) NAME##_rows(W, X + (t + i) * cols, bias, Y + (t + i) * ldy, cols, r, re);   \
            }                                                                                                          \
            for (; t < T; t++) NAME##_rows(W, X + t * cols, bias, Y + t * ldy, cols, rb, re);                          \
        }                                                                                                              \
    }

// Single-row helpers used for edges of the tile.
#define matmul_f32_avx2_rows matvec_f32_avx2
#define matmul_f16_avx2_rows matvec_f16_avx2
MATMUL_AVX2(matmul_f32_avx2, float, load8_f32, dot_f32)
MATMUL_AVX2(matmul_f16_avx2, uint16_t, load8_f16, dot_f16)
#endif

// ---------------------------------------------------------------------------------------------
// AVX-512F batched matmul (prompt path): twice the FMA width of AVX2.
//   Y[t, r] = bias[r] + sum_k X[t, k] W[r, k]      W: [rows, cols] f32, X: [T, cols], Y: [T, ldy]
// Register tile: 4 rows of W x 4 rows of X = 16 zmm accumulators; per 16 columns, 4 W loads and
// 4 X loads feed 16 FMAs. Rows of W are taken in blocks of RB512 (kept in L2) against all T rows,
// columns in chunks of KB512 (kept in L1). A chunk not a multiple of 16 ends with one masked step
// (masked-off lanes load as 0).
#if G2W_X86
enum { RB512 = 48 };

AVX512 static inline float hsum512(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return hsum(h);
}

AVX512 static inline void tile512_4x4(const float *W, const float *X, size_t cols, size_t kn, float *Y, size_t ldy, const float *bias,
                                      __mmask16 tail, int accumulate) {
    const float *w0 = W, *w1 = W + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    const float *x0 = X, *x1 = X + cols, *x2 = x1 + cols, *x3 = x2 + cols;
    __m512 c[4][4];
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) c[i][j] = _mm512_setzero_ps();
    size_t n16 = kn & ~(size_t)15, k = 0;
#define STEP512(LOADW, LOADX)                                                                          \
    {                                                                                                  \
        __m512 v0 = LOADW(w0 + k), v1 = LOADW(w1 + k), v2 = LOADW(w2 + k), v3 = LOADW(w3 + k), xv;      \
        xv = LOADX(x0 + k);                                                                            \
        c[0][0] = _mm512_fmadd_ps(xv, v0, c[0][0]); c[0][1] = _mm512_fmadd_ps(xv, v1, c[0][1]);        \
        c[0][2] = _mm512_fmadd_ps(xv, v2, c[0][2]); c[0][3] = _mm512_fmadd_ps(xv, v3, c[0][3]);        \
        xv = LOADX(x1 + k);                                                                            \
        c[1][0] = _mm512_fmadd_ps(xv, v0, c[1][0]); c[1][1] = _mm512_fmadd_ps(xv, v1, c[1][1]);        \
        c[1][2] = _mm512_fmadd_ps(xv, v2, c[1][2]); c[1][3] = _mm512_fmadd_ps(xv, v3, c[1][3]);        \
        xv = LOADX(x2 + k);                                                                            \
        c[2][0] = _mm512_fmadd_ps(xv, v0, c[2][0]); c[2][1] = _mm512_fmadd_ps(xv, v1, c[2][1]);        \
        c[2][2] = _mm512_fmadd_ps(xv, v2, c[2][2]); c[2][3] = _mm512_fmadd_ps(xv, v3, c[2][3]);        \
        xv = LOADX(x3 + k);                                                                            \
        c[3][0] = _mm512_fmadd_ps(xv, v0, c[3][0]); c[3][1] = _mm512_fmadd_ps(xv, v1, c[3][1]);        \
        c[3][2] = _mm512_fmadd_ps(xv, v2, c[3][2]); c[3][3] = _mm512_fmadd_ps(xv, v3, c[3][3]);        \
    }
#define LOAD512(p) _mm512_loadu_ps(p)
#define LOAD512_TAIL(p) _mm512_maskz_loadu_ps(tail, p)
    for (; k < n16; k += 16) STEP512(LOAD512, LOAD512)
    if (tail) STEP512(LOAD512_TAIL, LOAD512_TAIL)
#undef LOAD512
#undef LOAD512_TAIL
#undef STEP512
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            float v = hsum512(c[i][j]);
            Y[i * ldy + j] = accumulate ? Y[i * ldy + j] + v : v + (bias ? bias[j] : 0.0f);
        }
}

// One row of X against one row of W (the edges of the tiling).
AVX512 static inline float dot512(const float *w, const float *x, size_t kn, __mmask16 tail) {
    __m512 a = _mm512_setzero_ps(), b = a;
    size_t n16 = kn & ~(size_t)15, k = 0;
    for (; k + 32 <= n16; k += 32) {
        a = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a);
        b = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), b);
    }
    for (; k < n16; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a);
    if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w + k), _mm512_maskz_loadu_ps(tail, x + k), a);
    return hsum512(_mm512_add_ps(a, b));
}

// Rows [0, rn) of the f32 block Wb (row stride cols) against all T rows of X; Yb and bb are
// already offset to the block's first row. The columns go in chunks of KB512 so that a tile's
// 4 rows of X and 4 rows of W (2 x 16 KB) stay in L1; partial sums are added to Y.
enum { KB512 = 1024 };
AVX512 static void matmul512_block(const float *Wb, const float *X, const float *bb, float *Yb, size_t T, size_t cols, size_t ldy, size_t rn) {
    size_t r4 = rn & ~(size_t)3, t4 = T & ~(size_t)3;
    for (size_t k0 = 0; k0 < cols; k0 += KB512) {
        size_t kn = cols - k0 < KB512 ? cols - k0 : KB512;
        __mmask16 tail = (__mmask16)((1u << (kn & 15)) - 1);
        int acc = k0 > 0;
        const float *Wk = Wb + k0, *Xk = X + k0;
        for (size_t t = 0; t < t4; t += 4) {
            for (size_t r = 0; r < r4; r += 4) tile512_4x4(Wk + r * cols, Xk + t * cols, cols, kn, Yb + t * ldy + r, ldy, bb ? bb + r : NULL, tail, acc);
            for (size_t r = r4; r < rn; r++)
                for (size_t i = 0; i < 4; i++) {
                    float v = dot512(Wk + r * cols, Xk + (t + i) * cols, kn, tail);
                    float *y = Yb + (t + i) * ldy + r;
                    *y = acc ? *y + v : v + (bb ? bb[r] : 0.0f);
                }
        }
        for (size_t t = t4; t < T; t++)
            for (size_t r = 0; r < rn; r++) {
                float v = dot512(Wk + r * cols, Xk + t * cols, kn, tail);
                float *y = Yb + t * ldy + r;
                *y = acc ? *y + v : v + (bb ? bb[r] : 0.0f);
            }
    }
}

AVX512 static void matmul_f32_avx512(const float *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy,
                                     size_t r0, size_t r1) {
    for (size_t rb = r0; rb < r1; rb += RB512) {
        size_t rn = r1 - rb < RB512 ? r1 - rb : RB512;
        matmul512_block(W + rb * cols, X, bias ? bias + rb : NULL, Y + rb, T, cols, ldy, rn);
    }
}

// Packed outer-product GEMM for many rows of X (PACKED_MIN_ROWS_*). For each panel of NRP = 32 rows of W
// and KCP columns, W is packed k-major (Bp[k][32], converted from f16 if needed, zero-padded past
// the last row), then every 8 rows of X run through a 8 x 32 register tile: per column k, two
// loads of Bp, eight broadcasts of X[t + i, k] and 16 FMAs into 16 zmm accumulators. No
// horizontal sums; outputs are 32 contiguous floats of a row of Y (masked at the last panel).
enum { NRP = 32, KCP = 512, MRP = 8, PFP = 2 };  // PFP: packing prefetches the panel PFP panels ahead
// Where the packed kernel takes over (measured on the 124M layers, interleaved runs): for f16 from
// one 8-row block of X (16-token prompts 6-20 % faster, 8 tokens the same as the blocks converted
// to f32 it replaces; 2-7 rows use the AVX2 kernel converting in registers); for f32 from 32 rows
// (at 16 rows the 4 x 4 tile above is ~12 % faster).
enum { PACKED_MIN_ROWS_F16 = 8, PACKED_MIN_ROWS_F32 = 32 };


// W is f32 (Wf) or f16 (Wh); rows [r0, r1).
// Element (r, k) of an f32 W is Wf[r * rs + k * ks] (rs = cols, ks = 1 for a row-major matrix;
// any strides for the attention products); f16 W is row-major. X rows are ldx apart.
// Causal attention skips work: with out_limit > 0, Y[t, r] is needed only for r < out_limit + t
// (a block of 8 rows of X skips the panels past its last row's limit; those outputs are left
// unwritten); with in_limit > 0, X[t, k] is 0 for k >= in_limit + t (a block stops at its last
// row's limit). 0 means no limit.
AVX512 static int matmul_packed_strided_avx512(const float *Wf, size_t rs, size_t ks, const uint16_t *Wh, const float *X, size_t ldx,
                                                const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t r0, size_t r1,
                                                size_t out_limit, size_t in_limit) {
    float *Bp = aligned_alloc(64, KCP * NRP * sizeof(float));  // 64 KB: the packed panel (L1/L2)
    if (!Bp) return 0;
    for (size_t rb = r0; rb < r1; rb += NRP) {
        size_t nr = r1 - rb < NRP ? r1 - rb : NRP;
        __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
        __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
        for (size_t k0 = 0; k0 < cols; k0 += KCP) {
            size_t kc = cols - k0 < KCP ? cols - k0 : KCP;
            size_t ahead_nr = r1 - rb > PFP * NRP ? (r1 - rb - PFP * NRP < NRP ? r1 - rb - PFP * NRP : NRP) : 0;
            g2w_pack_panel_avx512(Wf, rs, ks, Wh, cols, rb, nr, k0, kc, Bp, ahead_nr);
            for (size_t t = 0; t < T; t += MRP) {
                size_t mr = T - t < MRP ? T - t : MRP;
                if (out_limit && rb >= out_limit + t + mr - 1) continue;  // no row of this block reaches this panel
                size_t kn = kc;
                if (in_limit) {
                    size_t end = in_limit + t + mr - 1;  // this block's X is 0 from column `end`
                    if (end <= k0) continue;          // k0 > 0 here (in_limit >= 1): nothing to add
                    if (end - k0 < kn) kn = end - k0;
                }
                tile_8x32(Bp, kn, X + t * ldx + k0, ldx, 1, mr, Y + t * ldy + rb, ldy, m0, m1, bias ? bias + rb : NULL, k0 > 0);
            }
        }
    }
    free(Bp);
    return 1;
}

AVX512 static void matmul_packed_avx512(const float *Wf, const uint16_t *Wh, const float *X, const float *bias, float *Y, size_t T, size_t cols,
                                        size_t ldy, size_t r0, size_t r1) {
    if (matmul_packed_strided_avx512(Wf, cols, 1, Wh, X, cols, bias, Y, T, cols, ldy, r0, r1, 0, 0)) return;
    if (Wf) matmul_f32_avx512(Wf, X, bias, Y, T, cols, ldy, r0, r1); else matmul_f16_avx2(Wh, X, bias, Y, T, cols, ldy, r0, r1);
}

#endif

int g2w_has_fast_gemm(void) {
#if G2W_X86
    return use_avx512();
#else
    return 0;
#endif
}

void g2w_gemm_strided(const float *W, size_t rs, size_t ks, const float *X, size_t ldx, float *Y, size_t ldy, size_t T, size_t n, size_t rows,
                      size_t out_limit, size_t in_limit) {
#if G2W_X86
    if (use_avx512() && matmul_packed_strided_avx512(W, rs, ks, NULL, X, ldx, NULL, Y, T, n, ldy, 0, rows, out_limit, in_limit)) return;
#endif
    for (size_t t = 0; t < T; t++)
        for (size_t r = 0; r < rows; r++) {
            float s = 0;
            for (size_t k = 0; k < n; k++) s += X[t * ldx + k] * W[r * rs + k * ks];
            Y[t * ldy + r] = s;
        }
}

void g2w_matvec_f32(const float *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) {
#if G2W_X86
    if (use_avx2()) { matvec_f32_streams_avx2(W, x, bias, y, cols, r0, r1); return; }
#endif
    matvec_f32_generic(W, x, bias, y, cols, r0, r1);
}
void g2w_matvec_f16(const uint16_t *W, const float *x, const float *bias, float *y, size_t cols, size_t r0, size_t r1) {
#if G2W_X86
    if (use_avx2()) { matvec_f16_streams_avx2(W, x, bias, y, cols, r0, r1); return; }
#endif
    matvec_f16_generic(W, x, bias, y, cols, r0, r1);
}
void g2w_matmul_f32(const float *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t r0, size_t r1) {
#if G2W_X86
    if (use_avx512()) {
        if (T >= PACKED_MIN_ROWS_F32) matmul_packed_avx512(W, NULL, X, bias, Y, T, cols, ldy, r0, r1); else matmul_f32_avx512(W, X, bias, Y, T, cols, ldy, r0, r1);
        return;
    }
    if (use_avx2()) { matmul_f32_avx2(W, X, bias, Y, T, cols, ldy, r0, r1); return; }
#endif
    matmul_f32_generic(W, X, bias, Y, T, cols, ldy, r0, r1);
}
void g2w_matmul_f16(const uint16_t *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t r0, size_t r1) {
#if G2W_X86
    if (use_avx512()) {
        if (T >= PACKED_MIN_ROWS_F16) matmul_packed_avx512(NULL, W, X, bias, Y, T, cols, ldy, r0, r1); else matmul_f16_avx2(W, X, bias, Y, T, cols, ldy, r0, r1);
        return;
    }
    if (use_avx2()) { matmul_f16_avx2(W, X, bias, Y, T, cols, ldy, r0, r1); return; }
#endif
    matmul_f16_generic(W, X, bias, Y, T, cols, ldy, r0, r1);
}
