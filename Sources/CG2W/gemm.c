// General matrix product for training: C (+)= A B (+ bias) with any strides, so a linear layer's
// forward and both of its backward products are one kernel (cg2w_train.h says which strides).
//
// Loop nest (BLIS-like, A unpacked): the M x N result is cut into jobs of MC rows x NC columns,
// dealt to the pool. A job walks K in chunks of KC; for each 32-column panel of its columns it
// packs B's KC x 32 block k-major (Bp[k][32]: zero-padded past N; the same packing as the prompt
// path's GEMM in matmul.c) and runs every 8 rows of its A block through an 8 x 32 register
// tile: per k, two loads of Bp, eight broadcasts of A(i, k), sixteen FMAs. A's 8 values for one
// k are read in place whatever its strides (row-major activations, or dY^T for the weight
// gradient, whose 8 values are adjacent), so only B is packed. AVX2 runs a 6 x 16 tile on the
// same plan; the portable path is the plain loop.
#include "cg2w_train.h"
#include "simd.h"
#include "panel.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { KC = 256, MC = 256, NR512 = 32, MR512 = 8, NR256 = 16, MR256 = 6 };

typedef struct {
    size_t M, N, K;
    const float *A; size_t ars, acs;
    const float *B; size_t brs, bcs;
    float *C; size_t ldc;
    const float *bias; int accumulate;
    size_t mc, nc, mblocks;
    int level;
} gemm_args;

// The plain loop on rows [i0, i1) x columns [j0, j1): the reference, and the portable path.
static void gemm_plain(const gemm_args *g, size_t i0, size_t i1, size_t j0, size_t j1) {
    for (size_t i = i0; i < i1; i++)
        for (size_t j = j0; j < j1; j++) {
            float s = 0;
            for (size_t k = 0; k < g->K; k++) s += g->A[i * g->ars + k * g->acs] * g->B[k * g->brs + j * g->bcs];
            float *c = g->C + i * g->ldc + j;
            *c = g->accumulate ? *c + s : g->bias ? s + g->bias[j] : s;
        }
}

void g2w_sgemm_reference(size_t M, size_t N, size_t K, const float *A, size_t a_rs, size_t a_cs, const float *B, size_t b_rs, size_t b_cs,
                         float *C, size_t ldc, const float *bias, int accumulate) {
    gemm_args g = {M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, bias, accumulate, 0, 0, 0, 0};
    gemm_plain(&g, 0, M, 0, N);
}

#if G2W_X86
// 6 rows x 64 columns: 24 accumulators; per k, four loads of the two packed 32-column panels,
// six broadcasts, 24 FMAs (2.4 FMAs per load against 1.6 for 8 x 32).
AVX512 static inline void tile_6x64(const float *Bp0, const float *Bp1, size_t kc, const float *A, size_t ars, size_t acs, size_t mr,
                                    float *C, size_t ldc, size_t nr, const float *bias, int add) {
    enum { R = 6 };
    const float *a[R];
    for (size_t i = 0; i < R; i++) a[i] = A + (i < mr ? i : 0) * ars;
    __m512 c[R][4];
    for (size_t i = 0; i < R; i++) for (int q = 0; q < 4; q++) c[i][q] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(Bp0 + k * NR512), b1 = _mm512_load_ps(Bp0 + k * NR512 + 16);
        __m512 b2 = _mm512_load_ps(Bp1 + k * NR512), b3 = _mm512_load_ps(Bp1 + k * NR512 + 16);
        size_t o = k * acs;
        for (size_t i = 0; i < R; i++) {
            __m512 x = _mm512_set1_ps(a[i][o]);
            c[i][0] = _mm512_fmadd_ps(x, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(x, b1, c[i][1]);
            c[i][2] = _mm512_fmadd_ps(x, b2, c[i][2]);
            c[i][3] = _mm512_fmadd_ps(x, b3, c[i][3]);
        }
    }
    __mmask16 m[4];
    for (int q = 0; q < 4; q++) {
        size_t lo = 16 * (size_t)q;
        m[q] = (__mmask16)(nr >= lo + 16 ? 0xFFFF : nr > lo ? (1u << (nr - lo)) - 1 : 0);
    }
    for (size_t i = 0; i < mr; i++) {
        float *cp = C + i * ldc;
        for (int q = 0; q < 4; q++) {
            __m512 v = c[i][q];
            if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[q], cp + 16 * q));
            else if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[q], bias + 16 * q));
            _mm512_mask_storeu_ps(cp + 16 * q, m[q], v);
        }
    }
}

