/* sample.c — temperature / top-k / top-p sampling (see sample.h).
 *
 * A draw is a few passes over the vocabulary (151,936 logits for Qwen3),
 * each written to vectorize: the max, exp, and sums in fixed lanes and
 * blocks, so a result never depends on the vector width. */
#include "model/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/layers_cpu.h"
#include "model/vector_clones.h"

/* Weights are exponentiated and summed in blocks of this many tokens; the
 * CDF walk skips whole blocks by their sums. */
#define SAMPLE_BLOCK 1024

void sample_scratch_free(SampleScratch *s) {
    free(s->w);
    free(s->id);
    s->w = NULL;
    s->id = NULL;
    s->cap = 0;
}

int sample_check_params(const SampleParams *p, char *err, size_t errlen) {
    if (!(p->temperature >= 0.0f) || isinf(p->temperature)) {
        snprintf(err, errlen, "temperature: expected a finite number >= 0, got %g", (double)p->temperature);
        return -1;
    }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        snprintf(err, errlen, "top_p: expected a number in (0, 1], got %g", (double)p->top_p);
        return -1;
    }
    if (p->top_k < 0) {
        snprintf(err, errlen, "top_k: expected an integer >= 0 (0: off), got %d", p->top_k);
        return -1;
    }
    return 0;
}

/* Sum of e[0, n) in double: 8 lanes, added in a fixed tree. */
VECTOR_CLONES static double block_sum(const float *e, int n) {
    double lane[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int u = 0; u < 8; u++) lane[u] += e[i + u];
    }
    for (; i < n; i++) lane[i & 7] += e[i];
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

/* w[j] = exp((z[j] - m) inv_t) (into w when not NULL) and their sum: the
 * block sums added in block order. Every caller sums the same way, so the
 * temperature-1 total of a draw and of sample_logprob are the same bits. */
static double sum_exp(float *w, const float *z, int V, float m, float inv_t) {
    float tmp[SAMPLE_BLOCK];
    double total = 0.0;
    for (int j0 = 0; j0 < V; j0 += SAMPLE_BLOCK) {
        int n = V - j0 < SAMPLE_BLOCK ? V - j0 : SAMPLE_BLOCK;
        float *e = w ? w + j0 : tmp;
        for (int i = 0; i < n; i++) e[i] = (z[j0 + i] - m) * inv_t;
        exp_array(e, e, n);
        total += block_sum(e, n);
    }
    return total;
}

float sample_logprob(const float *z, int V, int32_t token) {
    float m = max_array(z, V);
    return (float)((double)(z[token] - m) - log(sum_exp(NULL, z, V, m, 1.0f)));
}

/* The token where the running sum of w over block [j0, j0 + n) first
 * exceeds t; the block's last positive weight if rounding leaves t unreached. */
static int32_t pick_in_block(const float *w, int j0, int n, double t) {
    int32_t tok = -1;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        if (w[j0 + i] <= 0.0f) continue;
        tok = j0 + i;
        cum += w[j0 + i];
        if (cum > t) break;
    }
    return tok;
}

/* Invert the CDF of w (id order) at target in [0, total): whole blocks are
 * skipped by their sums (block_sum, as sum_exp added them), then one block
 * is walked token by token. */
static int32_t invert_cdf(const float *w, int V, double target) {
    double cum = 0.0;
    int last_j0 = -1, last_n = 0;
    for (int j0 = 0; j0 < V; j0 += SAMPLE_BLOCK) {
        int n = V - j0 < SAMPLE_BLOCK ? V - j0 : SAMPLE_BLOCK;
        double s = block_sum(w + j0, n);
        if (!(s > 0.0)) continue;
        if (cum + s > target) return pick_in_block(w, j0, n, target - cum);
        cum += s;
        last_j0 = j0, last_n = n;
    }
    /* rounding left target unreached: the last positive weight */
    return last_j0 < 0 ? 0 : pick_in_block(w, last_j0, last_n, INFINITY);
}

/* A lower bound on the weights top-p can keep. Weights are binned by their
 * top float bits (monotone in the value for positive floats); walking the
 * bins from the heaviest, the first bin whose mass so far exceeds limit
 * holds the last kept rank, so no lighter bin is kept. One more non-empty
 * bin is let through as a margin for the different order of the sums. The
 * candidates to sort are then the heavy few, not most of the vocabulary. */
#define TOPP_BIN_SHIFT 19 /* 8 exponent + 4 mantissa bits: 2048 bins for w <= 1 */
#define TOPP_BINS 2048
static float top_p_floor(const float *w, int V, double limit) {
    double mass[TOPP_BINS] = {0}; /* 16 KiB */
    for (int j = 0; j < V; j++) {
        if (!(w[j] > 0.0f)) continue;
        uint32_t bits;
        memcpy(&bits, &w[j], sizeof bits);
        uint32_t b = bits >> TOPP_BIN_SHIFT;
        mass[b < TOPP_BINS ? b : TOPP_BINS - 1] += w[j];
    }
    double above = 0.0;
    int b = TOPP_BINS - 1;
    for (; b >= 0; b--) {
        above += mass[b];
        if (above > limit) break;
    }
    for (b--; b >= 0 && mass[b] == 0.0; b--) {
    }
    if (b < 0) return 0.0f;
    uint32_t edge = (uint32_t)b << TOPP_BIN_SHIFT;
    float f;
    memcpy(&f, &edge, sizeof f);
    return f;
}

