// Internal to CG2W: what every file with vector code shares. The kernel level (isa.h), the
// per-function target attributes, and small vector helpers (horizontal sum, exp).
#pragma once
#include "isa.h"
#include <stddef.h>
#include <stdint.h>
#include "cg2w.h"

extern int g2w_isa_cache;  // isa.c: the level once chosen, -1 before
static inline int isa_level(void) {
    int v = __atomic_load_n(&g2w_isa_cache, __ATOMIC_RELAXED);
    return v >= 0 ? v : g2w_isa_level();
}
static inline int use_avx2(void) { return isa_level() >= 1; }
static inline int use_avx512(void) { return isa_level() >= 2; }
static inline int use_vnni512(void) { return isa_level() >= 3; }

/// Runs task(context, job, worker) for jobs 0..<jobs on the pool, or in order on this thread
/// (pool NULL, or a single job).
static inline void g2w_run(g2w_pool *pool, size_t jobs, g2w_pool_task task, void *context) {
    if (pool && jobs > 1) g2w_pool_run(pool, jobs, task, context);
    else for (size_t j = 0; j < jobs; j++) task(context, j, 0);
}

#if defined(__x86_64__)
#include <immintrin.h>
#define G2W_X86 1
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define VNNI512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

AVX2 static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

// exp(x) for x <= 0 (Cephes expf: x = k ln2 + r, |r| <= ln2/2, degree-6 polynomial; ~1 ulp).
AVX2 static inline __m256 exp_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#endif
