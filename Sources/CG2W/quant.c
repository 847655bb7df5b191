// Block-quantized weights (spec/g2w.md, "Quantized element types"): q8_0 and q4_0, 32 weights per
// block, one binary16 scale per block, quants of a tensor stored first and its scales after them.
//
//   quantize      ggml's reference rounding, bit for bit (the converter)
//   dequantize    rows to f32 (embedding lookups, the reference path, the prompt path's panels)
//   prepare       the activation vector of a decoding step quantized to int8 once per product:
//                 per block of 32, dx = max|x| / 127, xq = round(x / dx) (ggml's q8_0 rule, f32 scale)
//   matvec        integer dot products per block, scaled by dw * dx and summed in f32: AVX-512 VNNI
//                 (vpdpbusd), AVX2 (pmaddubsw / pmaddwd), portable C; four far-apart row streams
//                 with software prefetch, as the f16 kernel
//   matmul        the prompt path: groups of rows dequantized to f32, then the f32 kernels
//
// The element-type traits table at the end (g2w_type) is the one place a caller picks these.
#include "cg2w.h"
#include "half.h"
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF  // the quantizers must round exactly as ggml's reference (no fused x * id + 8.5)

enum { QK = 32 };

// ---------------------------------------------------------------------------------------------
// Quantization (ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref) and dequantization.

void g2w_quantize_q8_0(const float *src, size_t nblocks, int8_t *quants, uint16_t *scales) {
    for (size_t b = 0; b < nblocks; b++) {
        const float *x = src + b * QK;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) { float a = fabsf(x[j]); if (a > amax) amax = a; }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        scales[b] = float_to_half(d);
        for (int j = 0; j < QK; j++) {
            const float v = x[j] * id;
            quants[b * QK + j] = isfinite(v) ? (int8_t)roundf(v) : 0;  // 1/d overflowed: the scale is a binary16 zero anyway
        }
    }
}

void g2w_quantize_q4_0(const float *src, size_t nblocks, uint8_t *quants, uint16_t *scales) {
    for (size_t b = 0; b < nblocks; b++) {
        const float *x = src + b * QK;
        // The first element of largest magnitude, with its sign (gguf's argmax; in a block of zeros
        // that is x[0], so d = -0 or +0 by x[0]'s sign, where ggml's C code always gives -0).
        float amax = fabsf(x[0]), max = x[0];
        for (int j = 1; j < QK; j++) { float a = fabsf(x[j]); if (amax < a) { amax = a; max = x[j]; } }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        scales[b] = float_to_half(d);
        for (int j = 0; j < QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[QK / 2 + j] * id;
            const float y0 = x0 + 8.5f, y1 = x1 + 8.5f;
            int i0 = isfinite(y0) ? (int8_t)y0 : 0, i1 = isfinite(y1) ? (int8_t)y1 : 0;
            uint8_t q0 = (uint8_t)(i0 < 15 ? i0 : 15), q1 = (uint8_t)(i1 < 15 ? i1 : 15);
            quants[b * (QK / 2) + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

size_t g2w_first_nonfinite_f16(const uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) if ((h[i] & 0x7C00) == 0x7C00) return i;
    return n;
}

// Elements [e0, e0 + n) of a quantized tensor (e0 and n multiples of 32) to f32.
static void dequant_q8_0(const int8_t *q, const uint16_t *s, size_t e0, size_t n, float *dst) {
    for (size_t b = 0; b < n / QK; b++) {
        size_t g = e0 / QK + b;
        float d = half_to_float(s[g]);
        for (int j = 0; j < QK; j++) dst[b * QK + j] = d * (float)q[g * QK + j];
    }
}
static void dequant_q4_0(const uint8_t *q, const uint16_t *s, size_t e0, size_t n, float *dst) {
    for (size_t b = 0; b < n / QK; b++) {
        size_t g = e0 / QK + b;
        float d = half_to_float(s[g]);
        for (int j = 0; j < QK / 2; j++) {
            uint8_t v = q[g * (QK / 2) + j];
            dst[b * QK + j] = d * (float)((int)(v & 0x0F) - 8);
            dst[b * QK + QK / 2 + j] = d * (float)((int)(v >> 4) - 8);
        }
    }
}

#if G2W_X86
AVX512 static void dequant_q8_0_avx512(const int8_t *q, const uint16_t *s, size_t e0, size_t n, float *dst) {
    for (size_t b = 0; b < n / QK; b++) {
        size_t g = e0 / QK + b;
        __m512 d = _mm512_set1_ps(half_to_float(s[g]));
        const int8_t *p = q + g * QK;
        __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 16))));
        _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(d, lo));
        _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(d, hi));
    }
}
AVX512 static void dequant_q4_0_avx512(const uint8_t *q, const uint16_t *s, size_t e0, size_t n, float *dst) {
    const __m512i mask = _mm512_set1_epi32(0x0F), eight = _mm512_set1_epi32(8);
    for (size_t b = 0; b < n / QK; b++) {
        size_t g = e0 / QK + b;
        __m512 d = _mm512_set1_ps(half_to_float(s[g]));
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + g * (QK / 2))));
        __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, mask), eight));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight));
        _mm512_storeu_ps(dst + b * QK, _mm512_mul_ps(d, lo));
        _mm512_storeu_ps(dst + b * QK + 16, _mm512_mul_ps(d, hi));
    }
}
#endif

