// Causal self-attention. Inference: one query against the KV cache (decoding) and the masked
// softmax rows of a prompt's score matrix (its two products run on matmul.c's strided GEMM).
// Training, one job per (sequence, head), llm.c's plan: the forward keeps the probabilities
// P [B, H, T, T]; the backward goes through both products and the softmax:
//   dP = dout V^T,  dS = P (dP - rowsum(P dP)) / sqrt(D),  dQ = dS K,  dK = dS^T Q,  dV = P^T dout.
// Inner loops are over the head size with 8 independent lanes, so they vectorize as written;
// the portable body is also compiled with AVX2 enabled and chosen at run time.
#include "cg2w_train.h"
#include "simd.h"
#include "half.h"
#include <math.h>

// ---- Inference: one query against the KV cache, and the softmax rows of prompt attention ----
static inline void attend_body(const float *q, const float *K, const float *V, size_t stride, size_t n, size_t hd, float scale,
                               float *s, float *out) {
    float mx = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        const float *k = K + j * stride;
        float d = 0;
        for (size_t i = 0; i < hd; i++) d += q[i] * k[i];
        s[j] = d * scale;
        if (s[j] > mx) mx = s[j];
    }
    float sum = 0;
    for (size_t j = 0; j < n; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < hd; i++) out[i] = 0;
    for (size_t j = 0; j < n; j++) {
        const float *v = V + j * stride;
        float p = s[j] * inv;
        for (size_t i = 0; i < hd; i++) out[i] += p * v[i];
    }
}

// The same over an f16 cache (`--kv-type f16`): keys and values are binary16, widened on load.
static inline void attend_f16_body(const float *q, const uint16_t *K, const uint16_t *V, size_t stride, size_t n, size_t hd, float scale,
                                   float *s, float *out) {
    float mx = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        const uint16_t *k = K + j * stride;
        float d = 0;
        for (size_t i = 0; i < hd; i++) d += q[i] * half_to_float(k[i]);
        s[j] = d * scale;
        if (s[j] > mx) mx = s[j];
    }
    float sum = 0;
    for (size_t j = 0; j < n; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < hd; i++) out[i] = 0;
    for (size_t j = 0; j < n; j++) {
        const uint16_t *v = V + j * stride;
        float p = s[j] * inv;
        for (size_t i = 0; i < hd; i++) out[i] += p * half_to_float(v[i]);
    }
}

