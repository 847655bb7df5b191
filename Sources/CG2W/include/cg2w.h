// g2w kernels: the few hot loops of the runtime, in C so that each can be compiled for the CPU's
// vector extensions with a per-function `target` attribute and chosen at run time. No global
// compiler flags are needed, so the Swift package stays usable as a versioned dependency.
//
// All functions operate on already-validated data: pointers valid for the stated element counts.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from `crc` (pass 0 to start).
/// Uses the SSE4.2 `crc32` instruction when the CPU has it.
uint32_t g2w_crc32c(uint32_t crc, const void *data, size_t length);

/// Name of the instruction set the kernels dispatch to ("avx2+fma+f16c" or "generic").
const char *g2w_kernel_isa(void);

/// The decoding kernels' streaming parameter for this machine: how far ahead (bytes) each of a
/// matrix-vector product's streams is prefetched. Chosen once (isa.c) from G2W_PREFETCH if set
/// (256...16384, a multiple of 64), else from a table by CPU vendor and family; `source` says
/// which ("AMD family 26 (table)", "G2W_PREFETCH", ...).
typedef struct g2w_tuning {
    size_t prefetch_bytes;
    char source[64];
} g2w_tuning;
g2w_tuning g2w_get_tuning(void);
/// Overrides the prefetch distance (rounded down to a multiple of 64, clamped to 256...16384) for
/// the whole process, as `--bench`'s sweep does; 0 restores the chosen value. Not for use while
/// kernels run on other threads.
void g2w_set_prefetch_bytes(size_t bytes);

/// Converts `n` IEEE binary16 values to binary32 (exact).
void g2w_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// Converts `n` binary32 values to binary16, rounding to nearest, ties to even (overflow -> inf).
void g2w_f32_to_f16(const float *src, uint16_t *dst, size_t n);

#ifdef __cplusplus
}
#endif

