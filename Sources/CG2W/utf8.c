#include "cg2w.h"
#include "isa.h"
#include <string.h>

// Well-formed UTF-8 per Unicode Table 3-7. Portable: an 8-byte ASCII fast path, then one sequence
// at a time. With AVX2: the "lookup" algorithm of Keiser and Lemire ("Validating UTF-8 in less
// than one instruction per byte", 2021; simdjson), 32 bytes per step: every error is visible in
// a pair of adjacent bytes (three 16-entry table lookups on their nibbles) or as a missing or
// extra continuation byte two or three bytes after a lead byte. The choice follows the kernels'
// (isa.h): G2W_KERNELS=generic selects the portable code here too.

// Offset of the first byte that does not start or continue a well-formed sequence (for a sequence
// cut short, its lead byte: Python's UnicodeDecodeError.start), n when all are well-formed.
static size_t utf8_first_invalid_generic(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) == 0) { i += 8; continue; }
        }
        uint8_t c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return i;
        if (i + len > n) return i;
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++) if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

static int utf8_valid_generic(const uint8_t *p, size_t n) { return utf8_first_invalid_generic(p, n) == n; }

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))

// Error classes of a pair of bytes (first, second), one bit each.
enum {
    TOO_SHORT = 1 << 0,   // lead byte, then no continuation
    TOO_LONG = 1 << 1,    // ASCII, then a continuation
    OVERLONG_3 = 1 << 2,  // E0, then 80..9F
    TOO_LARGE = 1 << 3,   // F4, then 90..BF; or F5..FF
    SURROGATE = 1 << 4,   // ED, then A0..BF
    OVERLONG_2 = 1 << 5,  // C0 or C1
    TOO_LARGE_1000 = 1 << 6,
    OVERLONG_4 = 1 << 6,  // F0, then 80..8F
    TWO_CONTS = 1 << 7,   // continuation, then continuation (allowed only inside a 3- or 4-byte sequence)
    CARRY = TOO_SHORT | TOO_LONG | TWO_CONTS,
};

// A 16-entry byte table in both 128-bit lanes (for _mm256_shuffle_epi8 lookups by nibble).
AVX2 static inline __m256i table16(const uint8_t t[16]) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

// The 32 bytes ending N bytes before the end of `input` (the last N of `prev` first).
#define PREV(input, prev, N) _mm256_alignr_epi8(input, _mm256_permute2x128_si256(prev, input, 0x21), 16 - (N))

AVX2 static inline __m256i high_nibbles(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)); }

AVX2 static inline __m256i check_block(__m256i input, __m256i prev_input) {
    static const uint8_t b1h[16] = {
        TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,  // 0_______
        TWO_CONTS, TWO_CONTS, TWO_CONTS, TWO_CONTS,                                      // 10______
        TOO_SHORT | OVERLONG_2,                                                          // 1100____
        TOO_SHORT,                                                                       // 1101____
        TOO_SHORT | OVERLONG_3 | SURROGATE,                                              // 1110____
        TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4};                            // 1111____
    static const uint8_t b1l[16] = {
        CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4,  // ____0000
        CARRY | OVERLONG_2,                            // ____0001
        CARRY, CARRY,                                  // ____001_
        CARRY | TOO_LARGE,                             // ____0100
        CARRY | TOO_LARGE | TOO_LARGE_1000,            // ____0101
        CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000,  // ____1___
        CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000,
        CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE,  // ____1101
        CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000};
    static const uint8_t b2h[16] = {
        TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,  // 0_______
        TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4,            // 1000____
        TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE,                              // 1001____
        TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,                               // 101_____
        TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
        TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT};                                             // 11______
    const __m256i byte_1_high = table16(b1h), byte_1_low = table16(b1l), byte_2_high = table16(b2h);
    __m256i prev1 = PREV(input, prev_input, 1);
    __m256i special = _mm256_and_si256(
        _mm256_and_si256(_mm256_shuffle_epi8(byte_1_high, high_nibbles(prev1)),
                         _mm256_shuffle_epi8(byte_1_low, _mm256_and_si256(prev1, _mm256_set1_epi8(0x0F)))),
        _mm256_shuffle_epi8(byte_2_high, high_nibbles(input)));
    // Two or three bytes after a 3- or 4-byte lead, a continuation must come (TWO_CONTS there is
    // no error): bit 7 set exactly where that is required.
    __m256i third = _mm256_subs_epu8(PREV(input, prev_input, 2), _mm256_set1_epi8((char)(0xE0 - 0x80)));
    __m256i fourth = _mm256_subs_epu8(PREV(input, prev_input, 3), _mm256_set1_epi8((char)(0xF0 - 0x80)));
    __m256i must23 = _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));
    return _mm256_xor_si256(must23, special);
}

// Nonzero where a sequence starting in the last three bytes would need more bytes.
AVX2 static inline __m256i incomplete_tail(__m256i input) {
    const __m256i max = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                         (char)(0xF0 - 1), (char)(0xE0 - 1), (char)(0xC0 - 1));
    return _mm256_subs_epu8(input, max);
}

AVX2 static int utf8_valid_avx2(const uint8_t *p, size_t n) {
    __m256i error = _mm256_setzero_si256(), prev = _mm256_setzero_si256(), prev_incomplete = _mm256_setzero_si256();
    size_t i = 0;
    for (;; i += 32) {
        __m256i input;
        if (i + 32 <= n) {
            input = _mm256_loadu_si256((const __m256i *)(p + i));
        } else {
            if (i >= n) break;
            uint8_t tail[32] = {0};  // zeros are ASCII: they end the text
            memcpy(tail, p + i, n - i);
            input = _mm256_loadu_si256((const __m256i *)tail);
        }
        if (_mm256_movemask_epi8(input) == 0) {
            error = _mm256_or_si256(error, prev_incomplete);  // ASCII after an unfinished sequence
            prev_incomplete = _mm256_setzero_si256();
        } else {
            error = _mm256_or_si256(error, check_block(input, prev));
            prev_incomplete = incomplete_tail(input);
        }
        prev = input;
        if (i + 32 >= n) break;
    }
    error = _mm256_or_si256(error, prev_incomplete);
    return _mm256_testz_si256(error, error);
}

#endif

int g2w_utf8_valid(const uint8_t *p, size_t n) {
#if defined(__x86_64__)
    if (g2w_isa_level() >= 1) return utf8_valid_avx2(p, n);
#endif
    return utf8_valid_generic(p, n);
}

int g2w_utf8_valid_portable(const uint8_t *p, size_t n) { return utf8_valid_generic(p, n); }

size_t g2w_utf8_first_invalid(const uint8_t *p, size_t n) {
    // Valid text (the common case) takes the vector path only; the scan runs only to name the byte.
    return g2w_utf8_valid(p, n) ? n : utf8_first_invalid_generic(p, n);
}

size_t g2w_utf8_first_invalid_element(const uint8_t *p, const ptrdiff_t *ends, size_t count) {
    // When the concatenation is valid, an element is valid exactly when it does not start with a
    // continuation byte (a cut inside a sequence): one pass over all the bytes. Otherwise each
    // element is checked alone, to name the first bad one.
    size_t total = count ? (size_t)ends[count - 1] : 0;
    int whole = g2w_utf8_valid(p, total);
    size_t start = 0;
    for (size_t i = 0; i < count; i++) {
        size_t end = (size_t)ends[i];
        if (end > start && (whole ? (p[start] & 0xC0) == 0x80 : !g2w_utf8_valid(p + start, end - start))) return i;
        start = end;
    }
    return count;
}
