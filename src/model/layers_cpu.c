/* layers_cpu.c — CPU layer functions of the Qwen3 engine (see layers_cpu.h). */
#include "model/layers_cpu.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/error.h"
#include "model/vector_clones.h"

/* Column block for reductions over rows: one thread owns a block of columns
 * and walks the rows in order, so the sum order never depends on threads. */
#define COL_BLOCK 64
/* Upper bound on head_dim for the per-row accumulators kept on the stack. */
#define ATT_MAX_D 512

/* ------------------------------------------------------------ embedding */

void embedding_forward_shard(float *out, const int32_t *tokens, const float *table, int T, int C, int v0, int Vs) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        int row = tokens[t] - v0;
        float *o = out + (size_t)t * C;
        if (row >= 0 && row < Vs) {
            memcpy(o, table + (size_t)row * C, (size_t)C * sizeof(float));
        } else {
            memset(o, 0, (size_t)C * sizeof(float));
        }
    }
}

void embedding_backward_shard(float *dtable, const float *dout, const int32_t *tokens, int T, int C, int v0,
                              int Vs) {
    int nb = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for
    for (int b = 0; b < nb; b++) {
        int c0 = b * COL_BLOCK;
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int t = 0; t < T; t++) {
            int row = tokens[t] - v0;
            if (row < 0 || row >= Vs) continue;
            float *r = dtable + (size_t)row * C;
            const float *d = dout + (size_t)t * C;
            for (int c = c0; c < c1; c++) r[c] += d[c];
        }
    }
}

/* The whole table is the shard [0, all ids). */
void embedding_forward(float *out, const int32_t *tokens, const float *table, int T, int C) {
    embedding_forward_shard(out, tokens, table, T, C, 0, INT_MAX);
}

void embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int C) {
    embedding_backward_shard(dtable, dout, tokens, T, C, 0, INT_MAX);
}

/* ------------------------------------------------------------ RMSNorm */

/* The row sums run in 16 fixed lanes (sum_squares_array, rms_dot), the
 * products in double are exact, so the bits do not depend on the vector
 * width or the threads. */

/* The 16 lanes added in a fixed tree: u + (u+8), then + 4, + 2, + 1. */
static inline double lanes16_total(double lane[16]) {
    for (int h = 8; h > 0; h /= 2) {
        for (int u = 0; u < h; u++) lane[u] += lane[u + h];
    }
    return lane[0];
}

/* above its first use (vector_clones.h) */
VECTOR_CLONES double sum_squares_array(const float *x, size_t n) {
    double lane[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int u = 0; u < 16; u++) lane[u] += (double)x[i + u] * x[i + u];
    }
    for (; i < n; i++) lane[i & 15] += (double)x[i] * x[i];
    return lanes16_total(lane);
}

/* sum_c dy_c w_c x_c in double */
VECTOR_CLONES static double rms_dot(const float *dy, const float *w, const float *x, int C) {
    double lane[16] = {0};
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        for (int u = 0; u < 16; u++) lane[u] += (double)dy[c + u] * w[c + u] * x[c + u];
    }
    for (; c < C; c++) lane[c & 15] += (double)dy[c] * w[c] * x[c];
    return lanes16_total(lane);
}

VECTOR_CLONES static void rmsnorm_scale_row(float *o, const float *x, const float *w, float r, int C) {
    for (int c = 0; c < C; c++) o[c] = x[c] * r * w[c];
}

/* d = r dy w - x k, or d += that */
VECTOR_CLONES static void rmsnorm_dx_row(float *d, const float *dy, const float *x, const float *w, float r,
                                         float k, int C, bool accumulate) {
    if (accumulate) {
        for (int c = 0; c < C; c++) d[c] += r * dy[c] * w[c] - x[c] * k;
    } else {
        for (int c = 0; c < C; c++) d[c] = r * dy[c] * w[c] - x[c] * k;
    }
}

/* acc[c - c0] += dy_c x_c r over rows n, in row order */
VECTOR_CLONES static void rmsnorm_dw_cols(double *acc, const float *dout, const float *x, const float *rstd,
                                          int N, int C, int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *xr = x + (size_t)n * C;
        float r = rstd[n];
        for (int c = c0; c < c1; c++) acc[c - c0] += (double)(dy[c] * xr[c] * r);
    }
}

/* Rows per dynamic chunk of the RMSNorm passes: about 16K elements, so
 * short rows (q/k norm, 64 wide) are not handed out one by one. */
static int rms_chunk_rows(int C) { return 16384 / (C > 0 ? C : 1) + 1; }

/* One row: out = x r w, *rstd = r = 1 / sqrt(mean(x^2) + eps). */
static void rmsnorm_row(float *out, float *rstd, const float *x, const float *w, int C, float eps) {
    double ss = sum_squares_array(x, (size_t)C);
    float r = (float)(1.0 / sqrt(ss / C + (double)eps));
    rmsnorm_scale_row(out, x, w, r, C);
    *rstd = r;
}

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(dynamic, rms_chunk_rows(C))
    for (int n = 0; n < N; n++) rmsnorm_row(out + (size_t)n * C, rstd + n, x + (size_t)n * C, w, C, eps);
}

