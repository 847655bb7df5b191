// The optimizer's loops: AdamW over a flat block of parameters and the squared norm of the
// gradients (for clipping). Elementwise and chunked; the norm's partial sums are added in chunk
// order, so the result does not depend on the pool.
#include "cg2w_train.h"
#include "simd.h"
#include <math.h>
#include <stdlib.h>

enum { CHUNK = 1 << 16 };

typedef struct {
    float *p, *m, *v;
    const float *g, *x;
    double *partial;
    size_t n;
    float lr, b1, b2, eps, wd, scale;
    double bias1, bias2_sqrt;
} opt_args;

static inline size_t chunk_end(size_t c, size_t n) { return (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n; }

static double chunk_squares(const float *x, size_t n, size_t c) {
    double acc[4] = {0, 0, 0, 0};
    size_t i = c * CHUNK, end = chunk_end(c, n);
    for (; i + 4 <= end; i += 4)
        for (int l = 0; l < 4; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    for (; i < end; i++) acc[0] += (double)x[i] * (double)x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static void squares_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const opt_args *a = context;
    a->partial[job] = chunk_squares(a->x, a->n, job);
}

double g2w_sum_squares(g2w_pool *pool, const float *x, size_t n) {
    size_t chunks = (n + CHUNK - 1) / CHUNK;
    double stack[64], *partial = chunks <= 64 ? stack : malloc(chunks * sizeof(double));
    double s = 0;
    if (!partial) {  // out of memory: the same chunks in the same order, on this thread
        for (size_t c = 0; c < chunks; c++) s += chunk_squares(x, n, c);
        return s;
    }
    opt_args a = {.x = x, .n = n, .partial = partial};
    g2w_run(pool, chunks, squares_job, &a);
    for (size_t c = 0; c < chunks; c++) s += partial[c];
    if (partial != stack) free(partial);
    return s;
}

// One chunk: the same arithmetic, in the same order, for every element (the vector code just
// does 16 at a time), so every level gives the same bits as the plain loop.
static inline void adamw_plain(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n, float step,
                               float bc2, float decay, float c1, float b2, float c2, float eps, float scale) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * scale;
        float mi = m[i] + c1 * (gi - m[i]);
        float vi = b2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * (mi / (sqrtf(vi) / bc2 + eps));
    }
}

#if G2W_X86
AVX512 static void adamw_avx512(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n, float step,
                                float bc2, float decay, float c1, float b2, float c2, float eps, float scale) {
    const __m512 vstep = _mm512_set1_ps(step), vbc2 = _mm512_set1_ps(bc2), vdecay = _mm512_set1_ps(decay), vc1 = _mm512_set1_ps(c1);
    const __m512 vb2 = _mm512_set1_ps(b2), vc2 = _mm512_set1_ps(c2), veps = _mm512_set1_ps(eps), vscale = _mm512_set1_ps(scale);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), vscale);
        __m512 m0 = _mm512_loadu_ps(m + i);
        __m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(vc1, _mm512_sub_ps(gi, m0)));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(_mm512_mul_ps(vc2, gi), gi));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc2), veps);
        __m512 pi = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), vdecay), _mm512_mul_ps(vstep, _mm512_div_ps(mi, den)));
        _mm512_storeu_ps(p + i, pi);
    }
    adamw_plain(p + i, g + i, m + i, v + i, n - i, step, bc2, decay, c1, b2, c2, eps, scale);
}
#endif

static void adamw_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const opt_args *a = context;
    float step = (float)((double)a->lr / a->bias1), bc2 = (float)a->bias2_sqrt;
    float decay = 1.0f - a->lr * a->wd, c1 = 1.0f - a->b1, c2 = 1.0f - a->b2;
    size_t i = job * CHUNK, n = chunk_end(job, a->n) - i;
#if G2W_X86
    if (g2w_isa_level() >= 2) { adamw_avx512(a->p + i, a->g + i, a->m + i, a->v + i, n, step, bc2, decay, c1, a->b2, c2, a->eps, a->scale); return; }
#endif
    adamw_plain(a->p + i, a->g + i, a->m + i, a->v + i, n, step, bc2, decay, c1, a->b2, c2, a->eps, a->scale);
}

void g2w_adamw(g2w_pool *pool, float *p, const float *grad, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd,
               float grad_scale, double bias1, double bias2_sqrt) {
    opt_args a = {.p = p, .g = grad, .m = m, .v = v, .n = n, .lr = lr, .b1 = b1, .b2 = b2, .eps = eps, .wd = wd, .scale = grad_scale,
                  .bias1 = bias1, .bias2_sqrt = bias2_sqrt};
    g2w_run(pool, (n + CHUNK - 1) / CHUNK, adamw_job, &a);
}
