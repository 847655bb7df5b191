// The loss over the vocabulary. Perplexity: log-sum-exp of a row of logits. Training: softmax +
// cross-entropy, fused: the forward turns each row of logits into probabilities in place and
// records the row's loss; the backward turns the probabilities into the logits' gradient in
// place. The sums of exponentials are accumulated in double.
#include "cg2w_train.h"
#include "simd.h"
#include <math.h>

// log-sum-exp for perplexity.
static double logsumexp_generic(const float *x, size_t n) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    double s = 0;
    for (size_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

#if G2W_X86
// The largest of x[0..<n], NaN skipped (-inf when nothing else): max(x, m) keeps m where x is
// NaN (the second operand is returned when either is NaN).
AVX2 static float max_avx2(const float *x, size_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) { m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0); m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1); }
    float m8[8];
    _mm256_storeu_ps(m8, _mm256_max_ps(m0, m1));
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++) if (m8[k] > mx) mx = m8[k];
    for (; i < n; i++) if (x[i] > mx) mx = x[i];
    return mx;
}

AVX2 static double logsumexp_avx2(const float *x, size_t n) {
    size_t i;
    const float mx = max_avx2(x, n);
    __m256 vmx = _mm256_set1_ps(mx);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = acc0;
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double a[4];
    _mm256_storeu_pd(a, _mm256_add_pd(acc0, acc1));
    double s = a[0] + a[1] + a[2] + a[3];
    for (; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}
#endif

double g2w_logsumexp(const float *x, size_t n) {
#if G2W_X86
    if (use_avx2()) return logsumexp_avx2(x, n);
#endif
    return logsumexp_generic(x, n);
}

// Greedy decoding's pick: the index of the first largest element (NaN never wins; 0 when no element
// is above -inf). Two passes over the logits (in cache after the LM head): the maximum, then where.
static size_t argmax_generic(const float *x, size_t n) {
    size_t best = 0;
    float bv = -INFINITY;
    for (size_t i = 0; i < n; i++) if (x[i] > bv) { bv = x[i]; best = i; }
    return best;
}
#if G2W_X86
AVX2 static size_t argmax_avx2(const float *x, size_t n) {
    const float mx = max_avx2(x, n);
    if (!(mx > -INFINITY)) return 0;
    __m256 vm = _mm256_set1_ps(mx);
    size_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vm, _CMP_EQ_OQ));
        if (hit) return i + (size_t)__builtin_ctz((unsigned)hit);
    }
    for (; i < n; i++) if (x[i] == mx) return i;
    return 0;  // not reached: mx is one of the elements
}
#endif

size_t g2w_argmax(const float *x, size_t n) {
#if G2W_X86
    if (use_avx2()) return argmax_avx2(x, n);
#endif
    return argmax_generic(x, n);
}

// ---- Training ----

enum { ROWS_PER_JOB = 2 };

static double ce_row_plain(float *x, size_t V, int32_t target) {
    float mx = -INFINITY;
    for (size_t j = 0; j < V; j++) if (x[j] > mx) mx = x[j];
    float lt = x[target];
    double sum = 0;
    for (size_t j = 0; j < V; j++) { x[j] = expf(x[j] - mx); sum += x[j]; }
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < V; j++) x[j] *= inv;
    return log(sum) + (double)mx - (double)lt;
}

#if G2W_X86
AVX2 static double ce_row_avx2(float *x, size_t V, int32_t target) {
    size_t j = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= V; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + j));
    float m8[8];
    _mm256_storeu_ps(m8, vm);
    float mx = m8[0];
    for (int l = 1; l < 8; l++) if (m8[l] > mx) mx = m8[l];
    for (; j < V; j++) if (x[j] > mx) mx = x[j];
    float lt = x[target];
    __m256 vmx = _mm256_set1_ps(mx);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    for (j = 0; j + 8 <= V; j += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmx));
        _mm256_storeu_ps(x + j, e);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double a[4];
    _mm256_storeu_pd(a, _mm256_add_pd(a0, a1));
    double sum = (a[0] + a[1]) + (a[2] + a[3]);
    for (; j < V; j++) { x[j] = expf(x[j] - mx); sum += x[j]; }
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (j = 0; j + 8 <= V; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), inv));
    for (; j < V; j++) x[j] *= (float)(1.0 / sum);
    return log(sum) + (double)mx - (double)lt;
}
#endif

typedef struct { float *x; size_t ld, rows, V; const int32_t *targets; double *loss; float scale; int level; } ce_args;

static void forward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const ce_args *a = context;
    for (size_t r = job * ROWS_PER_JOB; r < a->rows && r < (job + 1) * ROWS_PER_JOB; r++) {
#if G2W_X86
        if (a->level >= 1) { a->loss[r] = ce_row_avx2(a->x + r * a->ld, a->V, a->targets[r]); continue; }
#endif
        a->loss[r] = ce_row_plain(a->x + r * a->ld, a->V, a->targets[r]);
    }
}

static void backward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const ce_args *a = context;
    for (size_t r = job * ROWS_PER_JOB; r < a->rows && r < (job + 1) * ROWS_PER_JOB; r++) {
        float *x = a->x + r * a->ld;
        int32_t t = a->targets[r];
        x[t] -= 1.0f;
        for (size_t j = 0; j < a->V; j++) x[j] *= a->scale;
    }
}

void g2w_softmax_cross_entropy_forward(g2w_pool *pool, float *logits, size_t ld, const int32_t *targets, double *loss, size_t rows, size_t V) {
    ce_args a = {.x = logits, .ld = ld, .rows = rows, .V = V, .targets = targets, .loss = loss, .level = g2w_isa_level()};
    g2w_run(pool, (rows + ROWS_PER_JOB - 1) / ROWS_PER_JOB, forward_job, &a);
}

void g2w_softmax_cross_entropy_backward(g2w_pool *pool, float *probs, size_t ld, const int32_t *targets, size_t rows, size_t V, float scale) {
    ce_args a = {.x = probs, .ld = ld, .rows = rows, .V = V, .targets = targets, .scale = scale};
    g2w_run(pool, (rows + ROWS_PER_JOB - 1) / ROWS_PER_JOB, backward_job, &a);
}
