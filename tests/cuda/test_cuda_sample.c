/* test_cuda_sample.c — cuda_sample against sample_token (src/model/sample.c)
 * on the same logits and u, for V = 7, 5003 and 151936 (not multiples of
 * the kernel's blocks) and rows of every kind of draw: greedy (with exact
 * ties), plain temperature sampling, top-k, top-p, both, top-k = 1, a tiny
 * top-p, one finite logit, all logits equal.
 *
 * The kernel reproduces the CPU's weights bit for bit and sums them in the
 * CPU's order, so the tokens are expected to be identical. To stay robust to
 * a last-bit difference all the same, u is redrawn (before the GPU call)
 * while u times the mass lands within 1e-6 (relative) of a boundary of the
 * CDF the CPU walks, or the top-p limit lies that close to a kept-set
 * boundary (that does not depend on u); a row still that close after 8
 * draws is left out of the token comparison (reported as ambiguous; about
 * one row in a few hundred, in the top-p rows).
 *
 * Checks:
 *   ids       identical to sample_token's
 *   fallback  rows whose kept set exceeds the kernel's sort capacity (4096
 *             candidates: top-k 5000, top-p 0.99 over flat logits, and at
 *             V = 151936 top-p over the heavy-tailed or narrow rows) are drawn
 *             in id order on the GPU, by design not the CPU's token: the id
 *             must be in the CPU's kept set
 *   logprobs  within 1e-5 absolute of sample_token's (log of a double sum;
 *             the same formula)
 *   repeat    a second call gives the same bits
 *   wide      cuda_sample_wide (the passes over whole rows spread over
 *             blocks first) gives the same bits as cuda_sample
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
#include "model/sample.h"

#include "cuda_test_util.h"

#define CAND_CAP 4096   /* the kernel's SAMPLE_CAND_CAP */
#define NEAR_REL 1e-6   /* a target this close (relative) to a CDF step is ambiguous */
#define LOGPROB_TOL 1e-5

static int g_failures;

/* ------------------------------------------------------------ helpers */

/* uniform in [0, 1) with 53 random bits */
static double rnd_u(void) {
    uint64_t hi = rnd_u32(), lo = rnd_u32();
    return (double)((hi << 21 ^ lo) & ((1ull << 53) - 1)) / 9007199254740992.0;
}

/* standard normal (Box-Muller) */
static float rnd_normal(void) {
    double a = rnd_u() + 1e-300, b = rnd_u();
    return (float)(sqrt(-2.0 * log(a)) * cos(6.283185307179586 * b));
}

/* ------------------------------------------------------------ rows */

typedef enum {
    LOGITS_PEAKED,   /* N(0, 2^2) and 32 tokens 14..18 higher: most mass on a few, like a model's */
    LOGITS_NORMAL,   /* N(0, 3^2): a long heavy tail (large kept sets at large V) */
    LOGITS_NARROW,   /* N(0, 1) */
    LOGITS_FLAT,     /* uniform in [-0.02, 0.02): nearly uniform, large kept sets */
    LOGITS_TIES,     /* integers 0..3: many exact ties, the max repeated */
    LOGITS_ONE,      /* -inf except one token */
    LOGITS_EQUAL     /* all 0.5 */
} LogitsKind;

typedef struct {
    const char *name;
    LogitsKind kind;
    CudaSampleParams p;
} Case;

