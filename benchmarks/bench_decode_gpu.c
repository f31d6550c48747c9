/* bench_decode_gpu.c — batched decode on one GPU (infer_gpu.c): tokens/s
 * at several batch sizes and context lengths, against the HBM-bandwidth
 * roofline measured in the same run.
 *
 * For each (context, batch): an engine with a KV budget for the batch, the
 * batch's prompts of `context` random tokens prefilled (timed: prefill
 * tokens/s), then --steps decode steps of one sampled token per sequence
 * (temperature 1, sampled on the GPU, the ids fed back), each timed,
 * through CUDA graphs (the engine's default for decode steps); then as many
 * with the decode steps' q/k stage folded into the attention's launch or
 * not, whichever the first run did not (infer_gpu_set_decode_fold), for
 * what the fold saves; then as many with programmatic dependent launch
 * turned on, where the GPU has it (infer_gpu_set_dependent_launch: each
 * kernel's weights load while the previous kernel ends), for what that
 * saves; then as many with neither (infer_gpu_set_graphs), for what the
 * graphs save. Each run starts where the previous one ended, 1 + --steps
 * tokens further into the context: at batch 32 and 2k tokens about 1% more
 * bytes a step for the second run than the first. The last steps are
 * the profiler's range (cudaProfilerStart/Stop): `ncu
 * --profile-from-start off bench_decode_gpu --steps 1 ...` sees the kernels
 * of two decode steps and nothing of the prefill.
 *
 * Roofline. A decode step must read every weight once (bf16: 2 bytes per
 * parameter) and every sequence's cached keys and values (bf16: L x 2 x
 * NKV x D x 2 bytes per cached token); at batch sizes this small the
 * products are memory-bound, so the step can take no less than
 *   (weight bytes + batch x context x KV bytes per token) / bandwidth.
 * The bandwidth is measured here: a device-to-device copy of 2 GiB (read +
 * write counted), the best of 10. "of roofline" is that floor over the
 * median step. Pairs whose cache does not fit in the GPU's free memory are
 * reported as such and skipped.
 *
 * usage: bench_decode_gpu [--config 4b|100m|tiny] [--batches 1,32,128] [--contexts 2048,8192] [--steps N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TAU2_HAVE_CUDA

int main(void) {
    fprintf(stderr, "bench_decode_gpu: this build has no CUDA backend (configure with -DTAU2_CUDA=ON)\n");
    return 2;
}

#else

#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>

#include "kernels.h"
#include "model/infer_gpu.h"
#include "model/qwen3.h"

#include "bench_train_common.h"
#include "bench_util.h"

#define MAX_LIST 8
/* prompt tokens per prefill call: whole prompts, each through the flash path */
#define PREFILL_ROWS 16384