void residual_rmsnorm_forward(float *x, const float *y, float *out, float *rstd, const float *w, int N, int C,
                              float eps) {
#pragma omp parallel for schedule(dynamic, rms_chunk_rows(C))
    for (int n = 0; n < N; n++) {
        float *xr = x + (size_t)n * C;
        const float *yr = y + (size_t)n * C;
        for (int c = 0; c < C; c++) xr[c] += yr[c];
        rmsnorm_row(out + (size_t)n * C, rstd + n, xr, w, C, eps);
    }
}

/* The two passes of rmsnorm_backward as work-sharing loops for the caller's
 * parallel region. They are independent (dx never aliases dout) and end
 * without a barrier, so a thread done with its share of one goes on to the
 * next. */
static void rmsnorm_backward_loops(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                   const float *rstd, int N, int C, bool accumulate_dx) {
    int nb = (C + COL_BLOCK - 1) / COL_BLOCK;
    /* dw: over column blocks, rows in order */
#pragma omp for schedule(dynamic, 1) nowait
    for (int b = 0; b < nb; b++) {
        int c0 = b * COL_BLOCK;
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        double acc[COL_BLOCK] = {0};
        rmsnorm_dw_cols(acc, dout, x, rstd, N, C, c0, c1);
        for (int c = c0; c < c1; c++) dw[c] += (float)acc[c - c0];
    }
    /* dx = r (dy w) - x r^3 / C * sum(dy w x) */
#pragma omp for schedule(dynamic, rms_chunk_rows(C)) nowait
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *xr = x + (size_t)n * C;
        float r = rstd[n];
        double dot = rms_dot(dy, w, xr, C);
        float k = (float)(dot * r * r * r / C);
        rmsnorm_dx_row(dx + (size_t)n * C, dy, xr, w, r, k, C, accumulate_dx);
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int N, int C, bool accumulate_dx) {
#pragma omp parallel
    rmsnorm_backward_loops(dx, dw, dout, x, w, rstd, N, C, accumulate_dx);
}

/* ------------------------------------------------------------ linear */

/* Matrix products run as output tiles spread over the OpenMP threads, each
 * tile one single-threaded cblas_sgemm over the whole inner dimension.
 * OpenBLAS is kept at one thread: its own pool would otherwise spin
 * (sched_yield) between calls against the OpenMP threads of the elementwise
 * layers, and nest inside the attention tiles; and its threaded split moves
 * with the thread count, which changes the bits.
 *
 * Every tile packs its own slices of both operands, so large tiles pack
 * less (256-square tiles spent a quarter as long packing as multiplying): a
 * side up to MM_WHOLE stays whole, a longer one is cut into pieces of about
 * MM_PIECE, and then the longer tile side is cut further until there are
 * MM_MIN_TILES tiles (work for up to four threads) or the tiles reach
 * MM_MIN_SIDE. Sides are rounded up to MM_ALIGN, the kernel's width. The
 * tiles depend on the shape only (never the thread count), so the results
 * do not depend on the threads either. */
#define MM_WHOLE 1024
#define MM_PIECE 512
#define MM_MIN_TILES 4
#define MM_MIN_SIDE 64
#define MM_ALIGN 16

