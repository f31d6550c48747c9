/* test_cuda_memory_plan.c — the GPU memory plans (qwen3_gpu_plan,
 * infer_gpu_plan) against the device memory the engines take, on the small
 * model of the engine tests:
 *
 *   1. a training engine (bf16 math), a forward, backward and AdamW step on
 *      96 tokens, with every layer's activations and with recomputation;
 *   2. a KL reference's engine: forward passes only, one-slot layout;
 *   3. an inference engine (cache of 2048 tokens, 8 sequences, contexts of
 *      128, a step limit of 64 rows) driven to the largest step its
 *      settings allow (64 rows over 8 sequences, one at the longest
 *      context), then its weights uploaded again from the host;
 *   4. offload (a colocated job's offload_train): a trainer after a step
 *      offloaded holds its plan's workspace and nothing more; onloaded
 *      from the host's weights and the moments the offload brought out,
 *      its next step gives the step of a twin never offloaded (bit for bit
 *      under the emulation; on a GPU within 1e-5, the embedding's
 *      atomicAdd order aside); a KL reference offloaded and onloaded gives
 *      the same forward bit for bit.
 *
 * What each engine holds after its work is measured by cudaMemGetInfo (the
 * same reading the job's check takes). Under the CPU emulation of
 * tests/cuda_emu the measure is to the byte and the emulator also reports
 * the peak (tau2_cuda_emu_peak_bytes): the engine's persistent memory must
 * equal the plan less the kernels' pool scratch (nothing counted that is
 * not taken, nothing taken that is not counted), and the peak must be at
 * most the plan. The reference's peak is its plan exactly (its pool holds
 * one forward's attention copies); the inference engine's, after a weight
 * upload that follows the largest step, the plan less a prompt's pool
 * scratch: the test reaches every bound, the decode partials' cap lowered
 * to 64 KiB so that they do too.
 * On a GPU, the driver's granularity, cuBLAS's handle and the pool's cache
 * blur the reading: within 64 MiB.
 *
 * Without a CUDA device it prints "no CUDA device: skipped" and exits 77.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels.h"
#include "model/infer.h"
#include "model/infer_gpu.h"
#include "model/qwen3.h"
#include "model/qwen3_gpu.h"

#include "cuda_test_util.h"

/* Defined by the emulator only (tests/cuda_emu/emu_runtime.cpp). */
extern size_t tau2_cuda_emu_peak_bytes(void) __attribute__((weak));
extern void tau2_cuda_emu_peak_reset(void) __attribute__((weak));

static const long GPU_SLACK = 64L << 20; /* a real GPU's reading, see the file comment */

static int g_failures;