// Signal-safe removal of a temporary file. A writer registers the temporary path it is writing;
// the handlers installed by `g2w_cleanup_install_handlers` (SIGINT, SIGTERM, SIGHUP) unlink it
// and exit with 128 + signal (SIGXFSZ and SIGPIPE are ignored so they surface as write errors), so an interrupted writer leaves nothing behind.
// Only one path is tracked at a time (writers run one at a time in the tools).
#ifdef __cplusplus
extern "C" {
#endif
void g2w_cleanup_register(const char *path);
void g2w_cleanup_unregister(void);
void g2w_cleanup_install_handlers(void);
/// For long runs: SIGINT/SIGTERM/SIGHUP only record the signal (a second one exits at once, as
/// above); g2w_stop_requested() returns the signal number caught, 0 if none.
void g2w_stop_install_handlers(void);
int g2w_stop_requested(void);
/// Opens `path` read-only without blocking (a FIFO or a device never stalls the caller) and
/// returns the descriptor if it is a regular file, with its size. Returns -1 with errno set if it
/// cannot be opened, -2 if it is not a regular file, with *type 1 directory, 2 FIFO, 3 device,
/// 4 socket, 5 other.
int g2w_open_regular(const char *path, uint64_t *size, unsigned *type);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Forces kernel level 0 (portable), 1 (AVX2+FMA+F16C), 2 (+ AVX-512F for the batched
/// matmul) or 3 (+ AVX-512BW/VL/VNNI for the int8 dot products of quantized weights),
/// capped at what the CPU supports; -1 restores run-time dispatch. Returns the level set.
int g2w_force_isa(int level);

/// Matrix-vector product over rows [row_begin, row_end) of W (rows x cols, row-major):
/// y[r] = dot(W[r, :], x) (+ bias[r] if bias is not NULL).
void g2w_matvec_f32(const float *W, const float *x, const float *bias, float *y, size_t cols, size_t row_begin, size_t row_end);
void g2w_matvec_f16(const uint16_t *W, const float *x, const float *bias, float *y, size_t cols, size_t row_begin, size_t row_end);

/// Batched product for rows [row_begin, row_end) of W: Y[t, r] = dot(X[t, :], W[r, :]) (+ bias[r]),
/// X is T x cols (row stride cols), Y is T x ldy (row stride ldy).
void g2w_matmul_f32(const float *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t row_begin, size_t row_end);
void g2w_matmul_f16(const uint16_t *W, const float *X, const float *bias, float *Y, size_t T, size_t cols, size_t ldy, size_t row_begin, size_t row_end);

/// Causal attention of one query against `n` cached positions for `heads` consecutive heads h:
/// s[j] = scale * dot(q_h, K_h[j]); p = softmax(s); out_h = sum_j p[j] V_h[j], where
/// q_h = q + h * head_dim, K_h[j] = K + j * stride + h * head_dim, V_h[j] likewise and
/// out_h = out + h * head_dim. `scores` has room for heads x n floats. Each head's result does
/// not depend on `heads` (the heads only share the reads of each cache row).
void g2w_attend(const float *q, const float *K, const float *V, size_t stride, size_t n, size_t head_dim, size_t heads, float scale, float *scores, float *out);
/// The same with an f16 (binary16) cache.
void g2w_attend_f16(const float *q, const uint16_t *K, const uint16_t *V, size_t stride, size_t n, size_t head_dim, size_t heads, float scale, float *scores, float *out);
/// 1 when g2w_gemm_strided runs a blocked kernel (AVX-512F); otherwise it is a plain loop and
/// attention should use g2w_attend.
int g2w_has_fast_gemm(void);
/// Y[t * ldy + r] = sum_{k < n} X[t * ldx + k] * W[r * rs + k * ks] for t < T, r < rows (f32).
/// The attention products of a prompt: scores = Q K^T (W = K, rs = stride, ks = 1) and
/// out = P V (W = V^T: rs = 1, ks = stride). For the causal mask, `out_limit` > 0 says only
/// Y[t, r] with r < out_limit + t are needed (others may be left unwritten) and `in_limit` > 0
/// says X[t, k] = 0 for k >= in_limit + t (the kernel may skip them); 0 means no limit.
void g2w_gemm_strided(const float *W, size_t rs, size_t ks, const float *X, size_t ldx, float *Y, size_t ldy, size_t T, size_t n, size_t rows,
                      size_t out_limit, size_t in_limit);
/// x[0..<valid] = softmax(scale * x[0..<valid]); x[valid..<n] = 0.
void g2w_softmax_row(float *x, size_t n, size_t valid, float scale);

/// y = x + a (elementwise, n values), used for residual connections.
void g2w_add(float *y, const float *a, size_t n);
/// LayerNorm of one row: y = (x - mean) / sqrt(var + eps) * gamma + beta (biased variance).
void g2w_layernorm(const float *x, const float *gamma, const float *beta, float *y, size_t n, float eps);
/// GELU with the tanh approximation (`gelu_new`), in place.
void g2w_gelu(float *x, size_t n);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Benchmark helper: streams `n` bytes (a multiple of 128, 32-byte aligned; four concurrent streams) and returns a value
/// depending on all of them, so the reads cannot be optimized away.
uint64_t g2w_bench_read(const void *p, size_t n);
/// Benchmark helper: `iterations` rounds of register-only FMAs; returns the floating-point
/// operations done (2 per lane per FMA). The result sink prevents elision.
double g2w_bench_fma(size_t iterations, float *sink);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// log(sum_i exp(x[i])), computed stably (max subtracted); vectorized exp with ~1e-7 relative
/// error, sums in double. For perplexity over large vocabularies.
double g2w_logsumexp(const float *x, size_t n);
/// Index of the first largest of x[0..<n] (NaN never wins; 0 if none is above -inf, or n is 0).
size_t g2w_argmax(const float *x, size_t n);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// 1 if the `n` bytes are well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF), else 0.
int g2w_utf8_valid(const uint8_t *p, size_t n);
/// The same, always with the portable code (for tests against the AVX2 path).
int g2w_utf8_valid_portable(const uint8_t *p, size_t n);
/// The offset of the first byte of `p` that does not start or continue a well-formed sequence
/// (for a sequence cut short, the offset of its lead byte, as Python's `UnicodeDecodeError.start`),
/// or `n` when all `n` bytes are well-formed. One vector pass when they are.
size_t g2w_utf8_first_invalid(const uint8_t *p, size_t n);
/// The first of `count` strings stored back to back in `p` (string i ends at `ends[i]`, ends
/// non-decreasing, the last within the buffer) that is not well-formed UTF-8 on its own, or
/// `count` if all are. One validation pass when all are good.
size_t g2w_utf8_first_invalid_element(const uint8_t *p, const ptrdiff_t *ends, size_t count);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// A fixed set of threads for the forward pass's parallel sections. Idle workers spin a few
/// milliseconds before sleeping, so back-to-back sections (decoding) start without a wake-up
/// (with more threads than available CPUs they sleep at once: spinning would starve the others).
typedef struct g2w_pool g2w_pool;
/// One job of a run: `job` in 0..<jobs, `worker` in 0..<threads (0 is the calling thread).
typedef void (*g2w_pool_task)(void *context, size_t job, size_t worker);
/// A pool of `threads` threads counting the caller (threads - 1 are started); NULL if out of memory.
/// If a thread cannot be started, the pool runs with fewer (see g2w_pool_threads).
g2w_pool *g2w_pool_create(size_t threads);
size_t g2w_pool_threads(const g2w_pool *pool);
/// Runs task(context, job, worker) for every job in 0..<jobs across the threads (jobs are claimed
/// one at a time, the caller taking part) and returns when all are done. Runs started from several
/// threads take turns (a run waits for the one in progress); a task must not start a run on its pool.
void g2w_pool_run(g2w_pool *pool, size_t jobs, g2w_pool_task task, void *context);
/// Stops and joins the workers and frees the pool (NULL is ignored).
void g2w_pool_destroy(g2w_pool *pool);

/// Benchmark helper: nanoseconds per parallel section on `pool` in which every thread takes part
/// (each job waits until all have started): the median of 15 batches of `runs`; 0 with one thread.
double g2w_bench_handoff(g2w_pool *pool, size_t runs);
/// Benchmark helper: peak FLOP/s with every thread of `pool` (NULL: the caller alone) running
/// `iterations` rounds of g2w_bench_fma at the same time: each of `rounds` rounds starts behind a
/// barrier and counts all threads' FLOPs over the slowest thread's time; the best round.
double g2w_bench_fma_all(g2w_pool *pool, size_t iterations, size_t rounds);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Element type codes of the tensor table (spec/g2w.md, "Element types").
enum { G2W_TYPE_F32 = 0, G2W_TYPE_F16 = 1, G2W_TYPE_Q8_0 = 3, G2W_TYPE_Q4_0 = 4 };

/// What the runtime knows about one element type: its block shape and its kernels. A tensor of
/// `n` elements (n a multiple of block_elements, and of it along each row) takes
/// n / block_elements * block_bytes bytes: first the values ("quants", quant_bytes per block),
/// then for quantized types one binary16 scale per block. W below is a [rows, cols] matrix.
typedef struct g2w_type_traits {
    const char *name;
    int code;
    size_t block_elements, block_bytes, quant_bytes;
    /// Bytes of the prepared activation of a `cols`-vector for matvec (0: matvec reads x as is).
    size_t (*prepared_bytes)(size_t cols);
    /// Prepares x (quantizes it per block to int8 for the integer dot products); NULL if none.
    void (*prepare)(const float *x, size_t cols, void *prepared);
    /// y[r] = dot(W[r, :], x) (+ bias[r]) for r in [r0, r1); xp is the prepared x (or x).
    void (*matvec)(const void *W, size_t rows, size_t cols, const void *xp, const float *bias, float *y, size_t r0, size_t r1);
    /// Y[t, r] = dot(X[t, :], W[r, :]) (+ bias[r]) for t < T, r in [r0, r1); Y's rows ldy apart.
    void (*matmul)(const void *W, size_t rows, size_t cols, const float *X, const float *bias, float *Y, size_t T, size_t ldy, size_t r0, size_t r1);
    /// Rows [r0, r1) of W as f32 into dst ((r1 - r0) x cols).
    void (*dequantize)(const void *W, size_t rows, size_t cols, size_t r0, size_t r1, float *dst);
    /// Encodes n elements (a multiple of block_elements): values to `values`, scales (if any) to `scales`.
    void (*quantize)(const float *src, size_t n, void *values, uint16_t *scales);
} g2w_type_traits;

/// The traits of type `code`, or NULL for a code this library does not know.
const g2w_type_traits *g2w_type(int code);

/// ggml's reference quantizers (quantize_row_q8_0_ref / q4_0_ref), bit for bit: `nblocks` blocks
/// of 32 floats to quants (32 int8 / 16 bytes of nibbles per block) and binary16 scales.
void g2w_quantize_q8_0(const float *src, size_t nblocks, int8_t *quants, uint16_t *scales);
void g2w_quantize_q4_0(const float *src, size_t nblocks, uint8_t *quants, uint16_t *scales);
/// Index of the first binary16 value in h[0..<n] that is inf or NaN, n if none.
size_t g2w_first_nonfinite_f16(const uint16_t *h, size_t n);
#ifdef __cplusplus
}
#endif

// The training kernels (forward with saved activations, backward, optimizer).
#include "cg2w_train.h"

// Matrix products for a few rows (continuous batching).
#include "cg2w_batch.h"
