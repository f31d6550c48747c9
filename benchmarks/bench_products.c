/* bench_products.c — the matrix products of one Qwen3 training step, alone.
 *
 * Runs the products a step of bench_train runs, in its order and through the
 * same layer functions (layers_cpu.h): per layer q/k/v as one group, o,
 * gate/up as one group, down; the output head in the engine's row chunks;
 * then the backward of each (input and weight gradients). Nothing else of
 * the step: no norms, attention, SwiGLU, softmax or AdamW. Random values;
 * the speed does not depend on them.
 *
 * bench_train_torch.py --products runs the same products in PyTorch (its
 * BLAS) and prints both, so that a step's ratio can be read against what
 * the products alone allow: where both engines spend the same time in the
 * products, the step's ratio comes only from the rest.
 *
 * usage: bench_products [--config tiny|100m|4b] [--seqs N] [--seq-len N] [--reps N]
 * prints: RESULT products <config> <tokens> <forward s> <backward s> <GFLOP per step> */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/error.h"
#include "model/layers_cpu.h"
#include "model/qwen3.h"

#include "bench_train_common.h"
#include "bench_util.h"

/* n floats in [-0.5, 0.5) (owned by the caller). */
static float *random_floats(size_t n, uint64_t seed) {
    float *p = xmalloc((n ? n : 1) * sizeof(float));
    bench_fill_uniform(p, n, seed, 1.0f);
    return p;
}

static float *zero_floats(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }

/* One layer's weights, weight gradients and the inputs its products read. */
typedef struct {
    float *wq, *wk, *wv, *wo, *wg, *wu, *wd;      /* (QD|KD|KD, C), (C, QD), (I, C) x 2, (C, I) */
    float *gq, *gk, *gv, *go, *gg, *gu, *gd;      /* same shapes */
    float *ln1, *att, *ln2, *h;                   /* (T, C), (T, QD), (T, C), (T, I) */
} Layer;