static void expect(bool ok, const char *what) {
    printf("%-4s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) g_failures++;
}

static bool emulated(void) { return tau2_cuda_emu_peak_bytes != NULL; }

/* Device memory in use now (all of the device's, as the job reads it). */
static long used_bytes(void) {
    size_t free_b, total;
    cuda_check(cudaDeviceSynchronize());
    cuda_check(cudaMemGetInfo(&free_b, &total));
    return (long)(total - free_b);
}

static void peak_reset(void) {
    if (emulated()) tau2_cuda_emu_peak_reset();
}

/* The most in use since peak_reset (emulation), else in use now. */
static long peak_bytes(void) { return emulated() ? (long)tau2_cuda_emu_peak_bytes() : used_bytes(); }

/* measured == planned: to the byte under emulation, within the slack on a GPU. */
static void expect_bytes(long measured, long planned, const char *what) {
    char line[256];
    long diff = measured - planned;
    bool ok = emulated() ? diff == 0 : diff <= GPU_SLACK && diff >= -GPU_SLACK;
    snprintf(line, sizeof line, "%s: %ld bytes, planned %ld", what, measured, planned);
    expect(ok, line);
}

/* measured <= planned (plus the slack on a GPU). */
static void expect_within(long measured, long planned, const char *what) {
    char line[256];
    snprintf(line, sizeof line, "%s: %ld bytes, at most %ld planned", what, measured, planned);
    expect(measured <= planned + (emulated() ? 0 : GPU_SLACK), line);
}

/* A batch of two sequences (60 and 36 tokens) with next-token targets. */
typedef struct {
    int32_t tokens[96], targets[96], seq_start[3];
    float dlogprob[96], lp[96], ent[96];
} Batch;

static Qwen3Batch batch_make(Batch *b, int V) {
    b->seq_start[0] = 0, b->seq_start[1] = 60, b->seq_start[2] = 96;
    for (int t = 0; t < 96; t++) {
        b->tokens[t] = (int32_t)(rnd_u32() % (uint32_t)V);
        b->dlogprob[t] = -1.0f / 96;
    }
    qwen3_next_token_targets(b->tokens, b->seq_start, 2, b->targets);
    return (Qwen3Batch){96, 2, b->tokens, b->targets, b->seq_start, NULL};
}

/* 1 and 2: a training engine (train) or a reference's, its layout by recompute. */
static void check_trainer(Qwen3 *m, bool train, bool recompute) {
    char what[160];
    const char *name = train ? (recompute ? "trainer, recomputing" : "trainer, every layer kept") : "KL reference";
    Qwen3GpuPlan plan;
    qwen3_gpu_plan(&m->config, 1, 96, recompute, QWEN3_GPU_BF16, train, &plan);
    long base = used_bytes();
    peak_reset();
    m->vocab_chunk = qwen3_gpu_vocab_chunk(m->shard.vocab_size); /* as train_device_new sets it */
    m->recompute = recompute;
    Qwen3Gpu *g = qwen3_gpu_new(m, 0, QWEN3_GPU_BF16);
    long made = used_bytes() - base;
    Batch b;
    Qwen3Batch qb = batch_make(&b, m->config.vocab_size);
    qwen3_gpu_forward(g, &qb, b.lp, b.ent);
    if (!emulated())
        printf("%s: made %ld bytes (weights, moments and workspace planned %zu), after a forward %ld (planned %zu "
               "less the pool)\n", name, made, plan.weights + plan.train_state + plan.workspace, used_bytes() - base,
               qwen3_gpu_plan_total(&plan) - plan.pool);
    if (train) {
        qwen3_gpu_zero_grad(g);
        qwen3_gpu_backward(g, b.dlogprob, NULL);
        Qwen3AdamW opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, false};
        qwen3_gpu_adamw_step(g, &opt, 1e-3f);
        qwen3_gpu_forward(g, &qb, b.lp, b.ent); /* a second step's forward: nothing new */
    }
    long held = used_bytes() - base, peak = peak_bytes() - base;
    snprintf(what, sizeof what, "%s: memory held after the steps = the plan less the pool scratch", name);
    expect_bytes(held, (long)(qwen3_gpu_plan_total(&plan) - plan.pool), what);
    snprintf(what, sizeof what, "%s: the peak within the plan", name);
    expect_within(peak, (long)qwen3_gpu_plan_total(&plan), what);
    qwen3_gpu_free(g);
    snprintf(what, sizeof what, "%s: everything handed back", name);
    expect_bytes(used_bytes(), base, what);
}

