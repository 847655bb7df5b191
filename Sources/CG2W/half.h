// Internal to CG2W: exact IEEE binary16 <-> binary32 conversion, portable (the scalar tails of
// the vector code and the generic paths).
#pragma once
#include <stdint.h>
#include <string.h>

// Half precision, portable: exact f16 -> f32, f32 -> f16 round to nearest even.
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: normalize
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7F800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (ax > 0x7F800000u ? 0x200 | ((ax >> 13) & 0x3FF) : 0));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  // rounds to >= 65520: overflow to inf
    if (ax < 0x38800000u) {  // result subnormal or zero (|f| < 2^-14)
        if (ax < 0x33000000u) return (uint16_t)sign;  // < 2^-25: rounds to zero (2^-25 exactly ties to even 0)
        // value = m * 2^(e - 150); in units of the smallest half subnormal (2^-24): m >> (126 - e).
        uint32_t e = ax >> 23, m = (ax & 0x7FFFFF) | 0x800000;
        uint32_t s = 126 - e;  // 14...24
        uint32_t q = m >> s, rem = m & ((1u << s) - 1), halfway = 1u << (s - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((ax - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
    uint32_t rem = ax & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

static void f16_to_f32_generic(const uint16_t *s, float *d, size_t n) { for (size_t i = 0; i < n; i++) d[i] = half_to_float(s[i]); }
static void f32_to_f16_generic(const float *s, uint16_t *d, size_t n) { for (size_t i = 0; i < n; i++) d[i] = float_to_half(s[i]); }
