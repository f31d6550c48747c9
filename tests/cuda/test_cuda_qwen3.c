/* test_cuda_qwen3.c — the GPU training step (qwen3_gpu.c) against the CPU
 * engine (qwen3.c) on small models with random weights: logprobs and
 * entropies of a packed batch with a head mask and several head chunks, every
 * parameter's gradient (with an entropy term in the loss), and the weights
 * after two AdamW steps with clipping; then a step of two micro-batches (a
 * smaller batch first, in the arena sized for the larger, without the
 * entropy term), AdamW's moments and step count brought back, and a fresh
 * engine resumed from the CPU's weights and moments taking a fourth step
 * with gradients sent to the host and back (what train_device.c does).
 * Each in fp32 and bf16 math; two of them again with activation
 * recomputation on the GPU.
 *
 * Two models: tied embeddings with a vocabulary that is not a multiple of
 * anything (1003), and an untied head; both with 4 query heads over 2 kv
 * heads, 3 sequences of odd lengths, a head mask that leaves out each
 * sequence's first tokens (the gather path) and 32-row head chunks.
 *
 * Errors are relative to the reference's largest magnitude, per tensor:
 *   err = max_i |gpu_i - cpu_i| / max_i |cpu_i|
 * Tolerances:
 *   fp32 products: 1e-4 for logprobs and entropies, 1e-3 for gradients and
 *     AdamW's m (long sums in another order, attention's online softmax),
 *     2e-3 for v (quadratic in the gradient)
 *   bf16 products: 1e-2 for logprobs and entropies (the bound for
 *     bf16 compute), 5e-2 for gradients and m, 1e-1 for v (the bf16
 *     roundings of 2-3 layers of products: up to 3.3e-2 measured under the
 *     CPU emulation of tests/cuda_emu)
 * Weights after AdamW steps are compared in units of the learning rate:
 *   err = max_i |gpu_i - cpu_i| / (lr x steps taken since they agreed).
 * AdamW moves every element by about lr per step whatever its gradient's
 * size, so an element whose gradient is at rounding level (the first
 * token's dq, a norm weight's tiny gradient) moves by +lr on one engine and
 * -lr on the other: relative to the weights that is noise, in units of lr it
 * is bounded. fp32: 0.25 (measured 0.06: only rounding-level gradients
 * differ, and a missing or doubled update is 1); bf16: 2.5, a bound only
 * (a gradient below the products' rounding, 5e-2 of the tensor's largest,
 * may take either sign: up to 1.9 measured; the fp32 runs check the same
 * bookkeeping tightly, and a wrong tensor or a lost step is far outside).
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
#include "model/qwen3.h"
#include "model/qwen3_gpu.h"

#include "cuda_test_compare.h"
#include "cuda_test_util.h"

typedef struct {
    int T, n_seqs;
    int32_t *tokens, *targets, *seq_start;
    uint8_t *head_mask;
    float *mask, *dlogprob, *dentropy;
} Batch;

static Batch batch_new(const int *lens, int n, int V) {
    Batch b = {0};
    b.n_seqs = n;
    for (int s = 0; s < n; s++) b.T += lens[s];
    b.tokens = xmalloc((size_t)b.T * sizeof(int32_t));
    b.targets = xmalloc((size_t)b.T * sizeof(int32_t));
    b.seq_start = xmalloc((size_t)(n + 1) * sizeof(int32_t));
    b.head_mask = xmalloc((size_t)b.T);
    b.mask = xmalloc((size_t)b.T * sizeof(float));
    b.dlogprob = xmalloc((size_t)b.T * sizeof(float));
    b.dentropy = xmalloc((size_t)b.T * sizeof(float));
    int t = 0;
    for (int s = 0; s < n; s++) {
        b.seq_start[s] = t;
        for (int i = 0; i < lens[s]; i++, t++) {
            b.tokens[t] = (int32_t)(rnd_u32() % (uint32_t)V);
            b.head_mask[t] = i >= 4; /* a prompt of 4 tokens without the head */
        }
    }
    b.seq_start[n] = b.T;
    qwen3_next_token_targets(b.tokens, b.seq_start, n, b.targets);
    for (t = 0; t < b.T; t++) {
        b.mask[t] = b.head_mask[t] && b.targets[t] >= 0 ? 1.0f : 0.0f;
        b.dentropy[t] = b.head_mask[t] ? -0.01f : 0.0f; /* an entropy bonus */
    }
    return b;
}