#if G2W_X86
// x[j] = exp(x[j] - mx) for j < n, eight at a time (exp_avx2: ~1 ulp on x <= 0); returns the sum.
// The softmax numerators of attention and of g2w_softmax_row.
AVX2 static float exp_shifted_avx2(float *x, size_t n, float mx) {
    __m256 m = _mm256_set1_ps(mx), sumv = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j), m));
        _mm256_storeu_ps(x + j, e);
        sumv = _mm256_add_ps(sumv, e);
    }
    float sum = hsum(sumv);
    for (; j < n; j++) { x[j] = expf(x[j] - mx); sum += x[j]; }
    return sum;
}
// NAME##_n is the body for hd = 8 nv over `heads` consecutive heads; it is inlined with nv = 8
// (GPT-2's head size, 64, in every model size) so that the output accumulators stay in registers,
// and with nv = hd / 8 for other head sizes (arrays on the stack then).
#define ATTEND_AVX2(NAME, ET, LOAD, BODY) \
AVX2 static inline __attribute__((always_inline)) void NAME##_n(const float *q, const ET *K, const ET *V, size_t st, size_t n, size_t hd, \
                                                                 size_t heads, float sc, float *s, float *o, const size_t nv) { \
    /* Scores of every head, blocks of four positions outermost and four keys at a time (four \
       independent FMA chains, reduced together). The heads' slices of a cache row are contiguous \
       (span bytes), so a block reads one stretch of each of four rows (st apart): the rows are out \
       of cache once a token's weights went through, so they are prefetched, keys 8 positions \
       ahead, and each position's values during the scores, for the second pass. */ \
    const size_t span = heads * hd * sizeof(ET); \
    const __m128 sc4 = _mm_set1_ps(sc); \
    for (size_t u = 0; u < 8 && u < n; u++) \
        for (size_t b = 0; b < span; b += 64) _mm_prefetch((const char *)(K + u * st) + b, _MM_HINT_T0); \
    size_t j = 0; \
    for (; j + 4 <= n; j += 4) { \
        for (size_t u = 0; u < 4; u++) \
            for (size_t b = 0; b < span; b += 64) { \
                if (j + 8 + u < n) _mm_prefetch((const char *)(K + (j + 8 + u) * st) + b, _MM_HINT_T0); \
                _mm_prefetch((const char *)(V + (j + u) * st) + b, _MM_HINT_T0); \
            } \
        for (size_t h = 0; h < heads; h++) { \
            const float *qh = q + h * hd; \
            const ET *k0 = K + j * st + h * hd, *k1 = k0 + st, *k2 = k1 + st, *k3 = k2 + st; \
            __m256 qi = _mm256_loadu_ps(qh); \
            __m256 a0 = _mm256_mul_ps(qi, LOAD(k0)), a1 = _mm256_mul_ps(qi, LOAD(k1)); \
            __m256 a2 = _mm256_mul_ps(qi, LOAD(k2)), a3 = _mm256_mul_ps(qi, LOAD(k3)); \
            for (size_t i = 1; i < nv; i++) { \
                qi = _mm256_loadu_ps(qh + 8 * i); \
                a0 = _mm256_fmadd_ps(qi, LOAD(k0 + 8 * i), a0); a1 = _mm256_fmadd_ps(qi, LOAD(k1 + 8 * i), a1); \
                a2 = _mm256_fmadd_ps(qi, LOAD(k2 + 8 * i), a2); a3 = _mm256_fmadd_ps(qi, LOAD(k3 + 8 * i), a3); \
            } \
            __m256 hs = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3)); \
            _mm_storeu_ps(s + h * n + j, _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(hs), _mm256_extractf128_ps(hs, 1)), sc4)); \
        } \
    } \
    for (; j < n; j++) { \
        for (size_t b = 0; b < span; b += 64) _mm_prefetch((const char *)(V + j * st) + b, _MM_HINT_T0); \
        for (size_t h = 0; h < heads; h++) { \
            const ET *k = K + j * st + h * hd; \
            __m256 a = _mm256_mul_ps(_mm256_loadu_ps(q + h * hd), LOAD(k)); \
            for (size_t i = 1; i < nv; i++) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * hd + 8 * i), LOAD(k + 8 * i), a); \
            s[h * n + j] = hsum(a) * sc; \
        } \
    } \
    /* Per head: the softmax numerators, then the values (in cache now), accumulators in registers. */ \
    for (size_t h = 0; h < heads; h++) { \
        float *sh = s + h * n; \
        __m256 mxv = _mm256_set1_ps(-INFINITY); \
        size_t i8 = 0; \
        for (; i8 + 8 <= n; i8 += 8) mxv = _mm256_max_ps(mxv, _mm256_loadu_ps(sh + i8)); \
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mxv), _mm256_extractf128_ps(mxv, 1)); \
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4)); \
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4)); \
        float mx = _mm_cvtss_f32(m4); \
        for (; i8 < n; i8++) if (sh[i8] > mx) mx = sh[i8]; \
        float sum = exp_shifted_avx2(sh, n, mx); \
        __m256 acc[32]; \
        for (size_t i = 0; i < nv; i++) acc[i] = _mm256_setzero_ps(); \
        for (size_t jj = 0; jj < n; jj++) { \
            const ET *v = V + jj * st + h * hd; \
            __m256 p = _mm256_set1_ps(sh[jj]); \
            for (size_t i = 0; i < nv; i++) acc[i] = _mm256_fmadd_ps(p, LOAD(v + 8 * i), acc[i]); \
        } \
        __m256 inv = _mm256_set1_ps(1.0f / sum); \
        for (size_t i = 0; i < nv; i++) _mm256_storeu_ps(o + h * hd + 8 * i, _mm256_mul_ps(acc[i], inv)); \
    } \
} \
AVX2 static void NAME(const float *q, const ET *K, const ET *V, size_t st, size_t n, size_t hd, size_t heads, float sc, float *s, float *o) { \
    if (hd % 8 != 0 || hd > 256) { \
        for (size_t h = 0; h < heads; h++) BODY(q + h * hd, K + h * hd, V + h * hd, st, n, hd, sc, s + h * n, o + h * hd); \
        return; \
    } \
    if (hd == 64) NAME##_n(q, K, V, st, n, hd, heads, sc, s, o, 8); \
    else NAME##_n(q, K, V, st, n, hd, heads, sc, s, o, hd / 8); \
}
AVX2 static inline __m256 load8_ps(const float *p) { return _mm256_loadu_ps(p); }
AVX2 static inline __m256 load8_ph(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
ATTEND_AVX2(attend_avx2, float, load8_ps, attend_body)
ATTEND_AVX2(attend_f16_avx2, uint16_t, load8_ph, attend_f16_body)
#endif

static void softmax_body(float *x, size_t valid, float scale) {
    float mx = -INFINITY;
    for (size_t j = 0; j < valid; j++) { x[j] *= scale; if (x[j] > mx) mx = x[j]; }
    float sum = 0;
    for (size_t j = 0; j < valid; j++) { x[j] = expf(x[j] - mx); sum += x[j]; }
    float inv = 1.0f / sum;
    for (size_t j = 0; j < valid; j++) x[j] *= inv;
}
#if G2W_X86
AVX2 static void softmax_avx2(float *x, size_t valid, float scale) {
    __m256 sc = _mm256_set1_ps(scale), mxv = _mm256_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 8 <= valid; j += 8) { __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j), sc); _mm256_storeu_ps(x + j, v); mxv = _mm256_max_ps(mxv, v); }
    float buf[8], mx = -INFINITY;
    _mm256_storeu_ps(buf, mxv);
    for (int i = 0; i < 8; i++) if (buf[i] > mx) mx = buf[i];
    for (; j < valid; j++) { x[j] *= scale; if (x[j] > mx) mx = x[j]; }
    float sum = exp_shifted_avx2(x, valid, mx);
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (j = 0; j + 8 <= valid; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), inv));
    for (; j < valid; j++) x[j] *= 1.0f / sum;
}
#endif