/* 3: the inference engine at the largest step its settings allow. */
static void check_engine(Qwen3 *m) {
    const int LIMIT = 64;
    InferOptions opt = {.kv_tokens = 2048, .block_size = 16, .max_seqs = 8, .max_len = 128};
    InferGpuPlan plan;
    infer_gpu_plan(&m->config, &opt, LIMIT, &plan);
    long base = used_bytes();
    peak_reset();
    char err[256];
    InferGpu *e = infer_gpu_new(m, &opt, 0, err, sizeof err);
    if (!e) die_runtime("infer_gpu_new: %s", err);
    expect_bytes(used_bytes() - base, (long)(plan.weights + plan.kv_cache + CUDA_BLAS_BYTES),
                 "engine: weights, cache and cuBLAS handle with its workspace held after it is made");
    int V = m->config.vocab_size, seqs[8];
    for (int i = 0; i < 8; i++) {
        seqs[i] = infer_gpu_seq_new(e, err, sizeof err);
        if (seqs[i] < 0) die_runtime("seq_new: %s", err);
    }
    /* one token on sequences 1 to 7: the large step's rows then all go
     * through the paged decode kernel, whose partials reach their bound */
    int32_t *first = random_ids(7, V);
    InferChunk starts[7];
    for (int i = 0; i < 7; i++) starts[i] = (InferChunk){seqs[i + 1], first + i, 1};
    if (infer_gpu_forward(e, starts, 7, NULL, err, sizeof err) != 0) die_runtime("forward: %s", err);
    /* sequence 0 to 120 tokens in two steps within the limit */
    int32_t *ids = random_ids(120, V);
    InferChunk c0 = {seqs[0], ids, 64}, c1 = {seqs[0], ids + 64, 56};
    if (infer_gpu_forward(e, &c0, 1, NULL, err, sizeof err) != 0 || infer_gpu_forward(e, &c1, 1, NULL, err, sizeof err))
        die_runtime("forward: %s", err);
    /* the largest step: 64 rows over the 8 sequences, the first at a context
     * of 121 (8 blocks, the widest a 128-token sequence has) */
    InferChunk step[8];
    int32_t *more = random_ids(LIMIT, V);
    step[0] = (InferChunk){seqs[0], more, 1};
    for (int i = 1, at = 1; i < 8; i++) {
        int n = i < 7 ? 9 : LIMIT - at;
        step[i] = (InferChunk){seqs[i], more + at, n};
        at += n;
    }
    if (infer_gpu_forward(e, step, 8, NULL, err, sizeof err) != 0) die_runtime("forward: %s", err);
    /* decode steps on every sequence */
    for (int k = 0; k < 3; k++) {
        InferChunk dec[8];
        for (int i = 0; i < 8; i++) dec[i] = (InferChunk){seqs[i], more + i, 1};
        if (infer_gpu_forward(e, dec, 8, NULL, err, sizeof err) != 0) die_runtime("decode: %s", err);
    }
    expect_bytes(used_bytes() - base, (long)(infer_gpu_device_bytes(e) + CUDA_BLAS_BYTES),
                 "engine: held = infer_gpu_device_bytes + cuBLAS handle with its workspace");
    expect_bytes(used_bytes() - base, (long)(plan.weights + plan.kv_cache + plan.scratch + CUDA_BLAS_BYTES),
                 "engine: the largest step's scratch = the plan's");
    /* new weights from the host: the staging on top of everything */
    infer_gpu_load_weights(e, m->params_memory);
    expect_bytes(peak_bytes() - base, (long)(infer_gpu_plan_total(&plan) - plan.pool),
                 "engine: the peak (a weight upload after the largest step) = the plan less a prompt's pool scratch");
    expect_within(peak_bytes() - base, (long)infer_gpu_plan_total(&plan), "engine: the peak within the plan");
    infer_gpu_free(e);
    expect_bytes(used_bytes(), base, "engine: everything handed back");
    free(ids);
    free(more);
    free(first);
}

/* A training step of engine g on qb: forward, backward, AdamW. */
static void train_step(Qwen3Gpu *g, const Qwen3Batch *qb, Batch *b) {
    Qwen3AdamW opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, false};
    qwen3_gpu_forward(g, qb, b->lp, b->ent);
    qwen3_gpu_zero_grad(g);
    qwen3_gpu_backward(g, b->dlogprob, NULL);
    qwen3_gpu_adamw_step(g, &opt, 1e-3f);
}

/* The largest |a - b| over n values (NaN when either is). */
static double max_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* Bit for bit under the emulation, within tol on a GPU. */
static void expect_same(const float *a, const float *b, size_t n, double tol, const char *what) {
    char line[256];
    double d = max_diff(a, b, n);
    bool ok = emulated() ? memcmp(a, b, n * sizeof *a) == 0 : d <= tol;
    snprintf(line, sizeof line, "%s (largest difference %.3g)", what, d);
    expect(ok, line);
}

