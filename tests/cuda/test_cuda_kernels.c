/* test_cuda_kernels.c — every CUDA kernel against its CPU twin on random
 * inputs, tiny and mid-size shapes with non-multiple tails (T = 67 tokens in
 * 3 packed sequences, 4 heads over 2 kv heads, D = 64 and 128, C = 256,
 * V = 5003).
 *
 * Errors are relative to the reference tensor's largest magnitude:
 *   err = max_i |gpu_i - cpu_i| / max_i |cpu_i|
 * Tolerances (the reasons next to each check):
 *   exact    bf16 conversions, embedding lookup, residual add of one term
 *   1e-5     fp32 elementwise and row kernels (SwiGLU, RoPE, RMSNorm, decode,
 *            AdamW, output head): the same formulas, expf vs the CPU's
 *            polynomial exp and another summation order (a few ulp)
 *   1e-4     fp32 attention and fp32 matrix products: long dot products and
 *            online-softmax rescaling summed in another order
 *   1e-2     bf16 matrix products against the fp32 CPU product (8 bits of
 *            mantissa in the inputs)
 * The few-row products (test_rows, and test_rows_mma for the tensor-core
 * ones of up to 32 rows) are held to the product of the same
 * bf16-rounded operands in double (1e-5), and to themselves exactly
 * across their variants; with the norm folded in, to the norm and the
 * product in double (the norm's output not rounded: 1e-5).
 *
 * Without a CUDA device it prints "no CUDA device: skipped" and exits 77,
 * which ctest reports as skipped.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels.h"
#include "model/layers_cpu.h"
#include "model/qwen3.h"

#include "cuda_test_util.h"

static int g_failures;

/* ------------------------------------------------------------ helpers */

static float *rand_f32(size_t n, float a) {
    float *x = xmalloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) x[i] = rnd_f(a);
    return x;
}

/* Compare gpu (device, n floats) with cpu (host); report and count failures. */
static void check_f32(const char *what, const float *gpu_dev, const float *cpu, size_t n, double tol) {
    float *g = dev_download(gpu_dev, n * sizeof(float));
    double maxref = 0.0, maxdiff = 0.0;
    size_t worst = 0;
    bool finite = true;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) finite = false;
        double d = fabs((double)g[i] - (double)cpu[i]);
        if (fabs(cpu[i]) > maxref) maxref = fabs(cpu[i]);
        if (d > maxdiff || d != d) maxdiff = d, worst = i;
    }
    double err = maxref > 0 ? maxdiff / maxref : maxdiff;
    bool ok = finite && err <= tol;
    printf("%-4s %-44s n=%-8zu err %.3e (tol %.0e)", ok ? "ok" : "FAIL", what, n, err, tol);
    if (!ok) printf("  worst [%zu] gpu %.9g cpu %.9g", worst, n ? g[worst] : 0.0f, n ? cpu[worst] : 0.0f);
    printf("\n");
    if (!ok) g_failures++;
    free(g);
}

/* Packed sequences of the given lengths: seq_of (T) and seq_start (n+1). */
static int pack(const int *lens, int n, int32_t **seq_of, int32_t **seq_start, int32_t **pos) {
    int T = 0;
    for (int s = 0; s < n; s++) T += lens[s];
    *seq_of = xmalloc((size_t)T * sizeof(int32_t));
    *pos = xmalloc((size_t)T * sizeof(int32_t));
    *seq_start = xmalloc((size_t)(n + 1) * sizeof(int32_t));
    int t = 0;
    for (int s = 0; s < n; s++) {
        (*seq_start)[s] = t;
        for (int i = 0; i < lens[s]; i++, t++) (*seq_of)[t] = s, (*pos)[t] = i;
    }
    (*seq_start)[n] = T;
    return T;
}

/* ------------------------------------------------------------ tests */

static float bf16_round_cpu(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even (finite inputs) */
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static void test_convert(void) {
    long n = 100003;
    float *x = rand_f32((size_t)n, 10.0f), *ref = xmalloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) ref[i] = bf16_round_cpu(x[i]);
    float *dx = dev_upload(x, (size_t)n * 4), *dy = dev_alloc((size_t)n * 4);
    uint16_t *db = dev_alloc((size_t)n * 2);
    cuda_f32_to_bf16(db, dx, n, 0);
    cuda_bf16_to_f32(dy, db, n, 0);
    check_f32("f32 -> bf16 -> f32 (round to nearest even)", dy, ref, (size_t)n, 0.0);
    /* from a misaligned start: the one-value-a-thread kernel throughout */
    cuda_f32_to_bf16(db, dx + 1, n - 1, 0);
    cuda_bf16_to_f32(dy, db, n - 1, 0);
    check_f32("f32 -> bf16 -> f32, misaligned input", dy, ref + 1, (size_t)n - 1, 0.0);
    dev_free(dx), dev_free(dy), dev_free(db);
    free(x), free(ref);
}

static void test_embedding(void) {
    int T = 67, C = 256, V = 5003, v0 = 2000, Vs = 1500;
    int32_t tokens[67];
    for (int t = 0; t < T; t++) tokens[t] = (int32_t)(rnd_u32() % (uint32_t)V);
    tokens[5] = tokens[9] = tokens[40] = 2100; /* a repeated token inside the shard */
    float *table = rand_f32((size_t)V * C, 1.0f), *dout = rand_f32((size_t)T * C, 1.0f);
    float *out = xmalloc((size_t)T * C * 4), *dtab = rand_f32((size_t)V * C, 0.1f);
    int32_t *dtok = dev_upload(tokens, sizeof tokens);
    float *dtable = dev_upload(table, (size_t)V * C * 4), *ddout = dev_upload(dout, (size_t)T * C * 4);
    float *dout_g = dev_alloc((size_t)T * C * 4), *ddtab = dev_upload(dtab, (size_t)V * C * 4);

    embedding_forward(out, tokens, table, T, C);
    cuda_embedding_forward(dout_g, dtok, dtable, T, C, 0);
    check_f32("embedding_forward", dout_g, out, (size_t)T * C, 0.0);
    embedding_backward(dtab, dout, tokens, T, C);
    cuda_embedding_backward(ddtab, ddout, dtok, T, C, 0);
    check_f32("embedding_backward (+=, repeated token)", ddtab, dtab, (size_t)V * C, 1e-6);

    embedding_forward_shard(out, tokens, table, T, C, v0, Vs);
    cuda_embedding_forward_shard(dout_g, dtok, dtable, T, C, v0, Vs, 0);
    check_f32("embedding_forward_shard", dout_g, out, (size_t)T * C, 0.0);
    embedding_backward_shard(dtab, dout, tokens, T, C, v0, Vs);
    cuda_embedding_backward_shard(ddtab, ddout, dtok, T, C, v0, Vs, 0);
    check_f32("embedding_backward_shard", ddtab, dtab, (size_t)Vs * C, 1e-6);

    dev_free(dtok), dev_free(dtable), dev_free(ddout), dev_free(dout_g), dev_free(ddtab);
    free(table), free(dout), free(out), free(dtab);
}

static void test_rmsnorm_shape(const char *name, int N, int C, bool accumulate) {
    float eps = 1e-6f;
    float *x = rand_f32((size_t)N * C, 2.0f), *w = rand_f32((size_t)C, 1.5f), *dy = rand_f32((size_t)N * C, 1.0f);
    float *out = xmalloc((size_t)N * C * 4), *rstd = xmalloc((size_t)N * 4);
    float *dx = rand_f32((size_t)N * C, 1.0f), *dw = rand_f32((size_t)C, 1.0f);
    float *gx = dev_upload(x, (size_t)N * C * 4), *gw = dev_upload(w, (size_t)C * 4);
    float *gdy = dev_upload(dy, (size_t)N * C * 4), *gout = dev_alloc((size_t)N * C * 4);
    float *grstd = dev_alloc((size_t)N * 4), *gdx = dev_upload(dx, (size_t)N * C * 4);
    float *gdw = dev_upload(dw, (size_t)C * 4);
    char what[96];

    rmsnorm_forward(out, rstd, x, w, N, C, eps);
    cuda_rmsnorm_forward(gout, grstd, gx, gw, N, C, eps, 0);
    snprintf(what, sizeof what, "rmsnorm_forward %s out", name);
    check_f32(what, gout, out, (size_t)N * C, 1e-5);
    snprintf(what, sizeof what, "rmsnorm_forward %s rstd", name);
    check_f32(what, grstd, rstd, (size_t)N, 1e-5);
    rmsnorm_backward(dx, dw, dy, x, w, rstd, N, C, accumulate);
    cuda_rmsnorm_backward(gdx, gdw, gdy, gx, gw, grstd, N, C, accumulate, 0);
    snprintf(what, sizeof what, "rmsnorm_backward %s dx%s", name, accumulate ? " (+=)" : "");
    check_f32(what, gdx, dx, (size_t)N * C, 1e-5);
    snprintf(what, sizeof what, "rmsnorm_backward %s dw (+=)", name);
    check_f32(what, gdw, dw, (size_t)C, 1e-5);

    dev_free(gx), dev_free(gw), dev_free(gdy), dev_free(gout), dev_free(grstd), dev_free(gdx), dev_free(gdw);
    free(x), free(w), free(dy), free(out), free(rstd), free(dx), free(dw);
}