void g2w_softmax_row(float *x, size_t n, size_t valid, float scale) {
#if G2W_X86
    if (use_avx2()) softmax_avx2(x, valid, scale); else softmax_body(x, valid, scale);
#else
    softmax_body(x, valid, scale);
#endif
    for (size_t j = valid; j < n; j++) x[j] = 0;
}

void g2w_attend(const float *q, const float *K, const float *V, size_t stride, size_t n, size_t hd, size_t heads, float scale, float *scores, float *out) {
#if G2W_X86
    if (use_avx2()) { attend_avx2(q, K, V, stride, n, hd, heads, scale, scores, out); return; }
#endif
    for (size_t h = 0; h < heads; h++) attend_body(q + h * hd, K + h * hd, V + h * hd, stride, n, hd, scale, scores + h * n, out + h * hd);
}
void g2w_attend_f16(const float *q, const uint16_t *K, const uint16_t *V, size_t stride, size_t n, size_t hd, size_t heads, float scale, float *scores, float *out) {
#if G2W_X86
    if (use_avx2()) { attend_f16_avx2(q, K, V, stride, n, hd, heads, scale, scores, out); return; }
#endif
    for (size_t h = 0; h < heads; h++) attend_f16_body(q + h * hd, K + h * hd, V + h * hd, stride, n, hd, scale, scores + h * n, out + h * hd);
}

// ---- Training ----

