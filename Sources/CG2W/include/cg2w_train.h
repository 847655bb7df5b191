// g2w training kernels: the forward pass that keeps what backward needs, every backward, the
// optimizer. Organised by operation (gemm.c, attention.c, norm.c, activation.c, loss.c,
// optimizer.c); each picks its vector level at run time like the inference kernels (isa.h).
//
// All functions operate on already-validated data. Those that take a `g2w_pool *` spread their
// work over it (NULL: the calling thread alone). Every reduction is split into fixed chunks
// summed in a fixed order, so results are bit-identical from run to run for a given pool size.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "cg2w.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- Matrix products ---------------------------------------------------------------------------

/// C = A B (+ bias), or C += A B with `accumulate`, for an M x N result:
///   C[i * ldc + j] (+)= sum_{k < K} A(i, k) B(k, j) (+ bias[j]),
///   A(i, k) = A[i * a_rs + k * a_cs], B(k, j) = B[k * b_rs + j * b_cs].
/// Any strides, so the three products of a linear layer are one kernel:
///   forward  Y[n, o]  = X[n, i] W[o, i]^T   (A = X: a_rs = in, a_cs = 1; B: b_rs = 1, b_cs = in)
///   backward dX[n, i] = dY[n, o] W[o, i]    (A = dY: a_rs = out, a_cs = 1; B = W: b_rs = in, b_cs = 1)
///   backward dW[o, i] += dY[n, o]^T X[n, i] (A = dY^T: a_rs = 1, a_cs = out; B = X: b_rs = in, b_cs = 1)
/// Each element of C is summed by one thread in a fixed order (bit-identical for any pool size).
void g2w_sgemm(g2w_pool *pool, size_t M, size_t N, size_t K, const float *A, size_t a_rs, size_t a_cs, const float *B, size_t b_rs,
               size_t b_cs, float *C, size_t ldc, const float *bias, int accumulate);
/// The plain triple loop of g2w_sgemm (float accumulation, k ascending). For tests.
void g2w_sgemm_reference(size_t M, size_t N, size_t K, const float *A, size_t a_rs, size_t a_cs, const float *B, size_t b_rs, size_t b_cs,
                         float *C, size_t ldc, const float *bias, int accumulate);
/// dbias[j] (+)= sum_{i < M} dY[i * ld + j] for j < N (bias gradient of a linear layer); with
/// `accumulate` 0 the sums replace dbias.
void g2w_column_sums(g2w_pool *pool, const float *dY, size_t M, size_t N, size_t ld, float *dbias, int accumulate);

// ---- LayerNorm ---------------------------------------------------------------------------------

/// For each of `rows` rows of n: y = (x - mean) * rstd * gamma + beta, saving mean and rstd
/// (rstd = 1 / sqrt(biased variance + eps)) for the backward.
void g2w_layernorm_forward(g2w_pool *pool, const float *x, const float *gamma, const float *beta, float *y, float *mean, float *rstd,
                           size_t rows, size_t n, float eps);
/// dx += LayerNorm'(dy); dgamma (+)= sum_rows dy * xhat; dbeta (+)= sum_rows dy (replaced with
/// `accumulate` 0). `scratch` has room for 2 * n * g2w_layernorm_backward_chunks(rows) floats
/// (per-chunk partial sums).
void g2w_layernorm_backward(g2w_pool *pool, const float *dy, const float *x, const float *gamma, const float *mean, const float *rstd,
                            float *dx, float *dgamma, float *dbeta, size_t rows, size_t n, float *scratch, int accumulate);
size_t g2w_layernorm_backward_chunks(size_t rows);

// ---- GELU (tanh approximation, `gelu_new`) ------------------------------------------------------

/// y = gelu(x) for n values (x kept for the backward).
void g2w_gelu_forward(g2w_pool *pool, const float *x, float *y, size_t n);
/// dx = dy * gelu'(x) (dx may alias dy).
void g2w_gelu_backward(g2w_pool *pool, const float *x, const float *dy, float *dx, size_t n);

// ---- Causal self-attention ----------------------------------------------------------------------

/// B sequences of T positions; qkv is [B*T, 3C] (q, k, v of every head side by side, head h at
/// columns h*D..), C = H * D. Writes the probabilities P [B, H, T, T] (row t: positions 0...t,
/// zeros after) and out [B*T, C] = dropout(P) V per head, the dropout of element i of P being
/// g2w_dropout_factor(key, i, dropout) (none when dropout is 0).
void g2w_attention_forward(g2w_pool *pool, const float *qkv, float *P, float *out, size_t B, size_t T, size_t H, size_t D, float dropout,
                           uint64_t key);
/// dqkv += attention'(dout): the gradients of q, k and v through both products, the forward's
/// dropout (same dropout and key) and the softmax. `scratch` has room for T * threads floats
/// (threads = the pool's, or 1).
void g2w_attention_backward(g2w_pool *pool, const float *dout, const float *qkv, const float *P, float *dqkv, size_t B, size_t T, size_t H,
                            size_t D, float *scratch, float dropout, uint64_t key);

// ---- Dropout ------------------------------------------------------------------------------------

/// The factor dropout applies to element `index` of the tensor whose masks are drawn with `key`:
/// 0 with probability p, else 1 / (1 - p). Counter-based (SplitMix64's finalizer of
/// key + index x golden ratio, top 24 bits against p x 2^24), so the backward recomputes the
/// forward's mask instead of storing it, and the result does not depend on threads.
static inline float g2w_dropout_factor(uint64_t key, uint64_t index, float p) {
    uint64_t z = key + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) < p * 16777216.0f ? 0.0f : 1.0f / (1.0f - p);
}
/// dst[i] = src[i] * g2w_dropout_factor(key, i, p) for i < n (dst may be src). Applied to a
/// gradient with the forward's key, it is the backward.
void g2w_dropout(g2w_pool *pool, const float *src, float *dst, size_t n, float p, uint64_t key);

// ---- Softmax cross-entropy ---------------------------------------------------------------------

/// For each row of V logits (rows apart by `ld`): turns the logits into probabilities in place
/// and stores loss[r] = logsumexp(row) - logit[target[r]] (sums in double).
void g2w_softmax_cross_entropy_forward(g2w_pool *pool, float *logits, size_t ld, const int32_t *targets, double *loss, size_t rows, size_t V);
/// In place on what the forward left: probabilities -> d(scale * sum of losses)/dlogits
/// = scale * (p - onehot(target)).
void g2w_softmax_cross_entropy_backward(g2w_pool *pool, float *probs, size_t ld, const int32_t *targets, size_t rows, size_t V, float scale);

// ---- Optimizer ----------------------------------------------------------------------------------

/// Sum of squares of n floats, in double (fixed chunks, fixed order).
double g2w_sum_squares(g2w_pool *pool, const float *x, size_t n);
/// AdamW (PyTorch's semantics) on n parameters: g = grad_scale * grad;
///   p *= 1 - lr * wd;  m += (1 - b1) (g - m);  v = b2 v + (1 - b2) g^2;
///   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
/// `bias1` = 1 - b1^t and `bias2_sqrt` = sqrt(1 - b2^t) are passed in.
void g2w_adamw(g2w_pool *pool, float *p, const float *grad, float *m, float *v, size_t n, float lr, float b1, float b2, float eps, float wd,
               float grad_scale, double bias1, double bias2_sqrt);

// ---- Plain helpers ------------------------------------------------------------------------------

/// y[i] = a[i] + b[i].
void g2w_add3(g2w_pool *pool, const float *a, const float *b, float *y, size_t n);

#ifdef __cplusplus
}
#endif
