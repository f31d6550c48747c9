/* bench_decode.c — inference engine throughput on random weights: prefill
 * tokens/s (one long prompt) and batched decode tokens/s (batch 1, 8, 32,
 * one token per sequence per step, sampled at temperature 1).
 *
 *   bench_decode [--config tiny|100m|all] [--steps N] [--prompt N] [--prefill N]
 *
 * Output, one line per measurement (bench_decode_torch.py parses it):
 *   config=100m threads=2 prefill_tokens=256 prefill_tok_s=1234.5
 *   config=100m threads=2 batch=8 context=32 steps=16 decode_tok_s=123.4
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/infer.h"
#include "model/qwen3.h"
#include "model/sample.h"

#include "bench_util.h"

typedef struct {
    const char *name;
    int V, C, I, L, NH, NKV, D;
    bool tied;
} BenchConfig;

/* tiny: the shape of the test fixtures, scaled up a little. 100m: Qwen3's
 * vocabulary and layer structure at ~100M parameters (78M of them in the
 * tied embedding / output head). */
static const BenchConfig k_configs[] = {
    {"tiny", 1024, 128, 384, 4, 4, 2, 32, false},
    {"100m", 151936, 512, 1536, 8, 8, 4, 64, true},
};

static Qwen3 *random_model(const BenchConfig *b) {
    Qwen3Config c = {.vocab_size = b->V, .hidden_size = b->C, .intermediate_size = b->I, .num_layers = b->L,
                     .num_heads = b->NH, .num_kv_heads = b->NKV, .head_dim = b->D, .rms_norm_eps = 1e-6f,
                     .rope_theta = 1000000.0, .tie_word_embeddings = b->tied, .max_position_embeddings = 4096,
                     .bos_token_id = -1, .eos_token_id = -1};
    Qwen3 *m = qwen3_new(&c);
    /* uniform weights with std 0.02 (parallel fill: the 100m model is 400 MB) */
    float a = 0.02f * sqrtf(3.0f);
#pragma omp parallel for
    for (long i = 0; i < (long)m->num_parameters; i++) {
        m->params_memory[i] = a * (float)(2.0 * rng_uniform(1, 0, (uint64_t)i) - 1.0);
    }
    float *ones[] = {m->params.ln1_w, m->params.ln2_w, m->params.q_norm_w, m->params.k_norm_w, m->params.norm_w};
    size_t counts[] = {(size_t)b->L * b->C, (size_t)b->L * b->C, (size_t)b->L * b->D, (size_t)b->L * b->D,
                       (size_t)b->C};
    for (int k = 0; k < 5; k++) {
        for (size_t i = 0; i < counts[k]; i++) ones[k][i] = 1.0f;
    }
    return m;
}

static InferEngine *new_engine(const Qwen3 *m, int tokens) {
    char err[512];
    InferOptions o = {.kv_tokens = tokens, .block_size = 16, .max_len = 4096};
    InferEngine *e = infer_new(m, &o, err, sizeof err);
    if (!e) die_runtime("%s", err);
    return e;
}

static void forward(InferEngine *e, const InferChunk *ch, int n, float *logits) {
    char err[512];
    if (infer_forward(e, ch, n, logits, err, sizeof err) != 0) die_runtime("%s", err);
}

static void bench_prefill(const BenchConfig *b, const Qwen3 *m, int P) {
    InferEngine *e = new_engine(m, P + 64);
    int32_t *toks = xmalloc((size_t)P * sizeof(int32_t));
    for (int i = 0; i < P; i++) toks[i] = (int32_t)(rng_uniform(2, 0, (uint64_t)i) * b->V);
    float *logits = xmalloc((size_t)b->V * sizeof(float));
    char err[256];
    /* warm-up (allocates scratch), then the timed prefill on a new sequence */
    int s = infer_seq_new(e, err, sizeof err);
    forward(e, &(InferChunk){s, toks, 32}, 1, logits);
    infer_seq_free(e, s);
    s = infer_seq_new(e, err, sizeof err);
    double t0 = now();
    forward(e, &(InferChunk){s, toks, P}, 1, logits);
    double dt = now() - t0;
    printf("config=%s threads=%d prefill_tokens=%d prefill_tok_s=%.1f\n", b->name, omp_get_max_threads(), P, P / dt);
    fflush(stdout);
    free(logits);
    free(toks);
    infer_free(e);
}

