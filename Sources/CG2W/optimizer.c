// The optimizer's loops: AdamW over a flat block of parameters, the squared norm of the
// gradients (for clipping), and the residual add. Elementwise and chunked; the norm's partial
// sums are added in chunk order, so the result does not depend on the pool.
#include "cg2w_train.h"
#include "simd.h"
#include <math.h>
#include <stdlib.h>

enum { CHUNK = 1 << 16 };

typedef struct {
    float *p, *m, *v, *y;
    const float *g, *a, *b, *x;
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

static void adamw_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const opt_args *a = context;
    float step = (float)((double)a->lr / a->bias1), bc2 = (float)a->bias2_sqrt;
    float decay = 1.0f - a->lr * a->wd, c1 = 1.0f - a->b1, c2 = 1.0f - a->b2;
    for (size_t i = job * CHUNK, end = chunk_end(job, a->n); i < end; i++) {
        float g = a->g[i] * a->scale;
        float m = a->m[i] + c1 * (g - a->m[i]);
        float v = a->b2 * a->v[i] + c2 * g * g;
        a->m[i] = m;
        a->v[i] = v;
        float p = a->p[i] * decay;
        a->p[i] = p - step * (m / (sqrtf(v) / bc2 + a->eps));
    }
}

void g2w_adamw(g2w_pool *pool, float *p, const float *grad, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd,
               float grad_scale, double bias1, double bias2_sqrt) {
    opt_args a = {.p = p, .g = grad, .m = m, .v = v, .n = n, .lr = lr, .b1 = b1, .b2 = b2, .eps = eps, .wd = wd, .scale = grad_scale,
                  .bias1 = bias1, .bias2_sqrt = bias2_sqrt};
    g2w_run(pool, (n + CHUNK - 1) / CHUNK, adamw_job, &a);
}

static void add3_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const opt_args *a = context;
    for (size_t i = job * CHUNK, end = chunk_end(job, a->n); i < end; i++) a->y[i] = a->a[i] + a->b[i];
}

void g2w_add3(g2w_pool *pool, const float *x, const float *y2, float *y, size_t n) {
    opt_args a = {.a = x, .b = y2, .y = y, .n = n};
    g2w_run(pool, (n + CHUNK - 1) / CHUNK, add3_job, &a);
}
