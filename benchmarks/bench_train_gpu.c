/* bench_train_gpu.c — Qwen3 training steps on one GPU (qwen3_gpu.c): tokens/s
 * and model FLOPs utilization (MFU) against the GPU's dense bf16 peak.
 *
 * One step = zero_grad, forward over a packed batch, the SFT loss, backward,
 * AdamW, as bench_train.c on the CPU. Random weights. The "4b" config is
 * Qwen3-4B's shape (hidden 2560, MLP 9728, 32/8 heads of 128, vocabulary
 * 151936, tied); --layers cuts its 36 layers so that the activations of every
 * layer fit on one GPU without recomputation (MFU is per layer, and the
 * head's share grows as layers are cut, so fewer layers is the harder case);
 * --recompute keeps one layer's activations and runs each layer again in
 * backward, so all 36 fit (MFU counts the model's FLOPs, not the repeats).
 *
 * The output head's backward runs inside the forward
 * (qwen3_gpu_forward_head_grad), as in the job's updates; --two-pass runs
 * qwen3_gpu_forward, the loss, then qwen3_gpu_backward (every head chunk's
 * logits but the last computed again in the backward). The head runs in
 * chunks of the job's GPU default (QWEN3_GPU_LOGITS_BYTES of logits) or
 * --head-rows tokens.
 *
 * --micro N runs N micro-batches of the same packed batch per step, their
 * gradients accumulated, then one AdamW update, as the job's updates do
 * with more sequences than max_tokens_per_gpu holds (train.c): the
 * update's cost is shared by N micro-batches' tokens.
 *
 * Model FLOPs per token (PaLM's count): 6 x (the products' weights, head
 * included) + 6 x L x NH x D x seq_len for causal attention (half of the
 * 12 L NH D seq of full attention).
 *
 * usage: bench_train_gpu [--config 4b|100m|tiny] [--layers N] [--seqs N] [--seq-len N] [--steps N]
 *                        [--micro N] [--math bf16|f32] [--recompute] [--two-pass] [--peak-tflops X] [--head-rows N]
 * The peak defaults from the device name (H100/H200 989, A100 312 dense bf16
 * TFLOP/s); --peak-tflops overrides it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TAU2_HAVE_CUDA

int main(void) {
    fprintf(stderr, "bench_train_gpu: this build has no CUDA backend (configure with -DTAU2_CUDA=ON)\n");
    return 2;
}

#else

#include <cuda_runtime_api.h>

#include "kernels.h"
#include "model/qwen3.h"
#include "model/qwen3_gpu.h"

#include "bench_gpu.h"
#include "bench_train_common.h"
#include "bench_util.h"

int main(int argc, char **argv) {
    const char *name = "4b", *math_name = "bf16";
    int layers = 8, n_seqs = 1, seq_len = 4096, steps = 5, head_rows = 0, micro = 1;
    double peak = 0.0;
    bool recompute = false, fused = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--recompute")) recompute = true;
        else if (!strcmp(argv[i], "--two-pass")) fused = false;
        else if (i + 1 < argc && !strcmp(argv[i], "--config")) name = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--layers")) layers = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seqs")) n_seqs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seq-len")) seq_len = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--micro")) micro = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--math")) math_name = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--peak-tflops")) peak = atof(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--head-rows")) head_rows = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_train_gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    Qwen3Config cfg;
    bool f32 = !strcmp(math_name, "f32");
    if (bench_config_named(name, &cfg) != 0 || layers < 1 || n_seqs < 1 || seq_len < 2 || steps < 1 || micro < 1 ||
        (!f32 && strcmp(math_name, "bf16"))) {
        fprintf(stderr, "bench_train_gpu: bad arguments (configs: 4b, 100m, tiny; math: bf16, f32)\n");
        return 2;
    }
    if (cuda_device_count() == 0) {
        printf("bench_train_gpu: no CUDA device\n");
        return 77;
    }
    if (!strcmp(name, "4b")) cfg.num_layers = layers;
    struct cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, 0));
    if (peak <= 0) peak = bench_gpu_bf16_peak(prop.name);

    Qwen3 *m = qwen3_new(&cfg);
    m->recompute = recompute;
    /* the head's chunk as the job's GPU step takes it (train_device.c) */
    m->vocab_chunk = head_rows > 0 ? head_rows : qwen3_vocab_chunk_within(m->shard.vocab_size, QWEN3_GPU_LOGITS_BYTES);
    bench_init_weights(m);
    Qwen3Gpu *g = qwen3_gpu_new(m, 0, f32 ? QWEN3_GPU_F32 : QWEN3_GPU_BF16);
    BenchBatch bb = bench_batch_new(n_seqs, seq_len, cfg.vocab_size);
    int T = bb.T;
    float *lp = bb.logprob, *ent = bb.entropy, *mask = bb.mask, *dlp = bb.dlogprob;
    Qwen3AdamW opt = {0.9f, 0.98f, 1e-8f, 0.1f, 1.0f, true};

    double *times = malloc((steps + 1) * sizeof(double)), fwd = 0, bwd = 0, opt_t = 0;
    float loss = 0;
    for (int step = 0; step <= steps; step++) { /* step 0 warms up */
        double t0 = now(), step_fwd = 0, step_bwd = 0;
        qwen3_gpu_zero_grad(g);
        for (int k = 0; k < micro; k++) { /* gradients accumulate over the micro-batches */
            double m0 = now();
            if (fused) {
                Qwen3SftRows sg = qwen3_sft_rows_for(mask, T);
                qwen3_gpu_forward_head_grad(g, &bb.batch, lp, ent, qwen3_sft_rows, &sg, false);
                loss = qwen3_sft_loss(lp, mask, T, NULL);
            } else {
                qwen3_gpu_forward(g, &bb.batch, lp, ent); /* returns after the last head chunk's values are back */
                loss = qwen3_sft_loss(lp, mask, T, dlp);
            }
            double m1 = now();
            qwen3_gpu_backward(g, fused ? NULL : dlp, NULL);
            cuda_check(cudaDeviceSynchronize());
            double m2 = now();
            step_fwd += m1 - m0, step_bwd += m2 - m1;
        }
        double t2 = now();
        qwen3_gpu_adamw_step(g, &opt, 1e-5f); /* returns after the norm is read back */
        double t3 = now();
        times[step] = t3 - t0;
        if (step > 0) fwd += step_fwd, bwd += step_bwd, opt_t += t3 - t2;
    }
    qsort(times + 1, steps, sizeof(double), cmp_double);
    double med = times[1 + steps / 2];

    const Qwen3Config *c = &cfg;
    double C = c->hidden_size, I = c->intermediate_size, QD = (double)c->num_heads * c->head_dim;
    double KD = (double)c->num_kv_heads * c->head_dim;
    double matmul_params = c->num_layers * (C * (QD + 2 * KD) + QD * C + 3 * C * I) + (double)c->vocab_size * C;
    double flops_token = 6.0 * matmul_params + 6.0 * c->num_layers * QD * seq_len;
    double tokens = (double)T * micro; /* a step's */
    double tflops = flops_token * tokens / med / 1e12;
    size_t free_b = 0, total_b = 0;
    cuda_check(cudaMemGetInfo(&free_b, &total_b));

    /* the attention kernels the step ran (kernels/attention.cu's dispatch) */
    const char *att = f32 ? "fp32" : cuda_attention_mma_chosen() ? "mma.sync" : "WMMA";
    printf("config %s (%d layers), %d micro-batch%s of %d sequences x %d tokens a step, head chunks of %d rows, "
           "%s products, %s attention%s%s, %s\n", name, c->num_layers, micro, micro > 1 ? "es" : "", n_seqs, seq_len,
           m->vocab_chunk, math_name, att, recompute ? ", recompute" : "", fused ? "" : ", two-pass head", prop.name);
    printf("RESULT train_gpu %s %d %.0f %.4f %.1f %.1f %.4f\n", name, c->num_layers, tokens, med, tokens / med, tflops,
           loss);
    printf("step %.3f s (median of %d), %.0f tokens/s, %.1f TFLOP/s", med, steps, tokens / med, tflops);
    if (peak > 0 && !f32) printf(", MFU %.1f%% of %.0f", 100.0 * tflops / peak, peak);
    printf("\nphases (mean ms): forward %.1f backward %.1f adamw %.1f; device memory used %.1f GiB of %.1f\n",
           1e3 * fwd / steps, 1e3 * bwd / steps, 1e3 * opt_t / steps, (double)(total_b - free_b) / (1 << 30),
           (double)total_b / (1 << 30));
    free(times);
    bench_batch_free(&bb);
    qwen3_gpu_free(g);
    qwen3_free(m);
    return 0;
}

#endif /* TAU2_HAVE_CUDA */