static void test_matmul_shape(CudaBlas *blas, int N, int IC, int OC, CudaDtype dt, double tol) {
    float *inp = rand_f32((size_t)N * IC, 1.0f), *w = rand_f32((size_t)OC * IC, 0.1f);
    float *dout = rand_f32((size_t)N * OC, 1.0f), *out = xmalloc((size_t)N * OC * 4);
    float *dinp = rand_f32((size_t)N * IC, 1.0f), *dw = rand_f32((size_t)OC * IC, 1.0f);
    float *gin = dev_upload(inp, (size_t)N * IC * 4), *gw = dev_upload(w, (size_t)OC * IC * 4);
    float *gdo = dev_upload(dout, (size_t)N * OC * 4), *gout = dev_alloc((size_t)N * OC * 4);
    float *gdinp = dev_upload(dinp, (size_t)N * IC * 4), *gdw = dev_upload(dw, (size_t)OC * IC * 4);
    const void *a = gin, *b = gw, *c = gdo;
    uint16_t *bin = NULL, *bw = NULL, *bdo = NULL;
    if (dt == CUDA_BF16) {
        bin = dev_alloc((size_t)N * IC * 2), bw = dev_alloc((size_t)OC * IC * 2), bdo = dev_alloc((size_t)N * OC * 2);
        cuda_f32_to_bf16(bin, gin, (long)N * IC, 0);
        cuda_f32_to_bf16(bw, gw, (long)OC * IC, 0);
        cuda_f32_to_bf16(bdo, gdo, (long)N * OC, 0);
        a = bin, b = bw, c = bdo;
    }
    char what[96];
    const char *tn = dt == CUDA_BF16 ? "bf16" : "f32";

    matmul_forward(out, inp, w, N, IC, OC);
    cuda_matmul_forward(blas, gout, a, b, dt, N, IC, OC, 0);
    snprintf(what, sizeof what, "matmul_forward %s %dx%dx%d", tn, N, IC, OC);
    check_f32(what, gout, out, (size_t)N * OC, tol);
    matmul_backward(dinp, dw, dout, inp, w, N, IC, OC, true);
    cuda_matmul_backward(blas, gdinp, gdw, c, a, b, dt, N, IC, OC, true, 0);
    snprintf(what, sizeof what, "matmul_backward %s dinp (+=)", tn);
    check_f32(what, gdinp, dinp, (size_t)N * IC, tol);
    snprintf(what, sizeof what, "matmul_backward %s dw (+=)", tn);
    check_f32(what, gdw, dw, (size_t)OC * IC, tol);

    dev_free(gin), dev_free(gw), dev_free(gdo), dev_free(gout), dev_free(gdinp), dev_free(gdw);
    if (bin) dev_free(bin), dev_free(bw), dev_free(bdo);
    free(inp), free(w), free(dout), free(out), free(dinp), free(dw);
}

/* mma.cuh's wrappers (cuda_mma_probe) against the lane layouts of the PTX
 * ISA, written out here: m holds 0 .. 255 (row-major), exact in bf16, so
 * the product is exact in any summation order and every bit must match. */
static void test_mma_layout(void) {
    uint16_t m[256];
    for (int i = 0; i < 256; i++) {
        float f = (float)i;
        uint32_t u;
        memcpy(&u, &f, 4);
        m[i] = (uint16_t)(u >> 16);
    }
    uint16_t *gm = dev_upload(m, sizeof m);
    uint32_t *gout = dev_alloc(32 * 16 * 4);
    cuda_mma_probe(gout, gm, 0);
    uint32_t *out = dev_download(gout, 32 * 16 * 4);
    int bad = 0;
    for (int lane = 0; lane < 32; lane++) {
        int g = lane / 4, t = lane % 4;
        const uint32_t *o = out + lane * 16;
        for (int j = 0; j < 4; j++) { /* matrix j: rows (j % 2) * 8.., columns (j / 2) * 8.. */
            int r0 = j % 2 * 8, c0 = j / 2 * 8;
            uint32_t plain = m[(r0 + g) * 16 + c0 + 2 * t] | (uint32_t)m[(r0 + g) * 16 + c0 + 2 * t + 1] << 16;
            uint32_t trans = m[(r0 + 2 * t) * 16 + c0 + g] | (uint32_t)m[(r0 + 2 * t + 1) * 16 + c0 + g] << 16;
            if (o[j] != plain || o[4 + j] != trans) {
                if (bad++ < 4)
                    fprintf(stderr, "lane %d matrix %d: ldmatrix %08x (want %08x), .trans %08x (want %08x)\n", lane, j,
                            o[j], plain, o[4 + j], trans);
            }
        }
        for (int i = 0; i < 4; i++) { /* d[i]: row g + 8 (i / 2), column 2t + i % 2 of m times m[:, 0:8] */
            int r = g + 8 * (i / 2), c = 2 * t + i % 2;
            float want = 0.0f, got;
            for (int k = 0; k < 16; k++) want += (float)(r * 16 + k) * (float)(k * 16 + c);
            memcpy(&got, &o[8 + i], 4);
            if (got != want && bad++ < 4) fprintf(stderr, "lane %d: mma d[%d] %g (want %g)\n", lane, i, got, want);
            if (o[12 + i] != 0 && bad++ < 4) fprintf(stderr, "lane %d: cp.async zero fill %08x\n", lane, o[12 + i]);
        }
    }
    printf("%s mma.cuh layouts (ldmatrix, .trans, mma m16n8k16, cp.async): %d mismatch(es)\n", bad ? "FAIL" : "ok  ",
           bad);
    if (bad) g_failures++;
    dev_free(gm), dev_free(gout);
    free(out);
}

static void test_rope(void) {
    int lens[3] = {40, 1, 26}, NH = 4, D = 64, P = 64;
    int32_t *seq_of, *seq_start, *pos;
    int T = pack(lens, 3, &seq_of, &seq_start, &pos);
    float *cosb = xmalloc((size_t)P * D / 2 * 4), *sinb = xmalloc((size_t)P * D / 2 * 4);
    rope_tables(cosb, sinb, P, D, 1e6);
    float *x = rand_f32((size_t)T * NH * D, 1.0f);
    float *gx = dev_upload(x, (size_t)T * NH * D * 4), *gc = dev_upload(cosb, (size_t)P * D / 2 * 4);
    float *gs = dev_upload(sinb, (size_t)P * D / 2 * 4);
    int32_t *gpos = dev_upload(pos, (size_t)T * 4);
    rope_forward(x, pos, cosb, sinb, T, NH, D);
    cuda_rope_forward(gx, gpos, gc, gs, T, NH, D, 0);
    check_f32("rope_forward", gx, x, (size_t)T * NH * D, 1e-6);
    rope_backward(x, pos, cosb, sinb, T, NH, D);
    cuda_rope_backward(gx, gpos, gc, gs, T, NH, D, 0);
    check_f32("rope_backward", gx, x, (size_t)T * NH * D, 1e-6);
    dev_free(gx), dev_free(gc), dev_free(gs), dev_free(gpos);
    free(cosb), free(sinb), free(x), free(seq_of), free(seq_start), free(pos);
}

/* bf16 arrays of n values on the device, both as fp32 (bf16 is fp32's high half). */
static void check_bf16_pair(const char *what, const uint16_t *got_dev, const uint16_t *want_dev, size_t n, double tol) {
    uint16_t *w = dev_download(want_dev, n * sizeof(uint16_t));
    float *wf = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)w[i] << 16;
        memcpy(&wf[i], &u, 4);
    }
    float *gf = dev_alloc(n * sizeof(float));
    cuda_bf16_to_f32(gf, got_dev, (long)n, 0);
    check_f32(what, gf, wf, n, tol);
    dev_free(gf);
    free(w), free(wf);
}

/* One case of the row products: N random input rows of IC, parts of
 * OC[p] random weight rows, a residual for part 0, the product of the
 * bf16-rounded operands in double (ref, (N, total)), and their device
 * copies: fp32 input gin, bf16 input bin and weights wp[p], outputs go[p]
 * and gf[p]. */
typedef struct {
    int N, IC, OC[3], total;
    float *inp, *w, *add, *ref;
    float *gin, *gw, *gadd, *go[3], *gf[3];
    uint16_t *bin, *bw;
    const uint16_t *wp[3];
} RowsCase;

static void rows_case_init(RowsCase *c, int N, int IC, const int OC[3]) {
    c->N = N, c->IC = IC, c->total = OC[0] + OC[1] + OC[2];
    for (int p = 0; p < 3; p++) c->OC[p] = OC[p];
    c->inp = rand_f32((size_t)N * IC, 1.0f), c->w = rand_f32((size_t)c->total * IC, 0.1f);
    c->add = rand_f32((size_t)N * OC[0], 1.0f), c->ref = xmalloc((size_t)N * c->total * 4);
    for (int r = 0; r < N; r++)
        for (int o = 0; o < c->total; o++) {
            double a = 0.0;
            for (int i = 0; i < IC; i++)
                a += (double)bf16_round_cpu(c->inp[(size_t)r * IC + i]) * bf16_round_cpu(c->w[(size_t)o * IC + i]);
            c->ref[(size_t)r * c->total + o] = (float)a;
        }
    c->gin = dev_upload(c->inp, (size_t)N * IC * 4), c->gw = dev_upload(c->w, (size_t)c->total * IC * 4);
    c->gadd = dev_upload(c->add, (size_t)N * OC[0] * 4);
    c->bin = dev_alloc((size_t)N * IC * 2), c->bw = dev_alloc((size_t)c->total * IC * 2);
    cuda_f32_to_bf16(c->bin, c->gin, (long)N * IC, 0);
    cuda_f32_to_bf16(c->bw, c->gw, (long)c->total * IC, 0);
    c->wp[0] = c->bw, c->wp[1] = c->bw + (size_t)OC[0] * IC, c->wp[2] = c->bw + (size_t)(OC[0] + OC[1]) * IC;
    for (int p = 0; p < 3; p++)
        c->go[p] = dev_alloc((size_t)N * OC[p] * 4), c->gf[p] = dev_alloc((size_t)N * OC[p] * 4);
}

static void rows_case_free(RowsCase *c) {
    for (int p = 0; p < 3; p++) dev_free(c->go[p]), dev_free(c->gf[p]);
    dev_free(c->gin), dev_free(c->gw), dev_free(c->gadd), dev_free(c->bin), dev_free(c->bw);
    free(c->inp), free(c->w), free(c->add), free(c->ref);
}

/* Each part of gpu (device, in c's parts) against c->ref (double, in
 * the same layout) within tol. */