// Where a [rows, cols] tensor's scales start: right after its quants.
static inline const uint16_t *scales_q8_0(const void *W, size_t rows, size_t cols) { return (const uint16_t *)((const uint8_t *)W + rows * cols); }
static inline const uint16_t *scales_q4_0(const void *W, size_t rows, size_t cols) { return (const uint16_t *)((const uint8_t *)W + rows * cols / 2); }

static void dequant_elements_q8_0(const void *W, size_t rows, size_t cols, size_t e0, size_t n, float *dst) {
    const uint16_t *s = scales_q8_0(W, rows, cols);
#if G2W_X86
    if (use_avx512()) { dequant_q8_0_avx512(W, s, e0, n, dst); return; }
#endif
    dequant_q8_0(W, s, e0, n, dst);
}
static void dequant_elements_q4_0(const void *W, size_t rows, size_t cols, size_t e0, size_t n, float *dst) {
    const uint16_t *s = scales_q4_0(W, rows, cols);
#if G2W_X86
    if (use_avx512()) { dequant_q4_0_avx512(W, s, e0, n, dst); return; }
#endif
    dequant_q4_0(W, s, e0, n, dst);
}
void g2w_dequantize_q8_0(const void *W, size_t rows, size_t cols, size_t r0, size_t r1, float *dst) { dequant_elements_q8_0(W, rows, cols, r0 * cols, (r1 - r0) * cols, dst); }
void g2w_dequantize_q4_0(const void *W, size_t rows, size_t cols, size_t r0, size_t r1, float *dst) { dequant_elements_q4_0(W, rows, cols, r0 * cols, (r1 - r0) * cols, dst); }

// ---------------------------------------------------------------------------------------------
// Activations. The prepared vector: float dx[nb], float cx[nb] (per block, 8 dx sum(xq) for q4_0:
// the nibbles' offset of 8; 128 dx sum(xq) for q8_0: the offset of the weights made unsigned for
// vpdpbusd), then the int8 xq at a 64-byte aligned offset.
// For q8_0, xq is in element order. For q4_0, each group of four whole blocks is stored as the
// low halves (elements 0-15) of its four blocks, then their high halves (16-31): the order in
// which a 64-byte load of four blocks' nibbles unpacks (low nibbles, then high nibbles); blocks
// after the last whole group stay in element order.
static inline size_t xq_offset(size_t nb) { return (2 * nb * sizeof(float) + 63) & ~(size_t)63; }
size_t g2w_prepared_bytes_q8(size_t cols) { return xq_offset(cols / QK) + cols; }

static inline size_t q4_position(size_t nb4, size_t b, size_t j) {  // xq index of element j of block b (q4_0 order)
    if (b >= nb4) return b * QK + j;
    return (b / 4) * 128 + (j < 16 ? 0 : 64) + (b % 4) * 16 + (j & 15);
}

static void prepare_q8(const float *x, size_t cols, void *out, int q4_order) {
    size_t nb = cols / QK, nb4 = q4_order ? nb & ~(size_t)3 : 0;
    float *dx = out, *cx = dx + nb;
    int8_t *xq = (int8_t *)out + xq_offset(nb);
    for (size_t b = 0; b < nb; b++) {
        const float *v = x + b * QK;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) { float a = fabsf(v[j]); if (a > amax) amax = a; }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const float t = v[j] * id;
            int q = isfinite(t) ? (int)roundf(t) : 0;
            sum += q;
            xq[q4_order ? q4_position(nb4, b, (size_t)j) : b * QK + j] = (int8_t)q;
        }
        dx[b] = d;
        cx[b] = (q4_order ? 8.0f : 128.0f) * d * (float)sum;  // the offset of the unsigned operand of vpdpbusd
    }
}

#if G2W_X86
// The same, eight lanes at a time, with the same results bit for bit: the same d and 1/d, the
// same products, roundf's rounding (half away from zero) done exactly (trunc, then +1 where the
// dropped fraction is >= 0.5), non-finite products as 0, NaN inputs skipped by the maximum as
// in the loop above. It runs on the calling thread before every decoding product, so it matters:
// the scalar loop cost ~25 us per layer of GPT-2 124M.
AVX2 static void prepare_q8_avx2(const float *x, size_t cols, void *out, int q4_order) {
    size_t nb = cols / QK, nb4 = q4_order ? nb & ~(size_t)3 : 0;
    float *dx = out, *cx = dx + nb;
    int8_t *xq = (int8_t *)out + xq_offset(nb);
    const __m256 signbit = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), inf = _mm256_set1_ps(INFINITY);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b = 0; b < nb; b++) {
        const float *v = x + b * QK;
        __m256 x8[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) { x8[k] = _mm256_loadu_ps(v + 8 * k); m = _mm256_max_ps(_mm256_andnot_ps(signbit, x8[k]), m); }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256i q[4], sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_mul_ps(x8[k], _mm256_set1_ps(id));
            __m256 a = _mm256_andnot_ps(signbit, t);
            __m256 r = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            r = _mm256_add_ps(r, _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, r), half, _CMP_GE_OQ), one));
            r = _mm256_and_ps(r, _mm256_cmp_ps(a, inf, _CMP_LT_OQ));  // inf or NaN -> 0
            r = _mm256_or_ps(r, _mm256_and_ps(signbit, t));
            q[k] = _mm256_cvttps_epi32(r);
            sum = _mm256_add_epi32(sum, q[k]);
        }
        __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])), order);
        if (b < nb4) {
            int8_t *g = xq + (b / 4) * 128 + (b % 4) * 16;
            _mm_storeu_si128((__m128i *)g, _mm256_castsi256_si128(bytes));
            _mm_storeu_si128((__m128i *)(g + 64), _mm256_extracti128_si256(bytes, 1));
        } else {
            _mm256_storeu_si256((__m256i *)(xq + b * QK), bytes);
        }
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        dx[b] = d;
        cx[b] = (q4_order ? 8.0f : 128.0f) * d * (float)_mm_cvtsi128_si32(s4);
    }
}
#endif