static void batch_free(Batch *b) {
    free(b->tokens), free(b->targets), free(b->seq_start), free(b->head_mask);
    free(b->mask), free(b->dlogprob), free(b->dentropy);
}

/* The shared random model, in head chunks of 32 rows (several per batch). */
static Qwen3 *random_model_chunked(const Qwen3Config *cfg) {
    Qwen3 *m = random_model(cfg);
    m->vocab_chunk = 32;
    return m;
}

/* Forward, loss and backward of one micro-batch, adding into the gradients;
 * with_dent: the entropy bonus too. */
static void cpu_micro(Qwen3 *m, Batch *b, bool with_dent, float *lp, float *ent) {
    Qwen3Batch qb = {b->T, b->n_seqs, b->tokens, b->targets, b->seq_start, b->head_mask};
    qwen3_forward(m, &qb, lp, ent);
    qwen3_sft_loss(lp, b->mask, b->T, b->dlogprob);
    qwen3_backward(m, b->dlogprob, with_dent ? b->dentropy : NULL);
}

static void gpu_micro(Qwen3Gpu *g, Batch *b, bool with_dent, float *lp, float *ent) {
    Qwen3Batch qb = {b->T, b->n_seqs, b->tokens, b->targets, b->seq_start, b->head_mask};
    qwen3_gpu_forward(g, &qb, lp, ent);
    qwen3_sft_loss(lp, b->mask, b->T, b->dlogprob);
    qwen3_gpu_backward(g, b->dlogprob, with_dent ? b->dentropy : NULL);
}

/* One training step (one micro-batch with the entropy bonus) on the CPU
 * engine; fills logprob, entropy; returns the grad norm. */
static float cpu_step(Qwen3 *m, Batch *b, const Qwen3AdamW *opt, float *lp, float *ent, float *grads_out) {
    qwen3_zero_grad(m);
    cpu_micro(m, b, true, lp, ent);
    if (grads_out) memcpy(grads_out, m->grads_memory, m->num_parameters * sizeof(float));
    return qwen3_adamw_step(m, opt, 1e-3f);
}

static float gpu_step(Qwen3Gpu *g, Batch *b, const Qwen3AdamW *opt, float *lp, float *ent, float *grads_out) {
    qwen3_gpu_zero_grad(g);
    gpu_micro(g, b, true, lp, ent);
    if (grads_out) qwen3_gpu_download_grads(g, grads_out);
    return qwen3_gpu_adamw_step(g, opt, 1e-3f);
}

/* The head's backward inside the forward (qwen3_gpu_forward_head_grad):
 * the SFT loss's gradient and the entropy bonus given chunk by chunk (the
 * batch's dlogprob rows, which depend on the mask only) against the
 * two-call step on the same GPU and weights. Same logits, so the same
 * per-row gradients; the head's weight gradient adds its chunks in the
 * other order (first to last instead of last to first): 1e-6. */
static void sft_rows(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy, float *dlogprob,
                     float *dentropy) {
    const Batch *b = ctx;
    (void)logprob, (void)entropy;
    for (int r = 0; r < n; r++) {
        dlogprob[r] = b->dlogprob[rows[r]];
        if (dentropy) dentropy[r] = b->dentropy[rows[r]];
    }
}