static void rows_case_check_ref(const RowsCase *c, const char *name, float *const gpu[3], double tol) {
    char what[96];
    for (int p = 0, o0 = 0; p < 3; o0 += c->OC[p], p++) {
        float *want = xmalloc((size_t)c->N * c->OC[p] * 4);
        for (int r = 0; r < c->N; r++)
            for (int o = 0; o < c->OC[p]; o++) want[(size_t)r * c->OC[p] + o] = c->ref[(size_t)r * c->total + o0 + o];
        snprintf(what, sizeof what, "%s N %d IC %d part %d of %d", name, c->N, c->IC, p, c->OC[p]);
        check_f32(what, gpu[p], want, (size_t)c->N * c->OC[p], tol);
        free(want);
    }
}

typedef void (*RowsMatmulFn)(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                             const float *add, const uint16_t *inp, int N, int IC, cudaStream_t stream);
typedef void (*RowsMatmulF32Fn)(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                const float *add, const float *inp, int N, int IC, cudaStream_t stream);

/* What both families of row products promise: three parts in one launch
 * against the product in double (1e-5: fp32 sums over IC); the fp32-input
 * variant against the bf16 one, bit for bit (it rounds as it reads); rows
 * 0, row_step, ... alone against the same rows among N (an output's order
 * of operations does not depend on the other rows); the residual added in
 * place. Leaves the bf16-input products in c->go. */
static void rows_case_check(RowsCase *c, const char *name, RowsMatmulFn matmul, RowsMatmulF32Fn matmul_f32in,
                            int row_step) {
    int N = c->N, IC = c->IC;
    matmul(3, c->go, c->wp, c->OC, NULL, c->bin, N, IC, 0);
    matmul_f32in(3, c->gf, c->wp, c->OC, NULL, c->gin, N, IC, 0);
    rows_case_check_ref(c, name, c->go, 1e-5);
    char what[96];
    for (int p = 0; p < 3; p++) {
        float *got = dev_download(c->go[p], (size_t)N * c->OC[p] * 4);
        snprintf(what, sizeof what, "%s fp32 input = bf16 input, part %d", name, p);
        check_f32(what, c->gf[p], got, (size_t)N * c->OC[p], 0.0);
        free(got);
    }
    float *whole = dev_download(c->go[0], (size_t)N * c->OC[0] * 4);
    for (int r = 0; r < N; r += row_step > 0 ? row_step : N) {
        matmul(1, c->gf, c->wp, c->OC, NULL, c->bin + (size_t)r * IC, 1, IC, 0);
        snprintf(what, sizeof what, "%s row %d alone = row %d of %d", name, r, r, N);
        check_f32(what, c->gf[0], whole + (size_t)r * c->OC[0], (size_t)c->OC[0], 0.0);
    }
    /* the residual: out = add + product, here in place (out is add) */
    float *sum = xmalloc((size_t)N * c->OC[0] * 4);
    for (size_t i = 0; i < (size_t)N * c->OC[0]; i++) sum[i] = c->add[i] + whole[i];
    matmul(1, &c->gadd, c->wp, c->OC, c->gadd, c->bin, N, IC, 0);
    snprintf(what, sizeof what, "%s + residual (in place)", name);
    check_f32(what, c->gadd, sum, (size_t)N * c->OC[0], 0.0);
    free(whole), free(sum);
}

/* The few-row products (cuda_rows_*): rows_case_check with every row
 * alone; with even parts (two or four outputs a warp) the same bits as one
 * output a warp; SwiGLU against two parts and cuda_swiglu_forward_bf16, bit for
 * bit; the normed variants (below). IC leaves some lanes a piece fewer
 * than others. */
static void test_rows(int N, int IC, const int OC[3]) {
    RowsCase c;
    rows_case_init(&c, N, IC, OC);
    rows_case_check(&c, "rows_matmul", cuda_rows_matmul, cuda_rows_matmul_f32in, 1);
    const uint16_t *const *wp = c.wp;
    float *const *go = c.go;
    char what[96];
    if (OC[0] % 2 == 0 && OC[1] % 2 == 0 && OC[2] % 2 == 0) {
        /* every part even: two or four outputs a warp; a part of one output
         * beside part 0 makes the launch take one a warp: the same bits */
        float *outs[2] = {c.gf[0], c.gf[1]};
        const uint16_t *ws[2] = {wp[0], wp[1]};
        const int oc1[2] = {OC[0], 1};
        cuda_rows_matmul(2, outs, ws, oc1, NULL, c.bin, N, IC, 0);
        float *pairs = dev_download(go[0], (size_t)N * OC[0] * 4);
        snprintf(what, sizeof what, "rows_matmul N %d, %d %d %d: outputs a warp", N, OC[0], OC[1], OC[2]);
        check_f32(what, c.gf[0], pairs, (size_t)N * OC[0], 0.0);
        free(pairs);
    }
    /* SwiGLU: parts 0 and 1 as gate and up (OC[0] == OC[1]) */
    uint16_t *h = dev_alloc((size_t)N * OC[0] * 2), *h_ref = dev_alloc((size_t)N * OC[0] * 2);
    cuda_swiglu_forward_bf16(h_ref, go[0], go[1], (long)N * OC[0], 0);
    cuda_rows_swiglu(h, wp[0], wp[1], c.bin, N, IC, OC[0], 0);
    snprintf(what, sizeof what, "rows_swiglu N %d = two parts + swiglu_bf16", N);
    check_bf16_pair(what, h, h_ref, (size_t)N * OC[0], 0.0);

    /* the norm folded in: against RMSNorm and the product in double, the
     * input scaled up (a residual stream is far from unit size); SwiGLU
     * and a row alone as above */
    float eps = 1e-6f, *x = xmalloc((size_t)N * IC * 4), *nw = rand_f32((size_t)IC, 1.0f);
    for (size_t i = 0; i < (size_t)N * IC; i++) x[i] = 37.0f * c.inp[i];
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * IC;
        double ss = 0.0;
        for (int i = 0; i < IC; i++) ss += (double)xr[i] * xr[i];
        double rr = 1.0 / sqrt(ss / IC + eps);
        for (int o = 0; o < c.total; o++) {
            double a = 0.0;
            for (int i = 0; i < IC; i++) a += (double)xr[i] * rr * nw[i] * bf16_round_cpu(c.w[(size_t)o * IC + i]);
            c.ref[(size_t)r * c.total + o] = (float)a;
        }
    }
    float *gx = dev_upload(x, (size_t)N * IC * 4), *gnw = dev_upload(nw, (size_t)IC * 4);
    cuda_rows_matmul_normed(3, go, wp, OC, gx, gnw, eps, N, IC, 0);
    rows_case_check_ref(&c, "rows_matmul_normed", go, 1e-5);
    cuda_swiglu_forward_bf16(h_ref, go[0], go[1], (long)N * OC[0], 0);
    cuda_rows_swiglu_normed(h, wp[0], wp[1], gx, gnw, eps, N, IC, OC[0], 0);
    snprintf(what, sizeof what, "rows_swiglu_normed N %d = two parts + swiglu_bf16", N);
    check_bf16_pair(what, h, h_ref, (size_t)N * OC[0], 0.0);
    float *normed = dev_download(go[0], (size_t)N * OC[0] * 4);
    cuda_rows_matmul_normed(1, c.gf, wp, OC, gx + (size_t)(N - 1) * IC, gnw, eps, 1, IC, 0);
    snprintf(what, sizeof what, "rows_matmul_normed row %d alone = row %d of %d", N - 1, N - 1, N);
    check_f32(what, c.gf[0], normed + (size_t)(N - 1) * OC[0], (size_t)OC[0], 0.0);
    dev_free(gx), dev_free(gnw), dev_free(h), dev_free(h_ref);
    free(x), free(nw), free(normed);
    rows_case_free(&c);
}

/* The tensor-core products of up to 32 rows (cuda_rows_mma_*):
 * rows_case_check with the first and the last row alone. */
static void test_rows_mma(int N, int IC, const int OC[3]) {
    RowsCase c;
    rows_case_init(&c, N, IC, OC);
    rows_case_check(&c, "rows_mma", cuda_rows_mma_matmul, cuda_rows_mma_matmul_f32in, N - 1);
    rows_case_free(&c);
}

/* The training step's fused q/k path against its CPU twin (the CPU's
 * qk_norm_rope_forward/backward, themselves the bits of the separate norm
 * and rotation), at head_dims whose half is a multiple of the warp (128,
 * 64), less than one (32: lanes read columns another lane rotated) and
 * odd (18); the bf16 dq/dk are the fp32 launch's values rounded (exact). */