static const Case CASES[] = {
    {"greedy", LOGITS_NORMAL, {0.0f, 1.0f, 0}},
    {"greedy, exact ties", LOGITS_TIES, {0.0f, 1.0f, 0}},
    {"greedy, all equal", LOGITS_EQUAL, {0.0f, 1.0f, 0}},
    {"temperature 1", LOGITS_PEAKED, {1.0f, 1.0f, 0}},
    {"temperature 1, heavy tail", LOGITS_NORMAL, {1.0f, 1.0f, 0}},
    {"temperature 0.7", LOGITS_NARROW, {0.7f, 1.0f, 0}},
    {"temperature 1, one finite logit", LOGITS_ONE, {1.0f, 1.0f, 0}},
    {"top_k 50", LOGITS_NORMAL, {1.0f, 1.0f, 50}},
    {"top_k 50, all equal", LOGITS_EQUAL, {1.0f, 1.0f, 50}},
    {"top_k 20, ties", LOGITS_TIES, {1.0f, 1.0f, 20}},
    {"top_p 0.9", LOGITS_PEAKED, {1.0f, 0.9f, 0}},
    {"top_p 0.9, heavy tail", LOGITS_NORMAL, {1.0f, 0.9f, 0}},
    {"top_p 0.5, narrow", LOGITS_NARROW, {1.3f, 0.5f, 0}},
    {"top_p 0.9, one finite logit", LOGITS_ONE, {1.0f, 0.9f, 0}},
    {"top_k 40 + top_p 0.95, T 0.8", LOGITS_PEAKED, {0.8f, 0.95f, 40}},
    {"top_k 500 + top_p 0.8, heavy tail", LOGITS_NORMAL, {1.0f, 0.8f, 500}},
    {"top_k 2 + top_p 0.6, T 0.5", LOGITS_TIES, {0.5f, 0.6f, 2}},
    {"top_k 1", LOGITS_PEAKED, {1.0f, 1.0f, 1}},
    {"top_p 1e-6", LOGITS_NARROW, {1.0f, 1e-6f, 0}},
    {"top_k 5000 (fallback when V > 5000)", LOGITS_NARROW, {1.0f, 1.0f, 5000}},
    {"top_p 0.99, flat (fallback)", LOGITS_FLAT, {1.0f, 0.99f, 0}},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))
/* rows per case: a few hundred rows in all at the small V (many blocks) */
static int reps_for(int V) { return V <= 5003 ? 16 : 3; }

static void fill_logits(float *z, int V, LogitsKind kind) {
    for (int j = 0; j < V; j++) {
        switch (kind) {
        case LOGITS_PEAKED: z[j] = 2.0f * rnd_normal(); break;
        case LOGITS_NORMAL: z[j] = 3.0f * rnd_normal(); break;
        case LOGITS_NARROW: z[j] = rnd_normal(); break;
        case LOGITS_FLAT: z[j] = rnd_f(0.02f); break;
        case LOGITS_TIES: z[j] = (float)(rnd_u32() % 4); break;
        case LOGITS_ONE: z[j] = -INFINITY; break;
        case LOGITS_EQUAL: z[j] = 0.5f; break;
        }
    }
    if (kind == LOGITS_ONE) z[rnd_u32() % (uint32_t)V] = 1.5f;
    if (kind == LOGITS_PEAKED) {
        for (int i = 0; i < 32; i++) z[rnd_u32() % (uint32_t)V] += 16.0f + rnd_f(2.0f);
    }
}

/* What the CPU's draw looks like from outside, for one row: the weights
 * (exp_array, the CPU's bits), the ranking and the kept set. */
typedef struct {
    float *w;     /* (V) */
    int32_t *rank; /* (V) ids by rank, positive weights first */
    int npos;     /* positive weights */
    int keep;     /* kept set: rank[0 .. keep) */
    double total; /* sum of w */
    bool truncated;
    bool near_limit; /* the top-p limit within NEAR_REL of a kept-set boundary */
} RowView;

static const float *g_sort_w; /* qsort's comparison reads the weights here */

static int by_rank(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float wi = g_sort_w[i], wj = g_sort_w[j];
    if (wi != wj) return wi > wj ? -1 : 1;
    return i < j ? -1 : 1;
}