void g2w_prepare_q8_0(const float *x, size_t cols, void *out) {
#if G2W_X86
    if (use_avx2()) { prepare_q8_avx2(x, cols, out, 0); return; }
#endif
    prepare_q8(x, cols, out, 0);
}
void g2w_prepare_q4_0(const float *x, size_t cols, void *out) {
#if G2W_X86
    if (use_avx2()) { prepare_q8_avx2(x, cols, out, 1); return; }
#endif
    prepare_q8(x, cols, out, 1);
}

// ---------------------------------------------------------------------------------------------
// Portable dot products of one row (nb blocks) with the prepared activation.
static inline float row_q8_0_generic(const int8_t *w, const uint16_t *s, const float *dx, const int8_t *xq, size_t nb) {
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        int sum = 0;
        for (int j = 0; j < QK; j++) sum += (int)w[b * QK + j] * (int)xq[b * QK + j];
        acc += half_to_float(s[b]) * dx[b] * (float)sum;
    }
    return acc;
}
static inline float row_q4_0_generic(const uint8_t *w, const uint16_t *s, const float *dx, const float *cx, const int8_t *xq, size_t nb) {
    size_t nb4 = nb & ~(size_t)3;
    float acc = 0.0f;
    for (size_t b = 0; b < nb; b++) {
        int sum = 0;
        for (int j = 0; j < QK / 2; j++) {
            uint8_t v = w[b * (QK / 2) + j];
            sum += (int)(v & 0x0F) * (int)xq[q4_position(nb4, b, (size_t)j)] + (int)(v >> 4) * (int)xq[q4_position(nb4, b, (size_t)j + 16)];
        }
        float d = half_to_float(s[b]);
        acc += d * dx[b] * (float)sum - d * cx[b];
    }
    return acc;
}