AVX512 static void gemm_job_avx512_wide(const gemm_args *g, size_t i0, size_t i1, size_t j0, size_t j1, float *Bp) {
    float *Bp1 = Bp + KC * NR512;
    for (size_t k0 = 0; k0 < g->K; k0 += KC) {
        size_t kc = g->K - k0 < KC ? g->K - k0 : KC;
        int add = g->accumulate || k0 > 0;
        for (size_t jb = j0; jb < j1; jb += 2 * NR512) {
            size_t nr = j1 - jb < 2 * NR512 ? j1 - jb : 2 * NR512;
            size_t nr0 = nr < NR512 ? nr : NR512, nr1 = nr - nr0;
            g2w_pack_panel_avx512(g->B, g->bcs, g->brs, NULL, 0, jb, nr0, k0, kc, Bp, 0);
            if (nr1) g2w_pack_panel_avx512(g->B, g->bcs, g->brs, NULL, 0, jb + NR512, nr1, k0, kc, Bp1, 0);
            else memset(Bp1, 0, kc * NR512 * sizeof(float));
            const float *bias = g->bias ? g->bias + jb : NULL;
            for (size_t i = i0; i < i1; i += 6) {
                size_t mr = i1 - i < 6 ? i1 - i : 6;
                const float *A = g->A + i * g->ars + k0 * g->acs;
                float *C = g->C + i * g->ldc + jb;
                if (g->acs == 1) tile_6x64(Bp, Bp1, kc, A, g->ars, 1, mr, C, g->ldc, nr, bias, add);
                else tile_6x64(Bp, Bp1, kc, A, g->ars, g->acs, mr, C, g->ldc, nr, bias, add);
            }
        }
    }
}

AVX512 static void gemm_job_avx512(const gemm_args *g, size_t i0, size_t i1, size_t j0, size_t j1, float *Bp) {
    for (size_t k0 = 0; k0 < g->K; k0 += KC) {
        size_t kc = g->K - k0 < KC ? g->K - k0 : KC;
        int add = g->accumulate || k0 > 0;
        for (size_t jb = j0; jb < j1; jb += NR512) {
            size_t nr = j1 - jb < NR512 ? j1 - jb : NR512;
            size_t ahead = j1 - jb > 2 * NR512 ? (j1 - jb - 2 * NR512 < NR512 ? j1 - jb - 2 * NR512 : NR512) : 0;
            // B(k, j) = W(j, k) with W(r, k) = B[r * bcs + k * brs].
            g2w_pack_panel_avx512(g->B, g->bcs, g->brs, NULL, 0, jb, nr, k0, kc, Bp, ahead);
            __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
            __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
            const float *bias = g->bias ? g->bias + jb : NULL;
            for (size_t i = i0; i < i1; i += MR512) {
                size_t mr = i1 - i < MR512 ? i1 - i : MR512;
                const float *A = g->A + i * g->ars + k0 * g->acs;
                float *C = g->C + i * g->ldc + jb;
                if (g->acs == 1) tile_8x32(Bp, kc, A, g->ars, 1, mr, C, g->ldc, m0, m1, bias, add);
                else tile_8x32(Bp, kc, A, g->ars, g->acs, mr, C, g->ldc, m0, m1, bias, add);
            }
        }
    }
}

// AVX2: 6 rows x 16 columns (12 accumulators, 2 B vectors, 1 broadcast).
AVX2 static inline void tile_6x16(const float *Bp, size_t kc, const float *A, size_t ars, size_t acs, size_t mr, float *C, size_t ldc,
                                  size_t nr, const float *bias, int add) {
    const float *a[MR256];
    for (size_t i = 0; i < MR256; i++) a[i] = A + (i < mr ? i : 0) * ars;
    __m256 c0[MR256], c1[MR256];
    for (size_t i = 0; i < MR256; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(Bp + k * NR256), b1 = _mm256_load_ps(Bp + k * NR256 + 8);
        size_t o = k * acs;
        for (size_t i = 0; i < MR256; i++) {
            __m256 x = _mm256_broadcast_ss(a[i] + o);
            c0[i] = _mm256_fmadd_ps(x, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(x, b1, c1[i]);
        }
    }
    for (size_t i = 0; i < mr; i++) {
        float out[16];
        _mm256_storeu_ps(out, c0[i]);
        _mm256_storeu_ps(out + 8, c1[i]);
        float *c = C + i * ldc;
        for (size_t j = 0; j < nr; j++) c[j] = add ? c[j] + out[j] : bias ? out[j] + bias[j] : out[j];
    }
}

AVX2 static void gemm_job_avx2(const gemm_args *g, size_t i0, size_t i1, size_t j0, size_t j1, float *Bp) {
    for (size_t k0 = 0; k0 < g->K; k0 += KC) {
        size_t kc = g->K - k0 < KC ? g->K - k0 : KC;
        int add = g->accumulate || k0 > 0;
        for (size_t jb = j0; jb < j1; jb += NR256) {
            size_t nr = j1 - jb < NR256 ? j1 - jb : NR256;
            for (size_t k = 0; k < kc; k++) {
                float *d = Bp + k * NR256;
                const float *s = g->B + (k0 + k) * g->brs + jb * g->bcs;
                if (g->bcs == 1) { memcpy(d, s, nr * sizeof(float)); }
                else for (size_t j = 0; j < nr; j++) d[j] = s[j * g->bcs];
                for (size_t j = nr; j < NR256; j++) d[j] = 0;
            }
            const float *bias = g->bias ? g->bias + jb : NULL;
            for (size_t i = i0; i < i1; i += MR256) {
                size_t mr = i1 - i < MR256 ? i1 - i : MR256;
                const float *A = g->A + i * g->ars + k0 * g->acs;
                float *C = g->C + i * g->ldc + jb;
                if (g->acs == 1) tile_6x16(Bp, kc, A, g->ars, 1, mr, C, g->ldc, nr, bias, add);
                else tile_6x16(Bp, kc, A, g->ars, g->acs, mr, C, g->ldc, nr, bias, add);
            }
        }
    }
}
#endif

// Each thread's packing buffer, allocated on its first job and freed when the thread ends. (A
// malloc + free per job made glibc trim the worker's heap after each one: a page fault and a TLB
// shootdown per job, 25-35 % of a GPT-2 124M training step in the kernel.)
static pthread_key_t panel_key;
static pthread_once_t panel_once = PTHREAD_ONCE_INIT;
static void panel_key_init(void) { pthread_key_create(&panel_key, free); }

static float *thread_panel(void) {
    pthread_once(&panel_once, panel_key_init);
    float *p = pthread_getspecific(panel_key);
    if (!p) {
        p = aligned_alloc(64, 2 * KC * NR512 * sizeof(float));
        if (p && pthread_setspecific(panel_key, p) != 0) { free(p); p = NULL; }
    }
    return p;
}

static void gemm_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const gemm_args *g = context;
    size_t mb = job % g->mblocks, nb = job / g->mblocks;
    size_t i0 = mb * g->mc, i1 = i0 + g->mc < g->M ? i0 + g->mc : g->M;
    size_t j0 = nb * g->nc, j1 = j0 + g->nc < g->N ? j0 + g->nc : g->N;
#if G2W_X86
    if (g->level >= 1) {
        float *Bp = thread_panel();
        if (Bp) {
            if (g->level == 2) {
                // A read with a column stride (the weight gradient's dY^T): the 6 x 64 tile, measured
                // 5-15 % faster there; row-major A: the 8 x 32 tile, faster there.
                if (g->acs != 1) gemm_job_avx512_wide(g, i0, i1, j0, j1, Bp); else gemm_job_avx512(g, i0, i1, j0, j1, Bp);
            } else gemm_job_avx2(g, i0, i1, j0, j1, Bp);
            return;
        }
    }
#endif
    gemm_plain(g, i0, i1, j0, j1);
}