static void blas_one_thread(void) {
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Tile sides (*tm, *tn) for an (M, N) output, M, N > 0. */
static void gemm_tile_shape(int M, int N, int *tm, int *tn) {
    int cm = M > MM_WHOLE ? ceil_div(M, MM_PIECE) : 1;
    int cn = N > MM_WHOLE ? ceil_div(N, MM_PIECE) : 1;
    for (;;) {
        int sm = ceil_div(M, cm), sn = ceil_div(N, cn);
        if ((long)cm * cn >= MM_MIN_TILES || (sm <= MM_MIN_SIDE && sn <= MM_MIN_SIDE)) break;
        if (sm >= sn) {
            cm++;
        } else {
            cn++;
        }
    }
    *tm = ceil_div(ceil_div(M, cm), MM_ALIGN) * MM_ALIGN;
    *tn = ceil_div(ceil_div(N, cn), MM_ALIGN) * MM_ALIGN;
}

/* One term of a chain: op(A) (M, K) times op(B) (K, N), row-major, added to
 * beta times the output. */
typedef struct {
    bool trans_a, trans_b;
    int K;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
} GemmTerm;

/* An output C (M, N) and the terms that go into it, in order. Each tile of C
 * runs its terms in that order, with the same cblas_sgemm calls as one
 * product after another over the whole output, so a chain gives the bits of
 * its products run one by one. */
typedef struct {
    int M, N;
    float *C;
    int ldc;
    const GemmTerm *terms;
    int n_terms;
} GemmChain;

#define GEMM_MAX_CHAINS 8

/* Runs the chains (independent outputs) as one parallel region: the tiles
 * of all of them share the threads, so small products fill the threads
 * together and the threads meet once per group, not once per product. */
static void gemm_chains(const GemmChain *ch, int n_chains) {
    if (n_chains > GEMM_MAX_CHAINS) die_runtime("gemm_chains: more than %d outputs", GEMM_MAX_CHAINS);
    blas_one_thread();
    int tm[GEMM_MAX_CHAINS], tn[GEMM_MAX_CHAINS], nt[GEMM_MAX_CHAINS];
    long first[GEMM_MAX_CHAINS + 1]; /* chain c has the tiles first[c] .. first[c + 1] - 1 */
    first[0] = 0;
    for (int c = 0; c < n_chains; c++) {
        long tiles = 0;
        if (ch[c].M > 0 && ch[c].N > 0) {
            gemm_tile_shape(ch[c].M, ch[c].N, &tm[c], &tn[c]);
            nt[c] = ceil_div(ch[c].N, tn[c]);
            tiles = (long)ceil_div(ch[c].M, tm[c]) * nt[c];
        }
        first[c + 1] = first[c] + tiles;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (long it = 0; it < first[n_chains]; it++) {
        int c = 0;
        while (it >= first[c + 1]) c++;
        const GemmChain *g = &ch[c];
        long k = it - first[c];
        int i0 = (int)(k / nt[c]) * tm[c], j0 = (int)(k % nt[c]) * tn[c];
        int m = g->M - i0 < tm[c] ? g->M - i0 : tm[c], n = g->N - j0 < tn[c] ? g->N - j0 : tn[c];
        float *out = g->C + (size_t)i0 * g->ldc + j0;
        for (int s = 0; s < g->n_terms; s++) {
            const GemmTerm *t = &g->terms[s];
            const float *a = t->trans_a ? t->A + i0 : t->A + (size_t)i0 * t->lda;
            const float *b = t->trans_b ? t->B + (size_t)j0 * t->ldb : t->B + j0;
            cblas_sgemm(CblasRowMajor, t->trans_a ? CblasTrans : CblasNoTrans, t->trans_b ? CblasTrans : CblasNoTrans,
                        m, n, t->K, 1.0f, a, t->lda, b, t->ldb, t->beta, out, g->ldc);
        }
    }
}

void matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC) {
    matmul_forward_multi(1, &out, inp, &w, &OC, N, IC);
}

void matmul_forward_multi(int n, float *const *outs, const float *inp, const float *const *ws, const int *OCs, int N,
                          int IC) {
    if (n < 1 || n > GEMM_MAX_CHAINS) die_runtime("matmul_forward_multi: %d products (1 to %d)", n, GEMM_MAX_CHAINS);
    GemmTerm term[GEMM_MAX_CHAINS];
    GemmChain chain[GEMM_MAX_CHAINS];
    for (int i = 0; i < n; i++) {
        term[i] = (GemmTerm){false, true, IC, inp, IC, ws[i], IC, 0.0f};
        chain[i] = (GemmChain){N, OCs[i], outs[i], OCs[i], &term[i], 1};
    }
    gemm_chains(chain, n);
}

void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N, int IC,
                     int OC, bool accumulate_dinp) {
    matmul_backward_multi(1, dinp, &dw, &dout, inp, &w, &OC, N, IC, accumulate_dinp);
}

void matmul_backward_multi(int n, float *dinp, float *const *dws, const float *const *douts, const float *inp,
                           const float *const *ws, const int *OCs, int N, int IC, bool accumulate_dinp) {
    if (n < 1 || n + 1 > GEMM_MAX_CHAINS) {
        die_runtime("matmul_backward_multi: %d products (1 to %d)", n, GEMM_MAX_CHAINS - 1);
    }
    GemmTerm dinp_terms[GEMM_MAX_CHAINS], dw_terms[GEMM_MAX_CHAINS];
    GemmChain chain[GEMM_MAX_CHAINS];
    int n_chains = 0;
    /* dinp first: its tiles run every product's term, the longest tasks */
    if (dinp) {
        for (int i = 0; i < n; i++) {
            float beta = (i > 0 || accumulate_dinp) ? 1.0f : 0.0f;
            dinp_terms[i] = (GemmTerm){false, false, OCs[i], douts[i], OCs[i], ws[i], IC, beta};
        }
        chain[n_chains++] = (GemmChain){N, IC, dinp, IC, dinp_terms, n};
    }
    for (int i = 0; i < n; i++) {
        dw_terms[i] = (GemmTerm){true, false, N, douts[i], OCs[i], inp, IC, 1.0f};
        chain[n_chains++] = (GemmChain){OCs[i], IC, dws[i], IC, &dw_terms[i], 1};
    }
    gemm_chains(chain, n_chains);
}

/* ------------------------------------------------------------ RoPE */