static void matvec_q8_0_generic(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) {
    size_t nb = cols / QK;
    const uint16_t *S = scales_q8_0(W, rows, cols);
    const float *dx = xp;
    const int8_t *xq = (const int8_t *)xp + xq_offset(nb);
    for (size_t r = r0; r < r1; r++) y[r] = row_q8_0_generic((const int8_t *)W + r * cols, S + r * nb, dx, xq, nb) + (bias ? bias[r] : 0.0f);
}
static void matvec_q4_0_generic(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) {
    size_t nb = cols / QK;
    const uint16_t *S = scales_q4_0(W, rows, cols);
    const float *dx = xp, *cx = dx + nb;
    const int8_t *xq = (const int8_t *)xp + xq_offset(nb);
    for (size_t r = r0; r < r1; r++) y[r] = row_q4_0_generic((const uint8_t *)W + r * cols / 2, S + r * nb, dx, cx, xq, nb) + (bias ? bias[r] : 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Decoding kernels. Rows [r0, r1) as four far-apart streams (the quarters of the range, one row
// of each at a time, sharing the activation loads), prefetching pf bytes ahead on each quants
// stream (the machine's distance, g2w_prefetch_bytes: isa.c) and PFS on each scales stream;
// leftover rows one at a time.
enum { PFS = 256 };

// The start of a product: each stream's first pf bytes (and first scales) are requested at once,
// before the loop's own prefetches (which run pf ahead) take over. Without it, every matrix
// starts with latency-bound misses on all its streams: on GPT-2 124M's small q8_0/q4_0 matrices
// (0.3-2.4 MB) that cost a third of the single-thread speed.
static inline void prefetch_start(const void *q, size_t q_stride, const void *s, size_t s_stride, size_t per, size_t bytes) {
    for (int j = 0; j < 4; j++) {
        const char *p = (const char *)q + j * per * q_stride, *ps = (const char *)s + j * per * s_stride;
        for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 3);
        __builtin_prefetch(ps, 0, 3);
        __builtin_prefetch(ps + 64, 0, 3);
    }
}

// The decoding driver shared by every int8 kernel: rows [r0, r1) as four far-apart streams (the
// quarters of the range, one row of each at a time, sharing the activation's loads), each
// stream's first pf bytes requested at once, then the leftover rows one at a time. ROWS(N, ...)
// computes N rows; ROW_BYTES is a row's bytes of quants.
#define MATVEC_STREAMS(NAME, TARGET, QT, SCALES, ROW_BYTES, ROWS)                                                    \
    TARGET static void NAME(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y,   \
                            size_t r0, size_t r1) {                                                                 \
        size_t nb = cols / QK, rb = ROW_BYTES;                                                                      \
        const uint16_t *S = SCALES(W, rows, cols);                                                                  \
        const float *dx = xp, *cx = dx + nb;                                                                        \
        const int8_t *xq = (const int8_t *)xp + xq_offset(nb);                                                      \
        const QT *Q = W;                                                                                            \
        size_t per = (r1 - r0) / 4;                                                                                 \
        const size_t pf = g2w_prefetch_bytes();                                                                     \
        if (per) prefetch_start(Q + r0 * rb, rb, S + r0 * nb, nb * 2, per, pf);                                     \
        for (size_t i = 0; i < per; i++) {                                                                          \
            const QT *w[4];                                                                                         \
            const uint16_t *s[4];                                                                                   \
            float out[4];                                                                                           \
            for (int j = 0; j < 4; j++) { size_t r = r0 + i + j * per; w[j] = Q + r * rb; s[j] = S + r * nb; }      \
            ROWS(4, w, s, dx, cx, xq, nb, out, pf);                                                                 \
            for (int j = 0; j < 4; j++) { size_t r = r0 + i + j * per; y[r] = out[j] + (bias ? bias[r] : 0.0f); }   \
        }                                                                                                           \
        for (size_t r = r0 + 4 * per; r < r1; r++) {                                                                \
            const QT *w = Q + r * rb;                                                                               \
            const uint16_t *s = S + r * nb;                                                                         \
            float out;                                                                                              \
            ROWS(1, &w, &s, dx, cx, xq, nb, &out, pf);                                                              \
            y[r] = out + (bias ? bias[r] : 0.0f);                                                                   \
        }                                                                                                           \
    }

#if G2W_X86

// AVX2: per block, |w| (u8) x sign(x, w) (s8) with pmaddubsw (pairs fit in int16: 2 x 128 x 127),
// pmaddwd by ones to int32, to f32, times d_w * dx, into one f32 accumulator per row.
AVX2 static inline __m256 block_q8_avx2(const int8_t *w, __m256i x) {
    __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(x, wv));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
AVX2 static inline __m256 block_q4_avx2(const uint8_t *w, __m256i x) {  // x: low-half then high-half activations
    __m128i v = _mm_loadu_si128((const __m128i *)w);
    __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
    __m256i p = _mm256_maddubs_epi16(nib, x);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
AVX2 static inline __m256i x_q4_avx2(const int8_t *xq, size_t nb4, size_t b) {
    if (b >= nb4) return _mm256_loadu_si256((const __m256i *)(xq + b * QK));
    const int8_t *g = xq + (b / 4) * 128 + (b % 4) * 16;
    return _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(g + 64)), _mm_loadu_si128((const __m128i *)g));
}

#define ALWAYS_INLINE inline __attribute__((always_inline))

// N rows (4 streams, or 1 leftover row) at a time, N a compile-time constant after inlining so
// the accumulators stay in registers.
AVX2 static ALWAYS_INLINE void rows_q8_0_avx2(const int N, const int8_t *const *w, const uint16_t *const *s, const float *dx,
                                              const float *cx, const int8_t *xq, size_t nb, float *out, size_t pf) {
    (void)cx;  // signed products here (the sign moves to x): no offset to take out
    __m256 acc[4];
    for (int j = 0; j < N; j++) { acc[j] = _mm256_setzero_ps(); _mm_prefetch((const char *)s[j] + PFS, _MM_HINT_T0); }
    size_t b = 0;
    for (; b + 8 <= nb; b += 8) {  // scales of 8 blocks converted at once, then broadcast from memory
        __m256 fx = _mm256_loadu_ps(dx + b);
        float f[4][8];
        for (int j = 0; j < N; j++) _mm256_storeu_ps(f[j], _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s[j] + b))), fx));
        for (size_t k = 0; k < 8; k++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq + (b + k) * QK));
            for (int j = 0; j < N; j++) {
                if ((k & 1) == 0) _mm_prefetch((const char *)(w[j] + (b + k) * QK) + pf, _MM_HINT_T0);
                acc[j] = _mm256_fmadd_ps(block_q8_avx2(w[j] + (b + k) * QK, x), _mm256_broadcast_ss(&f[j][k]), acc[j]);
            }
        }
    }
    for (; b < nb; b++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(xq + b * QK));
        for (int j = 0; j < N; j++)
            acc[j] = _mm256_fmadd_ps(block_q8_avx2(w[j] + b * QK, x), _mm256_set1_ps(_cvtsh_ss(s[j][b]) * dx[b]), acc[j]);
    }
    for (int j = 0; j < N; j++) out[j] = hsum(acc[j]);
}

MATVEC_STREAMS(matvec_q8_0_avx2, AVX2, int8_t, scales_q8_0, cols, rows_q8_0_avx2)