void g2w_sgemm(g2w_pool *pool, size_t M, size_t N, size_t K, const float *A, size_t a_rs, size_t a_cs, const float *B, size_t b_rs,
               size_t b_cs, float *C, size_t ldc, const float *bias, int accumulate) {
    if (M == 0 || N == 0) return;
    gemm_args g = {M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, bias, accumulate, 0, 0, 0, g2w_isa_level()};
    if (K == 0) {  // an empty sum: C = bias (or 0), or C unchanged
        if (!accumulate)
            for (size_t i = 0; i < M; i++)
                for (size_t j = 0; j < N; j++) C[i * ldc + j] = bias ? bias[j] : 0;
        return;
    }
    // Row blocks of at most MC (a multiple of both tiles' heights); column blocks in whole panels,
    // enough of them to give every thread several jobs.
    size_t threads = pool ? g2w_pool_threads(pool) : 1;
    g.mc = M <= MC ? M : MC;
    g.mblocks = (M + g.mc - 1) / g.mc;
    size_t want = 4 * threads, ncols = (want + g.mblocks - 1) / g.mblocks;
    size_t nc = (N + ncols - 1) / ncols;
    size_t panel = a_cs != 1 ? 2 * NR512 : NR512;  // whole panels of the tile the job will run
    nc = (nc + panel - 1) / panel * panel;
    g.nc = nc < N ? nc : N;
    size_t jobs = g.mblocks * ((N + g.nc - 1) / g.nc);
    g2w_run(pool, jobs, gemm_job, &g);
}

// ---------------------------------------------------------------------------------------------
// Bias gradients: column sums in fixed column blocks (each column summed by one job, rows ascending).
typedef struct { const float *dY; size_t M, N, ld; float *out; int accumulate; } colsum_args;
enum { COLS_PER_JOB = 256 };

static void colsum_job(void *context, size_t job, size_t worker) {
    (void)worker;
    const colsum_args *a = context;
    size_t j0 = job * COLS_PER_JOB, j1 = j0 + COLS_PER_JOB < a->N ? j0 + COLS_PER_JOB : a->N;
    float acc[COLS_PER_JOB];
    for (size_t j = j0; j < j1; j++) acc[j - j0] = 0;
    for (size_t i = 0; i < a->M; i++) {
        const float *r = a->dY + i * a->ld;
        for (size_t j = j0; j < j1; j++) acc[j - j0] += r[j];
    }
    for (size_t j = j0; j < j1; j++) a->out[j] = a->accumulate ? a->out[j] + acc[j - j0] : acc[j - j0];
}

void g2w_column_sums(g2w_pool *pool, const float *dY, size_t M, size_t N, size_t ld, float *dbias, int accumulate) {
    colsum_args a = {dY, M, N, ld, dbias, accumulate};
    size_t jobs = (N + COLS_PER_JOB - 1) / COLS_PER_JOB;
    g2w_run(pool, jobs, colsum_job, &a);
}