static int32_t argmax(const float *z, int V) {
    int32_t best = 0;
    for (int j = 1; j < V; j++) {
        if (z[j] > z[best]) best = j;
    }
    return best;
}

/* Ranking: larger weight first, lower id on ties (a total order, so the
 * ranking never depends on the sort algorithm). */
static int ranks_before(float wa, int32_t ia, float wb, int32_t ib) {
    return wa > wb || (wa == wb && ia < ib);
}

/* Sort (w, id) pairs by rank: heap sort, in place, no allocation. */
static void sift_down_min(float *w, int32_t *id, int n, int i) {
    /* a heap whose root ranks last: the worst kept candidate */
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && ranks_before(w[m], id[m], w[l], id[l])) m = l;
        if (r < n && ranks_before(w[m], id[m], w[r], id[r])) m = r;
        if (m == i) return;
        float tw = w[i];
        w[i] = w[m];
        w[m] = tw;
        int32_t ti = id[i];
        id[i] = id[m];
        id[m] = ti;
        i = m;
    }
}

static void sort_by_rank(float *w, int32_t *id, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down_min(w, id, n, i);
    for (int end = n - 1; end > 0; end--) {
        float tw = w[0];
        w[0] = w[end];
        w[end] = tw;
        int32_t ti = id[0];
        id[0] = id[end];
        id[end] = ti;
        sift_down_min(w, id, end, 0);
    }
}

static void scratch_reserve(SampleScratch *s, int n) {
    if (s->cap >= n) return;
    free(s->w);
    free(s->id);
    s->w = xmalloc((size_t)n * sizeof(float));
    s->id = xmalloc((size_t)n * sizeof(int32_t));
    s->cap = n;
}

int32_t sample_token(const float *z, int V, const SampleParams *p, double u, SampleScratch *s, float *logprob) {
    int32_t tok;
    float m = max_array(z, V);
    /* log of sum exp(z - m) at temperature 1, for the returned logprob; the
     * sampling pass below computes it for free when temperature is 1. */
    double lse1 = -1.0;
    if (p->temperature == 0.0f) {
        tok = argmax(z, V);
    } else {
        /* One pass: unnormalized probabilities w (kept in scratch) and their sum. */
        scratch_reserve(s, V);
        float *w = s->w + (s->cap - V); /* the tail; candidates use the head */
        double total = sum_exp(w, z, V, m, 1.0f / p->temperature);
        if (p->temperature == 1.0f) lse1 = log(total);
        int top_k = p->top_k > 0 && p->top_k < V ? p->top_k : 0;
        if (top_k == 0 && p->top_p >= 1.0f) {
            /* Plain temperature sampling: invert the CDF in id order. */
            tok = invert_cdf(w, V, u * total);
        } else {
            /* Candidates: the tokens top_p can keep (top_p_floor), at most
             * top_k of them (a heap of the best). Candidates are written to
             * the head of the scratch; reading w[j] at the tail stays ahead. */
            double limit = (double)p->top_p * total;
            float floor_w = p->top_p < 1.0f ? top_p_floor(w, V, limit) : 0.0f;
            float *cw = s->w;
            int32_t *cid = s->id;
            int n = 0;
            for (int j = 0; j < V; j++) {
                float wj = w[j];
                if (wj < floor_w || wj <= 0.0f) continue;
                if (top_k == 0 || n < top_k) {
                    cw[n] = wj;
                    cid[n] = j;
                    n++;
                    if (top_k > 0 && n == top_k) {
                        for (int i = n / 2 - 1; i >= 0; i--) sift_down_min(cw, cid, n, i);
                    }
                } else if (ranks_before(wj, j, cw[0], cid[0])) {
                    cw[0] = wj; /* replace the worst kept candidate */
                    cid[0] = j;
                    sift_down_min(cw, cid, n, 0);
                }
            }
            sort_by_rank(cw, cid, n);
            /* Keep rank r while r < top_k and the mass ranked above it is <= top_p. */
            double above = 0.0;
            int keep = 0;
            while (keep < n && (keep == 0 || above <= limit)) {
                above += cw[keep];
                keep++;
            }
            double kept = 0.0;
            for (int i = 0; i < keep; i++) kept += cw[i];
            double target = u * kept, cum = 0.0;
            tok = cid[keep - 1];
            for (int i = 0; i < keep; i++) {
                cum += cw[i];
                if (cum > target) {
                    tok = cid[i];
                    break;
                }
            }
        }
    }
    if (logprob) {
        if (lse1 < 0.0) lse1 = log(sum_exp(NULL, z, V, m, 1.0f));
        *logprob = (float)((double)(z[tok] - m) - lse1);
    }
    return tok;
}