// Two blocks per 32-byte load of nibbles (the activation's q4_0 order has their low halves, then
// their high halves, side by side); the pmaddubsw results of both halves are added as int16
// (at most 2 x 2 x 15 x 127 = 7,620) before one pmaddwd: lanes 0-3 belong to the first block,
// 4-7 to the second.
AVX2 static ALWAYS_INLINE void rows_q4_0_avx2(const int N, const uint8_t *const *w, const uint16_t *const *s, const float *dx, const float *cx,
                                              const int8_t *xq, size_t nb, float *out, size_t pf) {
    size_t nb4 = nb & ~(size_t)3;
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4], corr[4];
    for (int j = 0; j < N; j++) { acc[j] = _mm256_setzero_ps(); corr[j] = _mm256_setzero_ps(); _mm_prefetch((const char *)s[j] + PFS, _MM_HINT_T0); }
    size_t b = 0;
    for (; b + 8 <= nb4; b += 8) {  // the streams take turns every 32 bytes, as in the VNNI kernel
        __m256 fx = _mm256_loadu_ps(dx + b), cx8 = _mm256_loadu_ps(cx + b);
        __m256 f[4];
        for (int j = 0; j < N; j++) {
            __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s[j] + b)));
            corr[j] = _mm256_fmadd_ps(sc, cx8, corr[j]);
            f[j] = _mm256_mul_ps(sc, fx);  // d_w dx of the 8 blocks
            _mm_prefetch((const char *)(w[j] + b * 16) + pf, _MM_HINT_T0);
            _mm_prefetch((const char *)(w[j] + b * 16) + pf + 64, _MM_HINT_T0);
        }
        for (size_t k = 0; k < 8; k += 2) {
            const int8_t *g = xq + ((b + k) / 4) * 128 + ((b + k) % 4) * 16;
            const __m256i xl = _mm256_loadu_si256((const __m256i *)g), xh = _mm256_loadu_si256((const __m256i *)(g + 64));
            // [f_k x 4, f_k+1 x 4]
            const __m256i pick = _mm256_setr_epi32((int)k, (int)k, (int)k, (int)k, (int)k + 1, (int)k + 1, (int)k + 1, (int)k + 1);
            for (int j = 0; j < N; j++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(w[j] + (b + k) * 16));
                __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(v, low), xl);
                __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), xh);
                __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones));
                acc[j] = _mm256_fmadd_ps(dot, _mm256_permutevar8x32_ps(f[j], pick), acc[j]);
            }
        }
    }
    for (int j = 0; j < N; j++) {
        float v = hsum(acc[j]) - hsum(corr[j]);
        for (size_t c = b; c < nb; c++) {
            float d = _cvtsh_ss(s[j][c]);
            v += d * (hsum(block_q4_avx2(w[j] + c * 16, x_q4_avx2(xq, nb4, c))) * dx[c] - cx[c]);
        }
        out[j] = v;
    }
}

MATVEC_STREAMS(matvec_q4_0_avx2, AVX2, uint8_t, scales_q4_0, cols / 2, rows_q4_0_avx2)

// AVX-512 VNNI. q8_0: two blocks per 64-byte load; vpdpbusd(|w|, x with w's sign) gives eight
// int32 partial sums per block; to f32, times [d_w dx of block 0 x 8, block 1 x 8], accumulated.
// vpdpbusd multiplies unsigned by signed bytes: the weights are made unsigned by flipping their
// top bit (w + 128), and the extra 128 x sum(x) of each block is taken out with the prepared cx
// (128 dx sum(xq)) in the epilogue: one XOR per 64 weights instead of a sign transfer.
VNNI512 static inline __m512i dot_q8_vnni(__m512i w, __m512i x) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)), x);
}

// Per-block sums to f32 in groups of 16 (or 8) blocks: the int32 partial sums of the blocks are
// added across lanes by unpack/shuffle steps (a few instructions per group instead of a scale
// broadcast per step), put in block order, and scaled by d_w * dx with one FMA per group.
// Block order from the reduced lanes: lane l holds block idx[l].

// q8_0: d[k] (k < G/2) holds blocks 2k (lanes 0-7) and 2k+1 (lanes 8-15); returns the G block sums
// in block order (lanes >= G undefined).
VNNI512 static ALWAYS_INLINE __m512i reduce_q8(const __m512i *d, int G) {
    __m512i u[4], t[2];
    for (int m = 0; m < G / 4; m++)
        u[m] = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2 * m], d[2 * m + 1]), _mm512_unpackhi_epi32(d[2 * m], d[2 * m + 1]));
    for (int p = 0; p < G / 8; p++)
        t[p] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * p], u[2 * p + 1]), _mm512_unpackhi_epi64(u[2 * p], u[2 * p + 1]));
    if (G == 8) t[1] = t[0];
    // lanes 0-3 of t[p]: sums over 128-bit lane 0 of d[4p + q]; the two halves of each block are
    // 128-bit lanes (0, 1) or (2, 3).
    __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(t[0], t[1], 0x88), _mm512_shuffle_i32x4(t[0], t[1], 0xDD));
    // r: [0 2 4 6 | 1 3 5 7 | 8 10 12 14 | 9 11 13 15]
    return _mm512_permutexvar_epi32(_mm512_set_epi32(15, 11, 14, 10, 13, 9, 12, 8, 7, 3, 6, 2, 5, 1, 4, 0), r);
}