static void test_qk_norm_rope(int D) {
    int lens[3] = {40, 1, 26}, NH = 4, NKV = 2, P = 64;
    float eps = 1e-6f;
    int32_t *seq_of, *seq_start, *pos;
    int T = pack(lens, 3, &seq_of, &seq_start, &pos);
    size_t nq = (size_t)T * NH * D, nk = (size_t)T * NKV * D;
    float *cosb = xmalloc((size_t)P * D / 2 * 4), *sinb = xmalloc((size_t)P * D / 2 * 4);
    rope_tables(cosb, sinb, P, D, 1e6);
    float *q = rand_f32(nq, 2.0f), *k = rand_f32(nk, 2.0f), *qw = rand_f32(D, 1.5f), *kw = rand_f32(D, 1.5f);
    float *dqr = rand_f32(nq, 1.0f), *dkr = rand_f32(nk, 1.0f), *dqw = rand_f32(D, 1.0f), *dkw = rand_f32(D, 1.0f);
    float *qr = xmalloc(nq * 4), *kr = xmalloc(nk * 4), *qrs = xmalloc((size_t)T * NH * 4);
    float *krs = xmalloc((size_t)T * NKV * 4), *dq = xmalloc(nq * 4), *dk = xmalloc(nk * 4);
    float *gq = dev_upload(q, nq * 4), *gk = dev_upload(k, nk * 4), *gqw = dev_upload(qw, (size_t)D * 4);
    float *gkw = dev_upload(kw, (size_t)D * 4), *gc = dev_upload(cosb, (size_t)P * D / 2 * 4);
    float *gs = dev_upload(sinb, (size_t)P * D / 2 * 4);
    int32_t *gpos = dev_upload(pos, (size_t)T * 4);
    float *gqr = dev_alloc(nq * 4), *gkr = dev_alloc(nk * 4), *gqrs = dev_alloc((size_t)T * NH * 4);
    float *gkrs = dev_alloc((size_t)T * NKV * 4);
    float *gdqr = dev_upload(dqr, nq * 4), *gdkr = dev_upload(dkr, nk * 4), *gdqr2 = dev_upload(dqr, nq * 4);
    float *gdkr2 = dev_upload(dkr, nk * 4), *gdqw = dev_upload(dqw, (size_t)D * 4), *gdkw = dev_upload(dkw, (size_t)D * 4);
    float *gdqw2 = dev_upload(dqw, (size_t)D * 4), *gdkw2 = dev_upload(dkw, (size_t)D * 4);
    float *gdq = dev_alloc(nq * 4), *gdk = dev_alloc(nk * 4);
    uint16_t *want_q = dev_alloc(nq * 2), *want_k = dev_alloc(nk * 2), *got_q = dev_alloc(nq * 2);
    uint16_t *got_k = dev_alloc(nk * 2);
    char what[96];

    qk_norm_rope_forward(qr, qrs, q, qw, NH, kr, krs, k, kw, NKV, pos, cosb, sinb, T, D, eps);
    cuda_qk_norm_rope_forward(gqr, gqrs, gq, gqw, NH, gkr, gkrs, gk, gkw, NKV, gpos, gc, gs, T, D, eps, 0);
    snprintf(what, sizeof what, "qk_norm_rope_forward D %d: q", D);
    check_f32(what, gqr, qr, nq, 1e-6);
    snprintf(what, sizeof what, "qk_norm_rope_forward D %d: k", D);
    check_f32(what, gkr, kr, nk, 1e-6);
    snprintf(what, sizeof what, "qk_norm_rope_forward D %d: rstd", D);
    check_f32(what, gqrs, qrs, (size_t)T * NH, 1e-6);
    check_f32(what, gkrs, krs, (size_t)T * NKV, 1e-6);

    qk_norm_rope_backward(dq, dqw, dqr, q, qw, qrs, NH, dk, dkw, dkr, k, kw, krs, NKV, pos, cosb, sinb, T, D);
    cuda_qk_norm_rope_backward(gdq, gdqw, gdqr, gq, gqw, gqrs, NH, gdk, gdkw, gdkr, gk, gkw, gkrs, NKV, gpos, gc, gs, T,
                               D, 0);
    snprintf(what, sizeof what, "qk_norm_rope_backward D %d: dq", D);
    check_f32(what, gdq, dq, nq, 1e-5);
    snprintf(what, sizeof what, "qk_norm_rope_backward D %d: dk", D);
    check_f32(what, gdk, dk, nk, 1e-5);
    snprintf(what, sizeof what, "qk_norm_rope_backward D %d: dqr, dkr rotated back", D);
    check_f32(what, gdqr, dqr, nq, 1e-6);
    check_f32(what, gdkr, dkr, nk, 1e-6);
    snprintf(what, sizeof what, "qk_norm_rope_backward D %d: dq_w, dk_w (+=)", D);
    check_f32(what, gdqw, dqw, (size_t)D, 1e-5);
    check_f32(what, gdkw, dkw, (size_t)D, 1e-5);

    cuda_f32_to_bf16(want_q, gdq, (long)nq, 0);
    cuda_f32_to_bf16(want_k, gdk, (long)nk, 0);
    cuda_qk_norm_rope_backward_bf16(got_q, gdqw2, gdqr2, gq, gqw, gqrs, NH, got_k, gdkw2, gdkr2, gk, gkw, gkrs, NKV,
                                    gpos, gc, gs, T, D, 0);
    snprintf(what, sizeof what, "qk_norm_rope_backward_bf16 D %d: dq", D);
    check_bf16_pair(what, got_q, want_q, nq, 0.0);
    snprintf(what, sizeof what, "qk_norm_rope_backward_bf16 D %d: dk", D);
    check_bf16_pair(what, got_k, want_k, nk, 0.0);
    float *h_dqw = dev_download(gdqw, (size_t)D * 4), *h_dkw = dev_download(gdkw, (size_t)D * 4);
    snprintf(what, sizeof what, "qk_norm_rope_backward_bf16 D %d: dq_w, dk_w", D);
    check_f32(what, gdqw2, h_dqw, (size_t)D, 0.0);
    check_f32(what, gdkw2, h_dkw, (size_t)D, 0.0);

    dev_free(gq), dev_free(gk), dev_free(gqw), dev_free(gkw), dev_free(gc), dev_free(gs), dev_free(gpos);
    dev_free(gqr), dev_free(gkr), dev_free(gqrs), dev_free(gkrs), dev_free(gdqr), dev_free(gdkr), dev_free(gdqr2);
    dev_free(gdkr2), dev_free(gdqw), dev_free(gdkw), dev_free(gdqw2), dev_free(gdkw2), dev_free(gdq), dev_free(gdk);
    dev_free(want_q), dev_free(want_k), dev_free(got_q), dev_free(got_k);
    free(cosb), free(sinb), free(q), free(k), free(qw), free(kw), free(dqr), free(dkr), free(dqw), free(dkw);
    free(qr), free(kr), free(qrs), free(krs), free(dq), free(dk), free(h_dqw), free(h_dkw);
    free(seq_of), free(seq_start), free(pos);
}

/* RMSNorm with a bf16 output, as the training step saves its norms in bf16
 * products: the output and rstd against the fp32 kernel's, its output
 * rounded (exact), on the warp-per-row kernel (C 96) and the block-per-row
 * one (C 2560). */
static void test_rmsnorm_bf16_out(void) {
    int R = 7;
    const int Cs[2] = {96, 2560};
    for (int i = 0; i < 2; i++) {
        int C = Cs[i];
        float *x = rand_f32((size_t)R * C, 2.0f), *w = rand_f32(C, 1.0f);
        float *gx = dev_upload(x, (size_t)R * C * 4), *gw = dev_upload(w, (size_t)C * 4);
        float *gf = dev_alloc((size_t)R * C * 4), *rs_f = dev_alloc((size_t)R * 4), *rs_b = dev_alloc((size_t)R * 4);
        uint16_t *ga = dev_alloc((size_t)R * C * 2), *gb = dev_alloc((size_t)R * C * 2);
        cuda_rmsnorm_forward(gf, rs_f, gx, gw, R, C, 1e-6f, 0);
        cuda_f32_to_bf16(ga, gf, (long)R * C, 0);
        cuda_rmsnorm_forward_bf16(gb, rs_b, gx, gw, R, C, 1e-6f, 0);
        char what[64];
        snprintf(what, sizeof what, "rmsnorm_forward_bf16 C %d: output", C);
        check_bf16_pair(what, gb, ga, (size_t)R * C, 0.0);
        float *want = dev_download(rs_f, (size_t)R * 4);
        snprintf(what, sizeof what, "rmsnorm_forward_bf16 C %d: rstd", C);
        check_f32(what, rs_b, want, (size_t)R, 0.0);
        dev_free(gx), dev_free(gw), dev_free(gf), dev_free(rs_f), dev_free(rs_b), dev_free(ga), dev_free(gb);
        free(x), free(w), free(want);
    }
}

/* The SwiGLU backward's dgate and dup written in bf16 by the kernel (the
 * operands of the gate/up products' backward in bf16 math): the fp32
 * kernel's values rounded, exactly. */
static void test_swiglu_backward_bf16(void) {
    long N = 33L * 200 + 3;
    float *gate = rand_f32((size_t)N, 6.0f), *up = rand_f32((size_t)N, 2.0f), *dh = rand_f32((size_t)N, 1.0f);
    float *gg = dev_upload(gate, (size_t)N * 4), *gu = dev_upload(up, (size_t)N * 4), *gdh = dev_upload(dh, (size_t)N * 4);
    float *gdg = dev_alloc((size_t)N * 4), *gdu = dev_alloc((size_t)N * 4);
    uint16_t *want_g = dev_alloc((size_t)N * 2), *want_u = dev_alloc((size_t)N * 2);
    uint16_t *got_g = dev_alloc((size_t)N * 2), *got_u = dev_alloc((size_t)N * 2);
    cuda_swiglu_backward(gdg, gdu, gdh, gg, gu, N, 0);
    cuda_f32_to_bf16(want_g, gdg, N, 0);
    cuda_f32_to_bf16(want_u, gdu, N, 0);
    cuda_swiglu_backward_bf16(got_g, got_u, gdh, gg, gu, N, 0);
    check_bf16_pair("swiglu_backward_bf16 dgate", got_g, want_g, (size_t)N, 0.0);
    check_bf16_pair("swiglu_backward_bf16 dup", got_u, want_u, (size_t)N, 0.0);
    dev_free(gg), dev_free(gu), dev_free(gdh), dev_free(gdg), dev_free(gdu);
    dev_free(want_g), dev_free(want_u), dev_free(got_g), dev_free(got_u);
    free(gate), free(up), free(dh);
}

/* The inference step's fused stages, on the GPU: the norm and SwiGLU with
 * bf16 outputs against fp32 then the conversion (exact: the same products,
 * rounded once); the q/k norms and RoPE in one launch against the norm and
 * RoPE kernels (1e-6: a rotation may contract into FMA differently), and
 * the cache it writes against those kernels' keys and the values rounded
 * to bf16 on the host into each row's slot (within one bf16 step, 2^-8). */