static int parse_list(const char *s, int *out) {
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* Device copy bandwidth in bytes/s: the best of 10 copies of 2 GiB (each
 * byte read once and written once). */
static double copy_bandwidth(void) {
    size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cuda_check(cudaMalloc(&a, bytes));
    cuda_check(cudaMalloc(&b, bytes));
    cuda_check(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    cuda_check(cudaEventCreate(&e0));
    cuda_check(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int i = 0; i < 11; i++) {
        cuda_check(cudaEventRecord(e0, 0));
        cuda_check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
        cuda_check(cudaEventRecord(e1, 0));
        cuda_check(cudaEventSynchronize(e1));
        float ms;
        cuda_check(cudaEventElapsedTime(&ms, e0, e1));
        if (i > 0 && ms < best) best = ms; /* the first copy warms up */
    }
    cuda_check(cudaEventDestroy(e0));
    cuda_check(cudaEventDestroy(e1));
    cuda_check(cudaFree(a));
    cuda_check(cudaFree(b));
    return 2.0 * (double)bytes / (best * 1e-3);
}

/* One warm-up step, then n timed decode steps of one sampled token per
 * sequence, the ids fed back; the median step in seconds. */
static double decode_median(InferGpu *e, const int32_t *seqs, int B, int32_t *ids, int n, unsigned seed) {
    char err[256];
    InferChunk *chunks = malloc((size_t)B * sizeof *chunks);
    SampleParams *sp = malloc((size_t)B * sizeof *sp);
    double *u = malloc((size_t)B * sizeof(double));
    float *lps = malloc((size_t)B * sizeof(float));
    double *times = malloc((size_t)n * sizeof(double));
    for (int b = 0; b < B; b++) sp[b] = (SampleParams){1.0f, 1.0f, 0};
    for (int s = 0; s <= n; s++) { /* step 0 warms up (and captures the graph) */
        for (int b = 0; b < B; b++) {
            chunks[b] = (InferChunk){seqs[b], &ids[b], 1};
            u[b] = (double)((b * 2654435761u + (s + seed) * 40503u) & 0xffffff) / 16777216.0;
        }
        double ts = now();
        if (infer_gpu_forward_sample(e, chunks, B, sp, u, ids, lps, err, sizeof err) != 0) {
            fprintf(stderr, "bench_decode_gpu: decode: %s\n", err);
            exit(1);
        }
        if (s > 0) times[s - 1] = now() - ts;
    }
    qsort(times, n, sizeof(double), cmp_double);
    double med = times[n / 2];
    free(chunks), free(sp), free(u), free(lps), free(times);
    return med;
}

/* One (context, batch) point; 0, or 1 when it does not fit. */
static int run_point(const Qwen3 *m, int ctx, int B, int steps, double bw) {
    const Qwen3Config *c = &m->config;
    double kv_token = (double)c->num_layers * 2 * c->num_kv_heads * c->head_dim * 2; /* bytes */
    double weights = 2.0 * (double)m->num_parameters;
    long kv_tokens = (long)B * (ctx + 4 * steps + 16); /* four runs of steps + 1 */
    size_t free_b = 0, total_b = 0;
    cuda_check(cudaMemGetInfo(&free_b, &total_b));
    /* weights, cache, and room for the prefill's activations (~4 GiB for 16k rows of 4B) */
    double need = weights + kv_tokens * kv_token + 6.0 * (1 << 30);
    if (need > (double)free_b || kv_tokens > 0x7fffffffL) {
        printf("context %5d batch %4d: does not fit (needs %.1f GiB, %.1f GiB free)\n", ctx, B, need / (1 << 30),
               (double)free_b / (1 << 30));
        printf("RESULT decode_gpu %d %d nofit\n", ctx, B);
        return 1;
    }
    InferOptions opt = {.kv_tokens = (int)kv_tokens, .max_seqs = B, .max_len = ctx + 4 * steps + 16};
    char err[256];
    InferGpu *e = infer_gpu_new(m, &opt, 0, err, sizeof err);
    if (!e) {
        fprintf(stderr, "bench_decode_gpu: %s\n", err);
        exit(1);
    }
    int32_t *seqs = malloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        seqs[b] = infer_gpu_seq_new(e, err, sizeof err);
        if (seqs[b] < 0) {
            fprintf(stderr, "bench_decode_gpu: %s\n", err);
            exit(1);
        }
    }
    /* prefill: whole prompts, PREFILL_ROWS tokens per call (at least one prompt) */
    int per_call = PREFILL_ROWS / ctx > 0 ? PREFILL_ROWS / ctx : 1;
    InferChunk *chunks = malloc((size_t)B * sizeof *chunks);
    int32_t **prompts = malloc((size_t)B * sizeof *prompts);
    for (int b = 0; b < B; b++) {
        prompts[b] = malloc((size_t)ctx * sizeof(int32_t));
        for (int t = 0; t < ctx; t++)
            prompts[b][t] = (int32_t)(((uint64_t)b * 7919 + (uint64_t)t * 104729) % (uint64_t)c->vocab_size);
    }
    double t0 = now();
    for (int b0 = 0; b0 < B; b0 += per_call) {
        int n = B - b0 < per_call ? B - b0 : per_call;
        for (int i = 0; i < n; i++) chunks[i] = (InferChunk){seqs[b0 + i], prompts[b0 + i], ctx};
        if (infer_gpu_forward(e, chunks, n, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "bench_decode_gpu: prefill: %s\n", err);
            exit(1);
        }
    }
    double prefill_s = now() - t0;

    /* decode: one sampled token per sequence per step, fed back; with
     * CUDA graphs (dependent launch and the fold as TAU2_CUDA_PDL and
     * TAU2_CUDA_DECODE_FOLD say), with the fold the other way, with graphs
     * and dependent launch, then with none of them */
    int32_t *ids = malloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) ids[b] = prompts[b][ctx - 1];
    bool pdl_default = infer_gpu_dependent_launch(e), fold_default = infer_gpu_decode_fold(e);
    double med = decode_median(e, seqs, B, ids, steps, 0);
    long captured, replayed;
    infer_gpu_graph_counts(e, &captured, &replayed);
    infer_gpu_set_decode_fold(e, !fold_default);
    bool fold_other = infer_gpu_decode_fold(e) != fold_default; /* false: the shape has no folded kernel */
    double med_other = fold_other ? decode_median(e, seqs, B, ids, steps, (unsigned)steps + 1) : -1.0;
    infer_gpu_set_decode_fold(e, fold_default);
    double med_folded = fold_default ? med : fold_other ? med_other : -1.0;
    double med_unfolded = fold_default ? med_other : med;
    infer_gpu_set_dependent_launch(e, true);
    bool pdl = infer_gpu_dependent_launch(e);
    double med_pdl = pdl ? decode_median(e, seqs, B, ids, steps, 2 * (unsigned)steps + 2) : -1.0;
    infer_gpu_set_dependent_launch(e, false);
    infer_gpu_set_graphs(e, false);
    /* the steps without graphs are the profiled range: under a profiler
     * started with profiling off (ncu --profile-from-start off), each of a
     * step's kernels is seen alone */
    cuda_check(cudaProfilerStart());
    double med_eager = decode_median(e, seqs, B, ids, steps, 3 * (unsigned)steps + 3);
    cuda_check(cudaProfilerStop());
    double ctx_mid = ctx + 1 + steps / 2.0; /* cached tokens a row reads, mid first run */
    double floor_s = (weights + B * ctx_mid * kv_token) / bw;
    printf("context %5d batch %4d: decode %8.1f tokens/s (step %.3f ms median of %d), roofline %.3f ms: %.0f%% of "
           "roofline; prefill %.0f tokens/s; device memory %.1f GiB\n",
           ctx, B, B / med, 1e3 * med, steps, 1e3 * floor_s, 100.0 * floor_s / med, (double)B * ctx / prefill_s,
           (double)infer_gpu_device_bytes(e) / (1 << 30));
    if (fold_other)
        printf("context %5d batch %4d: q/k stage folded into the attention step %.3f ms median, apart %.3f ms: "
               "the fold %.2fx (the first run had it %s)\n",
               ctx, B, 1e3 * med_folded, 1e3 * med_unfolded, med_unfolded / med_folded, fold_default ? "on" : "off");
    else
        printf("context %5d batch %4d: q/k stage folded into the attention: not for this shape\n", ctx, B);
    if (pdl)
        printf("context %5d batch %4d: with programmatic dependent launch step %.3f ms median: %.2fx the first "
               "(which had it %s)\n",
               ctx, B, 1e3 * med_pdl, med / med_pdl, pdl_default ? "on" : "off");
    else
        printf("context %5d batch %4d: programmatic dependent launch: not on this GPU (compute capability < 9)\n",
               ctx, B);
    printf("context %5d batch %4d: without CUDA graphs or dependent launch step %.3f ms median: graphs %.2fx "
           "(%ld captured, %ld launches)\n",
           ctx, B, 1e3 * med_eager, med_eager / med, captured, replayed);
    printf("RESULT decode_gpu %d %d %.1f %.5f %.5f %.3f %.0f %.5f %.5f %.5f %.5f\n", ctx, B, B / med, med, floor_s,
           floor_s / med, (double)B * ctx / prefill_s, med_eager, med_pdl, med_folded, med_unfolded);
    for (int b = 0; b < B; b++) free(prompts[b]);
    free(prompts), free(chunks), free(seqs), free(ids);
    infer_gpu_free(e);
    return 0;
}