// q4_0: d[k] (k < G/4) holds blocks 4k..4k+3, one per 128-bit lane.
VNNI512 static ALWAYS_INLINE __m512i reduce_q4(const __m512i *d, int G) {
    if (G == 8) {
        __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
        u = _mm512_add_epi32(u, _mm512_shuffle_epi32(u, 0x4E));  // lane i: [block i, block 4 + i, same again]
        return _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0), u);
    }
    __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(d[0], d[1]), _mm512_unpackhi_epi32(d[0], d[1]));
    __m512i v = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2], d[3]), _mm512_unpackhi_epi32(d[2], d[3]));
    __m512i w = _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v));  // [4i + j] = block 4j + i
    return _mm512_permutexvar_epi32(_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0), w);
}
// reduce_q8 for G = 16 from its first step done by the caller: u[m] = unpacklo32(d[2m], d[2m+1])
// + unpackhi32(d[2m], d[2m+1]), so only four registers per row stay live across the group.
VNNI512 static ALWAYS_INLINE __m512i reduce_q8_u(const __m512i *u) {
    __m512i t[2];
    for (int p = 0; p < 2; p++)
        t[p] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * p], u[2 * p + 1]), _mm512_unpackhi_epi64(u[2 * p], u[2 * p + 1]));
    __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(t[0], t[1], 0x88), _mm512_shuffle_i32x4(t[0], t[1], 0xDD));
    return _mm512_permutexvar_epi32(_mm512_set_epi32(15, 11, 14, 10, 13, 9, 12, 8, 7, 3, 6, 2, 5, 1, 4, 0), r);
}
// The streams' turns: `pairs` pairs of cache lines (four blocks each) from blocks b on, each pair
// read from all N rows before the next, reduced at once to u[j][m] (reduce_q8's first step), so
// only four registers per row stay live.
VNNI512 static ALWAYS_INLINE void q8_line_pairs(const int N, const int8_t *const *w, const int8_t *xq, size_t b, const int pairs, size_t pf,
                                                __m512i u[4][4]) {
#pragma clang loop unroll(full)
    for (int m = 0; m < pairs; m++) {
        __m512i x0 = _mm512_loadu_si512((const void *)(xq + (b + 4 * m) * QK)), x1 = _mm512_loadu_si512((const void *)(xq + (b + 4 * m + 2) * QK));
#pragma clang loop unroll(full)
        for (int j = 0; j < N; j++) {
            const int8_t *p = w[j] + (b + 4 * m) * QK;
            _mm_prefetch((const char *)p + pf, _MM_HINT_T0);
            _mm_prefetch((const char *)p + pf + 64, _MM_HINT_T0);
            __m512i d0 = dot_q8_vnni(_mm512_loadu_si512((const void *)p), x0);
            __m512i d1 = dot_q8_vnni(_mm512_loadu_si512((const void *)(p + 64)), x1);
            u[j][m] = _mm512_add_epi32(_mm512_unpacklo_epi32(d0, d1), _mm512_unpackhi_epi32(d0, d1));
        }
    }
}

// N rows (4: the four streams; 1: a leftover row) of q8_0 against the prepared activation. The
// streams take turns every two cache lines (all four rows' lines 2m, 2m+1, then 2m+2, ...), as the
// f16 kernel takes turns every line: visiting one row's eight lines before the next row's kept
// fewer lines in flight and streamed at 0.57-0.69 of a plain read on Zen 5 against 0.75-0.82.
VNNI512 static ALWAYS_INLINE void rows_q8_0_vnni(const int N, const int8_t *const *w, const uint16_t *const *s, const float *dx,
                                                 const float *cx, const int8_t *xq, size_t nb, float *out, size_t pf) {
    __m512 acc[4];
    for (int j = 0; j < N; j++) { acc[j] = _mm512_setzero_ps(); _mm_prefetch((const char *)s[j] + PFS, _MM_HINT_T0); }
    size_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        __m512i u[4][4];
        q8_line_pairs(N, w, xq, b, 4, pf, u);
        __m512 fx = _mm512_loadu_ps(dx + b), c16 = _mm512_loadu_ps(cx + b);
        for (int j = 0; j < N; j++) {
            __m512 f = _mm512_fmsub_ps(_mm512_cvtepi32_ps(reduce_q8_u(u[j])), fx, c16);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s[j] + b))), f, acc[j]);
        }
    }
    if (b + 8 <= nb) {  // eight blocks left: the same, four lines per row (two pairs)
        __m512i u[4][4];
        q8_line_pairs(N, w, xq, b, 2, pf, u);
        __m512 fx = _mm512_castps256_ps512(_mm256_loadu_ps(dx + b)), c8 = _mm512_castps256_ps512(_mm256_loadu_ps(cx + b));
        for (int j = 0; j < N; j++) {
            u[j][2] = u[j][0]; u[j][3] = u[j][1];  // reduce_q8_u's upper half: a copy, lanes >= 8 unused
            __m512 f = _mm512_fmsub_ps(_mm512_cvtepi32_ps(reduce_q8_u(u[j])), fx, c8);
            __m512 sc = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s[j] + b))));
            acc[j] = _mm512_mask3_fmadd_ps(sc, f, acc[j], 0x00FF);
        }
        b += 8;
    }
    for (int j = 0; j < N; j++) {
        float v = _mm512_reduce_add_ps(acc[j]);
        for (size_t c = b; c < nb; c++) {
            __m512i x = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xq + c * QK)));
            __m512i wv = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w[j] + c * QK)));
            __m512i dd = _mm512_maskz_mov_epi32(0x00FF, dot_q8_vnni(wv, x));
            v += half_to_float(s[j][c]) * ((float)_mm512_reduce_add_epi32(dd) * dx[c] - cx[c]);
        }
        out[j] = v;
    }
}

MATVEC_STREAMS(matvec_q8_0_vnni, VNNI512, int8_t, scales_q8_0, cols, rows_q8_0_vnni)