static void test_forward_head_grad(const char *name, const Qwen3Config *cfg, Qwen3GpuMath math) {
    bool f32 = math == QWEN3_GPU_F32;
    char model[40];
    snprintf(model, sizeof model, "%s/%s", name, f32 ? "f32" : "bf16");
    Qwen3 *host = random_model_chunked(cfg);
    Qwen3Gpu *gpu = qwen3_gpu_new(host, 0, math);
    int lens[3] = {23, 17, 30};
    Batch b = batch_new(lens, 3, cfg->vocab_size);
    size_t n = host->num_parameters, T = (size_t)b.T;
    float *lp_a = xmalloc(T * sizeof(float)), *ent_a = xmalloc(T * sizeof(float));
    float *lp_b = xmalloc(T * sizeof(float)), *ent_b = xmalloc(T * sizeof(float));
    float *gr_a = xmalloc(n * sizeof(float)), *gr_b = xmalloc(n * sizeof(float));
    Qwen3Batch qb = {b.T, b.n_seqs, b.tokens, b.targets, b.seq_start, b.head_mask};

    qwen3_gpu_zero_grad(gpu);
    gpu_micro(gpu, &b, true, lp_a, ent_a); /* leaves the SFT gradient in b.dlogprob */
    qwen3_gpu_download_grads(gpu, gr_a);
    qwen3_gpu_zero_grad(gpu);
    qwen3_gpu_forward_head_grad(gpu, &qb, lp_b, ent_b, sft_rows, &b, true);
    qwen3_gpu_backward(gpu, NULL, NULL);
    qwen3_gpu_download_grads(gpu, gr_b);
    check(model, "fused head: logprob", lp_b, lp_a, T, 0.0);
    check(model, "fused head: entropy", ent_b, ent_a, T, 0.0);
    check_tensors(host, model, "fused head: grad", gr_b, gr_a, 1e-6);

    free(lp_a), free(ent_a), free(lp_b), free(ent_b), free(gr_a), free(gr_b);
    batch_free(&b);
    qwen3_gpu_free(gpu);
    qwen3_free(host);
}

/* recompute: the GPU engine keeps one layer's activations and runs each
 * layer again in backward (the CPU reference keeps them all: the CPU's
 * recomputation is bit-identical, test_qwen3 checks that). */