static void test_infer_fused(void) {
    int R = 5, C = 96, I = 200, NH = 4, NKV = 2, D = 64, bs = 16, max_blocks = 3, P = 48;
    float eps = 1e-6f;
    int32_t pos[5] = {0, 7, 16, 40, 33};
    int32_t tables[15] = {2, 0, 0, 5, 0, 0, 1, 4, 0, 3, 6, 7, 8, 9, 10};
    size_t KD = (size_t)NKV * D, stride = 2 * (size_t)bs * KD, k_off = 0, v_off = (size_t)bs * KD, n_blocks = 11;
    float *x = rand_f32((size_t)R * C, 2.0f), *w = rand_f32(C, 1.0f), *gate = rand_f32((size_t)R * I, 4.0f);
    float *up = rand_f32((size_t)R * I, 2.0f), *q = rand_f32((size_t)R * NH * D, 2.0f);
    float *k = rand_f32((size_t)R * KD, 2.0f), *v = rand_f32((size_t)R * KD, 2.0f), *qw = rand_f32(D, 1.0f);
    float *kw = rand_f32(D, 1.0f);
    float *cosb = xmalloc((size_t)P * D / 2 * 4), *sinb = xmalloc((size_t)P * D / 2 * 4);
    rope_tables(cosb, sinb, P, D, 1e6);

    float *gx = dev_upload(x, (size_t)R * C * 4), *gw = dev_upload(w, (size_t)C * 4), *gf = dev_alloc((size_t)R * C * 4);
    float *grs = dev_alloc((size_t)R * 4);
    uint16_t *ga = dev_alloc((size_t)R * I * 2), *gb = dev_alloc((size_t)R * I * 2);
    cuda_rmsnorm_forward(gf, grs, gx, gw, R, C, eps, 0);
    cuda_f32_to_bf16(ga, gf, (long)R * C, 0);
    cuda_rmsnorm_forward_bf16(gb, NULL, gx, gw, R, C, eps, 0);
    check_bf16_pair("rmsnorm_forward_bf16 vs rmsnorm + bf16", gb, ga, (size_t)R * C, 0.0);
    float *gg = dev_upload(gate, (size_t)R * I * 4), *gu = dev_upload(up, (size_t)R * I * 4);
    float *gh = dev_alloc((size_t)R * I * 4);
    cuda_swiglu_forward(gh, gg, gu, (long)R * I, 0);
    cuda_f32_to_bf16(ga, gh, (long)R * I, 0);
    cuda_swiglu_forward_bf16(gb, gg, gu, (long)R * I, 0);
    check_bf16_pair("swiglu_forward_bf16 vs swiglu + bf16", gb, ga, (size_t)R * I, 0.0);

    float *gq = dev_upload(q, (size_t)R * NH * D * 4), *gk = dev_upload(k, (size_t)R * KD * 4);
    float *gv = dev_upload(v, (size_t)R * KD * 4), *gqw = dev_upload(qw, (size_t)D * 4), *gkw = dev_upload(kw, (size_t)D * 4);
    float *gc = dev_upload(cosb, (size_t)P * D / 2 * 4), *gsn = dev_upload(sinb, (size_t)P * D / 2 * 4);
    int32_t *gpos = dev_upload(pos, sizeof pos), *gtab = dev_upload(tables, sizeof tables);
    float *qn1 = dev_alloc((size_t)R * NH * D * 4), *kn1 = dev_alloc((size_t)R * KD * 4);
    float *qn2 = dev_alloc((size_t)R * NH * D * 4), *kn2 = dev_alloc((size_t)R * KD * 4);
    float *qrs = dev_alloc((size_t)R * NH * 4), *krs = dev_alloc((size_t)R * NKV * 4);
    uint16_t *cache2 = dev_alloc(n_blocks * stride * 2);
    cuda_check(cudaMemset(cache2, 0, n_blocks * stride * 2));
    cuda_rmsnorm_forward(qn1, qrs, gq, gqw, R * NH, D, eps, 0);
    cuda_rmsnorm_forward(kn1, krs, gk, gkw, R * NKV, D, eps, 0);
    cuda_rope_forward(qn1, gpos, gc, gsn, R, NH, D, 0);
    cuda_rope_forward(kn1, gpos, gc, gsn, R, NKV, D, 0);
    cuda_qk_norm_rope_cache_bf16(qn2, kn2, cache2, gq, gk, gv, gqw, gkw, gpos, gc, gsn, gtab, max_blocks, R, NH, NKV, D,
                                 eps, bs, stride, k_off, v_off, 0);
    float *h_qn1 = dev_download(qn1, (size_t)R * NH * D * 4), *h_kn1 = dev_download(kn1, (size_t)R * KD * 4);
    check_f32("qk_norm_rope_cache q vs norm + rope", qn2, h_qn1, (size_t)R * NH * D, 1e-6);
    check_f32("qk_norm_rope_cache k vs norm + rope", kn2, h_kn1, (size_t)R * KD, 1e-6);
    /* the expected cache: row r's key and value at position pos[r] of its block table */
    uint16_t *want = xcalloc(n_blocks * stride, sizeof(uint16_t));
    for (int r = 0; r < R; r++) {
        size_t slot = (size_t)tables[r * max_blocks + pos[r] / bs] * stride + (size_t)(pos[r] % bs) * KD;
        for (size_t i = 0; i < KD; i++) {
            float kv2[2] = {bf16_round_cpu(h_kn1[(size_t)r * KD + i]), bf16_round_cpu(v[(size_t)r * KD + i])};
            uint32_t u[2];
            memcpy(u, kv2, sizeof u);
            want[slot + k_off + i] = (uint16_t)(u[0] >> 16);
            want[slot + v_off + i] = (uint16_t)(u[1] >> 16);
        }
    }
    uint16_t *cache1 = dev_upload(want, n_blocks * stride * sizeof(uint16_t));
    check_bf16_pair("qk_norm_rope_cache cache vs keys and values in their slots", cache2, cache1, n_blocks * stride,
                    1e-2);
    free(want);

    dev_free(gx), dev_free(gw), dev_free(gf), dev_free(grs), dev_free(ga), dev_free(gb), dev_free(gg), dev_free(gu);
    dev_free(gh), dev_free(gq), dev_free(gk), dev_free(gv), dev_free(gqw), dev_free(gkw), dev_free(gc), dev_free(gsn);
    dev_free(gpos), dev_free(gtab), dev_free(qn1), dev_free(kn1), dev_free(qn2), dev_free(kn2), dev_free(qrs);
    dev_free(krs), dev_free(cache1), dev_free(cache2);
    free(h_qn1), free(h_kn1), free(x), free(w), free(gate), free(up), free(q), free(k), free(v), free(qw), free(kw);
    free(cosb), free(sinb);
}

/* dt CUDA_F32: the fp32 kernels (tolerances 1e-4, lse 1e-5); CUDA_BF16: the
 * tensor-core kernels where they take D (attention_tc.cu's, or with
 * TAU2_CUDA_ATTENTION=mma attention_mma.cu's), bf16 operands
 * against the fp32 CPU attention (1e-2, lse 1e-2 of its largest value). */
static void test_attention_shape(const char *name, const int *lens, int n_seqs, int NH, int NKV, int D, CudaDtype dt) {
    int32_t *seq_of, *seq_start, *pos;
    int T = pack(lens, n_seqs, &seq_of, &seq_start, &pos);
    size_t nq = (size_t)T * NH * D, nk = (size_t)T * NKV * D;
    float *q = rand_f32(nq, 1.5f), *k = rand_f32(nk, 1.5f), *v = rand_f32(nk, 1.0f), *dout = rand_f32(nq, 1.0f);
    float *out = xmalloc(nq * 4), *lse = xmalloc((size_t)T * NH * 4), *delta = xmalloc((size_t)T * NH * 4);
    float *dq = xmalloc(nq * 4), *dk = xmalloc(nk * 4), *dv = xmalloc(nk * 4);
    float *gq = dev_upload(q, nq * 4), *gk = dev_upload(k, nk * 4), *gv = dev_upload(v, nk * 4);
    float *gdo = dev_upload(dout, nq * 4), *gout = dev_alloc(nq * 4), *glse = dev_alloc((size_t)T * NH * 4);
    float *gdelta = dev_alloc((size_t)T * NH * 4), *gdq = dev_alloc(nq * 4), *gdk = dev_alloc(nk * 4);
    float *gdv = dev_alloc(nk * 4);
    int32_t *gso = dev_upload(seq_of, (size_t)T * 4), *gss = dev_upload(seq_start, (size_t)(n_seqs + 1) * 4);
    char what[96];

    attention_forward(out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D);
    double tol = dt == CUDA_BF16 ? 1e-2 : 1e-4, tol_lse = dt == CUDA_BF16 ? 1e-2 : 1e-5;
    bool mma = cuda_attention_mma_chosen() && cuda_attention_mma_supported(D);
    const char *kind = dt == CUDA_BF16 ? (mma ? "bf16 mma" : cuda_attention_tc_supported(D) ? "bf16 tc" : "bf16->fp32")
                                       : "fp32";
    cuda_attention_forward(gout, glse, gq, gk, gv, gso, gss, T, NH, NKV, D, dt, 0);
    snprintf(what, sizeof what, "attention_forward %s %s out", kind, name);
    check_f32(what, gout, out, nq, tol);
    snprintf(what, sizeof what, "attention_forward %s %s lse", kind, name);
    check_f32(what, glse, lse, (size_t)T * NH, tol_lse);
    attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D);
    cuda_attention_backward(gdq, gdk, gdv, gdelta, gdo, gout, glse, gq, gk, gv, gso, gss, T, NH, NKV, D, dt, 0);
    snprintf(what, sizeof what, "attention_backward %s %s dq", kind, name);
    check_f32(what, gdq, dq, nq, tol);
    snprintf(what, sizeof what, "attention_backward %s %s dk", kind, name);
    check_f32(what, gdk, dk, nk, tol);
    snprintf(what, sizeof what, "attention_backward %s %s dv", kind, name);
    check_f32(what, gdv, dv, nk, tol);

    dev_free(gq), dev_free(gk), dev_free(gv), dev_free(gdo), dev_free(gout), dev_free(glse), dev_free(gdelta);
    dev_free(gdq), dev_free(gdk), dev_free(gdv), dev_free(gso), dev_free(gss);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(delta), free(dq), free(dk), free(dv);
    free(seq_of), free(seq_start), free(pos);
}

/* The CPU reference of the decode kernel: infer.c's attention_paged (static
 * there), the same loop over one query per (row, head). */