// q4_0: four blocks per 64-byte load of nibbles; low nibbles (elements 0-15 of each block) and
// high nibbles (16-31) against the activation's matching halves (prepare's q4_0 order): two
// vpdpbusd, four int32 sums per block. Per block, d_w (dx dot - cx) with cx = 8 dx sum(xq)
// takes the nibbles' offset of 8 out. The four streams take turns every cache line (as in q8_0:
// 0.55 -> 0.78 of a plain read on Zen 5).
VNNI512 static ALWAYS_INLINE void rows_q4_0_vnni(const int N, const uint8_t *const *w, const uint16_t *const *s, const float *dx, const float *cx,
                                                 const int8_t *xq, size_t nb, float *out, size_t pf) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    size_t nb4 = nb & ~(size_t)3;
    __m512 acc[4];
    for (int j = 0; j < N; j++) { acc[j] = _mm512_setzero_ps(); _mm_prefetch((const char *)s[j] + PFS, _MM_HINT_T0); }
    size_t b = 0;
#define Q4_STEPS(G)                                                                                                   \
    {                                                                                                                 \
        __m512i d[4][4];                                                                                              \
        for (int k = 0; k < (G) / 4; k++) {                                                                           \
            __m512i xl = _mm512_loadu_si512((const void *)(xq + (b + 4 * k) * QK));                                   \
            __m512i xh = _mm512_loadu_si512((const void *)(xq + (b + 4 * k) * QK + 64));                              \
            for (int j = 0; j < N; j++) {                                                                             \
                _mm_prefetch((const char *)(w[j] + (b + 4 * k) * 16) + pf, _MM_HINT_T0);                             \
                __m512i v = _mm512_loadu_si512((const void *)(w[j] + (b + 4 * k) * 16));                              \
                __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, low), xl);                \
                d[j][k] = _mm512_dpbusd_epi32(t, _mm512_and_si512(_mm512_srli_epi16(v, 4), low), xh);                 \
            }                                                                                                         \
        }                                                                                                             \
        for (int j = 0; j < N; j++) {                                                                                 \
            __m512 dots = _mm512_cvtepi32_ps(reduce_q4(d[j], (G)));                                                   \
            if ((G) == 16) {                                                                                          \
                __m512 f = _mm512_fmsub_ps(dots, _mm512_loadu_ps(dx + b), _mm512_loadu_ps(cx + b));                   \
                acc[j] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s[j] + b))), f, acc[j]); \
            } else {                                                                                                  \
                __m512 f = _mm512_fmsub_ps(dots, _mm512_castps256_ps512(_mm256_loadu_ps(dx + b)),                      \
                                           _mm512_castps256_ps512(_mm256_loadu_ps(cx + b)));                           \
                __m512 sc = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s[j] + b))));      \
                acc[j] = _mm512_mask3_fmadd_ps(sc, f, acc[j], 0x00FF);                                                \
            }                                                                                                         \
        }                                                                                                             \
        b += (G);                                                                                                     \
    }
    while (b + 16 <= nb4) Q4_STEPS(16)
    if (b + 8 <= nb4) Q4_STEPS(8)
#undef Q4_STEPS
    for (int j = 0; j < N; j++) {
        float v = _mm512_reduce_add_ps(acc[j]);
        for (size_t c = b; c < nb; c++) {  // the last blocks (nb4 % 8 of them in q4_0 order, then nb % 4 in element order)
            __m256 p = block_q4_avx2(w[j] + c * 16, x_q4_avx2(xq, nb4, c));
            float d = half_to_float(s[j][c]);
            v += d * (hsum(p) * dx[c] - cx[c]);
        }
        out[j] = v;
    }
}

MATVEC_STREAMS(matvec_q4_0_vnni, VNNI512, uint8_t, scales_q4_0, cols / 2, rows_q4_0_vnni)
#endif

void g2w_matvec_q8_0(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) {
#if G2W_X86
    if (use_vnni512()) { matvec_q8_0_vnni(W, rows, cols, xp, bias, y, r0, r1); return; }
    if (use_avx2()) { matvec_q8_0_avx2(W, rows, cols, xp, bias, y, r0, r1); return; }
#endif
    matvec_q8_0_generic(W, rows, cols, xp, bias, y, r0, r1);
}
void g2w_matvec_q4_0(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) {
#if G2W_X86
    if (use_vnni512()) { matvec_q4_0_vnni(W, rows, cols, xp, bias, y, r0, r1); return; }
    if (use_avx2()) { matvec_q4_0_avx2(W, rows, cols, xp, bias, y, r0, r1); return; }
#endif
    matvec_q4_0_generic(W, rows, cols, xp, bias, y, r0, r1);
}

