/* bench_attention_gpu.c — the training step's causal attention alone on one
 * GPU: the two tensor-core families (bf16 operands, what the bf16 step
 * runs: attention_tc.cu's WMMA kernels and attention_mma.cu's mma.sync
 * ones, TAU2_CUDA_ATTENTION) against the fp32 kernels (attention.cu) in the
 * same run, and against the device's dense bf16 peak. Each family's out,
 * dq, dk and dv are compared with the fp32 kernels' (the largest difference
 * over the largest fp32 value).
 *
 * Shapes default to one layer of Qwen3-4B at 4k tokens: 32 query heads over
 * 8 kv heads of 128, one packed sequence of 4096 tokens (--seqs N packs N
 * sequences of --seq-len each).
 *
 * FLOPs as FlashAttention reports them: the forward's two products over the
 * causal triangle, 4 x NH x D x s^2 / 2 per sequence of s tokens; the
 * backward 2.5 times that (five products). The kernels do more than that
 * (the backward's two kernels each recompute the scores), so the rates are
 * of useful work.
 *
 * usage: bench_attention_gpu [--seq-len N] [--seqs N] [--heads N] [--kv-heads N] [--dim D] [--iters N]
 *                            [--peak-tflops X] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TAU2_HAVE_CUDA

int main(void) {
    fprintf(stderr, "bench_attention_gpu: this build has no CUDA backend (configure with -DTAU2_CUDA=ON)\n");
    return 2;
}

#else

#include <math.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kernels.h"

#include "bench_gpu.h"
#include "bench_util.h"

static float *upload_random(size_t n, uint64_t *state, float scale) {
    float *h = malloc(n * sizeof(float)), *d = NULL;
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
        h[i] = scale * ((float)(*state >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
    }
    cuda_check(cudaMalloc((void **)&d, n * sizeof(float)));
    cuda_check(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static float *device_zeros(size_t n) {
    float *d = NULL;
    cuda_check(cudaMalloc((void **)&d, n * sizeof(float)));
    cuda_check(cudaMemset(d, 0, n * sizeof(float)));
    return d;
}

typedef struct {
    double fwd_s, bwd_s; /* medians */
} AttTimes;

/* fp32, bf16 on the WMMA kernels, bf16 on the mma.sync kernels */
#define N_PASSES 3

/* The largest |a - ref| over the largest |ref|. */
static double rel_diff(const float *a, const float *ref, size_t n) {
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
        if (fabs(a[i] - ref[i]) > maxdiff) maxdiff = fabs(a[i] - ref[i]);
    }
    return maxref > 0 ? maxdiff / maxref : 0.0;
}

