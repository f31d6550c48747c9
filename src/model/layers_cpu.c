/* layers_cpu.c — CPU layer functions of the Qwen3 engine (see layers_cpu.h). */
#include "model/layers_cpu.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "core/error.h"

/* Column block for reductions over rows: one thread owns a block of columns
 * and walks the rows in order, so the sum order never depends on threads. */
#define COL_BLOCK 64
/* Upper bound on head_dim for the per-row accumulators kept on the stack. */
#define ATT_MAX_D 512

/* ------------------------------------------------------------ embedding */

void embedding_forward(float *out, const int32_t *tokens, const float *table, int T, int C) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        memcpy(out + (size_t)t * C, table + (size_t)tokens[t] * C, (size_t)C * sizeof(float));
    }
}

void embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int C) {
    int nb = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for
    for (int b = 0; b < nb; b++) {
        int c0 = b * COL_BLOCK;
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int t = 0; t < T; t++) {
            float *row = dtable + (size_t)tokens[t] * C;
            const float *d = dout + (size_t)t * C;
            for (int c = c0; c < c1; c++) row[c] += d[c];
        }
    }
}

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

/* ------------------------------------------------------------ RMSNorm */

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + (double)eps));
        for (int c = 0; c < C; c++) o[c] = xr[c] * r * w[c];
        rstd[n] = r;
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int N, int C, bool accumulate_dx) {
    /* dx = r (dy w) - x r^3 / C * sum(dy w x) */
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *xr = x + (size_t)n * C;
        float *d = dx + (size_t)n * C;
        float r = rstd[n];
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)dy[c] * w[c] * xr[c];
        float k = (float)(dot * r * r * r / C);
        if (accumulate_dx) {
            for (int c = 0; c < C; c++) d[c] += r * dy[c] * w[c] - xr[c] * k;
        } else {
            for (int c = 0; c < C; c++) d[c] = r * dy[c] * w[c] - xr[c] * k;
        }
    }
    /* dw: parallel over column blocks, rows in order. */
    int nb = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for
    for (int b = 0; b < nb; b++) {
        int c0 = b * COL_BLOCK;
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        double acc[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *dy = dout + (size_t)n * C;
            const float *xr = x + (size_t)n * C;
            float r = rstd[n];
            for (int c = c0; c < c1; c++) acc[c - c0] += (double)(dy[c] * xr[c] * r);
        }
        for (int c = c0; c < c1; c++) dw[c] += (float)acc[c - c0];
    }
}

/* ------------------------------------------------------------ linear */

void matmul_forward(float *out, const float *inp, const float *w, int N, int IC, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC);
}

void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     int N, int IC, int OC, bool accumulate_dinp) {
    if (dinp) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, dout, OC, w, IC,
                    accumulate_dinp ? 1.0f : 0.0f, dinp, IC);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
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