void rope_tables(float *cosb, float *sinb, int P, int D, double theta) {
    int half = D / 2;
    /* fp32 like transformers' Qwen3RotaryEmbedding, so long positions round
     * the angle the same way the model saw in training and serving. */
    float inv_freq[ATT_MAX_D / 2];
    for (int i = 0; i < half; i++) {
        float ex = (float)(2 * i) / (float)D;
        inv_freq[i] = 1.0f / powf((float)theta, ex);
    }
#pragma omp parallel for
    for (int p = 0; p < P; p++) {
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv_freq[i];
            cosb[(size_t)p * half + i] = (float)cos((double)a);
            sinb[(size_t)p * half + i] = (float)sin((double)a);
        }
    }
}

/* One head (D) rotated in place by one position's angles (cs, sn: D/2);
 * sign -1 rotates back. */
static void rope_rotate_head(float *v, const float *cs, const float *sn, int D, float sign) {
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        float c = cs[i], s = sign * sn[i];
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

/* Every head of every token rotated, as a work-sharing loop for the
 * caller's parallel region (no barrier at its end). */
static void rope_rotate_loop(float *x, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH,
                             int D, float sign) {
    int half = D / 2;
#pragma omp for schedule(dynamic, 16) nowait
    for (int t = 0; t < T; t++) {
        const float *cs = cosb + (size_t)pos[t] * half, *sn = sinb + (size_t)pos[t] * half;
        for (int h = 0; h < NH; h++) rope_rotate_head(x + ((size_t)t * NH + h) * D, cs, sn, D, sign);
    }
}

void rope_forward(float *x, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH, int D) {
#pragma omp parallel
    rope_rotate_loop(x, pos, cosb, sinb, T, NH, D, 1.0f);
}

void rope_backward(float *dx, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH, int D) {
#pragma omp parallel
    rope_rotate_loop(dx, pos, cosb, sinb, T, NH, D, -1.0f);
}

/* The NH heads of one token: RMSNorm (rstd per head), then RoPE. */
static void norm_rope_heads(float *out /* (NH, D) */, float *rstd /* (NH) */, const float *x /* (NH, D) */,
                            const float *w /* (D) */, const float *cs, const float *sn, int NH, int D, float eps) {
    for (int h = 0; h < NH; h++) {
        rmsnorm_row(out + (size_t)h * D, rstd + h, x + (size_t)h * D, w, D, eps);
        rope_rotate_head(out + (size_t)h * D, cs, sn, D, 1.0f);
    }
}

void qk_norm_rope_forward(float *qr, float *q_rstd, const float *q, const float *q_w, int NH, float *kr,
                          float *k_rstd, const float *k, const float *k_w, int NKV, const int32_t *pos,
                          const float *cosb, const float *sinb, int T, int D, float eps) {
    int half = D / 2;
#pragma omp parallel for schedule(dynamic, 16)
    for (int t = 0; t < T; t++) {
        const float *cs = cosb + (size_t)pos[t] * half, *sn = sinb + (size_t)pos[t] * half;
        size_t qi = (size_t)t * NH, ki = (size_t)t * NKV; /* the token's first head row */
        norm_rope_heads(qr + qi * D, q_rstd + qi, q + qi * D, q_w, cs, sn, NH, D, eps);
        norm_rope_heads(kr + ki * D, k_rstd + ki, k + ki * D, k_w, cs, sn, NKV, D, eps);
    }
}

void qk_norm_rope_backward(float *dq, float *dq_w, float *dqr, const float *q, const float *q_w,
                           const float *q_rstd, int NH, float *dk, float *dk_w, float *dkr, const float *k,
                           const float *k_w, const float *k_rstd, int NKV, const int32_t *pos, const float *cosb,
                           const float *sinb, int T, int D) {
#pragma omp parallel
    {
        rope_rotate_loop(dqr, pos, cosb, sinb, T, NH, D, -1.0f);
        rope_rotate_loop(dkr, pos, cosb, sinb, T, NKV, D, -1.0f);
#pragma omp barrier /* the norms read every rotated row */
        rmsnorm_backward_loops(dq, dq_w, dqr, q, q_w, q_rstd, T * NH, D, false);
        rmsnorm_backward_loops(dk, dk_w, dkr, k, k_w, k_rstd, T * NKV, D, false);
    }
}

/* ------------------------------------------------------------ exp */

/* expf for arrays, written so the compiler vectorizes it (straight-line code;
 * the range cases are picked with bit masks, not branches): x = n ln2 + r with
 * |r| <= ln2/2 (Cody-Waite split of ln2), exp(r) from the Cephes degree-6
 * polynomial, 2^n put into the exponent bits. Error <= 1 ulp for normal
 * results (checked against exp() in double over [-87.3, 88.7]); results that
 * would be subnormal (x < -87.34) flush to 0, x > 88.72 gives inf, NaN stays NaN. */
#define EXP_LO (-87.33654f)
#define EXP_HI 88.72283f

typedef union {
    float f;
    int32_t i;
} FloatBits;

/* a where mask is all ones, b where it is 0. */
static inline float select_f(int32_t mask, float a, float b) {
    FloatBits fa = {.f = a}, fb = {.f = b}, r;
    r.i = (fa.i & mask) | (fb.i & ~mask);
    return r.f;
}

static inline float exp_one(float x) {
    int32_t below = -(int32_t)(x < EXP_LO), above = -(int32_t)(x > EXP_HI), nan = -(int32_t)(x != x);
    float xc = select_f(below, EXP_LO, select_f(above | nan, EXP_HI, x));
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    /* n in [-126, 128]; 2^128 is not a float, so that case takes 2^127 * 2 */
    int32_t ni = (int32_t)n;
    int32_t top = -(int32_t)(ni > 127);
    FloatBits s = {.i = ((ni + 127 + top) << 23)};
    y = y * s.f * select_f(top, 2.0f, 1.0f);
    y = select_f(below, 0.0f, y);
    y = select_f(above, INFINITY, y);
    return select_f(nan, x, y);
}

VECTOR_CLONES void exp_array(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = exp_one(x[i]);
}

/* 16 lanes, then the lanes: max is exact, so the order changes no bit. */
VECTOR_CLONES float max_array(const float *x, int n) {
    float lane[16];
    for (int u = 0; u < 16; u++) lane[u] = -INFINITY;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        for (int u = 0; u < 16; u++) lane[u] = x[j + u] > lane[u] ? x[j + u] : lane[u];
    }
    for (; j < n; j++) lane[0] = x[j] > lane[0] ? x[j] : lane[0];
    float m = lane[0];
    for (int u = 1; u < 16; u++) m = lane[u] > m ? lane[u] : m;
    return m;
}

