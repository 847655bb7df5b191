// Half precision: f16 <-> f32 for whole arrays (F16C when the CPU has it).
#include "cg2w.h"
#include "half.h"
#include "simd.h"

#if G2W_X86
AVX2 static void f16_to_f32_avx2(const uint16_t *s, float *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) d[i] = half_to_float(s[i]);
}
AVX2 static void f32_to_f16_avx2(const float *s, uint16_t *d, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) d[i] = float_to_half(s[i]);
}
#endif

void g2w_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if G2W_X86
    if (use_avx2()) { f16_to_f32_avx2(src, dst, n); return; }
#endif
    f16_to_f32_generic(src, dst, n);
}

void g2w_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
#if G2W_X86
    if (use_avx2()) { f32_to_f16_avx2(src, dst, n); return; }
#endif
    f32_to_f16_generic(src, dst, n);
}