static void decode_cpu(float *out, const float *q, const float *kv, const int32_t *tables, int max_blocks,
                       const int32_t *pos, int R, int NH, int NKV, int D, int bs, size_t stride, size_t k_off,
                       size_t v_off) {
    int rep = NH / NKV;
    float scale = 1.0f / sqrtf((float)D);
    for (int r = 0; r < R; r++) {
        for (int h = 0; h < NH; h++) {
            int g = h / rep;
            const float *qr = q + ((size_t)r * NH + h) * D;
            double acc[256] = {0}, m = -INFINITY, l = 0.0;
            for (int j = 0; j <= pos[r]; j++) {
                const float *blk = kv + (size_t)tables[r * max_blocks + j / bs] * stride;
                size_t slot = ((size_t)(j % bs) * NKV + g) * D;
                double sc = 0.0;
                for (int d = 0; d < D; d++) sc += (double)qr[d] * blk[k_off + slot + d];
                sc *= scale;
                if (sc > m) {
                    double corr = exp(m - sc);
                    l *= corr;
                    for (int d = 0; d < D; d++) acc[d] *= corr;
                    m = sc;
                }
                double p = exp(sc - m);
                l += p;
                for (int d = 0; d < D; d++) acc[d] += p * blk[v_off + slot + d];
            }
            for (int d = 0; d < D; d++) out[((size_t)r * NH + h) * D + d] = (float)(acc[d] / l);
        }
    }
}

static void test_decode(int NH, int NKV, int D) {
    int R = 6, bs = 16, L = 2, layer = 1;
    int32_t pos[6] = {0, 16, 299, 600, 63, 255}; /* lengths 1, 17, 300, 601, 64, 256 */
    int max_len = 0, max_blocks = 0, n_blocks = 0;
    for (int r = 0; r < R; r++) {
        int nb = (pos[r] + bs) / bs;
        max_len = pos[r] + 1 > max_len ? pos[r] + 1 : max_len;
        max_blocks = nb > max_blocks ? nb : max_blocks;
        n_blocks += nb;
    }
    /* every row's blocks, shuffled over the pool */
    int32_t *perm = xmalloc((size_t)n_blocks * 4);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd_u32() % (uint32_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *tables = xcalloc((size_t)R * max_blocks, 4);
    for (int r = 0, next = 0; r < R; r++)
        for (int b = 0; b < (pos[r] + bs) / bs; b++) tables[r * max_blocks + b] = perm[next++];
    size_t KD = (size_t)NKV * D, stride = (size_t)L * 2 * bs * KD;
    size_t k_off = (size_t)layer * 2 * bs * KD, v_off = k_off + bs * KD;
    float *kv = rand_f32((size_t)n_blocks * stride, 2.0f), *q = rand_f32((size_t)R * NH * D, 2.0f);
    float *out = xmalloc((size_t)R * NH * D * 4);
    decode_cpu(out, q, kv, tables, max_blocks, pos, R, NH, NKV, D, bs, stride, k_off, v_off);
    float *gkv = dev_upload(kv, (size_t)n_blocks * stride * 4), *gq = dev_upload(q, (size_t)R * NH * D * 4);
    float *gout = dev_alloc((size_t)R * NH * D * 4);
    int32_t *gt = dev_upload(tables, (size_t)R * max_blocks * 4), *gpos = dev_upload(pos, sizeof pos);
    /* the workspace exactly as large as asked for, poisoned: every partial the merge reads is written */
    size_t work_bytes = cuda_decode_attention_work_bytes(R, NH, D, max_len);
    float *gwork = dev_alloc(work_bytes);
    cuda_check(cudaMemset(gwork, 0xff, work_bytes));
    cuda_decode_attention(gout, gq, gkv, gt, max_blocks, gpos, R, NH, NKV, D, bs, stride, k_off, v_off, max_len,
                          gwork, work_bytes, 0);
    char what[96];
    snprintf(what, sizeof what, "decode_attention NH %d NKV %d D %d", NH, NKV, D);
    check_f32(what, gout, out, (size_t)R * NH * D, 1e-5);
    /* the bf16 cache: the reference takes the same rounded values */
    size_t n_kv = (size_t)n_blocks * stride;
    uint16_t *kv16 = xmalloc(n_kv * sizeof(uint16_t));
    for (size_t i = 0; i < n_kv; i++) {
        kv[i] = bf16_round_cpu(kv[i]);
        uint32_t u;
        memcpy(&u, &kv[i], 4);
        kv16[i] = (uint16_t)(u >> 16);
    }
    decode_cpu(out, q, kv, tables, max_blocks, pos, R, NH, NKV, D, bs, stride, k_off, v_off);
    uint16_t *gkv16 = dev_upload(kv16, n_kv * sizeof(uint16_t));
    cuda_check(cudaMemset(gwork, 0xff, work_bytes));
    cuda_decode_attention_bf16(gout, gq, gkv16, gt, max_blocks, gpos, R, NH, NKV, D, bs, stride, k_off, v_off, max_len,
                               gwork, work_bytes, 0);
    snprintf(what, sizeof what, "decode_attention bf16 cache NH %d NKV %d D %d", NH, NKV, D);
    check_f32(what, gout, out, (size_t)R * NH * D, 1e-5);
    /* partials capped at a quarter: longer pieces, fewer of them, the same attention */
    char cap[32];
    snprintf(cap, sizeof cap, "%zu", work_bytes / 4);
    setenv("TAU2_CUDA_DECODE_WORK_MAX", cap, 1);
    size_t capped = cuda_decode_attention_work_bytes(R, NH, D, max_len);
    if (capped > work_bytes / 4 || capped == 0) {
        fprintf(stderr, "FAIL decode work under a cap of %zu bytes: %zu (uncapped %zu)\n", work_bytes / 4, capped,
                work_bytes);
        g_failures++;
    }
    cuda_check(cudaMemset(gwork, 0xff, work_bytes));
    cuda_decode_attention_bf16(gout, gq, gkv16, gt, max_blocks, gpos, R, NH, NKV, D, bs, stride, k_off, v_off, max_len,
                               gwork, capped, 0);
    unsetenv("TAU2_CUDA_DECODE_WORK_MAX");
    snprintf(what, sizeof what, "decode_attention bf16 cache, partials capped (%zu of %zu bytes) NH %d NKV %d D %d",
             capped, work_bytes, NH, NKV, D);
    check_f32(what, gout, out, (size_t)R * NH * D, 1e-5);
    dev_free(gkv), dev_free(gkv16), dev_free(gq), dev_free(gout), dev_free(gt), dev_free(gpos), dev_free(gwork);
    free(perm), free(tables), free(kv), free(kv16), free(q), free(out);
}

/* The decode step's q/k stage folded into the attention's launch against
 * the two launches it replaces (cuda_qk_norm_rope_cache_bf16, then the
 * attention on its qn): the same output and the same cache, bit for bit.
 * Rows of 1 to 601 keys over a split sized for 1024 (as the engine's
 * rounded-up tables): 32 pieces, the new key in the first of them for some
 * rows, in the 19th for another, empty pieces after it. */
static void test_decode_folded(int NH, int NKV, int D) {
    int R = 6, bs = 16, L = 2, layer = 1, max_len = 1024, max_blocks = max_len / bs, P = max_len;
    int32_t pos[6] = {0, 16, 299, 600, 63, 255};
    float eps = 1e-6f;
    int n_blocks = R * max_blocks;
    int32_t *tables = xmalloc((size_t)n_blocks * 4); /* every row's blocks, shuffled over the pool */
    for (int i = 0; i < n_blocks; i++) tables[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd_u32() % (uint32_t)(i + 1));
        int32_t t = tables[i];
        tables[i] = tables[j], tables[j] = t;
    }
    size_t KD = (size_t)NKV * D, stride = (size_t)L * 2 * bs * KD, n_kv = (size_t)n_blocks * stride;
    size_t k_off = (size_t)layer * 2 * bs * KD, v_off = k_off + bs * KD;
    uint16_t *kv16 = xmalloc(n_kv * sizeof(uint16_t));
    for (size_t i = 0; i < n_kv; i++) kv16[i] = (uint16_t)(0x3c00u + rnd_u32() % 0x0400u) ^ (rnd_u32() & 0x8000u);
    float *q = rand_f32((size_t)R * NH * D, 2.0f), *k = rand_f32((size_t)R * KD, 2.0f);
    float *v = rand_f32((size_t)R * KD, 2.0f), *qw = rand_f32(D, 1.0f), *kw = rand_f32(D, 1.0f);
    float *cosb = xmalloc((size_t)P * D / 2 * 4), *sinb = xmalloc((size_t)P * D / 2 * 4);
    rope_tables(cosb, sinb, P, D, 1e6);

    uint16_t *cache_a = dev_upload(kv16, n_kv * 2), *cache_b = dev_upload(kv16, n_kv * 2);
    float *gq = dev_upload(q, (size_t)R * NH * D * 4), *gk = dev_upload(k, (size_t)R * KD * 4);
    float *gv = dev_upload(v, (size_t)R * KD * 4), *gqw = dev_upload(qw, (size_t)D * 4);
    float *gkw = dev_upload(kw, (size_t)D * 4);
    float *gc = dev_upload(cosb, (size_t)P * D / 2 * 4), *gsn = dev_upload(sinb, (size_t)P * D / 2 * 4);
    int32_t *gpos = dev_upload(pos, sizeof pos), *gtab = dev_upload(tables, (size_t)n_blocks * 4);
    float *qn = dev_alloc((size_t)R * NH * D * 4), *kn = dev_alloc((size_t)R * KD * 4);
    float *out_a = dev_alloc((size_t)R * NH * D * 4), *out_b = dev_alloc((size_t)R * NH * D * 4);
    size_t work_bytes = cuda_decode_attention_work_bytes(R, NH, D, max_len);
    float *gwork = dev_alloc(work_bytes);
    char what[128];
    snprintf(what, sizeof what, "decode fold fits NH %d NKV %d D %d", NH, NKV, D);
    bool fits = cuda_decode_fold_fit(NH, NKV, D, bs) && !cuda_decode_fold_fit(NH, NKV, D, 24);
    printf("%-4s %s (block size 16; not 24)\n", fits ? "ok" : "FAIL", what);
    if (!fits) g_failures++;

    cuda_qk_norm_rope_cache_bf16(qn, kn, cache_a, gq, gk, gv, gqw, gkw, gpos, gc, gsn, gtab, max_blocks, R, NH, NKV, D,
                                 eps, bs, stride, k_off, v_off, 0);
    cuda_decode_attention_bf16(out_a, qn, cache_a, gtab, max_blocks, gpos, R, NH, NKV, D, bs, stride, k_off, v_off,
                               max_len, gwork, work_bytes, 0);
    cuda_decode_attention_folded_bf16(out_b, cache_b, gq, gk, gv, gqw, gkw, gc, gsn, eps, gtab, max_blocks, gpos, R, NH,
                                      NKV, D, bs, stride, k_off, v_off, max_len, gwork, work_bytes, 0);
    float *want = dev_download(out_a, (size_t)R * NH * D * 4);
    snprintf(what, sizeof what, "decode attention, q/k stage folded in, vs the two launches NH %d NKV %d D %d", NH, NKV,
             D);
    check_f32(what, out_b, want, (size_t)R * NH * D, 0.0);
    snprintf(what, sizeof what, "decode attention, q/k stage folded in: the cache it wrote NH %d NKV %d D %d", NH, NKV,
             D);
    check_bf16_pair(what, cache_b, cache_a, n_kv, 0.0);

    dev_free(cache_a), dev_free(cache_b), dev_free(gq), dev_free(gk), dev_free(gv), dev_free(gqw), dev_free(gkw);
    dev_free(gc), dev_free(gsn), dev_free(gpos), dev_free(gtab), dev_free(qn), dev_free(kn), dev_free(out_a);
    dev_free(out_b), dev_free(gwork);
    free(tables), free(kv16), free(q), free(k), free(v), free(qw), free(kw), free(cosb), free(sinb), free(want);
}