/* ------------------------------------------------------------ attention */

/* Dot product with 8 independent partial sums (vectorizes without
 * reassociation flags; the summation order is fixed, so still deterministic). */
static inline float dot_f(const float *a, const float *b, int n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    }
    for (; i < n; i++) s[i & 7] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}


/* Flash-attention tiles: ATT_BQ query rows against ATT_BK key rows at a time,
 * scores from cblas_sgemm into per-thread scratch, so memory is O(tile), never
 * O(T^2). Tiles start at the sequence start, so only diagonal tiles need the
 * causal mask. The tile products run on the calling thread (OpenBLAS is kept
 * at one thread, see gemm_tiled). */
#define ATT_BQ 64
#define ATT_BK 64

/* One tile of work: a query (or key) tile [t0, t1) of sequence seq. */
typedef struct {
    int seq, t0, t1;
} AttTile;

/* The tiles of every sequence, the longest-running (last) tiles first so the
 * dynamic schedule ends evenly. Caller frees. */
static AttTile *att_tiles(const int32_t *seq_start, int n_seqs, int B, int *n_out) {
    int n = 0;
    for (int s = 0; s < n_seqs; s++) n += (seq_start[s + 1] - seq_start[s] + B - 1) / B;
    AttTile *tiles = xmalloc((size_t)(n ? n : 1) * sizeof *tiles);
    int i = n;
    for (int s = 0; s < n_seqs; s++) {
        for (int t0 = seq_start[s]; t0 < seq_start[s + 1]; t0 += B) {
            int t1 = t0 + B < seq_start[s + 1] ? t0 + B : seq_start[s + 1];
            tiles[--i] = (AttTile){s, t0, t1};
        }
    }
    *n_out = n;
    return tiles;
}

/* The number of sequences: seq_of is non-decreasing, so the last token's. */
static int att_n_seqs(const int32_t *seq_of, int T) { return T > 0 ? seq_of[T - 1] + 1 : 0; }

/* Scores of a (nq x nk) tile, scaled: S = scale Q K^T. */
static void att_scores(float *S /* (nq, ATT_BK) */, const float *Q, int ldq, const float *K, int ldk, int nq, int nk,
                       int D, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, scale, Q, ldq, K, ldk, 0.0f, S, ATT_BK);
}

/* Keys of row i (query t = q0 + i) that are visible in a tile starting at key
 * k0 with nk keys: 0..count-1. */