static void bench_decode(const BenchConfig *b, const Qwen3 *m, int B, int ctx, int steps) {
    InferEngine *e = new_engine(m, B * (ctx + steps + 32));
    char err[256];
    int *seq = xmalloc((size_t)B * sizeof(int));
    int32_t *prompt = xmalloc((size_t)ctx * sizeof(int32_t));
    int32_t *next = xmalloc((size_t)B * sizeof(int32_t));
    float *logits = xmalloc((size_t)B * b->V * sizeof(float));
    InferChunk *ch = xmalloc((size_t)B * sizeof(InferChunk));
    for (int i = 0; i < B; i++) {
        seq[i] = infer_seq_new(e, err, sizeof err);
        for (int t = 0; t < ctx; t++) prompt[t] = (int32_t)(rng_uniform(3, (uint64_t)i, (uint64_t)t) * b->V);
        forward(e, &(InferChunk){seq[i], prompt, ctx - 1}, 1, NULL);
        next[i] = prompt[ctx - 1];
    }
    SampleParams sp = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0};
    SampleScratch *scr = xcalloc((size_t)omp_get_max_threads(), sizeof(SampleScratch));
    double t0 = 0;
    for (int step = -1; step < steps; step++) { /* step -1: warm-up */
        if (step == 0) t0 = now();
        for (int i = 0; i < B; i++) ch[i] = (InferChunk){seq[i], &next[i], 1};
        forward(e, ch, B, logits);
#pragma omp parallel for
        for (int i = 0; i < B; i++) {
            double u = rng_uniform(4, (uint64_t)i, (uint64_t)infer_seq_len(e, seq[i]));
            next[i] = sample_token(logits + (size_t)i * b->V, b->V, &sp, u, &scr[omp_get_thread_num()], NULL);
        }
    }
    double dt = now() - t0;
    printf("config=%s threads=%d batch=%d context=%d steps=%d decode_tok_s=%.1f\n", b->name, omp_get_max_threads(),
           B, ctx, steps, (double)B * steps / dt);
    fflush(stdout);
    for (int i = 0; i < omp_get_max_threads(); i++) sample_scratch_free(&scr[i]);
    free(scr);
    free(ch);
    free(logits);
    free(next);
    free(prompt);
    free(seq);
    infer_free(e);
}

int main(int argc, char **argv) {
    const char *which = "all";
    int steps = 0, ctx = 64, prefill = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt")) ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefill")) prefill = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_decode [--config tiny|100m|all] [--steps N] [--prompt N] [--prefill N]\n");
            return 2;
        }
    }
    if (ctx < 2 || prefill < 32) die_input("bench_decode: --prompt must be >= 2 and --prefill >= 32");
    static const int batches[] = {1, 8, 32};
    for (size_t k = 0; k < sizeof k_configs / sizeof k_configs[0]; k++) {
        const BenchConfig *b = &k_configs[k];
        if (strcmp(which, "all") && strcmp(which, b->name)) continue;
        Qwen3 *m = random_model(b);
        printf("config=%s params=%zu V=%d C=%d I=%d L=%d NH=%d NKV=%d D=%d\n", b->name, m->num_parameters, b->V,
               b->C, b->I, b->L, b->NH, b->NKV, b->D);
        bench_prefill(b, m, prefill);
        for (int i = 0; i < 3; i++) {
            int st = steps > 0 ? steps : !strcmp(b->name, "tiny") ? 64 : batches[i] == 32 ? 8 : 16;
            bench_decode(b, m, batches[i], ctx, st);
        }
        qwen3_free(m);
    }
    return 0;
}