int main(int argc, char **argv) {
    int seq_len = 4096, n_seqs = 1, NH = 32, NKV = 8, D = 128, iters = 10;
    double peak = 0.0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--seq-len")) seq_len = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seqs")) n_seqs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--heads")) NH = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--kv-heads")) NKV = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--dim")) D = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--peak-tflops")) peak = atof(argv[++i]);
        else {
            fprintf(stderr, "bench_attention_gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (seq_len < 1 || n_seqs < 1 || NKV < 1 || NH % NKV != 0 || D < 1 || D > CUDA_ATT_MAX_D || iters < 1) {
        fprintf(stderr, "bench_attention_gpu: bad arguments (heads a multiple of kv-heads, dim <= %d)\n",
                CUDA_ATT_MAX_D);
        return 2;
    }
    if (cuda_device_count() == 0) {
        printf("bench_attention_gpu: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, 0));
    if (peak <= 0) peak = bench_gpu_bf16_peak(prop.name);

    int T = seq_len * n_seqs;
    int32_t *seq_of = malloc((size_t)T * sizeof(int32_t)), *seq_start = malloc((size_t)(n_seqs + 1) * sizeof(int32_t));
    for (int s = 0; s <= n_seqs; s++) seq_start[s] = s * seq_len;
    for (int t = 0; t < T; t++) seq_of[t] = t / seq_len;
    int32_t *gso = NULL, *gss = NULL;
    cuda_check(cudaMalloc((void **)&gso, (size_t)T * sizeof(int32_t)));
    cuda_check(cudaMalloc((void **)&gss, (size_t)(n_seqs + 1) * sizeof(int32_t)));
    cuda_check(cudaMemcpy(gso, seq_of, (size_t)T * sizeof(int32_t), cudaMemcpyHostToDevice));
    cuda_check(cudaMemcpy(gss, seq_start, (size_t)(n_seqs + 1) * sizeof(int32_t), cudaMemcpyHostToDevice));

    size_t nq = (size_t)T * NH * D, nk = (size_t)T * NKV * D;
    uint64_t state = 42;
    float *q = upload_random(nq, &state, 1.5f), *k = upload_random(nk, &state, 1.5f);
    float *v = upload_random(nk, &state, 1.0f), *dout = upload_random(nq, &state, 1.0f);
    float *out = device_zeros(nq), *lse = device_zeros((size_t)T * NH), *delta = device_zeros((size_t)T * NH);
    float *dq = device_zeros(nq), *dk = device_zeros(nk), *dv = device_zeros(nk);
    /* each pass's out, dq, dk, dv on the host */
    size_t sizes[4] = {nq, nq, nk, nk};
    const float *dev[4] = {out, dq, dk, dv};
    float *host[N_PASSES][4];
    for (int p = 0; p < N_PASSES; p++)
        for (int j = 0; j < 4; j++) host[p][j] = malloc(sizes[j] * sizeof(float));

    double fwd_flops = 2.0 * NH * D * (double)seq_len * seq_len * n_seqs; /* 4 NH D s^2 / 2 */
    double bwd_flops = 2.5 * fwd_flops;
    double *tf = malloc(iters * sizeof(double)), *tb = malloc(iters * sizeof(double));
    AttTimes times[N_PASSES];
    for (int pass = 0; pass < N_PASSES; pass++) {
        CudaDtype dt = pass ? CUDA_BF16 : CUDA_F32;
        setenv("TAU2_CUDA_ATTENTION", pass == 2 ? "mma" : "wmma", 1);
        for (int it = -1; it < iters; it++) { /* -1 warms up */
            double t0 = now();
            cuda_attention_forward(out, lse, q, k, v, gso, gss, T, NH, NKV, D, dt, 0);
            cuda_check(cudaDeviceSynchronize());
            double t1 = now();
            cuda_attention_backward(dq, dk, dv, delta, dout, out, lse, q, k, v, gso, gss, T, NH, NKV, D, dt, 0);
            cuda_check(cudaDeviceSynchronize());
            double t2 = now();
            if (it >= 0) tf[it] = t1 - t0, tb[it] = t2 - t1;
        }
        qsort(tf, iters, sizeof(double), cmp_double);
        qsort(tb, iters, sizeof(double), cmp_double);
        times[pass].fwd_s = tf[iters / 2];
        times[pass].bwd_s = tb[iters / 2];
        for (int j = 0; j < 4; j++)
            cuda_check(cudaMemcpy(host[pass][j], dev[j], sizes[j] * sizeof(float), cudaMemcpyDeviceToHost));
    }

    printf("causal attention, %d sequence(s) x %d tokens, %d/%d heads of %d, %s, median of %d\n", n_seqs, seq_len, NH,
           NKV, D, prop.name, iters);
    printf("%-10s %10s %10s %10s %10s\n", "kernels", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s");
    const char *names[N_PASSES] = {"fp32", cuda_attention_tc_supported(D) ? "bf16 tc" : "bf16->f32",
                                   cuda_attention_mma_supported(D) ? "bf16 mma" : "bf16->f32"};
    const char *tags[N_PASSES] = {"f32", "bf16", "bf16_mma"};
    for (int pass = 0; pass < N_PASSES; pass++) {
        const char *what = names[pass];
        double f = fwd_flops / times[pass].fwd_s / 1e12, b = bwd_flops / times[pass].bwd_s / 1e12;
        printf("%-10s %10.2f %10.1f %10.2f %10.1f", what, 1e3 * times[pass].fwd_s, f, 1e3 * times[pass].bwd_s, b);
        if (pass && peak > 0) printf("   %.1f%% / %.1f%% of the bf16 peak %.0f", 100 * f / peak, 100 * b / peak, peak);
        printf("\n");
        printf("RESULT attention_gpu %s %d %d %d %d %d %.6f %.6f\n", tags[pass], n_seqs, seq_len, NH, NKV, D,
               times[pass].fwd_s, times[pass].bwd_s);
    }
    for (int pass = 1; pass < N_PASSES; pass++) {
        printf("%s / fp32: forward %.1fx, backward %.1fx; out, dq, dk, dv differ from fp32 by", names[pass],
               times[0].fwd_s / times[pass].fwd_s, times[0].bwd_s / times[pass].bwd_s);
        for (int j = 0; j < 4; j++) printf(" %.2e", rel_diff(host[pass][j], host[0][j], sizes[j]));
        printf(" of their largest value\n");
    }
    printf("mma / WMMA: forward %.2fx, backward %.2fx\n", times[1].fwd_s / times[2].fwd_s,
           times[1].bwd_s / times[2].bwd_s);
    unsetenv("TAU2_CUDA_ATTENTION");

    for (int p = 0; p < N_PASSES; p++)
        for (int j = 0; j < 4; j++) free(host[p][j]);
    free(tf), free(tb), free(seq_of), free(seq_start);
    cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(dout), cudaFree(out), cudaFree(lse), cudaFree(delta);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(gso), cudaFree(gss);
    return 0;
}

#endif /* TAU2_HAVE_CUDA */