static inline int att_visible(int q0, int i, int k0, int nk) {
    int c = q0 + i - k0 + 1;
    return c < 0 ? 0 : (c > nk ? nk : c);
}

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D) {
    if (D > ATT_MAX_D) die_runtime("attention_forward: head_dim %d > %d", D, ATT_MAX_D);
    blas_one_thread();
    int rep = NH / NKV, ldq = NH * D, ldk = NKV * D;
    float scale = 1.0f / sqrtf((float)D);
    int n_tiles;
    AttTile *tiles = att_tiles(seq_start, att_n_seqs(seq_of, T), ATT_BQ, &n_tiles);
    long items = (long)n_tiles * NH;
#pragma omp parallel
    {
        float *S = xmalloc((size_t)ATT_BQ * ATT_BK * sizeof(float));
        float *acc = xmalloc((size_t)ATT_BQ * D * sizeof(float));
        float m[ATT_BQ], l[ATT_BQ];
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < items; it++) {
            const AttTile *tl = &tiles[it / NH];
            int h = (int)(it % NH), g = h / rep;
            int q0 = tl->t0, nq = tl->t1 - tl->t0, start = seq_start[tl->seq];
            const float *Q = q + (size_t)q0 * ldq + (size_t)h * D;
            memset(acc, 0, (size_t)nq * D * sizeof(float));
            for (int i = 0; i < nq; i++) m[i] = -INFINITY, l[i] = 0.0f;
            for (int k0 = start; k0 < tl->t1; k0 += ATT_BK) {
                int nk = tl->t1 - k0 < ATT_BK ? tl->t1 - k0 : ATT_BK;
                const float *K = k + (size_t)k0 * ldk + (size_t)g * D;
                const float *V = v + (size_t)k0 * ldk + (size_t)g * D;
                att_scores(S, Q, ldq, K, ldk, nq, nk, D, scale);
                /* online softmax: rescale what was summed so far to the new max */
                for (int i = 0; i < nq; i++) {
                    float *s = S + (size_t)i * ATT_BK;
                    int vis = att_visible(q0, i, k0, nk);
                    float mx = m[i];
                    for (int j = 0; j < vis; j++) mx = s[j] > mx ? s[j] : mx;
                    for (int j = 0; j < vis; j++) s[j] -= mx;
                    exp_array(s, s, vis);
                    for (int j = vis; j < nk; j++) s[j] = 0.0f;
                    float sum = 0.0f;
                    for (int j = 0; j < vis; j++) sum += s[j];
                    if (mx != m[i]) {
                        float corr = expf(m[i] - mx); /* 0 on the first keys */
                        l[i] *= corr;
                        for (int d = 0; d < D; d++) acc[(size_t)i * D + d] *= corr;
                        m[i] = mx;
                    }
                    l[i] += sum;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, 1.0f, S, ATT_BK, V, ldk, 1.0f,
                            acc, D);
            }
            for (int i = 0; i < nq; i++) {
                float *o = out + (size_t)(q0 + i) * ldq + (size_t)h * D;
                float inv = 1.0f / l[i];
                for (int d = 0; d < D; d++) o[d] = acc[(size_t)i * D + d] * inv;
                lse[(size_t)(q0 + i) * NH + h] = m[i] + logf(l[i]);
            }
        }
        free(S);
        free(acc);
    }
    free(tiles);
}

/* The probabilities and score gradients of one tile, in place:
 * P = exp(S - lse) (0 where masked), dS = P (dP - delta), S <- P, dP <- dS. */
