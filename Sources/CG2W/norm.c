// LayerNorm. Inference: one row. Training: the forward keeps each row's mean and 1/std; the
// backward gives the input gradient and accumulates the scale and shift gradients (llm.c's
// layernorm_backward).
#include "cg2w_train.h"
#include "simd.h"
#include <math.h>

// ---- Inference: one row ----
static inline void layernorm_body(const float *x, const float *g, const float *b, float *y, size_t n, float eps) {
    float mean = 0;
    for (size_t i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    float var = 0;
    for (size_t i = 0; i < n; i++) { float d = x[i] - mean; var += d * d; }
    var /= (float)n;
    float rs = 1.0f / sqrtf(var + eps);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] - mean) * rs * g[i] + b[i];
}

#if G2W_X86
AVX2 static void layernorm_avx2(const float *x, const float *g, const float *b, float *y, size_t n, float eps) {
    size_t n8 = n & ~(size_t)7, i;
    __m256 a = _mm256_setzero_ps();
    for (i = 0; i < n8; i += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(x + i));
    float mean = hsum(a);
    for (; i < n; i++) mean += x[i];
    mean /= (float)n;
    __m256 m = _mm256_set1_ps(mean), v = _mm256_setzero_ps();
    for (i = 0; i < n8; i += 8) { __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), m); v = _mm256_fmadd_ps(d, d, v); }
    float var = hsum(v);
    for (; i < n; i++) { float d = x[i] - mean; var += d * d; }
    var /= (float)n;
    float rs = 1.0f / sqrtf(var + eps);
    __m256 r = _mm256_set1_ps(rs);
    for (i = 0; i < n8; i += 8) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), r);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(g + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++) y[i] = (x[i] - mean) * rs * g[i] + b[i];
}
#endif

void g2w_layernorm(const float *x, const float *g, const float *b, float *y, size_t n, float eps) {
#if G2W_X86
    if (use_avx2()) { layernorm_avx2(x, g, b, y, n, eps); return; }
#endif
    layernorm_body(x, g, b, y, n, eps);
}
// ---- Training ----

enum { ROWS_PER_JOB = 16, ROWS_PER_CHUNK = 32 };

// Sums of 8 lanes then the lanes in a fixed order: vectorizes without reassociation flags.
static inline float sum8(const float *x, size_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[i + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += x[i];
    return s;
}

static inline void ln_forward_rows(const float *x, const float *g, const float *b, float *y, float *mean, float *rstd, size_t r0, size_t r1,
                                   size_t n, float eps) {
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float m = sum8(xr, n) / (float)n;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) { float d = xr[i + l] - m; acc[l] += d * d; }
        float v = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; i < n; i++) { float d = xr[i] - m; v += d * d; }
        float rs = 1.0f / sqrtf(v / (float)n + eps);
        for (i = 0; i < n; i++) yr[i] = (xr[i] - m) * rs * g[i] + b[i];
        mean[r] = m;
        rstd[r] = rs;
    }
}

// One chunk of rows: dx for each row, and the chunk's partial dgamma (pg) and dbeta (pb).
static inline void ln_backward_rows(const float *dy, const float *x, const float *g, const float *mean, const float *rstd, float *dx, float *pg,
                                    float *pb, size_t r0, size_t r1, size_t n) {
    for (size_t i = 0; i < n; i++) { pg[i] = 0; pb[i] = 0; }
    for (size_t r = r0; r < r1; r++) {
        const float *d = dy + r * n, *xr = x + r * n;
        float *o = dx + r * n;
        float m = mean[r], rs = rstd[r];
        // dnorm = g * dy; the two means the input gradient needs.
        float a1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, a2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) {
                float dn = g[i + l] * d[i + l], xh = (xr[i + l] - m) * rs;
                a1[l] += dn;
                a2[l] += dn * xh;
            }
        float s1 = ((a1[0] + a1[1]) + (a1[2] + a1[3])) + ((a1[4] + a1[5]) + (a1[6] + a1[7]));
        float s2 = ((a2[0] + a2[1]) + (a2[2] + a2[3])) + ((a2[4] + a2[5]) + (a2[6] + a2[7]));
        for (; i < n; i++) { float dn = g[i] * d[i], xh = (xr[i] - m) * rs; s1 += dn; s2 += dn * xh; }
        float mean_dn = s1 / (float)n, mean_dnxh = s2 / (float)n;
        for (i = 0; i < n; i++) {
            float xh = (xr[i] - m) * rs, dn = g[i] * d[i];
            o[i] += (dn - mean_dn - xh * mean_dnxh) * rs;
            pg[i] += d[i] * xh;
            pb[i] += d[i];
        }
    }
}