int main(int argc, char **argv) {
    const char *name = "4b";
    int batches[MAX_LIST] = {1, 32, 128}, contexts[MAX_LIST] = {2048, 8192};
    int n_batches = 3, n_contexts = 2, steps = 32;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--config")) name = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--batches")) n_batches = parse_list(argv[++i], batches);
        else if (i + 1 < argc && !strcmp(argv[i], "--contexts")) n_contexts = parse_list(argv[++i], contexts);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_decode_gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    Qwen3Config cfg;
    if (bench_config_named(name, &cfg) != 0 || n_batches < 1 || n_contexts < 1 || steps < 1) {
        fprintf(stderr, "bench_decode_gpu: bad arguments (configs: 4b, 100m, tiny; lists like 1,32,128)\n");
        return 2;
    }
    if (cuda_device_count() == 0) {
        printf("bench_decode_gpu: no CUDA device\n");
        return 77;
    }
    cuda_device_init(0);
    struct cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, 0));
    double bw = copy_bandwidth();
    Qwen3 *m = qwen3_new(&cfg);
    bench_init_weights(m);
    printf("config %s (%zu parameters, %.2f GB in bf16), %s, measured copy bandwidth %.0f GB/s\n", name,
           m->num_parameters, 2e-9 * (double)m->num_parameters, prop.name, bw / 1e9);
    printf("RESULT bandwidth %.1f\n", bw / 1e9);
    for (int ci = 0; ci < n_contexts; ci++) {
        for (int bi = 0; bi < n_batches; bi++) run_point(m, contexts[ci], batches[bi], steps, bw);
    }
    qwen3_free(m);
    return 0;
}

#endif /* TAU2_HAVE_CUDA */