static void att_tile_grad(float *S /* (nq, ATT_BK) */, float *dP /* (nq, ATT_BK) */, const float *lse,
                          const float *delta, int NH, int q0, int nq, int k0, int nk) {
    for (int i = 0; i < nq; i++) {
        float *s = S + (size_t)i * ATT_BK, *dp = dP + (size_t)i * ATT_BK;
        int vis = att_visible(q0, i, k0, nk);
        float li = lse[(size_t)i * NH], di = delta[(size_t)i * NH];
        for (int j = 0; j < vis; j++) s[j] -= li;
        exp_array(s, s, vis);
        for (int j = vis; j < nk; j++) s[j] = 0.0f;
        for (int j = 0; j < nk; j++) dp[j] = s[j] * (dp[j] - di);
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v,
                        const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D) {
    if (D > ATT_MAX_D) die_runtime("attention_backward: head_dim %d > %d", D, ATT_MAX_D);
    blas_one_thread();
    int rep = NH / NKV, ldq = NH * D, ldk = NKV * D;
    float scale = 1.0f / sqrtf((float)D);
    long rows = (long)T * NH;
    /* delta_i = dout_i . out_i  (= sum_j p_ij dp_ij) */
#pragma omp parallel for schedule(dynamic, 256)
    for (long r = 0; r < rows; r++) delta[r] = dot_f(dout + (size_t)r * D, out + (size_t)r * D, D);

    int n_seqs = att_n_seqs(seq_of, T), n_tiles;
    AttTile *tiles = att_tiles(seq_start, n_seqs, ATT_BQ, &n_tiles);
#pragma omp parallel
    {
        float *S = xmalloc((size_t)ATT_BQ * ATT_BK * sizeof(float));
        float *dP = xmalloc((size_t)ATT_BQ * ATT_BK * sizeof(float));
        float *acc = xmalloc((size_t)ATT_BK * D * sizeof(float));
        float *acc2 = xmalloc((size_t)ATT_BK * D * sizeof(float));

        /* dq_i = scale * sum_j dS_ij k_j, per (query tile, head) */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)n_tiles * NH; it++) {
            const AttTile *tl = &tiles[it / NH];
            int h = (int)(it % NH), g = h / rep;
            int q0 = tl->t0, nq = tl->t1 - tl->t0, start = seq_start[tl->seq];
            size_t qoff = (size_t)q0 * ldq + (size_t)h * D;
            for (int k0 = start; k0 < tl->t1; k0 += ATT_BK) {
                int nk = tl->t1 - k0 < ATT_BK ? tl->t1 - k0 : ATT_BK;
                const float *K = k + (size_t)k0 * ldk + (size_t)g * D;
                const float *V = v + (size_t)k0 * ldk + (size_t)g * D;
                att_scores(S, q + qoff, ldq, K, ldk, nq, nk, D, scale);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, 1.0f, dout + qoff, ldq, V, ldk, 0.0f,
                            dP, ATT_BK);
                att_tile_grad(S, dP, lse + (size_t)q0 * NH + h, delta + (size_t)q0 * NH + h, NH, q0, nq, k0, nk);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, scale, dP, ATT_BK, K, ldk,
                            k0 == start ? 0.0f : 1.0f, dq + qoff, ldq);
            }
        }

        /* dk_j = scale * sum_{h in group, i >= j} dS_ij q_i, dv_j = sum P_ij dout_i,
         * per (key tile, kv head); heads and query tiles in a fixed order */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)n_tiles * NKV; it++) {
            const AttTile *tl = &tiles[it / NKV];
            int g = (int)(it % NKV);
            int k0 = tl->t0, nk = tl->t1 - tl->t0, start = seq_start[tl->seq], end = seq_start[tl->seq + 1];
            size_t koff = (size_t)k0 * ldk + (size_t)g * D;
            memset(acc, 0, (size_t)nk * D * sizeof(float));
            memset(acc2, 0, (size_t)nk * D * sizeof(float));
            int qfirst = start + (k0 - start) / ATT_BQ * ATT_BQ;
            for (int h = g * rep; h < (g + 1) * rep; h++) {
                for (int q0 = qfirst; q0 < end; q0 += ATT_BQ) {
                    int nq = end - q0 < ATT_BQ ? end - q0 : ATT_BQ;
                    size_t qoff = (size_t)q0 * ldq + (size_t)h * D;
                    att_scores(S, q + qoff, ldq, k + koff, ldk, nq, nk, D, scale);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, 1.0f, dout + qoff, ldq, v + koff,
                                ldk, 0.0f, dP, ATT_BK);
                    att_tile_grad(S, dP, lse + (size_t)q0 * NH + h, delta + (size_t)q0 * NH + h, NH, q0, nq, k0, nk);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nq, 1.0f, S, ATT_BK, dout + qoff, ldq,
                                1.0f, acc2, D);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nq, 1.0f, dP, ATT_BK, q + qoff, ldq,
                                1.0f, acc, D);
                }
            }
            for (int j = 0; j < nk; j++) {
                float *okr = dk + koff + (size_t)j * ldk, *ovr = dv + koff + (size_t)j * ldk;
                for (int d = 0; d < D; d++) {
                    okr[d] = acc[(size_t)j * D + d] * scale;
                    ovr[d] = acc2[(size_t)j * D + d];
                }
            }
        }
        free(S);
        free(dP);
        free(acc);
        free(acc2);
    }
    free(tiles);
}

/* ------------------------------------------------------------ SwiGLU */

/* The elementwise passes run in blocks, each block one vector-clone call
 * (exp_one inlined at the machine's width; the same operations, so the same
 * bits at any width and any thread count). */
#define ELEM_BLOCK 4096

VECTOR_CLONES static void swiglu_forward_block(float *h, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + exp_one(-g));
        h[i] = g * s * up[i];
    }
}

VECTOR_CLONES static void swiglu_backward_block(float *dgate, float *dup, const float *dh, const float *gate,
                                                const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + exp_one(-g));
        float silu = g * s;
        dup[i] = dh[i] * silu;
        dgate[i] = dh[i] * up[i] * s * (1.0f + g * (1.0f - s));
    }
}