// ---------------------------------------------------------------------------------------------
// Prompt path: rows [r0, r1) in groups dequantized to f32 (a group of about 128 KB stays in L2
// while all T rows of X run against it), each group through the f32 batched kernel.
typedef void (*dequant_fn)(const void *W, size_t rows, size_t cols, size_t e0, size_t n, float *dst);  // elements [e0, e0 + n)
static void matmul_dequantized(dequant_fn dq, const void *W, size_t rows, size_t cols, const float *X, const float *bias, float *Y, size_t T,
                               size_t ldy, size_t r0, size_t r1) {
    size_t group = (32768 / cols) & ~(size_t)31;  // rows per group: ~128 KB of f32, a multiple of the 32-row panel
    if (group < 32) group = 32;
    if (group > r1 - r0) group = r1 - r0;
    float *buf = aligned_alloc(64, ((group * cols * sizeof(float)) + 63) & ~(size_t)63);
    if (!buf) {  // out of memory: block by block through a buffer on the stack (slow, but no failure)
        float blk[QK];
        for (size_t r = r0; r < r1; r++)
            for (size_t t = 0; t < T; t++) {
                float s = 0.0f;
                for (size_t k = 0; k < cols; k += QK) {
                    dq(W, rows, cols, r * cols + k, QK, blk);
                    for (int j = 0; j < QK; j++) s += blk[j] * X[t * cols + k + (size_t)j];
                }
                Y[t * ldy + r] = s + (bias ? bias[r] : 0.0f);
            }
        return;
    }
    for (size_t g = r0; g < r1; g += group) {
        size_t n = r1 - g < group ? r1 - g : group;
        dq(W, rows, cols, g * cols, n * cols, buf);
        g2w_matmul_f32(buf, X, bias ? bias + g : NULL, Y + g, T, cols, ldy, 0, n);
    }
    free(buf);
}

void g2w_matmul_q8_0(const void *W, size_t rows, size_t cols, const float *X, const float *bias, float *Y, size_t T, size_t ldy, size_t r0, size_t r1) {
    matmul_dequantized(dequant_elements_q8_0, W, rows, cols, X, bias, Y, T, ldy, r0, r1);
}
void g2w_matmul_q4_0(const void *W, size_t rows, size_t cols, const float *X, const float *bias, float *Y, size_t T, size_t ldy, size_t r0, size_t r1) {
    matmul_dequantized(dequant_elements_q4_0, W, rows, cols, X, bias, Y, T, ldy, r0, r1);
}

// ---------------------------------------------------------------------------------------------
// The element-type traits table: f32 and f16 through the same interface (their activation is x
// itself; their "quantize" is a copy or a conversion; they have no scales).
static void matvec_f32_t(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) {
    (void)rows; g2w_matvec_f32(W, xp, bias, y, cols, r0, r1);
}
static void matvec_f16_t(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1) {
    (void)rows; g2w_matvec_f16(W, xp, bias, y, cols, r0, r1);
}
static void matmul_f32_t(const void *W, size_t rows, size_t cols, const float *X, const float *bias, float *Y, size_t T, size_t ldy, size_t r0, size_t r1) {
    (void)rows; g2w_matmul_f32(W, X, bias, Y, T, cols, ldy, r0, r1);
}
static void matmul_f16_t(const void *W, size_t rows, size_t cols, const float *X, const float *bias, float *Y, size_t T, size_t ldy, size_t r0, size_t r1) {
    (void)rows; g2w_matmul_f16(W, X, bias, Y, T, cols, ldy, r0, r1);
}
static void dequant_f32_t(const void *W, size_t rows, size_t cols, size_t r0, size_t r1, float *dst) {
    (void)rows; memcpy(dst, (const float *)W + r0 * cols, (r1 - r0) * cols * sizeof(float));
}
static void dequant_f16_t(const void *W, size_t rows, size_t cols, size_t r0, size_t r1, float *dst) {
    (void)rows; g2w_f16_to_f32((const uint16_t *)W + r0 * cols, dst, (r1 - r0) * cols);
}
static void quantize_f32_t(const float *src, size_t n, void *values, uint16_t *scales) { (void)scales; memcpy(values, src, n * sizeof(float)); }
static void quantize_f16_t(const float *src, size_t n, void *values, uint16_t *scales) { (void)scales; g2w_f32_to_f16(src, values, n); }
static void quantize_q8_0_t(const float *src, size_t n, void *values, uint16_t *scales) { g2w_quantize_q8_0(src, n / QK, values, scales); }
static void quantize_q4_0_t(const float *src, size_t n, void *values, uint16_t *scales) { g2w_quantize_q4_0(src, n / QK, values, scales); }
static size_t no_prepare_bytes(size_t cols) { (void)cols; return 0; }

static const g2w_type_traits traits[] = {
    {"f32", G2W_TYPE_F32, 1, 4, 4, no_prepare_bytes, NULL, matvec_f32_t, matmul_f32_t, dequant_f32_t, quantize_f32_t},
    {"f16", G2W_TYPE_F16, 1, 2, 2, no_prepare_bytes, NULL, matvec_f16_t, matmul_f16_t, dequant_f16_t, quantize_f16_t},
    {"q8_0", G2W_TYPE_Q8_0, QK, 34, 32, g2w_prepared_bytes_q8, g2w_prepare_q8_0, g2w_matvec_q8_0, g2w_matmul_q8_0, g2w_dequantize_q8_0, quantize_q8_0_t},
    {"q4_0", G2W_TYPE_Q4_0, QK, 18, 16, g2w_prepared_bytes_q8, g2w_prepare_q4_0, g2w_matvec_q4_0, g2w_matmul_q4_0, g2w_dequantize_q4_0, quantize_q4_0_t},
};

const g2w_type_traits *g2w_type(int code) {
    for (size_t i = 0; i < sizeof traits / sizeof traits[0]; i++) if (traits[i].code == code) return &traits[i];
    return NULL;
}
