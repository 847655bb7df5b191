// Causal multi-head self-attention for training, one job per (sequence, head), llm.c's plan:
// the forward keeps the probabilities P [B, H, T, T]; the backward goes through both products
// and the softmax:
//   dP = dout V^T,  dS = P (dP - rowsum(P dP)) / sqrt(D),  dQ = dS K,  dK = dS^T Q,  dV = P^T dout.
// Inner loops are over the head size with 8 independent lanes, so they vectorize as written;
// the portable body is also compiled with AVX2 enabled and chosen at run time.
#include "cg2w_train.h"
#include "simd.h"
#include <math.h>

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
static inline void forward_head(const float *qkv, float *P, float *out, size_t b, size_t h, size_t T, size_t H, size_t D) {
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
        for (size_t u = 0; u <= t; u++) axpy(o, p[u], base + u * C3 + 2 * C, D);
    }
}

static inline void backward_head(const float *dout, const float *qkv, const float *P, float *dqkv, size_t b, size_t h, size_t T, size_t H,
                                 size_t D, float *dp) {
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
        for (size_t u = 0; u <= t; u++) {
            dp[u] = dot8(d, base + u * C3 + 2 * C, D);   // dP[t, u] = dout_t . v_u
            axpy(dbase + u * C3 + 2 * C, p[u], d, D);   // dv_u += P[t, u] dout_t
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
AVX2 static void forward_head_avx2(const float *qkv, float *P, float *out, size_t b, size_t h, size_t T, size_t H, size_t D) {
    forward_head(qkv, P, out, b, h, T, H, D);
}
AVX2 static void backward_head_avx2(const float *dout, const float *qkv, const float *P, float *dqkv, size_t b, size_t h, size_t T, size_t H,
                                    size_t D, float *dp) {
    backward_head(dout, qkv, P, dqkv, b, h, T, H, D, dp);
}
#endif

typedef struct {
    const float *qkv, *dout, *Pin;
    float *P, *out, *dqkv, *scratch;
    size_t B, T, H, D;
    int level;
} attn_args;

static void forward_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const attn_args *a = context;
    size_t b = job / a->H, h = job % a->H;
#if G2W_X86
    if (a->level >= 1) { forward_head_avx2(a->qkv, a->P, a->out, b, h, a->T, a->H, a->D); return; }
#endif
    forward_head(a->qkv, a->P, a->out, b, h, a->T, a->H, a->D);
}

static void backward_job(void *context, size_t job, size_t worker) {
    const attn_args *a = context;
    size_t b = job / a->H, h = job % a->H;
    float *dp = a->scratch + worker * a->T;
#if G2W_X86
    if (a->level >= 1) { backward_head_avx2(a->dout, a->qkv, a->Pin, a->dqkv, b, h, a->T, a->H, a->D, dp); return; }
#endif
    backward_head(a->dout, a->qkv, a->Pin, a->dqkv, b, h, a->T, a->H, a->D, dp);
}

void g2w_attention_forward(g2w_pool *pool, const float *qkv, float *P, float *out, size_t B, size_t T, size_t H, size_t D) {
    attn_args a = {.qkv = qkv, .P = P, .out = out, .B = B, .T = T, .H = H, .D = D, .level = g2w_isa_level()};
    g2w_run(pool, B * H, forward_job, &a);
}

void g2w_attention_backward(g2w_pool *pool, const float *dout, const float *qkv, const float *P, float *dqkv, size_t B, size_t T, size_t H,
                            size_t D, float *scratch) {
    attn_args a = {.qkv = qkv, .dout = dout, .Pin = P, .dqkv = dqkv, .scratch = scratch, .B = B, .T = T, .H = H, .D = D, .level = g2w_isa_level()};
    g2w_run(pool, B * H, backward_job, &a);
}