static inline float dot8(const float *a, const float *b, size_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

// Sequence b, head h. Row t of q/k/v is at qkv + (b*T + t) * 3C + {0, C, 2C} + h*D.
static inline void forward_head(const float *qkv, float *P, float *out, size_t b, size_t h, size_t T, size_t H, size_t D, float drop,
                                uint64_t key) {
    size_t C = H * D, C3 = 3 * C;
    const float *base = qkv + b * T * C3 + h * D;
    float scale = 1.0f / sqrtf((float)D);
    for (size_t t = 0; t < T; t++) {
        const float *q = base + t * C3;
        float *p = P + ((b * H + h) * T + t) * T;
        float mx = -INFINITY;
        for (size_t u = 0; u <= t; u++) {
            float s = dot8(q, base + u * C3 + C, D) * scale;
            p[u] = s;
            if (s > mx) mx = s;
        }
        float sum = 0;
        for (size_t u = 0; u <= t; u++) { p[u] = expf(p[u] - mx); sum += p[u]; }
        float inv = 1.0f / sum;
        for (size_t u = 0; u <= t; u++) p[u] *= inv;
        for (size_t u = t + 1; u < T; u++) p[u] = 0;
        float *o = out + (b * T + t) * C + h * D;
        for (size_t i = 0; i < D; i++) o[i] = 0;
        if (drop > 0) {  // out_t = sum_u dropout(P)[t, u] v_u; P itself is kept for the backward
            size_t row = ((b * H + h) * T + t) * T;
            for (size_t u = 0; u <= t; u++) axpy(o, g2w_dropout_factor(key, row + u, drop) * p[u], base + u * C3 + 2 * C, D);
        } else {
            for (size_t u = 0; u <= t; u++) axpy(o, p[u], base + u * C3 + 2 * C, D);
        }
    }
}

static inline void backward_head(const float *dout, const float *qkv, const float *P, float *dqkv, size_t b, size_t h, size_t T, size_t H,
                                 size_t D, float *dp, float drop, uint64_t key) {
    size_t C = H * D, C3 = 3 * C;
    const float *base = qkv + b * T * C3 + h * D;
    float *dbase = dqkv + b * T * C3 + h * D;
    float scale = 1.0f / sqrtf((float)D);
    for (size_t t = 0; t < T; t++) {
        const float *p = P + ((b * H + h) * T + t) * T;
        const float *d = dout + (b * T + t) * C + h * D;
        const float *q = base + t * C3;
        float *dq = dbase + t * C3;
        float s = 0;
        size_t row = ((b * H + h) * T + t) * T;
        for (size_t u = 0; u <= t; u++) {
            float f = drop > 0 ? g2w_dropout_factor(key, row + u, drop) : 1.0f;  // the forward's dropout of P[t, u]
            dp[u] = f * dot8(d, base + u * C3 + 2 * C, D);   // dP[t, u] = f (dout_t . v_u)
            axpy(dbase + u * C3 + 2 * C, f * p[u], d, D);    // dv_u += f P[t, u] dout_t
            s += p[u] * dp[u];
        }
        for (size_t u = 0; u <= t; u++) {
            float ds = p[u] * (dp[u] - s) * scale;
            axpy(dq, ds, base + u * C3 + C, D);          // dq_t += dS[t, u] k_u
            axpy(dbase + u * C3 + C, ds, q, D);          // dk_u += dS[t, u] q_t
        }
    }
}

#if G2W_X86
AVX2 static void forward_head_avx2(const float *qkv, float *P, float *out, size_t b, size_t h, size_t T, size_t H, size_t D, float drop,
                                   uint64_t key) {
    forward_head(qkv, P, out, b, h, T, H, D, drop, key);
}
AVX2 static void backward_head_avx2(const float *dout, const float *qkv, const float *P, float *dqkv, size_t b, size_t h, size_t T, size_t H,
                                    size_t D, float *dp, float drop, uint64_t key) {
    backward_head(dout, qkv, P, dqkv, b, h, T, H, D, dp, drop, key);
}
#endif

typedef struct {
    const float *qkv, *dout, *Pin;
    float *P, *out, *dqkv, *scratch;
    size_t B, T, H, D;
    float drop;
    uint64_t key;
    int level;
} attn_args;

static void forward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const attn_args *a = context;
    size_t b = job / a->H, h = job % a->H;
#if G2W_X86
    if (a->level >= 1) { forward_head_avx2(a->qkv, a->P, a->out, b, h, a->T, a->H, a->D, a->drop, a->key); return; }
#endif
    forward_head(a->qkv, a->P, a->out, b, h, a->T, a->H, a->D, a->drop, a->key);
}

static void backward_job(void *context, size_t job, size_t worker) {
    const attn_args *a = context;
    size_t b = job / a->H, h = job % a->H;
    float *dp = a->scratch + worker * a->T;
#if G2W_X86
    if (a->level >= 1) { backward_head_avx2(a->dout, a->qkv, a->Pin, a->dqkv, b, h, a->T, a->H, a->D, dp, a->drop, a->key); return; }
#endif
    backward_head(a->dout, a->qkv, a->Pin, a->dqkv, b, h, a->T, a->H, a->D, dp, a->drop, a->key);
}

void g2w_attention_forward(g2w_pool *pool, const float *qkv, float *P, float *out, size_t B, size_t T, size_t H, size_t D, float dropout,
                           uint64_t key) {
    attn_args a = {.qkv = qkv, .P = P, .out = out, .B = B, .T = T, .H = H, .D = D, .drop = dropout, .key = key, .level = g2w_isa_level()};
    g2w_run(pool, B * H, forward_job, &a);
}

void g2w_attention_backward(g2w_pool *pool, const float *dout, const float *qkv, const float *P, float *dqkv, size_t B, size_t T, size_t H,
                            size_t D, float *scratch, float dropout, uint64_t key) {
    attn_args a = {.qkv = qkv, .dout = dout, .Pin = P, .dqkv = dqkv, .scratch = scratch, .B = B, .T = T, .H = H, .D = D, .drop = dropout,
                   .key = key, .level = g2w_isa_level()};
    g2w_run(pool, B * H, backward_job, &a);
}