static void row_view(RowView *v, const float *z, int V, const CudaSampleParams *p) {
    float m = max_array(z, V), inv_t = 1.0f / p->temperature;
    for (int j = 0; j < V; j++) v->w[j] = (z[j] - m) * inv_t;
    exp_array(v->w, v->w, V);
    v->total = 0.0;
    v->npos = 0;
    for (int j = 0; j < V; j++) {
        v->total += v->w[j];
        if (v->w[j] > 0.0f) v->rank[v->npos++] = j;
    }
    int top_k = p->top_k > 0 && p->top_k < V ? p->top_k : 0;
    v->truncated = !(top_k == 0 && p->top_p >= 1.0f);
    v->near_limit = false;
    v->keep = v->npos;
    if (!v->truncated) return;
    g_sort_w = v->w;
    qsort(v->rank, (size_t)v->npos, sizeof(int32_t), by_rank);
    int n = top_k > 0 && top_k < v->npos ? top_k : v->npos;
    double limit = (double)p->top_p * v->total, above = 0.0;
    int keep = 0;
    while (keep < n && (keep == 0 || above <= limit)) {
        above += v->w[v->rank[keep]];
        keep++;
    }
    v->keep = keep;
    if (keep == 0) return; /* no positive weight */
    /* the loop's last two tests of the mass above a rank against the limit:
     * the last one passed (rank keep - 1, when it was tested: rank 0 is
     * always kept) and the one that failed (when top_k did not stop it) */
    double before = above - v->w[v->rank[keep - 1]], eps = NEAR_REL * v->total;
    v->near_limit = (keep >= 2 && fabs(before - limit) <= eps) || (keep < n && fabs(above - limit) <= eps);
}

/* Does u * mass land within NEAR_REL of a step of the CDF the CPU walks (in
 * id order untruncated, in rank order over the kept set otherwise)? */
static bool near_step(const RowView *v, int V, double u) {
    if (v->truncated) {
        double kept = 0.0;
        for (int i = 0; i < v->keep; i++) kept += v->w[v->rank[i]];
        double target = u * kept, cum = 0.0;
        for (int i = 0; i < v->keep; i++) {
            cum += v->w[v->rank[i]];
            if (fabs(cum - target) <= NEAR_REL * kept) return true;
        }
        return false;
    }
    double target = u * v->total, cum = 0.0;
    for (int j = 0; j < V; j++) {
        if (v->w[j] <= 0.0f) continue;
        cum += v->w[j];
        if (fabs(cum - target) <= NEAR_REL * v->total) return true;
    }
    return false;
}

/* ------------------------------------------------------------ the test */

typedef struct {
    int checked, ambiguous, fallback, failed;
} CaseStats;