int main(int argc, char **argv) {
    const char *name = "100m";
    int n_seqs = 2, seq_len = 256, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--config")) name = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--seqs")) n_seqs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seq-len")) seq_len = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_products: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    Qwen3Config cfg;
    if (bench_config_named(name, &cfg) != 0 || n_seqs < 1 || seq_len < 1 || reps < 1) {
        fprintf(stderr, "bench_products: bad arguments (configs: tiny, 100m, 4b)\n");
        return 2;
    }
    int T = n_seqs * seq_len, C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    int L = cfg.num_layers, QD = cfg.num_heads * cfg.head_dim, KD = cfg.num_kv_heads * cfg.head_dim;
    int chunk = qwen3_default_vocab_chunk(V);

    Layer *ly = xcalloc((size_t)L, sizeof(Layer));
    uint64_t seed = 1;
    for (int l = 0; l < L; l++) {
        Layer *y = &ly[l];
        y->wq = random_floats((size_t)QD * C, seed++), y->gq = zero_floats((size_t)QD * C);
        y->wk = random_floats((size_t)KD * C, seed++), y->gk = zero_floats((size_t)KD * C);
        y->wv = random_floats((size_t)KD * C, seed++), y->gv = zero_floats((size_t)KD * C);
        y->wo = random_floats((size_t)C * QD, seed++), y->go = zero_floats((size_t)C * QD);
        y->wg = random_floats((size_t)I * C, seed++), y->gg = zero_floats((size_t)I * C);
        y->wu = random_floats((size_t)I * C, seed++), y->gu = zero_floats((size_t)I * C);
        y->wd = random_floats((size_t)C * I, seed++), y->gd = zero_floats((size_t)C * I);
        y->ln1 = random_floats((size_t)T * C, seed++), y->att = random_floats((size_t)T * QD, seed++);
        y->ln2 = random_floats((size_t)T * C, seed++), y->h = random_floats((size_t)T * I, seed++);
    }
    float *head = random_floats((size_t)V * C, seed++), *dhead = zero_floats((size_t)V * C); /* (V, C) tied */
    float *xf = random_floats((size_t)T * C, seed++);                                         /* (T, C) */
    float *logits = random_floats((size_t)chunk * V, seed++);                                 /* (chunk, V) */
    /* layer outputs and their gradients: scratch, overwritten by every layer */
    float *q = zero_floats((size_t)T * QD), *k = zero_floats((size_t)T * KD), *v = zero_floats((size_t)T * KD);
    float *o = zero_floats((size_t)T * C), *g = zero_floats((size_t)T * I), *u = zero_floats((size_t)T * I);
    float *down = zero_floats((size_t)T * C), *dxf = zero_floats((size_t)T * C), *dln = zero_floats((size_t)T * C);
    float *dres = random_floats((size_t)T * C, seed++), *datt = zero_floats((size_t)T * QD);
    float *dq = random_floats((size_t)T * QD, seed++), *dk = random_floats((size_t)T * KD, seed++);
    float *dv = random_floats((size_t)T * KD, seed++), *dg = random_floats((size_t)T * I, seed++);
    float *du = random_floats((size_t)T * I, seed++), *dh = zero_floats((size_t)T * I);
    int oc_qkv[3] = {QD, KD, KD}, oc_gu[2] = {I, I};

    double *t_fwd = xmalloc((size_t)(reps + 1) * sizeof(double)), *t_bwd = xmalloc((size_t)(reps + 1) * sizeof(double));
    for (int r = 0; r <= reps; r++) { /* r = 0 warms up */
        double t0 = now();
        for (int l = 0; l < L; l++) {
            Layer *y = &ly[l];
            float *qkv[3] = {q, k, v};
            const float *w_qkv[3] = {y->wq, y->wk, y->wv};
            matmul_forward_multi(3, qkv, y->ln1, w_qkv, oc_qkv, T, C);
            matmul_forward(o, y->att, y->wo, T, QD, C);
            float *gate_up[2] = {g, u};
            const float *w_gu[2] = {y->wg, y->wu};
            matmul_forward_multi(2, gate_up, y->ln2, w_gu, oc_gu, T, C);
            matmul_forward(down, y->h, y->wd, T, I, C);
        }
        for (int i0 = 0; i0 < T; i0 += chunk) {
            int R = T - i0 < chunk ? T - i0 : chunk;
            matmul_forward(logits, xf + (size_t)i0 * C, head, R, C, V);
        }
        double t1 = now();
        for (int i0 = 0; i0 < T; i0 += chunk) {
            int R = T - i0 < chunk ? T - i0 : chunk;
            matmul_backward(dxf + (size_t)i0 * C, dhead, logits, xf + (size_t)i0 * C, head, R, C, V, false);
        }
        for (int l = L - 1; l >= 0; l--) {
            Layer *y = &ly[l];
            matmul_backward(dh, y->gd, dres, y->h, y->wd, T, I, C, false);
            float *dw_gu[2] = {y->gg, y->gu};
            const float *d_gu[2] = {dg, du}, *w_gu[2] = {y->wg, y->wu};
            matmul_backward_multi(2, dln, dw_gu, d_gu, y->ln2, w_gu, oc_gu, T, C, false);
            matmul_backward(datt, y->go, dres, y->att, y->wo, T, QD, C, false);
            float *dw_qkv[3] = {y->gq, y->gk, y->gv};
            const float *d_qkv[3] = {dq, dk, dv}, *w_qkv[3] = {y->wq, y->wk, y->wv};
            matmul_backward_multi(3, dln, dw_qkv, d_qkv, y->ln1, w_qkv, oc_qkv, T, C, false);
        }
        double t2 = now();
        t_fwd[r] = t1 - t0, t_bwd[r] = t2 - t1;
    }
    qsort(t_fwd + 1, (size_t)reps, sizeof(double), cmp_double);
    qsort(t_bwd + 1, (size_t)reps, sizeof(double), cmp_double);
    double fwd = t_fwd[1 + reps / 2], bwd = t_bwd[1 + reps / 2];
    /* multiply-adds per token: every weight once forward, twice backward */
    double weights = (double)L * ((double)(QD + 2 * KD) * C + (double)C * QD + 3.0 * I * C) + (double)V * C;
    double gflop = 6.0 * weights * T / 1e9;
    printf("config %s: %d tokens, %d threads, head in chunks of %d rows\n", name, T, omp_get_max_threads(), chunk);
    printf("RESULT products %s %d %.4f %.4f %.2f\n", name, T, fwd, bwd, gflop);
    printf("products %.1f ms (forward %.1f, backward %.1f; median of %d), %.1f GFLOP/s\n", 1e3 * (fwd + bwd),
           1e3 * fwd, 1e3 * bwd, reps, gflop / (fwd + bwd));

    for (int l = 0; l < L; l++) {
        Layer *y = &ly[l];
        float *all[] = {y->wq, y->wk, y->wv, y->wo, y->wg, y->wu, y->wd, y->gq, y->gk, y->gv,
                        y->go, y->gg, y->gu, y->gd, y->ln1, y->att, y->ln2, y->h};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    }
    free(ly);
    float *rest[] = {head, dhead, xf, logits, q, k, v, o, g, u, down, dxf, dln, dres, datt, dq, dk, dv, dg, du, dh};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) free(rest[i]);
    free(t_fwd), free(t_bwd);
    return 0;
}
