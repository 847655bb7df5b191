// Machine limits for the benchmark: read bandwidth and peak FMA throughput.
#include "cg2w.h"
#include "simd.h"
#include <stdlib.h>

#if defined(__x86_64__)

// Four concurrent sequential streams (one per quarter) with a software prefetch ahead on each
// (the kernels' distance for this machine, g2w_prefetch_bytes), as the matrix-vector kernels
// read (`MATVEC_STREAMS_AVX2` in matmul.c): without the
// prefetch, this loop read less than the kernels do, and the figure is meant as the reachable
// read bandwidth.
AVX2 static uint64_t read_avx2(const void *p, size_t n) {
    size_t q = n / 4 / 64;  // cache lines per stream
    const char *s0 = (const char *)p, *s1 = s0 + q * 64, *s2 = s1 + q * 64, *s3 = s2 + q * 64;
    const size_t pf = g2w_prefetch_bytes();
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < q * 64; i += 64) {
        _mm_prefetch(s0 + i + pf, _MM_HINT_T0); _mm_prefetch(s1 + i + pf, _MM_HINT_T0);
        _mm_prefetch(s2 + i + pf, _MM_HINT_T0); _mm_prefetch(s3 + i + pf, _MM_HINT_T0);
        a = _mm256_xor_si256(a, _mm256_xor_si256(_mm256_load_si256((const __m256i *)(s0 + i)), _mm256_load_si256((const __m256i *)(s0 + i + 32))));
        b = _mm256_xor_si256(b, _mm256_xor_si256(_mm256_load_si256((const __m256i *)(s1 + i)), _mm256_load_si256((const __m256i *)(s1 + i + 32))));
        c = _mm256_xor_si256(c, _mm256_xor_si256(_mm256_load_si256((const __m256i *)(s2 + i)), _mm256_load_si256((const __m256i *)(s2 + i + 32))));
        d = _mm256_xor_si256(d, _mm256_xor_si256(_mm256_load_si256((const __m256i *)(s3 + i)), _mm256_load_si256((const __m256i *)(s3 + i + 32))));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}

// 12 independent accumulators: enough to cover FMA latency (4-5 cycles) x 2 ports.
AVX2 static double fma_avx2(size_t iters, float *sink) {
    __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    for (size_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, x, y); a1 = _mm256_fmadd_ps(a1, x, y); a2 = _mm256_fmadd_ps(a2, x, y);
        a3 = _mm256_fmadd_ps(a3, x, y); a4 = _mm256_fmadd_ps(a4, x, y); a5 = _mm256_fmadd_ps(a5, x, y);
        a6 = _mm256_fmadd_ps(a6, x, y); a7 = _mm256_fmadd_ps(a7, x, y); a8 = _mm256_fmadd_ps(a8, x, y);
        a9 = _mm256_fmadd_ps(a9, x, y); a10 = _mm256_fmadd_ps(a10, x, y); a11 = _mm256_fmadd_ps(a11, x, y);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    *sink += out[0];
    return (double)iters * 12 * 8 * 2;
}
#endif

static uint64_t read_generic(const void *p, size_t n) {
    const uint64_t *v = (const uint64_t *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < n / 8; i += 4) { a ^= v[i]; b ^= v[i + 1]; c ^= v[i + 2]; d ^= v[i + 3]; }
    return a ^ b ^ c ^ d;
}

static double fma_generic(size_t iters, float *sink) {
    float a[16];
    for (int k = 0; k < 16; k++) a[k] = 1;
    for (size_t i = 0; i < iters; i++)
        for (int k = 0; k < 16; k++) a[k] = a[k] * 0.999f + 1e-7f;
    float s = 0;
    for (int k = 0; k < 16; k++) s += a[k];
    *sink += s;
    return (double)iters * 16 * 2;
}

#if defined(__x86_64__)
// The same with 512-bit vectors, for CPUs where the kernels use AVX-512 (twice the FLOPs per
// instruction; with two 512-bit FMA ports, twice the peak).
__attribute__((target("avx512f"))) static double fma_avx512(size_t iters, float *sink) {
    __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    for (size_t i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, x, y); a1 = _mm512_fmadd_ps(a1, x, y); a2 = _mm512_fmadd_ps(a2, x, y);
        a3 = _mm512_fmadd_ps(a3, x, y); a4 = _mm512_fmadd_ps(a4, x, y); a5 = _mm512_fmadd_ps(a5, x, y);
        a6 = _mm512_fmadd_ps(a6, x, y); a7 = _mm512_fmadd_ps(a7, x, y); a8 = _mm512_fmadd_ps(a8, x, y);
        a9 = _mm512_fmadd_ps(a9, x, y); a10 = _mm512_fmadd_ps(a10, x, y); a11 = _mm512_fmadd_ps(a11, x, y);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    *sink += _mm512_reduce_add_ps(s);
    return (double)iters * 12 * 16 * 2;
}
#endif

