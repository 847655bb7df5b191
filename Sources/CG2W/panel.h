// Internal to CG2W: packing one 32-row panel of W for the packed GEMMs (matmul.c's prompt path
// and gemm.c's training products). `static inline` in this header so each file gets a copy the
// compiler can inline and specialise (as an external function it cost the prompt path ~10 %).
#pragma once
#include "half.h"
#include "simd.h"

#if G2W_X86
enum { PANEL_NR = 32, PANEL_MR = 8, PANEL_AHEAD = 2 };  // rows per panel; packing prefetches the panel PANEL_AHEAD panels ahead

// In-register transpose of a 16 x 16 block: on return r[c] holds column c (r[0][c], ..., r[15][c]).
// Three rounds of 16 shuffles: pairs of rows (unpack), 4 x 4 blocks in each 128-bit lane, then lanes.
AVX512 static inline void transpose16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]); t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); }
    // r[4q + m], lane L: rows 4q..4q+3 of column 4L + m.
    for (int q = 0; q < 4; q++) {
        __m512 a = t[4 * q], b = t[4 * q + 1], c = t[4 * q + 2], d = t[4 * q + 3];
        r[4 * q + 0] = _mm512_shuffle_ps(a, c, 0x44); r[4 * q + 1] = _mm512_shuffle_ps(a, c, 0xEE);
        r[4 * q + 2] = _mm512_shuffle_ps(b, d, 0x44); r[4 * q + 3] = _mm512_shuffle_ps(b, d, 0xEE);
    }
    // Column 4L + m = lane L of r[m], r[4 + m], r[8 + m], r[12 + m].
    for (int m = 0; m < 4; m++) {
        __m512 e0 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88), e1 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);
        __m512 e2 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88), e3 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
        t[m] = _mm512_shuffle_f32x4(e0, e2, 0x88); t[8 + m] = _mm512_shuffle_f32x4(e0, e2, 0xDD);
        t[4 + m] = _mm512_shuffle_f32x4(e1, e3, 0x88); t[12 + m] = _mm512_shuffle_f32x4(e1, e3, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

// Packs one panel: Bp[k][j] = W(rb + j, k0 + k) for k < kc, j < PANEL_NR, 0 for j >= nr (see below
// for W's forms). Row-major W goes through 16 x 16 register transposes (f16 converted on the way);
// a W read transposed (rs == 1: the panel's rows are adjacent floats) is copied row by row.
AVX512 static inline void g2w_pack_panel_avx512(const float *Wf, size_t rs, size_t ks, const uint16_t *Wh, size_t cols, size_t rb, size_t nr,
                              size_t k0, size_t kc, float *Bp, size_t ahead_nr) {
    if (Wf && rs == 1) {
        __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
        __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
        for (size_t k = 0; k < kc; k++) {
            const float *w = Wf + rb + (k0 + k) * ks;
            _mm512_store_ps(Bp + k * PANEL_NR, _mm512_maskz_loadu_ps(m0, w));
            _mm512_store_ps(Bp + k * PANEL_NR + 16, _mm512_maskz_loadu_ps(m1, w + 16));
        }
        return;
    }
    size_t k16 = (Wh || ks == 1) ? kc & ~(size_t)15 : 0;
    for (size_t j0 = 0; j0 < PANEL_NR; j0 += 16) {
        size_t kdone = 0;
        if (j0 + 16 <= nr) {
            for (size_t k = 0; k < k16; k += 16) {
                __m512 r[16];
                for (size_t i = 0; i < 16; i++) {
                    r[i] = Wh ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(Wh + (rb + j0 + i) * cols + k0 + k)))
                              : _mm512_loadu_ps(Wf + (rb + j0 + i) * rs + k0 + k);
                    if (j0 + i < ahead_nr)  // the same place PANEL_AHEAD panels ahead, to be in cache when that one is packed
                        _mm_prefetch(Wh ? (const char *)(Wh + (rb + PANEL_AHEAD * PANEL_NR + j0 + i) * cols + k0 + k)
                                        : (const char *)(Wf + (rb + PANEL_AHEAD * PANEL_NR + j0 + i) * rs + k0 + k), _MM_HINT_T0);
                }
                transpose16x16(r);
                for (size_t c = 0; c < 16; c++) _mm512_store_ps(Bp + (k + c) * PANEL_NR + j0, r[c]);
            }
            kdone = k16;
        }
        for (size_t j = j0; j < j0 + 16; j++)
            for (size_t k = kdone; k < kc; k++)
                Bp[k * PANEL_NR + j] = j >= nr ? 0.0f : Wh ? half_to_float(Wh[(rb + j) * cols + k0 + k]) : Wf[(rb + j) * rs + (k0 + k) * ks];
    }
}

// The 8 x 32 register tile of both packed GEMMs: 8 rows of A (mr valid; the others repeat row 0
// and are not stored) against one packed 32-column panel Bp[k][32]: per k, two loads of Bp, eight
// broadcasts of A(i, k) = A[i * ars + k * acs], sixteen FMAs into 16 zmm accumulators; then C
// (row stride ldc, columns masked by m0/m1) = the sums, + C when `add`, else + bias when given.
AVX512 static inline void tile_8x32(const float *Bp, size_t kc, const float *A, size_t ars, size_t acs, size_t mr, float *C, size_t ldc,
                                    __mmask16 m0, __mmask16 m1, const float *bias, int add) {
    const float *a[PANEL_MR];
    for (size_t i = 0; i < PANEL_MR; i++) a[i] = A + (i < mr ? i : 0) * ars;
    __m512 c0[PANEL_MR], c1[PANEL_MR];
    for (size_t i = 0; i < PANEL_MR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (size_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(Bp + k * PANEL_NR), b1 = _mm512_load_ps(Bp + k * PANEL_NR + 16);
        size_t o = k * acs;
        for (size_t i = 0; i < PANEL_MR; i++) {
            __m512 x = _mm512_set1_ps(a[i][o]);
            c0[i] = _mm512_fmadd_ps(x, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(x, b1, c1[i]);
        }
    }
    for (size_t i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (add) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
        } else if (bias) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias + 16));
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

#endif