/* 4: offload and onload. */
static void check_offload(Qwen3 *m) {
    size_t n = m->num_parameters;
    m->vocab_chunk = qwen3_gpu_vocab_chunk(m->shard.vocab_size);
    m->recompute = false;
    Qwen3GpuPlan plan;
    qwen3_gpu_plan(&m->config, 1, 96, false, QWEN3_GPU_BF16, true, &plan);
    float *w = xmalloc(n * sizeof(float)), *mh = xmalloc(n * sizeof(float)), *vh = xmalloc(n * sizeof(float));
    float *p_off = xmalloc(n * sizeof(float)), *p_twin = xmalloc(n * sizeof(float));
    Batch b1, b2, t1, t2;
    uint64_t state = g_rng; /* the twin's batches: the same draws */
    Qwen3Batch q1 = batch_make(&b1, m->config.vocab_size), q2 = batch_make(&b2, m->config.vocab_size);
    g_rng = state;
    Qwen3Batch r1 = batch_make(&t1, m->config.vocab_size), r2 = batch_make(&t2, m->config.vocab_size);

    long base = used_bytes();
    Qwen3Gpu *g = qwen3_gpu_new(m, 0, QWEN3_GPU_BF16);
    train_step(g, &q1, &b1);
    qwen3_gpu_download_params(g, w); /* what train_device keeps in the host model */
    qwen3_gpu_offload(g, mh, vh);
    expect(qwen3_gpu_is_offloaded(g) && qwen3_gpu_params_device(g) == NULL, "trainer: offloaded, no weights");
    expect_bytes(used_bytes() - base, (long)plan.workspace, "trainer offloaded: the plan's workspace held, no more");
    qwen3_gpu_onload(g, w, mh, vh);
    train_step(g, &q2, &b2);
    qwen3_gpu_download_params(g, p_off);
    qwen3_gpu_free(g);

    Qwen3Gpu *twin = qwen3_gpu_new(m, 0, QWEN3_GPU_BF16);
    train_step(twin, &r1, &t1);
    train_step(twin, &r2, &t2);
    qwen3_gpu_download_params(twin, p_twin);
    qwen3_gpu_free(twin);
    expect_same(b2.lp, t2.lp, 96, 1e-5, "trainer onloaded: the next step's logprobs are the twin's");
    expect_same(p_off, p_twin, n, 1e-5, "trainer onloaded: the weights after its AdamW step are the twin's");

    /* a KL reference: no moments */
    m->recompute = true;
    qwen3_gpu_plan(&m->config, 1, 96, true, QWEN3_GPU_BF16, false, &plan);
    base = used_bytes();
    Qwen3Gpu *ref = qwen3_gpu_new(m, 0, QWEN3_GPU_BF16);
    qwen3_gpu_forward(ref, &q1, t1.lp, t1.ent);
    qwen3_gpu_offload(ref, NULL, NULL);
    expect_bytes(used_bytes() - base, (long)plan.workspace, "reference offloaded: the plan's workspace held");
    qwen3_gpu_onload(ref, m->params_memory, NULL, NULL);
    qwen3_gpu_forward(ref, &q1, b1.lp, b1.ent);
    qwen3_gpu_free(ref);
    expect(memcmp(t1.lp, b1.lp, sizeof b1.lp) == 0 && memcmp(t1.ent, b1.ent, sizeof b1.ent) == 0,
           "reference onloaded: the same forward bit for bit");
    expect_bytes(used_bytes(), base, "offload: everything handed back");
    free(w), free(mh), free(vh), free(p_off), free(p_twin);
}

/* On a GPU: what the runtime pieces every engine makes take beyond its
 * own allocations, printed beside the checks (the plans count a handle as
 * CUDA_BLAS_BYTES, its share read here on an H100): a stream, a cuBLAS
 * handle with its workspace (CUDA_BLAS_WORKSPACE_BYTES), its first bf16
 * product, a second handle, and what stays after they are freed. */