uint64_t g2w_bench_read(const void *p, size_t n) {
#if defined(__x86_64__)
    if (g2w_isa_level() >= 1) return read_avx2(p, n);
#endif
    return read_generic(p, n);
}

double g2w_bench_fma(size_t iterations, float *sink) {
#if defined(__x86_64__)
    if (g2w_isa_level() >= 2) return fma_avx512(iterations, sink);
    if (g2w_isa_level() >= 1) return fma_avx2(iterations, sink);
#endif
    return fma_generic(iterations, sink);
}

// One parallel section in which every thread takes part: each job waits (spins) until all
// `threads` jobs have started, so the time is a real hand-off to the workers and back, not the
// caller running the jobs alone. Returns nanoseconds per section, the median of 15 batches.
// Adds one to *counter, then spins until it reaches target (bounded: a thread that never
// arrives cannot hang the caller).
static void spin_barrier(int *counter, int target) {
    __atomic_add_fetch(counter, 1, __ATOMIC_ACQ_REL);
    for (long spins = 0; __atomic_load_n(counter, __ATOMIC_ACQUIRE) < target && spins < 1000000000L; spins++) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}
typedef struct { size_t threads; int arrived; } handoff_ctx;
static void handoff_task(void *c, size_t job, size_t worker) {
    (void)job; (void)worker;
    handoff_ctx *h = c;
    spin_barrier(&h->arrived, (int)h->threads);
}
#include <time.h>
static double now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int cmp_double(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
double g2w_bench_handoff(g2w_pool *pool, size_t runs) {
    size_t threads = pool ? g2w_pool_threads(pool) : 1;
    if (threads < 2 || runs == 0) return 0;
    double batch[15];
    for (int b = -1; b < 15; b++) {  // batch -1 warms up
        double t0 = now_ns();
        for (size_t r = 0; r < runs; r++) {
            handoff_ctx h = {threads, 0};
            g2w_pool_run(pool, threads, handoff_task, &h);
        }
        if (b >= 0) batch[b] = (now_ns() - t0) / (double)runs;
    }
    qsort(batch, 15, sizeof batch[0], cmp_double);
    return batch[7];
}

// Peak FMA rate with every thread of `pool` running the FMA loop at the same time, as the prompt
// kernels do: each round starts behind a barrier, and its rate is all threads' FLOPs over the
// slowest thread's time; the best of `rounds` rounds. (Threads started one after another, as
// DispatchQueue.concurrentPerform does on Linux, can each find the core to themselves: where two
// vCPUs share a physical core that measured twice the real peak in some runs and not in others.)
typedef struct { size_t threads, iterations, rounds; int arrived; double *seconds; double flops; float sink; } fma_ctx;
static void fma_task(void *c, size_t job, size_t worker) {
    (void)worker;
    fma_ctx *f = c;
    float sink = 0;
    (void)g2w_bench_fma(f->iterations / 4, &sink);  // warm up (clock, caches)
    for (size_t r = 0; r < f->rounds; r++) {
        spin_barrier(&f->arrived, (int)((r + 1) * f->threads));
        double t0 = now_ns();
        double flops = g2w_bench_fma(f->iterations, &sink);
        f->seconds[r * f->threads + job] = (now_ns() - t0) / 1e9;
        if (job == 0 && r == 0) f->flops = flops;
    }
    if (sink == 42.0f) f->sink = sink;
}
double g2w_bench_fma_all(g2w_pool *pool, size_t iterations, size_t rounds) {
    size_t threads = pool ? g2w_pool_threads(pool) : 1;
    if (rounds == 0) return 0;
    double *seconds = calloc(rounds * threads, sizeof(double));
    if (!seconds) return 0;
    fma_ctx f = {threads, iterations, rounds, 0, seconds, 0, 0};
    if (pool && threads > 1) g2w_pool_run(pool, threads, fma_task, &f); else fma_task(&f, 0, 0);
    double best = 0;
    for (size_t r = 0; r < rounds; r++) {
        double slowest = 0;
        for (size_t t = 0; t < threads; t++) if (seconds[r * threads + t] > slowest) slowest = seconds[r * threads + t];
        if (slowest > 0 && f.flops * threads / slowest > best) best = f.flops * threads / slowest;
    }
    free(seconds);
    return best;
}
