/* sample.c — temperature / top-k / top-p sampling (see sample.h). */
#include "model/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"

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

float sample_logprob(const float *z, int V, int32_t token) {
    float m = -INFINITY;
    for (int j = 0; j < V; j++) m = z[j] > m ? z[j] : m;
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += expf(z[j] - m);
    return (float)((double)(z[token] - m) - log(sum));
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
    float m = -INFINITY;
    for (int j = 0; j < V; j++) m = z[j] > m ? z[j] : m;
    /* log of sum exp(z - m) at temperature 1, for the returned logprob; the
     * sampling pass below computes it for free when temperature is 1. */
    double lse1 = -1.0;
    if (p->temperature == 0.0f) {
        tok = argmax(z, V);
    } else {
        /* One pass: unnormalized probabilities w (kept in scratch) and their sum. */
        scratch_reserve(s, V);
        float *w = s->w + (s->cap - V); /* the tail; candidates use the head */
        float inv_t = 1.0f / p->temperature;
        double total = 0.0;
        for (int j = 0; j < V; j++) total += w[j] = expf((z[j] - m) * inv_t);
        if (p->temperature == 1.0f) lse1 = log(total);
        int top_k = p->top_k > 0 && p->top_k < V ? p->top_k : 0;
        if (top_k == 0 && p->top_p >= 1.0f) {
            /* Plain temperature sampling: invert the CDF in id order. */
            double target = u * total, cum = 0.0;
            tok = -1;
            for (int j = 0; j < V; j++) {
                if (w[j] <= 0.0f) continue;
                tok = j; /* the last positive one if rounding leaves target unreached */
                cum += w[j];
                if (cum > target) break;
            }
        } else {
            /* Candidates: with top_p < 1, a kept token x has at least 1 - top_p
             * of the mass at or below its rank, spread over at most V tokens,
             * so p_x >= (1 - top_p) / V; tokens below that (less a margin for
             * rounding) can never be kept. Candidates are written to the head
             * of the scratch; reading w[j] at the tail stays ahead of them. */
            double floor_w = p->top_p < 1.0f ? (1.0 - p->top_p) / V * total * 0.999 : 0.0;
            float *cw = s->w;
            int32_t *cid = s->id;
            int n = 0;
            for (int j = 0; j < V; j++) {
                float wj = w[j];
                if ((double)wj < floor_w || wj <= 0.0f) continue;
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
            double limit = (double)p->top_p * total, above = 0.0;
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
        if (lse1 < 0.0) {
            double sum = 0.0;
            for (int j = 0; j < V; j++) sum += expf(z[j] - m);
            lse1 = log(sum);
        }
        *logprob = (float)((double)(z[tok] - m) - lse1);
    }
    return tok;
}