static void print_runtime_costs(void) {
    long b0 = used_bytes();
    cudaStream_t s;
    cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    long b1 = used_bytes();
    CudaBlas *blas = cuda_blas_new();
    long b2 = used_bytes();
    enum { N = 64, IC = 256, OC = 256 };
    float *out, *inp;
    uint16_t *w;
    cuda_check(cudaMalloc((void **)&out, (size_t)N * OC * sizeof(float)));
    cuda_check(cudaMalloc((void **)&inp, (size_t)N * IC * sizeof(uint16_t)));
    cuda_check(cudaMalloc((void **)&w, (size_t)OC * IC * sizeof(uint16_t)));
    cuda_check(cudaMemset(inp, 0, (size_t)N * IC * sizeof(uint16_t)));
    cuda_check(cudaMemset(w, 0, (size_t)OC * IC * sizeof(uint16_t)));
    long b3 = used_bytes();
    cuda_matmul_forward(blas, out, inp, w, CUDA_BF16, N, IC, OC, s);
    long b4 = used_bytes();
    CudaBlas *blas2 = cuda_blas_new();
    long b5 = used_bytes();
    cuda_matmul_forward(blas2, out, inp, w, CUDA_BF16, N, IC, OC, s);
    long b6 = used_bytes();
    cuda_blas_free(blas2);
    cuda_blas_free(blas);
    cuda_check(cudaFree(out)), cuda_check(cudaFree(inp)), cuda_check(cudaFree(w));
    cuda_check(cudaStreamDestroy(s));
    long b7 = used_bytes();
    const double MiB = 1 << 20;
    printf("runtime: stream %+.1f MiB, cuBLAS handle and its %.0f MiB workspace %+.1f MiB, its first product %+.1f MiB, "
           "a second handle %+.1f MiB and its product %+.1f MiB; after all freed %+.1f MiB\n",
           (b1 - b0) / MiB, CUDA_BLAS_WORKSPACE_BYTES / MiB, (b2 - b1) / MiB, (b4 - b3) / MiB, (b5 - b4) / MiB,
           (b6 - b5) / MiB, (b7 - b0) / MiB);
}

/* On a GPU: one training step and one inference step on engines made and
 * freed before anything is measured. The driver loads each kernel's code
 * at its first launch and keeps it (4 MiB on an H100): that is the
 * context's, not the first measured engine's. */
static void warm_up(Qwen3 *m) {
    long base = used_bytes();
    m->vocab_chunk = qwen3_gpu_vocab_chunk(m->shard.vocab_size);
    m->recompute = false;
    Qwen3Gpu *g = qwen3_gpu_new(m, 0, QWEN3_GPU_BF16);
    Batch b;
    Qwen3Batch qb = batch_make(&b, m->config.vocab_size);
    train_step(g, &qb, &b);
    qwen3_gpu_free(g);
    InferOptions io = {.kv_tokens = 256, .block_size = 16, .max_seqs = 2, .max_len = 128};
    char err[256];
    InferGpu *e = infer_gpu_new(m, &io, 0, err, sizeof err);
    if (!e) die_runtime("infer_gpu_new: %s", err);
    int s = infer_gpu_seq_new(e, err, sizeof err);
    int32_t ids[2] = {1, 2};
    InferChunk c = {s, ids, 2}, d = {s, ids, 1};
    if (s < 0 || infer_gpu_forward(e, &c, 1, NULL, err, sizeof err) || infer_gpu_forward(e, &d, 1, NULL, err, sizeof err))
        die_runtime("warm-up: %s", err);
    infer_gpu_free(e);
    printf("warm-up: %+.1f MiB stay after the first engines (kernel code loaded at first launch)\n",
           (used_bytes() - base) / (double)(1 << 20));
}

int main(void) {
    if (!cuda_test_device()) return 77;
    printf("memory measured by %s\n", emulated() ? "the emulator (to the byte)" : "cudaMemGetInfo (within 64 MiB)");
    /* the decode partials' cap, lowered so that the test's step reaches it */
    setenv("TAU2_CUDA_DECODE_WORK_MAX", "65536", 1);
    Qwen3Config cfg = small_tied_config();
    Qwen3 *m = random_model(&cfg);
    if (!emulated()) {
        print_runtime_costs();
        warm_up(m);
    }
    check_trainer(m, true, false);
    check_trainer(m, true, true);
    check_trainer(m, false, true);
    check_engine(m);
    check_offload(m);
    qwen3_free(m);
    if (g_failures) {
        printf("%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
