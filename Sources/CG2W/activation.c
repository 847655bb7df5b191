// Elementwise operations: GELU (tanh approximation, Hugging Face `gelu_new`) in place for
// inference, out of place for training (the input is kept for the backward) and its derivative;
// the residual adds.
#include "cg2w_train.h"
#include "simd.h"
#include <math.h>
#include <string.h>

// ---- Inference: GELU in place, residual add ----
static inline void add_body(float *y, const float *a, size_t n) { for (size_t i = 0; i < n; i++) y[i] += a[i]; }

static inline void gelu_body(float *x, size_t n) {
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
    }
}

#if G2W_X86
// GELU (tanh form) with tanh(z) = sign(z) (1 - e) / (1 + e), e = exp(-2|z|): no overflow, ~1e-7 absolute error.
AVX2 static inline __m256 gelu8_avx2(__m256 v) {
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), k = _mm256_set1_ps(0.044715f), half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f), signbit = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(k, v), _mm256_mul_ps(v, v), v));
    __m256 az = _mm256_andnot_ps(signbit, z);
    __m256 e = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), az));
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    t = _mm256_or_ps(t, _mm256_and_ps(signbit, z));
    return _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, t));
}
// The last n % 8 values go through the same vector code (via a small buffer), so every value's
// result is the same wherever it falls in the array: the session applies GELU to each thread's
// rows, and results must not depend on how rows are split.
AVX2 static void gelu_avx2(float *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, gelu8_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float tmp[8] = {0};
        memcpy(tmp, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(tmp, gelu8_avx2(_mm256_loadu_ps(tmp)));
        memcpy(x + i, tmp, (n - i) * sizeof(float));
    }
}
AVX2 static void add_avx2(float *y, const float *a, size_t n) { add_body(y, a, n); }
#endif

void g2w_add(float *y, const float *a, size_t n) {
#if G2W_X86
    if (use_avx2()) { add_avx2(y, a, n); return; }
#endif
    add_body(y, a, n);
}
void g2w_gelu(float *x, size_t n) {
#if G2W_X86
    if (use_avx2()) { gelu_avx2(x, n); return; }
#endif
    gelu_body(x, n);
}

// ---- Training ----

enum { ELEMENTS_PER_JOB = 1 << 14 };
static const float GELU_C = 0.7978845608028654f, GELU_K = 0.044715f;  // sqrt(2/pi), cubic coefficient

// gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3k x^2), t = tanh(c (x + k x^3)).
static inline void gelu_backward_plain(const float *x, const float *dy, float *dx, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i], t = tanhf(GELU_C * (v + GELU_K * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * v * v);
        dx[i] = dy[i] * d;
    }
}

#if G2W_X86
// tanh(z) = sign(z) (1 - e) / (1 + e), e = exp(-2|z|), as the forward kernel computes it.
AVX2 static void gelu_backward_avx2(const float *x, const float *dy, float *dx, size_t n) {
    const __m256 c = _mm256_set1_ps(GELU_C), k = _mm256_set1_ps(GELU_K), k3 = _mm256_set1_ps(3.0f * GELU_K);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), signbit = _mm256_set1_ps(-0.0f), m2 = _mm256_set1_ps(-2.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), v2 = _mm256_mul_ps(v, v);
        __m256 z = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(k, v), v2, v));
        __m256 e = exp_avx2(_mm256_mul_ps(m2, _mm256_andnot_ps(signbit, z)));
        __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
        t = _mm256_or_ps(t, _mm256_and_ps(signbit, z));
        __m256 left = _mm256_mul_ps(half, _mm256_add_ps(one, t));
        __m256 sech2 = _mm256_fnmadd_ps(t, t, one);
        __m256 right = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(half, v), sech2), _mm256_mul_ps(c, _mm256_fmadd_ps(k3, v2, one)));
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_add_ps(left, right)));
    }
    gelu_backward_plain(x + i, dy + i, dx + i, n - i);
}
#endif

typedef struct { const float *x, *dy; float *y, *dx; size_t n; int level; } gelu_args;

static void gelu_forward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const gelu_args *a = context;
    size_t i0 = job * ELEMENTS_PER_JOB, m = a->n - i0 < ELEMENTS_PER_JOB ? a->n - i0 : ELEMENTS_PER_JOB;
    memcpy(a->y + i0, a->x + i0, m * sizeof(float));
    g2w_gelu(a->y + i0, m);  // the inference kernel, in place
}

static void gelu_backward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const gelu_args *a = context;
    size_t i0 = job * ELEMENTS_PER_JOB, m = a->n - i0 < ELEMENTS_PER_JOB ? a->n - i0 : ELEMENTS_PER_JOB;
#if G2W_X86
    if (a->level >= 1) { gelu_backward_avx2(a->x + i0, a->dy + i0, a->dx + i0, m); return; }
#endif
    gelu_backward_plain(a->x + i0, a->dy + i0, a->dx + i0, m);
}

void g2w_gelu_forward(g2w_pool *pool, const float *x, float *y, size_t n) {
    gelu_args a = {.x = x, .y = y, .n = n};
    g2w_run(pool, (n + ELEMENTS_PER_JOB - 1) / ELEMENTS_PER_JOB, gelu_forward_job, &a);
}

void g2w_gelu_backward(g2w_pool *pool, const float *x, const float *dy, float *dx, size_t n) {
    gelu_args a = {.x = x, .dy = dy, .dx = dx, .n = n, .level = g2w_isa_level()};
    g2w_run(pool, (n + ELEMENTS_PER_JOB - 1) / ELEMENTS_PER_JOB, gelu_backward_job, &a);
}

typedef struct { const float *a, *b; float *y; size_t n; } add_args;

static void add3_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const add_args *a = context;
    size_t i0 = job * ELEMENTS_PER_JOB, end = i0 + ELEMENTS_PER_JOB < a->n ? i0 + ELEMENTS_PER_JOB : a->n;
    for (size_t i = i0; i < end; i++) a->y[i] = a->a[i] + a->b[i];
}

void g2w_add3(g2w_pool *pool, const float *a, const float *b, float *y, size_t n) {
    add_args args = {a, b, y, n};
    g2w_run(pool, (n + ELEMENTS_PER_JOB - 1) / ELEMENTS_PER_JOB, add3_job, &args);
}

typedef struct { const float *src; float *dst; size_t n; float p; uint64_t key; } dropout_args;

static void dropout_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const dropout_args *a = context;
    size_t i0 = job * ELEMENTS_PER_JOB, end = i0 + ELEMENTS_PER_JOB < a->n ? i0 + ELEMENTS_PER_JOB : a->n;
    for (size_t i = i0; i < end; i++) a->dst[i] = a->src[i] * g2w_dropout_factor(a->key, i, a->p);
}

void g2w_dropout(g2w_pool *pool, const float *src, float *dst, size_t n, float p, uint64_t key) {
    dropout_args a = {src, dst, n, p, key};
    g2w_run(pool, (n + ELEMENTS_PER_JOB - 1) / ELEMENTS_PER_JOB, dropout_job, &a);
}