void swiglu_forward(float *h, const float *gate, const float *up, long N) {
#pragma omp parallel for schedule(dynamic, 4)
    for (long i0 = 0; i0 < N; i0 += ELEM_BLOCK) {
        long n = N - i0 < ELEM_BLOCK ? N - i0 : ELEM_BLOCK;
        swiglu_forward_block(h + i0, gate + i0, up + i0, n);
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, long N) {
#pragma omp parallel for schedule(dynamic, 4)
    for (long i0 = 0; i0 < N; i0 += ELEM_BLOCK) {
        long n = N - i0 < ELEM_BLOCK ? N - i0 : ELEM_BLOCK;
        swiglu_backward_block(dgate + i0, dup + i0, dh + i0, gate + i0, up + i0, n);
    }
}

void residual_add(float *x, const float *y, long N) {
#pragma omp parallel for schedule(dynamic, 4)
    for (long i0 = 0; i0 < N; i0 += ELEM_BLOCK) {
        long i1 = N - i0 < ELEM_BLOCK ? N : i0 + ELEM_BLOCK;
        for (long i = i0; i < i1; i++) x[i] += y[i];
    }
}

/* ------------------------------------------------------------ output head */

/* sum = sum_j e_j, sdz = sum_j e_j (m - z_j) with e_j = exp(z_j - m): the
 * exponentials in float, vectorized a block at a time, the sums in double over
 * 4 interleaved partial sums (a fixed order, so still deterministic). */
#define SOFTMAX_BLOCK 256
VECTOR_CLONES static void softmax_sums(double *sum, double *sdz, const float *z /* (V) */, float m, int V) {
    float e[SOFTMAX_BLOCK], dz[SOFTMAX_BLOCK];
    double s[4] = {0, 0, 0, 0}, sd[4] = {0, 0, 0, 0};
    for (int j0 = 0; j0 < V; j0 += SOFTMAX_BLOCK) {
        int n = V - j0 < SOFTMAX_BLOCK ? V - j0 : SOFTMAX_BLOCK;
        for (int j = 0; j < n; j++) {
            float d = z[j0 + j] - m;
            dz[j] = -d;
            e[j] = exp_one(d);
        }
        for (; n % 4; n++) e[n] = dz[n] = 0.0f; /* pad the last block to a multiple of 4 */
        for (int j = 0; j < n; j += 4) {
            for (int k = 0; k < 4; k++) {
                s[k] += (double)e[j + k];
                sd[k] += (double)e[j + k] * (double)dz[j + k];
            }
        }
    }
    *sum = (s[0] + s[1]) + (s[2] + s[3]);
    *sdz = (sd[0] + sd[1]) + (sd[2] + sd[3]);
}

void logprob_entropy_forward(float *logprob, float *entropy, float *lse, const float *logits,
                             const int32_t *targets, int R, int V) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < R; r++) {
        const float *z = logits + (size_t)r * V;
        float m = max_array(z, V);
        double sum, sdz;
        softmax_sums(&sum, &sdz, z, m, V);
        double ls = log(sum);
        /* entropy = sum p (lse - z) = log(sum) + sum e (m - z) / sum: no cancellation */
        lse[r] = (float)(m + ls);
        entropy[r] = (float)(ls + sdz / sum);
        logprob[r] = targets[r] >= 0 ? (float)((double)(z[targets[r]] - m) - ls) : 0.0f;
    }
}

void vocab_row_max(float *mx, const float *logits, int R, int Vs) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < R; r++) {
        mx[r] = max_array(logits + (size_t)r * Vs, Vs);
    }
}

void logprob_entropy_partial(double *stats, const float *logits, const int32_t *targets, const float *mx, int R,
                             int Vs, int v0) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < R; r++) {
        const float *z = logits + (size_t)r * Vs;
        float m = mx[r];
        double sum, sdz;
        softmax_sums(&sum, &sdz, z, m, Vs);
        int tl = targets[r] - v0;
        stats[3 * r] = sum;
        stats[3 * r + 1] = sdz;
        stats[3 * r + 2] = targets[r] >= 0 && tl >= 0 && tl < Vs ? (double)(z[tl] - m) : 0.0;
    }
}

void logprob_entropy_finish(float *logprob, float *entropy, float *lse, const double *stats, const float *mx,
                            const int32_t *targets, int R) {
    for (int r = 0; r < R; r++) {
        double sum = stats[3 * r], sdz = stats[3 * r + 1];
        double ls = log(sum);
        lse[r] = (float)(mx[r] + ls);
        entropy[r] = (float)(ls + sdz / sum);
        logprob[r] = targets[r] >= 0 ? (float)(stats[3 * r + 2] - ls) : 0.0f;
    }
}

/* dz_j over one row, before the target's + dlogprob. */
VECTOR_CLONES static void head_grad_row(float *z /* (V), in: z, out: dz */, int V, float lse, float entropy,
                                        float dlp, float dent) {
    for (int j = 0; j < V; j++) {
        float lp = z[j] - lse; /* log p_j */
        float p = exp_one(lp);
        z[j] = -dlp * p - dent * p * (lp + entropy);
    }
}

void logprob_entropy_backward(float *logits, const float *dlogprob, const float *dentropy, const float *lse,
                              const float *entropy, const int32_t *targets, int R, int V) {
    logprob_entropy_backward_shard(logits, dlogprob, dentropy, lse, entropy, targets, R, V, 0);
}

void logprob_entropy_backward_shard(float *logits, const float *dlogprob, const float *dentropy, const float *lse,
                                    const float *entropy, const int32_t *targets, int R, int V, int v0) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < R; r++) {
        float *z = logits + (size_t)r * V;
        float dlp = targets[r] >= 0 ? dlogprob[r] : 0.0f;
        float dent = dentropy ? dentropy[r] : 0.0f;
        if (dlp == 0.0f && dent == 0.0f) {
            memset(z, 0, (size_t)V * sizeof(float));
            continue;
        }
        head_grad_row(z, V, lse[r], entropy[r], dlp, dent);
        int tl = targets[r] - v0;
        if (targets[r] >= 0 && tl >= 0 && tl < V) z[tl] += dlp;
    }
}

/* ------------------------------------------------------------ optimizer */

VECTOR_CLONES void adamw_update_array(float *p, const float *g, float *m, float *v, size_t n, float gscale,
                                      float b1, float b2, float eps, float decay, float step_size,
                                      float bc2_sqrt) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