static void test_swiglu_residual(void) {
    long N = 67L * 384 + 5;
    float *gate = rand_f32((size_t)N, 6.0f), *up = rand_f32((size_t)N, 2.0f), *dh = rand_f32((size_t)N, 1.0f);
    float *h = xmalloc((size_t)N * 4), *dg = xmalloc((size_t)N * 4), *du = xmalloc((size_t)N * 4);
    float *gg = dev_upload(gate, (size_t)N * 4), *gu = dev_upload(up, (size_t)N * 4), *gdh = dev_upload(dh, (size_t)N * 4);
    float *gh = dev_alloc((size_t)N * 4), *gdg = dev_alloc((size_t)N * 4), *gdu = dev_alloc((size_t)N * 4);
    swiglu_forward(h, gate, up, N);
    cuda_swiglu_forward(gh, gg, gu, N, 0);
    check_f32("swiglu_forward", gh, h, (size_t)N, 1e-5);
    swiglu_backward(dg, du, dh, gate, up, N);
    cuda_swiglu_backward(gdg, gdu, gdh, gg, gu, N, 0);
    check_f32("swiglu_backward dgate", gdg, dg, (size_t)N, 1e-5);
    check_f32("swiglu_backward dup", gdu, du, (size_t)N, 1e-5);
    residual_add(gate, up, N);
    cuda_residual_add(gg, gu, N, 0);
    check_f32("residual_add", gg, gate, (size_t)N, 0.0);
    dev_free(gg), dev_free(gu), dev_free(gdh), dev_free(gh), dev_free(gdg), dev_free(gdu);
    free(gate), free(up), free(dh), free(h), free(dg), free(du);
}

static void test_output_head(void) {
    int R = 67, V = 5003, split = 2500; /* two vocab shards: [0, 2500), [2500, 5003) */
    float *z = rand_f32((size_t)R * V, 8.0f);
    int32_t targets[67];
    float dlp[67], dent[67];
    for (int r = 0; r < R; r++) {
        targets[r] = r % 11 == 3 ? -1 : (int32_t)(rnd_u32() % (uint32_t)V);
        dlp[r] = rnd_f(1.0f);
        dent[r] = rnd_f(0.5f);
    }
    dlp[7] = dent[7] = 0.0f; /* a masked row */
    float lp[67], ent[67], lse[67];
    logprob_entropy_forward(lp, ent, lse, z, targets, R, V);
    float *gz = dev_upload(z, (size_t)R * V * 4), *glp = dev_alloc(R * 4), *gent = dev_alloc(R * 4);
    float *glse = dev_alloc(R * 4);
    int32_t *gt = dev_upload(targets, sizeof targets);
    cuda_logprob_entropy_forward(glp, gent, glse, gz, gt, R, V, 0);
    check_f32("logprob_entropy_forward logprob", glp, lp, (size_t)R, 1e-5);
    check_f32("logprob_entropy_forward entropy", gent, ent, (size_t)R, 1e-5);
    check_f32("logprob_entropy_forward lse", glse, lse, (size_t)R, 1e-5);

    /* vocab-parallel: each shard's slice is a (R, Vs) matrix of its own */
    int v0s[2] = {0, split}, vss[2] = {split, V - split};
    float *mx[2];
    double *st[2];
    float mxall[67];
    for (int r = 0; r < R; r++) mxall[r] = -INFINITY;
    float *gsl[2], *gmx = dev_alloc(R * 4);
    double *gst = dev_alloc((size_t)R * 3 * 8);
    for (int s = 0; s < 2; s++) {
        float *sl = xmalloc((size_t)R * vss[s] * 4);
        for (int r = 0; r < R; r++) memcpy(sl + (size_t)r * vss[s], z + (size_t)r * V + v0s[s], (size_t)vss[s] * 4);
        gsl[s] = dev_upload(sl, (size_t)R * vss[s] * 4);
        free(sl);
        cuda_vocab_row_max(gmx, gsl[s], R, vss[s], 0);
        mx[s] = dev_download(gmx, R * 4);
        for (int r = 0; r < R; r++) mxall[r] = mx[s][r] > mxall[r] ? mx[s][r] : mxall[r]; /* the all-reduce max */
    }
    cuda_check(cudaMemcpy(gmx, mxall, R * 4, cudaMemcpyHostToDevice));
    double stall[67 * 3] = {0};
    for (int s = 0; s < 2; s++) {
        cuda_logprob_entropy_partial(gst, gsl[s], gt, gmx, R, vss[s], v0s[s], 0);
        st[s] = dev_download(gst, (size_t)R * 3 * 8);
        for (int i = 0; i < R * 3; i++) stall[i] += st[s][i]; /* the all-reduce sum */
    }
    cuda_check(cudaMemcpy(gst, stall, (size_t)R * 3 * 8, cudaMemcpyHostToDevice));
    cuda_logprob_entropy_finish(glp, gent, glse, gst, gmx, gt, R, 0);
    check_f32("logprob_entropy partial/finish (2 shards) logprob", glp, lp, (size_t)R, 1e-5);
    check_f32("logprob_entropy partial/finish (2 shards) entropy", gent, ent, (size_t)R, 1e-5);
    check_f32("logprob_entropy partial/finish (2 shards) lse", glse, lse, (size_t)R, 1e-5);

    /* backward, whole vocabulary and per shard, from the CPU's lse/entropy */
    float *gdlp = dev_upload(dlp, sizeof dlp), *gdent = dev_upload(dent, sizeof dent);
    cuda_check(cudaMemcpy(glse, lse, R * 4, cudaMemcpyHostToDevice));
    cuda_check(cudaMemcpy(gent, ent, R * 4, cudaMemcpyHostToDevice));
    float *zs = xmalloc((size_t)R * vss[1] * 4);
    for (int r = 0; r < R; r++) memcpy(zs + (size_t)r * vss[1], z + (size_t)r * V + split, (size_t)vss[1] * 4);
    logprob_entropy_backward_shard(zs, dlp, dent, lse, ent, targets, R, vss[1], split);
    cuda_logprob_entropy_backward_shard(gsl[1], gdlp, gdent, glse, gent, gt, R, vss[1], split, 0);
    check_f32("logprob_entropy_backward_shard", gsl[1], zs, (size_t)R * vss[1], 1e-5);
    logprob_entropy_backward(z, dlp, dent, lse, ent, targets, R, V);
    cuda_logprob_entropy_backward(gz, gdlp, gdent, glse, gent, gt, R, V, 0);
    check_f32("logprob_entropy_backward", gz, z, (size_t)R * V, 1e-5);

    for (int s = 0; s < 2; s++) dev_free(gsl[s]), free(mx[s]), free(st[s]);
    dev_free(gz), dev_free(glp), dev_free(gent), dev_free(glse), dev_free(gt), dev_free(gmx), dev_free(gst);
    dev_free(gdlp), dev_free(gdent);
    free(z), free(zs);
}

/* The optimizer against qwen3_adamw_step itself on a small model: the GPU
 * steps each tensor with the same weight-decay rule (none on 1-D tensors
 * unless decay_1d), after a device-side grad norm and clip factor; the
 * bf16 copy it writes when asked against the conversion of its weights. */
