/* bench_attention_gpu.c — the training step's causal attention alone on one
 * GPU: the tensor-core kernels (attention_tc.cu, bf16 operands, what the
 * bf16 step runs) against the fp32 kernels (attention.cu) in the same run,
 * and against the device's dense bf16 peak.
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
    float *out_f32 = malloc(nq * sizeof(float)), *out_bf16 = malloc(nq * sizeof(float));

    double fwd_flops = 2.0 * NH * D * (double)seq_len * seq_len * n_seqs; /* 4 NH D s^2 / 2 */
    double bwd_flops = 2.5 * fwd_flops;
    double *tf = malloc(iters * sizeof(double)), *tb = malloc(iters * sizeof(double));
    AttTimes times[2];
    for (int pass = 0; pass < 2; pass++) {
        CudaDtype dt = pass ? CUDA_BF16 : CUDA_F32;
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
        cuda_check(cudaMemcpy(pass ? out_bf16 : out_f32, out, nq * sizeof(float), cudaMemcpyDeviceToHost));
    }
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < nq; i++) {
        if (fabsf(out_f32[i]) > maxref) maxref = fabsf(out_f32[i]);
        if (fabsf(out_f32[i] - out_bf16[i]) > maxdiff) maxdiff = fabsf(out_f32[i] - out_bf16[i]);
    }

    printf("causal attention, %d sequence(s) x %d tokens, %d/%d heads of %d, %s, median of %d\n", n_seqs, seq_len, NH,
           NKV, D, prop.name, iters);
    printf("%-10s %10s %10s %10s %10s\n", "kernels", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s");
    for (int pass = 0; pass < 2; pass++) {
        const char *what = pass ? (cuda_attention_tc_supported(D) ? "bf16 tc" : "bf16->f32") : "fp32";
        double f = fwd_flops / times[pass].fwd_s / 1e12, b = bwd_flops / times[pass].bwd_s / 1e12;
        printf("%-10s %10.2f %10.1f %10.2f %10.1f", what, 1e3 * times[pass].fwd_s, f, 1e3 * times[pass].bwd_s, b);
        if (pass && peak > 0) printf("   %.1f%% / %.1f%% of the bf16 peak %.0f", 100 * f / peak, 100 * b / peak, peak);
        printf("\n");
        printf("RESULT attention_gpu %s %d %d %d %d %d %.6f %.6f\n", pass ? "bf16" : "f32", n_seqs, seq_len, NH, NKV, D,
               times[pass].fwd_s, times[pass].bwd_s);
    }
    printf("tensor cores / fp32: forward %.1fx, backward %.1fx; outputs differ by %.2e of their largest value\n",
           times[0].fwd_s / times[1].fwd_s, times[0].bwd_s / times[1].bwd_s, maxref > 0 ? maxdiff / maxref : 0.0);

    free(tf), free(tb), free(out_f32), free(out_bf16), free(seq_of), free(seq_start);
    cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(dout), cudaFree(out), cudaFree(lse), cudaFree(delta);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(gso), cudaFree(gss);
    return 0;
}

#endif /* TAU2_HAVE_CUDA */
