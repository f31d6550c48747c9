/* bench_train_common.h — what the training benchmarks share (header only,
 * each benchmark is one program): the named model configs, random weights
 * and the fixed batch. bench_train_torch.py has the same config table for
 * tiny and 100m. */
#ifndef TAU2_BENCH_TRAIN_COMMON_H
#define TAU2_BENCH_TRAIN_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/qwen3.h"

/* 0 and *c filled for a known name, else -1. */
static inline int bench_config_named(const char *name, Qwen3Config *c) {
    memset(c, 0, sizeof *c);
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 1e6;
    c->max_position_embeddings = 40960;
    c->bos_token_id = c->eos_token_id = -1;
    c->tie_word_embeddings = true;
    if (!strcmp(name, "tiny")) { /* a CI-sized model: ~1.2M parameters */
        c->vocab_size = 4096, c->hidden_size = 128, c->intermediate_size = 384, c->num_layers = 4;
        c->num_heads = 4, c->num_kv_heads = 2, c->head_dim = 32;
        return 0;
    }
    if (!strcmp(name, "100m")) { /* ~100M parameters, Qwen3 proportions */
        c->vocab_size = 32000, c->hidden_size = 768, c->intermediate_size = 2048, c->num_layers = 12;
        c->num_heads = 12, c->num_kv_heads = 4, c->head_dim = 64;
        return 0;
    }
    if (!strcmp(name, "4b")) { /* Qwen3-4B's shape */
        c->vocab_size = 151936, c->hidden_size = 2560, c->intermediate_size = 9728, c->num_layers = 36;
        c->num_heads = 32, c->num_kv_heads = 8, c->head_dim = 128;
        return 0;
    }
    return -1;
}

/* p[0, n) uniform in [-scale/2, scale/2) from a fixed LCG started at seed. */
static inline void bench_fill_uniform(float *p, size_t n, uint64_t seed, float scale) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * scale;
    }
}

/* Small uniform weights (norm weights 1): the speed does not depend on the
 * values. */
static inline void bench_init_weights(Qwen3 *m) {
    bench_fill_uniform(m->params_memory, m->num_parameters, 42, 0.04f);
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        if (t->ndim == 1)
            for (size_t j = 0; j < t->numel; j++) m->params_memory[t->offset + j] = 1.0f;
    }
}

/* n_seqs sequences of seq_len tokens from a fixed formula, every position in
 * the loss; the step's output buffers too. */
typedef struct {
    int T;
    int32_t *tokens, *targets, *seq_start; /* (T), (T), (n_seqs + 1) */
    float *logprob, *entropy, *mask, *dlogprob; /* (T) each */
    Qwen3Batch batch;
} BenchBatch;

static inline BenchBatch bench_batch_new(int n_seqs, int seq_len, int vocab_size) {
    BenchBatch b;
    int T = b.T = n_seqs * seq_len;
    b.tokens = malloc(T * sizeof *b.tokens);
    b.targets = malloc(T * sizeof *b.targets);
    b.seq_start = malloc((n_seqs + 1) * sizeof *b.seq_start);
    b.logprob = malloc(T * sizeof(float));
    b.entropy = malloc(T * sizeof(float));
    b.mask = malloc(T * sizeof(float));
    b.dlogprob = malloc(T * sizeof(float));
    for (int t = 0; t < T; t++) {
        b.tokens[t] = (int32_t)((t * 7919u + 13u) % (unsigned)vocab_size);
        b.mask[t] = 1.0f;
    }
    for (int s = 0; s <= n_seqs; s++) b.seq_start[s] = s * seq_len;
    qwen3_next_token_targets(b.tokens, b.seq_start, n_seqs, b.targets);
    b.batch = (Qwen3Batch){T, n_seqs, b.tokens, b.targets, b.seq_start, NULL};
    return b;
}

static inline void bench_batch_free(BenchBatch *b) {
    free(b->tokens), free(b->targets), free(b->seq_start);
    free(b->logprob), free(b->entropy), free(b->mask), free(b->dlogprob);
}

#endif