static void test_model(const char *name, const Qwen3Config *cfg, Qwen3GpuMath math, bool recompute) {
    bool f32 = math == QWEN3_GPU_F32;
    double tol_out = f32 ? 1e-4 : 1e-2, tol_grad = f32 ? 1e-3 : 5e-2, tol_w = f32 ? 0.25 : 2.5;
    const float lr = 1e-3f; /* cpu_step and gpu_step's */
    char model[40];
    snprintf(model, sizeof model, "%s/%s%s", name, f32 ? "f32" : "bf16", recompute ? "/rc" : "");

    uint64_t seed = g_rng;
    Qwen3 *cpu = random_model_chunked(cfg);
    g_rng = seed;
    Qwen3 *host = random_model_chunked(cfg); /* the GPU engine's host model: the same weights */
    host->recompute = recompute;
    Qwen3Gpu *gpu = qwen3_gpu_new(host, 0, math);

    int lens[3] = {23, 17, 30};
    Batch b = batch_new(lens, 3, cfg->vocab_size);
    size_t n = cpu->num_parameters, T = (size_t)b.T;
    float *lp_c = xmalloc(T * sizeof(float)), *ent_c = xmalloc(T * sizeof(float));
    float *lp_g = xmalloc(T * sizeof(float)), *ent_g = xmalloc(T * sizeof(float));
    float *gr_c = xmalloc(n * sizeof(float)), *gr_g = xmalloc(n * sizeof(float));
    Qwen3AdamW opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, false};

    float norm_c = cpu_step(cpu, &b, &opt, lp_c, ent_c, gr_c);
    float norm_g = gpu_step(gpu, &b, &opt, lp_g, ent_g, gr_g);
    check(model, "logprob", lp_g, lp_c, T, tol_out);
    check(model, "entropy", ent_g, ent_c, T, tol_out);
    check_tensors(cpu, model, "grad", gr_g, gr_c, tol_grad);
    check(model, "grad norm", &norm_g, &norm_c, 1, tol_grad);

    cpu_step(cpu, &b, &opt, lp_c, ent_c, NULL);
    gpu_step(gpu, &b, &opt, lp_g, ent_g, NULL);
    check(model, "logprob after one step", lp_g, lp_c, T, tol_out);
    float *w_g = xmalloc(n * sizeof(float));
    qwen3_gpu_download_params(gpu, w_g);
    check_weights(cpu, model, "weights after 2 steps", w_g, cpu->params_memory, lr, 2, tol_w);

    /* Step 3: two micro-batches before one update, a smaller batch first
     * (the arena is reused at fewer tokens) without the entropy term. */
    int lens_small[2] = {9, 12};
    Batch bs = batch_new(lens_small, 2, cfg->vocab_size);
    qwen3_zero_grad(cpu);
    cpu_micro(cpu, &bs, false, lp_c, ent_c);
    qwen3_gpu_zero_grad(gpu);
    gpu_micro(gpu, &bs, false, lp_g, ent_g);
    check(model, "logprob of a smaller second batch", lp_g, lp_c, (size_t)bs.T, tol_out);
    cpu_micro(cpu, &b, true, lp_c, ent_c);
    gpu_micro(gpu, &b, true, lp_g, ent_g);
    qwen3_gpu_download_grads(gpu, gr_g);
    check_tensors(cpu, model, "grad of two micro-batches", gr_g, cpu->grads_memory, tol_grad);
    qwen3_adamw_step(cpu, &opt, lr);
    qwen3_gpu_adamw_step(gpu, &opt, lr);
    qwen3_gpu_download_params(gpu, w_g);
    check_weights(cpu, model, "weights after 3 steps", w_g, cpu->params_memory, lr, 3, tol_w);

    /* AdamW's state comes back, and a fresh engine resumes from the CPU's
     * (weights, moments, step count) with gradients that went to the host
     * and back (the data-parallel sum's round trip). */
    float *m_g = xmalloc(n * sizeof(float)), *v_g = xmalloc(n * sizeof(float));
    int step_g = -1;
    bool have = qwen3_gpu_download_moments(gpu, m_g, v_g, &step_g);
    float fstep_g = (float)step_g, fstep_c = (float)cpu->adam_step;
    check(model, "adam step count", &fstep_g, &fstep_c, 1, 0.0);
    if (!have) printf("FAIL %-12s no moments after 3 steps\n", model), g_failures++;
    check_tensors(cpu, model, "AdamW m after 3 steps", m_g, cpu->m_memory, tol_grad);
    check_tensors(cpu, model, "AdamW v after 3 steps", v_g, cpu->v_memory, 2 * tol_grad);
    Qwen3Gpu *fresh = qwen3_gpu_new(host, 0, math);
    qwen3_gpu_upload_params(fresh, cpu->params_memory);
    qwen3_gpu_upload_moments(fresh, cpu->m_memory, cpu->v_memory, cpu->adam_step);
    qwen3_zero_grad(cpu);
    cpu_micro(cpu, &b, true, lp_c, ent_c);
    qwen3_adamw_step(cpu, &opt, lr);
    qwen3_gpu_zero_grad(fresh);
    gpu_micro(fresh, &b, true, lp_g, ent_g);
    qwen3_gpu_download_grads(fresh, gr_g);
    qwen3_gpu_zero_grad(fresh); /* only the round trip can bring them back */
    qwen3_gpu_upload_grads(fresh, gr_g);
    qwen3_gpu_adamw_step(fresh, &opt, lr);
    qwen3_gpu_download_params(fresh, w_g);
    check_weights(cpu, model, "weights after a resumed 4th step", w_g, cpu->params_memory, lr, 1, tol_w);
    qwen3_gpu_free(fresh);

    free(m_g), free(v_g);
    batch_free(&bs);
    free(w_g);
    free(lp_c), free(ent_c), free(lp_g), free(ent_g), free(gr_c), free(gr_g);
    batch_free(&b);
    qwen3_gpu_free(gpu);
    qwen3_free(host);
    qwen3_free(cpu);
}

int main(void) {
    if (!cuda_test_device()) return 77;
    Qwen3Config tied = small_tied_config();
    Qwen3Config untied = tied;
    untied.tie_word_embeddings = false;
    untied.num_layers = 3;
    untied.head_dim = 32;

    test_model("tied", &tied, QWEN3_GPU_F32, false);
    test_model("untied", &untied, QWEN3_GPU_F32, false);
    test_model("tied", &tied, QWEN3_GPU_BF16, false);
    test_model("untied", &untied, QWEN3_GPU_BF16, false);
    test_model("untied", &untied, QWEN3_GPU_F32, true);
    test_model("tied", &tied, QWEN3_GPU_BF16, true);
    test_forward_head_grad("tied", &tied, QWEN3_GPU_F32);
    test_forward_head_grad("untied", &untied, QWEN3_GPU_BF16);

    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "passed", g_failures);
    return g_failures ? 1 : 0;
}