#if G2W_X86
AVX2 static void ln_forward_avx2(const float *x, const float *g, const float *b, float *y, float *mean, float *rstd, size_t r0, size_t r1,
                                 size_t n, float eps) { ln_forward_rows(x, g, b, y, mean, rstd, r0, r1, n, eps); }
AVX2 static void ln_backward_avx2(const float *dy, const float *x, const float *g, const float *mean, const float *rstd, float *dx, float *pg,
                                  float *pb, size_t r0, size_t r1, size_t n) { ln_backward_rows(dy, x, g, mean, rstd, dx, pg, pb, r0, r1, n); }
#endif

typedef struct {
    const float *x, *g, *b, *dy, *mean_in, *rstd_in;
    float *y, *mean, *rstd, *dx, *scratch;
    size_t rows, n;
    float eps;
    int level;
} ln_args;

static void ln_forward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const ln_args *a = context;
    size_t r0 = job * ROWS_PER_JOB, r1 = r0 + ROWS_PER_JOB < a->rows ? r0 + ROWS_PER_JOB : a->rows;
#if G2W_X86
    if (a->level >= 1) { ln_forward_avx2(a->x, a->g, a->b, a->y, a->mean, a->rstd, r0, r1, a->n, a->eps); return; }
#endif
    ln_forward_rows(a->x, a->g, a->b, a->y, a->mean, a->rstd, r0, r1, a->n, a->eps);
}

void g2w_layernorm_forward(g2w_pool *pool, const float *x, const float *gamma, const float *beta, float *y, float *mean, float *rstd,
                           size_t rows, size_t n, float eps) {
    ln_args a = {.x = x, .g = gamma, .b = beta, .y = y, .mean = mean, .rstd = rstd, .rows = rows, .n = n, .eps = eps, .level = g2w_isa_level()};
    g2w_run(pool, (rows + ROWS_PER_JOB - 1) / ROWS_PER_JOB, ln_forward_job, &a);
}

size_t g2w_layernorm_backward_chunks(size_t rows) { return (rows + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK; }

static void ln_backward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const ln_args *a = context;
    size_t r0 = job * ROWS_PER_CHUNK, r1 = r0 + ROWS_PER_CHUNK < a->rows ? r0 + ROWS_PER_CHUNK : a->rows;
    float *pg = a->scratch + job * 2 * a->n, *pb = pg + a->n;
#if G2W_X86
    if (a->level >= 1) { ln_backward_avx2(a->dy, a->x, a->g, a->mean_in, a->rstd_in, a->dx, pg, pb, r0, r1, a->n); return; }
#endif
    ln_backward_rows(a->dy, a->x, a->g, a->mean_in, a->rstd_in, a->dx, pg, pb, r0, r1, a->n);
}

void g2w_layernorm_backward(g2w_pool *pool, const float *dy, const float *x, const float *gamma, const float *mean, const float *rstd,
                            float *dx, float *dgamma, float *dbeta, size_t rows, size_t n, float *scratch, int accumulate) {
    ln_args a = {.x = x, .g = gamma, .dy = dy, .mean_in = mean, .rstd_in = rstd, .dx = dx, .scratch = scratch, .rows = rows, .n = n,
                 .level = g2w_isa_level()};
    size_t chunks = g2w_layernorm_backward_chunks(rows);
    g2w_run(pool, chunks, ln_backward_job, &a);
    if (!accumulate)
        for (size_t i = 0; i < n; i++) { dgamma[i] = 0; dbeta[i] = 0; }
    for (size_t c = 0; c < chunks; c++) {  // in chunk order: the same sums for any pool size
        const float *pg = scratch + c * 2 * n, *pb = pg + n;
        for (size_t i = 0; i < n; i++) { dgamma[i] += pg[i]; dbeta[i] += pb[i]; }
    }
}
