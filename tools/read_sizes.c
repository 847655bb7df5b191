// Read rate by buffer size, two threads (issue 6 diagnostics; not part of the build).
//
// Streams buffers of 32 MB to 1 GB (transparent huge pages, four prefetched streams per thread,
// as `--bench`'s probe) and prints the best of 8 reads each. On this project's VM (273 MB
// last-level cache shared with other tenants) 32-128 MB read at 47-56 GB/s and 256 MB or more at
// 31-35 GB/s: a 247 MB model is partly served from the cache, which is why decoding can pass the
// 1 GiB probe (README, "Performance").
//
//   cc -O2 -pthread tools/read_sizes.c -o /tmp/read_sizes && /tmp/read_sizes
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

typedef struct { const char *p; size_t n; unsigned long long sink; } job;

__attribute__((target("avx2"))) static void *read_streams(void *arg) {
    job *j = arg;
    size_t q = j->n / 4 / 64;
    const char *s[4] = {j->p, j->p + q * 64, j->p + 2 * q * 64, j->p + 3 * q * 64};
    __m256i a = _mm256_setzero_si256();
    for (size_t i = 0; i < q * 64; i += 64)
        for (int k = 0; k < 4; k++) {
            _mm_prefetch(s[k] + i + 1024, _MM_HINT_T0);
            a = _mm256_xor_si256(a, _mm256_xor_si256(_mm256_load_si256((const __m256i *)(s[k] + i)), _mm256_load_si256((const __m256i *)(s[k] + i + 32))));
        }
    j->sink = (unsigned long long)_mm256_extract_epi64(a, 0);
    return NULL;
}

int main(void) {
    const size_t mb[] = {32, 64, 128, 192, 256, 320, 512, 1024};
    for (size_t m = 0; m < sizeof mb / sizeof mb[0]; m++) {
        size_t n = mb[m] << 20;
        char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        madvise(p, n, MADV_HUGEPAGE);
        memset(p, 1, n);
        double best = 0;
        for (int r = 0; r < 8; r++) {
            job j[2] = {{p, n / 2, 0}, {p + n / 2, n / 2, 0}};
            pthread_t t;
            double t0 = now();
            pthread_create(&t, NULL, read_streams, &j[1]);
            read_streams(&j[0]);
            pthread_join(t, NULL);
            double g = n / (now() - t0) / 1e9;
            if (g > best) best = g;
        }
        printf("%5zu MB: %.1f GB/s\n", mb[m], best);
        munmap(p, n);
    }
    return 0;
}