static void rope_rotate(float *x, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH,
                        int D, float sign) {
    int half = D / 2;
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        const float *cs = cosb + (size_t)pos[t] * half;
        const float *sn = sinb + (size_t)pos[t] * half;
        for (int h = 0; h < NH; h++) {
            float *v = x + ((size_t)t * NH + h) * D;
            for (int i = 0; i < half; i++) {
                float c = cs[i], s = sign * sn[i];
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c - x2 * s;
                v[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

void rope_forward(float *x, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH, int D) {
    rope_rotate(x, pos, cosb, sinb, T, NH, D, 1.0f);
}

void rope_backward(float *dx, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH, int D) {
    rope_rotate(dx, pos, cosb, sinb, T, NH, D, -1.0f);
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

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D) {
    if (D > ATT_MAX_D) die_runtime("attention_forward: head_dim %d > %d", D, ATT_MAX_D);
    int rep = NH / NKV;
    float scale = 1.0f / sqrtf((float)D);
    long rows = (long)T * NH;
#pragma omp parallel for schedule(dynamic, 8)
    for (long r = 0; r < rows; r++) {
        int t = (int)(r / NH), h = (int)(r % NH), g = h / rep;
        int start = seq_start[seq_of[t]];
        const float *qr = q + (size_t)r * D;
        float acc[ATT_MAX_D];
        for (int d = 0; d < D; d++) acc[d] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int j = start; j <= t; j++) {
            const float *kr = k + ((size_t)j * NKV + g) * D;
            const float *vr = v + ((size_t)j * NKV + g) * D;
            float sc = dot_f(qr, kr, D) * scale;
            if (sc > m) {
                float corr = expf(m - sc); /* 0 on the first key */
                l *= corr;
                for (int d = 0; d < D; d++) acc[d] *= corr;
                m = sc;
            }
            float p = expf(sc - m);
            l += p;
            for (int d = 0; d < D; d++) acc[d] += p * vr[d];
        }
        float *o = out + (size_t)r * D;
        float inv = 1.0f / l;
        for (int d = 0; d < D; d++) o[d] = acc[d] * inv;
        lse[r] = m + logf(l);
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v,
                        const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D) {
    if (D > ATT_MAX_D) die_runtime("attention_backward: head_dim %d > %d", D, ATT_MAX_D);
    int rep = NH / NKV;
    float scale = 1.0f / sqrtf((float)D);
    long rows = (long)T * NH;
    /* delta_i = dout_i . out_i  (= sum_j p_ij dp_ij) */
#pragma omp parallel for
    for (long r = 0; r < rows; r++) delta[r] = dot_f(dout + (size_t)r * D, out + (size_t)r * D, D);

    /* dq_i = scale * sum_j p_ij (dout_i . v_j - delta_i) k_j */
#pragma omp parallel for schedule(dynamic, 8)
    for (long r = 0; r < rows; r++) {
        int t = (int)(r / NH), h = (int)(r % NH), g = h / rep;
        int start = seq_start[seq_of[t]];
        const float *qr = q + (size_t)r * D;
        const float *dor = dout + (size_t)r * D;
        float acc[ATT_MAX_D];
        for (int d = 0; d < D; d++) acc[d] = 0.0f;
        for (int j = start; j <= t; j++) {
            const float *kr = k + ((size_t)j * NKV + g) * D;
            const float *vr = v + ((size_t)j * NKV + g) * D;
            float p = expf(dot_f(qr, kr, D) * scale - lse[r]);
            float ds = p * (dot_f(dor, vr, D) - delta[r]);
            for (int d = 0; d < D; d++) acc[d] += ds * kr[d];
        }
        float *o = dq + (size_t)r * D;
        for (int d = 0; d < D; d++) o[d] = acc[d] * scale;
    }

    /* dk_j = scale * sum_{h in group, i >= j} ds_ij q_i;  dv_j = sum p_ij dout_i */
    long krows = (long)T * NKV;
#pragma omp parallel for schedule(dynamic, 8)
    for (long r = 0; r < krows; r++) {
        int j = (int)(r / NKV), g = (int)(r % NKV);
        int end = seq_start[seq_of[j] + 1];
        const float *kr = k + (size_t)r * D;
        const float *vr = v + (size_t)r * D;
        float ak[ATT_MAX_D], av[ATT_MAX_D];
        for (int d = 0; d < D; d++) ak[d] = av[d] = 0.0f;
        for (int h = g * rep; h < (g + 1) * rep; h++) {
            for (int i = j; i < end; i++) {
                size_t qi = (size_t)i * NH + h;
                const float *qr = q + qi * D;
                const float *dor = dout + qi * D;
                float p = expf(dot_f(qr, kr, D) * scale - lse[qi]);
                float ds = p * (dot_f(dor, vr, D) - delta[qi]);
                for (int d = 0; d < D; d++) {
                    av[d] += p * dor[d];
                    ak[d] += ds * qr[d];
                }
            }
        }
        float *okr = dk + (size_t)r * D;
        float *ovr = dv + (size_t)r * D;
        for (int d = 0; d < D; d++) {
            okr[d] = ak[d] * scale;
            ovr[d] = av[d];
        }
    }
}

/* ------------------------------------------------------------ SwiGLU */

void swiglu_forward(float *h, const float *gate, const float *up, long N) {
#pragma omp parallel for
    for (long i = 0; i < N; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + expf(-g));
        h[i] = g * s * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, long N) {
#pragma omp parallel for
    for (long i = 0; i < N; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + expf(-g));
        float silu = g * s;
        dup[i] = dh[i] * silu;
        dgate[i] = dh[i] * up[i] * s * (1.0f + g * (1.0f - s));
    }
}

void residual_add(float *x, const float *y, long N) {
#pragma omp parallel for
    for (long i = 0; i < N; i++) x[i] += y[i];
}

/* ------------------------------------------------------------ output head */

void logprob_entropy_forward(float *logprob, float *entropy, float *lse, const float *logits,
                             const int32_t *targets, int R, int V) {
#pragma omp parallel for
    for (int r = 0; r < R; r++) {
        const float *z = logits + (size_t)r * V;
        float m = -INFINITY;
        for (int j = 0; j < V; j++) m = z[j] > m ? z[j] : m;
        double sum = 0.0, sdz = 0.0;
        for (int j = 0; j < V; j++) {
            double e = exp((double)(z[j] - m));
            sum += e;
            sdz += e * (double)(m - z[j]);
        }
        double ls = log(sum);
        /* entropy = sum p (lse - z) = log(sum) + sum e (m - z) / sum: no cancellation */
        lse[r] = (float)(m + ls);
        entropy[r] = (float)(ls + sdz / sum);
        logprob[r] = targets[r] >= 0 ? (float)((double)(z[targets[r]] - m) - ls) : 0.0f;
    }
}

void vocab_row_max(float *mx, const float *logits, int R, int Vs) {
#pragma omp parallel for
    for (int r = 0; r < R; r++) {
        const float *z = logits + (size_t)r * Vs;
        float m = -INFINITY;
        for (int j = 0; j < Vs; j++) m = z[j] > m ? z[j] : m;
        mx[r] = m;
    }
}

void logprob_entropy_partial(double *stats, const float *logits, const int32_t *targets, const float *mx, int R,
                             int Vs, int v0) {
#pragma omp parallel for
    for (int r = 0; r < R; r++) {
        const float *z = logits + (size_t)r * Vs;
        float m = mx[r];
        double sum = 0.0, sdz = 0.0;
        for (int j = 0; j < Vs; j++) {
            double e = exp((double)(z[j] - m));
            sum += e;
            sdz += e * (double)(m - z[j]);
        }
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

void logprob_entropy_backward(float *logits, const float *dlogprob, const float *dentropy, const float *lse,
                              const float *entropy, const int32_t *targets, int R, int V) {
    logprob_entropy_backward_shard(logits, dlogprob, dentropy, lse, entropy, targets, R, V, 0);
}

void logprob_entropy_backward_shard(float *logits, const float *dlogprob, const float *dentropy, const float *lse,
                                    const float *entropy, const int32_t *targets, int R, int V, int v0) {
#pragma omp parallel for
    for (int r = 0; r < R; r++) {
        float *z = logits + (size_t)r * V;
        float dlp = targets[r] >= 0 ? dlogprob[r] : 0.0f;
        float dent = dentropy ? dentropy[r] : 0.0f;
        if (dlp == 0.0f && dent == 0.0f) {
            memset(z, 0, (size_t)V * sizeof(float));
            continue;
        }
        float l = lse[r], ent = entropy[r];
        for (int j = 0; j < V; j++) {
            float lp = z[j] - l; /* log p_j */
            float p = expf(lp);
            z[j] = -dlp * p - dent * p * (lp + ent);
        }
        int tl = targets[r] - v0;
        if (targets[r] >= 0 && tl >= 0 && tl < V) z[tl] += dlp;
    }
}