static void test_adamw(void) {
    Qwen3Config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab_size = 503, cfg.hidden_size = 64, cfg.intermediate_size = 160, cfg.num_layers = 2;
    cfg.num_heads = 4, cfg.num_kv_heads = 2, cfg.head_dim = 16, cfg.rms_norm_eps = 1e-6f, cfg.rope_theta = 1e6;
    cfg.tie_word_embeddings = true, cfg.max_position_embeddings = 128, cfg.bos_token_id = cfg.eos_token_id = -1;
    Qwen3 *m = qwen3_new(&cfg);
    size_t n = m->num_parameters;
    for (size_t i = 0; i < n; i++) m->params_memory[i] = rnd_f(0.5f);
    qwen3_zero_grad(m);
    Qwen3AdamW opt = {.beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-8f, .weight_decay = 0.1f, .max_grad_norm = 1.0f,
                      .decay_1d = false};
    float *gp = dev_upload(m->params_memory, n * 4), *gg = dev_alloc(n * 4);
    float *gm = dev_alloc(n * 4), *gv = dev_alloc(n * 4), *gnorm = dev_alloc(4), *gscale = dev_alloc(4);
    double *gss = dev_alloc(8);
    uint16_t *gpb = dev_alloc(n * 2), *gpb_zero = dev_alloc(n * 2);
    cuda_check(cudaMemset(gm, 0, n * 4));
    cuda_check(cudaMemset(gv, 0, n * 4));
    cuda_check(cudaMemset(gpb, 0, n * 2));
    cuda_check(cudaMemset(gpb_zero, 0, n * 2));
    float lr = 1e-3f, norms[2];
    for (int step = 1; step <= 2; step++) {
        /* step 1 is clipped (large gradients), step 2 is not */
        float a = step == 1 ? 0.2f : 1e-4f;
        for (size_t i = 0; i < n; i++) m->grads_memory[i] = rnd_f(a);
        cuda_check(cudaMemcpy(gg, m->grads_memory, n * 4, cudaMemcpyHostToDevice));
        norms[step - 1] = qwen3_adamw_step(m, &opt, lr);
        for (int ti = 0; ti < m->n_tensors; ti++)
            cuda_sum_squares(gss, gg + m->tensors[ti].offset, m->tensors[ti].numel, ti > 0, 0);
        cuda_clip_scale(gnorm, gscale, gss, opt.max_grad_norm, 0);
        double bc1 = 1.0 - pow((double)opt.beta1, step), bc2 = 1.0 - pow((double)opt.beta2, step);
        for (int ti = 0; ti < m->n_tensors; ti++) {
            const Qwen3Tensor *t = &m->tensors[ti];
            float wd = (t->ndim == 1 && !opt.decay_1d) ? 0.0f : opt.weight_decay;
            /* the bf16 copy on step 2 only: step 1 checks that none is written */
            cuda_adamw_update(gp + t->offset, step == 2 ? gpb + t->offset : NULL, gg + t->offset, gm + t->offset,
                              gv + t->offset, t->numel, gscale, lr, opt.beta1, opt.beta2, opt.eps, wd, bc1, bc2, 0);
        }
        if (step == 1) check_bf16_pair("adamw without a bf16 copy writes none", gpb, gpb_zero, n, 0.0);
        char what[64];
        snprintf(what, sizeof what, "grad norm, step %d", step);
        check_f32(what, gnorm, &norms[step - 1], 1, 1e-6);
    }
    check_f32("adamw params after 2 steps", gp, m->params_memory, n, 1e-6);
    check_f32("adamw m", gm, m->m_memory, n, 1e-6);
    check_f32("adamw v", gv, m->v_memory, n, 1e-6);
    cuda_f32_to_bf16(gpb_zero, gp, (long)n, 0);
    check_bf16_pair("adamw bf16 copy = bf16 of the new weights", gpb, gpb_zero, n, 0.0);
    dev_free(gp), dev_free(gg), dev_free(gm), dev_free(gv), dev_free(gnorm), dev_free(gscale);
    dev_free(gpb), dev_free(gpb_zero);
    qwen3_free(m);

    /* The kernels' two paths: 16-byte aligned tensors four values at a
     * time (with a tail), others one at a time. The same values at offset
     * 0 and at offset 1 (misaligned) must update to the same bits; the sum
     * of squares, whole chunks read four at a time, must match the host's
     * double sum either way. */
    size_t na = 3 * 65536 + 4099;
    float *hp = rand_f32(na, 0.5f), *hg = rand_f32(na, 0.01f), *hm = rand_f32(na, 0.01f), *hv = rand_f32(na, 1e-4f);
    for (size_t i = 0; i < na; i++) hv[i] = fabsf(hv[i]);
    float *bufs[2][4];
    uint16_t *pbs[2];
    for (int at = 0; at < 2; at++) {
        const float *src[4] = {hp, hg, hm, hv};
        for (int k = 0; k < 4; k++) {
            bufs[at][k] = dev_alloc((na + 1) * 4);
            cuda_check(cudaMemcpy(bufs[at][k] + at, src[k], na * 4, cudaMemcpyHostToDevice));
        }
        pbs[at] = dev_alloc((na + 1) * 2);
        cuda_adamw_update(bufs[at][0] + at, pbs[at] + at, bufs[at][1] + at, bufs[at][2] + at, bufs[at][3] + at, na,
                          NULL, 1e-3f, 0.9f, 0.98f, 1e-8f, 0.1f, 0.1, 0.02, 0);
    }
    const char *names[4] = {"params", "g (unchanged)", "m", "v"};
    for (int k = 0; k < 4; k++) {
        float *aligned = dev_download(bufs[0][k], na * 4);
        char what[64];
        snprintf(what, sizeof what, "adamw aligned vs misaligned: %s", names[k]);
        check_f32(what, bufs[1][k] + 1, aligned, na, 0.0);
        free(aligned);
    }
    check_bf16_pair("adamw aligned vs misaligned: bf16 copy", pbs[1] + 1, pbs[0], na, 0.0);
    double want = 0.0;
    for (size_t i = 0; i < na; i++) want += (double)hg[i] * hg[i];
    for (int at = 0; at < 2; at++) {
        cuda_sum_squares(gss, bufs[at][1] + at, na, false, 0);
        double got;
        cuda_check(cudaMemcpy(&got, gss, sizeof got, cudaMemcpyDeviceToHost));
        bool ok = fabs(got - want) <= 1e-12 * want;
        printf("%-4s sum of squares, %s: rel err %.3e (tol 1e-12)\n", ok ? "ok" : "FAIL",
               at ? "misaligned" : "aligned", fabs(got - want) / want);
        if (!ok) g_failures++;
    }
    for (int at = 0; at < 2; at++) {
        for (int k = 0; k < 4; k++) dev_free(bufs[at][k]);
        dev_free(pbs[at]);
    }
    dev_free(gss);
    free(hp), free(hg), free(hm), free(hv);
}

int main(void) {
    if (!cuda_test_device()) return 77;

    test_convert();
    test_embedding();
    test_rmsnorm_shape("N 67 C 256", 67, 256, true);
    test_rmsnorm_shape("q-norm N 268 C 64", 67 * 4, 64, false);
    test_rmsnorm_shape("N 1000 C 2560", 1000, 2560, true);
    CudaBlas *blas = cuda_blas_new();
    test_matmul_shape(blas, 67, 256, 384, CUDA_F32, 1e-4);
    test_matmul_shape(blas, 67, 256, 5003, CUDA_F32, 1e-4);
    test_matmul_shape(blas, 67, 256, 384, CUDA_BF16, 1e-2);
    test_matmul_shape(blas, 300, 1024, 768, CUDA_BF16, 1e-2);
    cuda_blas_free(blas);
    const int oc_a[3] = {37, 37, 13}, oc_b[3] = {64, 64, 8}, oc_c[3] = {38, 38, 14};
    test_rows(1, 1000, oc_a);
    test_rows(4, 1000, oc_a);
    test_rows(3, 256 + 24, oc_b);
    test_rows(1, 2560, oc_b); /* Qwen3-4B's width, four outputs a warp */
    test_rows(2, 1000, oc_c); /* two outputs a warp */
    const int oc_m[3] = {32, 16, 48}, oc_odd[3] = {37, 19, 13}; /* short last tiles */
    test_rows_mma(5, 96, oc_m); /* 3 chunks of k: warps without any */
    test_rows_mma(17, 1024, oc_odd);
    test_rows_mma(32, 2560, oc_m);
    test_rope();
    test_qk_norm_rope(128);
    test_qk_norm_rope(64);
    test_qk_norm_rope(32);
    test_qk_norm_rope(18);
    test_mma_layout();
    int tiny[3] = {40, 1, 26}, mid[4] = {150, 33, 100, 17};
    /* many short sequences: tiles of 64 (and warps' 16 rows) straddle several */
    int shorts[9] = {5, 12, 1, 30, 70, 3, 16, 17, 9};
    /* long sequences that start off the tile grid (2 = 2 mod 16): a warp's 16
     * rows meet a tile that ends one key past its first row */
    int offgrid[5] = {2, 140, 18, 130, 97};
    /* fp32; bf16 on attention_tc.cu's WMMA kernels; bf16 on attention_mma.cu's */
    for (int i = 0; i < 3; i++) {
        CudaDtype dt = i ? CUDA_BF16 : CUDA_F32;
        setenv("TAU2_CUDA_ATTENTION", i == 2 ? "mma" : "wmma", 1);
        test_attention_shape("T 67 NH 4 NKV 2 D 64", tiny, 3, 4, 2, 64, dt);
        test_attention_shape("T 300 NH 4 NKV 2 D 128", mid, 4, 4, 2, 128, dt);
        test_attention_shape("T 67 NH 2 NKV 2 D 32", tiny, 3, 2, 2, 32, dt);
        test_attention_shape("T 163 NH 4 NKV 1 D 64", shorts, 9, 4, 1, 64, dt);
        test_attention_shape("T 387 NH 2 NKV 1 D 64", offgrid, 5, 2, 1, 64, dt);
        test_attention_shape("T 67 NH 4 NKV 1 D 256", tiny, 3, 4, 1, 256, dt);
    }
    unsetenv("TAU2_CUDA_ATTENTION");
    test_rmsnorm_bf16_out();
    test_swiglu_backward_bf16();
    test_infer_fused();
    test_decode(4, 2, 64);  /* 16-byte loads from both caches */
    test_decode(8, 2, 128);
    test_decode(8, 1, 32);   /* bf16: the fast kernel with 8 keys per warp, 8 heads per kv head */
    test_decode(16, 1, 64);  /* 16 heads per kv head: past the fast kernel's 8, the staged one */
    test_decode(2, 1, 36);  /* fp32: 16-byte loads; bf16: one value per load (36 % 8) */
    test_decode(2, 1, 18);  /* one value per load from both */
    test_decode_folded(8, 2, 128); /* 4 query heads a kv head */
    test_decode_folded(8, 1, 32);  /* 8, 8 keys a warp */
    test_decode_folded(2, 2, 256); /* 1, two keys a warp */
    test_swiglu_residual();
    test_output_head();
    test_adamw();

    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "passed", g_failures);
    return g_failures ? 1 : 0;
}