static void test_vocab(int V) {
    int reps = reps_for(V), R = N_CASES * reps;
    float *logits = xmalloc((size_t)R * V * sizeof(float));
    CudaSampleParams *params = xmalloc((size_t)R * sizeof *params);
    double *u = xmalloc((size_t)R * sizeof(double));
    bool *skip = xmalloc((size_t)R * sizeof(bool));
    bool *fallback = xmalloc((size_t)R * sizeof(bool));
    RowView *views = xmalloc((size_t)R * sizeof(RowView));

    /* rows, their u (redrawn away from CDF steps) and the CPU's view */
    for (int r = 0; r < R; r++) {
        const Case *c = &CASES[r / reps];
        float *z = logits + (size_t)r * V;
        fill_logits(z, V, c->kind);
        params[r] = c->p;
        RowView *v = &views[r];
        v->w = xmalloc((size_t)V * sizeof(float));
        v->rank = xmalloc((size_t)V * sizeof(int32_t));
        skip[r] = false;
        fallback[r] = false;
        u[r] = rnd_u();
        if (c->p.temperature == 0.0f) continue;
        row_view(v, z, V, &c->p);
        fallback[r] = v->truncated && v->keep > CAND_CAP - 16; /* the GPU's prefix may hold a few more */
        if (fallback[r]) continue; /* membership only: no step to avoid */
        int tries = 0;
        while ((v->near_limit || near_step(v, V, u[r])) && tries < 8) u[r] = rnd_u(), tries++;
        skip[r] = v->near_limit || near_step(v, V, u[r]);
    }

    float *d_logits = dev_upload(logits, (size_t)R * V * sizeof(float));
    CudaSampleParams *d_params = dev_upload(params, (size_t)R * sizeof *params);
    double *d_u = dev_upload(u, (size_t)R * sizeof(double));
    int32_t *d_ids = dev_alloc((size_t)R * sizeof(int32_t));
    float *d_lp = dev_alloc((size_t)R * sizeof(float));

    cuda_sample(d_ids, d_lp, d_logits, d_params, d_u, R, V, 0);
    int32_t *ids = dev_download(d_ids, (size_t)R * sizeof(int32_t));
    float *lp = dev_download(d_lp, (size_t)R * sizeof(float));
    cuda_sample(d_ids, d_lp, d_logits, d_params, d_u, R, V, 0);
    int32_t *ids2 = dev_download(d_ids, (size_t)R * sizeof(int32_t));
    float *lp2 = dev_download(d_lp, (size_t)R * sizeof(float));
    bool repeat = memcmp(ids, ids2, (size_t)R * sizeof(int32_t)) == 0 && memcmp(lp, lp2, (size_t)R * sizeof(float)) == 0;
    /* the passes over whole rows spread over blocks first: the same bits */
    size_t work_bytes = cuda_sample_work_bytes(R, V);
    void *d_work = dev_alloc(work_bytes);
    cuda_sample_wide(d_ids, d_lp, d_logits, d_params, d_u, R, V, d_work, work_bytes, 0);
    int32_t *ids3 = dev_download(d_ids, (size_t)R * sizeof(int32_t));
    float *lp3 = dev_download(d_lp, (size_t)R * sizeof(float));
    bool wide = memcmp(ids, ids3, (size_t)R * sizeof(int32_t)) == 0 && memcmp(lp, lp3, (size_t)R * sizeof(float)) == 0;
    dev_free(d_work);

    SampleScratch scratch = {0};
    printf("V = %d, %d rows\n", V, R);
    for (int ci = 0; ci < N_CASES; ci++) {
        CaseStats st = {0};
        double lp_err = 0.0;
        for (int r = ci * reps; r < (ci + 1) * reps; r++) {
            const float *z = logits + (size_t)r * V;
            SampleParams sp = {params[r].temperature, params[r].top_p, params[r].top_k};
            float cpu_lp;
            int32_t cpu = sample_token(z, V, &sp, u[r], &scratch, &cpu_lp);
            bool ok;
            if (ids[r] < 0 || ids[r] >= V) {
                ok = false;
            } else if (fallback[r]) {
                /* id-order draw over the kept set: the token must be kept */
                st.fallback++;
                ok = false;
                for (int i = 0; i < views[r].keep && !ok; i++) ok = views[r].rank[i] == ids[r];
                cpu_lp = sample_logprob(z, V, ids[r]);
            } else if (skip[r]) {
                st.ambiguous++;
                ok = true;
                cpu_lp = sample_logprob(z, V, ids[r]);
            } else {
                st.checked++;
                ok = ids[r] == cpu;
            }
            double e = ids[r] >= 0 && ids[r] < V ? fabs((double)lp[r] - (double)cpu_lp) : INFINITY;
            if (!(e <= LOGPROB_TOL)) ok = false;
            if (e > lp_err || e != e) lp_err = e;
            if (!ok) {
                st.failed++;
                printf("     row %d: gpu id %d logprob %.7g, cpu id %d logprob %.7g (u %.17g)\n", r, ids[r], lp[r], cpu,
                       cpu_lp, u[r]);
            }
        }
        printf("%-4s %-40s ids %d equal", st.failed ? "FAIL" : "ok", CASES[ci].name, st.checked);
        if (st.fallback) printf(", %d fallback (kept)", st.fallback);
        if (st.ambiguous) printf(", %d ambiguous (skipped)", st.ambiguous);
        printf(", logprob err %.2e (tol %.0e)\n", lp_err, LOGPROB_TOL);
        if (st.failed) g_failures++;
    }
    printf("%-4s %-40s\n", repeat ? "ok" : "FAIL", "repeat: same bits on a second call");
    if (!repeat) g_failures++;
    printf("%-4s %-40s\n", wide ? "ok" : "FAIL", "cuda_sample_wide: the same bits");
    if (!wide) g_failures++;

    sample_scratch_free(&scratch);
    for (int r = 0; r < R; r++) free(views[r].w), free(views[r].rank);
    dev_free(d_logits), dev_free(d_params), dev_free(d_u), dev_free(d_ids), dev_free(d_lp);
    free(logits), free(params), free(u), free(skip), free(fallback), free(views);
    free(ids), free(lp), free(ids2), free(lp2), free(ids3), free(lp3);
}

int main(void) {
    if (!cuda_test_device()) return 77;

    test_vocab(7);
    test_vocab(5003);
    test_vocab(151936);

    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "passed", g_failures);
    return g_failures ? 1 : 0;
}
