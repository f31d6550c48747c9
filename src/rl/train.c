/* train.c — see train.h. */
#include "rl/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* A micro-batch: sequences packed end to end, positions shifted so that
 * position t carries token t+1's mask and rollout logprob. */
typedef struct {
    int T, n_seqs, cap_T, cap_seqs;
    int32_t *tokens, *targets, *seq_start; /* (T), (T), (n_seqs + 1) */
    float *mask, *old_logprob, *logprob, *entropy, *ref_logprob, *dlogprob, *dentropy; /* (T) */
    uint8_t *head_mask;                    /* (T) mask != 0: the rows that need the output head */
    double *advantage;                     /* (n_seqs) */
} Micro;

static void micro_reserve(Micro *mb, int T, int n_seqs) {
    if (T > mb->cap_T) {
        mb->cap_T = T;
        mb->tokens = xrealloc(mb->tokens, (size_t)T * sizeof(int32_t));
        mb->targets = xrealloc(mb->targets, (size_t)T * sizeof(int32_t));
        float **f[] = {&mb->mask, &mb->old_logprob, &mb->logprob, &mb->entropy, &mb->ref_logprob, &mb->dlogprob,
                       &mb->dentropy};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) *f[i] = xrealloc(*f[i], (size_t)T * sizeof(float));
        mb->head_mask = xrealloc(mb->head_mask, (size_t)T);
    }
    if (n_seqs > mb->cap_seqs) {
        mb->cap_seqs = n_seqs;
        mb->seq_start = xrealloc(mb->seq_start, (size_t)(n_seqs + 1) * sizeof(int32_t));
        mb->advantage = xrealloc(mb->advantage, (size_t)n_seqs * sizeof(double));
    }
}

static void micro_free(Micro *mb) {
    free(mb->tokens), free(mb->targets), free(mb->seq_start), free(mb->mask), free(mb->old_logprob);
    free(mb->logprob), free(mb->entropy), free(mb->ref_logprob), free(mb->dlogprob), free(mb->dentropy);
    free(mb->advantage), free(mb->head_mask);
}

int64_t train_seq_tokens(const TrainSeq *s) {
    int64_t n = s->n;
    while (n > 1 && !s->mask[n - 1]) n--;
    return n;
}

/* Pack seqs[idx[0..k)], sequence idx[i] cut to its first len[i] tokens
 * (train_seq_tokens), T tokens in all, into mb. */
static void micro_pack(Micro *mb, const TrainSeq *seqs, const int *idx, const int64_t *len, int k, int T) {
    micro_reserve(mb, T, k);
    mb->T = T, mb->n_seqs = k;
    int t = 0;
    mb->seq_start[0] = 0;
    for (int i = 0; i < k; i++) {
        const TrainSeq *s = &seqs[idx[i]];
        int64_t n = len[i];
        memcpy(mb->tokens + t, s->ids, (size_t)n * sizeof(int32_t));
        for (int64_t j = 0; j < n; j++) {
            bool last = j + 1 == n;
            mb->mask[t + j] = last ? 0.0f : (float)(s->mask[j + 1] != 0);
            mb->head_mask[t + j] = mb->mask[t + j] != 0.0f;
            mb->old_logprob[t + j] = last || !s->old_logprob ? 0.0f : s->old_logprob[j + 1];
        }
        mb->advantage[i] = s->advantage;
        t += (int)n;
        mb->seq_start[i + 1] = t;
    }
    qwen3_next_token_targets(mb->tokens, mb->seq_start, k, mb->targets);
}

/* This rank's sequences of the update, split into micro-batches of at most
 * max_tokens tokens (greedy, in order). Calls fn on each. */
typedef void (*MicroFn)(Micro *mb, void *ctx);

static int for_each_micro(const TrainSeq *seqs, int n, int dp_rank, int dp_size, int max_tokens, Micro *mb,
                          MicroFn fn, void *ctx) {
    int *idx = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    int64_t *len = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    int k = 0, count = 0;
    int64_t tokens = 0;
    for (int i = dp_rank; i < n; i += dp_size) {
        int64_t n_i = train_seq_tokens(&seqs[i]);
        if (k > 0 && tokens + n_i > max_tokens) {
            micro_pack(mb, seqs, idx, len, k, (int)tokens);
            fn(mb, ctx);
            count++;
            k = 0, tokens = 0;
        }
        idx[k] = i, len[k++] = n_i;
        tokens += n_i;
    }
    if (k > 0) {
        micro_pack(mb, seqs, idx, len, k, (int)tokens);
        fn(mb, ctx);
        count++;
    }
    free(len);
    free(idx);
    return count;
}

static Qwen3Batch micro_batch(const Micro *mb) {
    return (Qwen3Batch){.T = mb->T, .n_seqs = mb->n_seqs, .tokens = mb->tokens, .targets = mb->targets,
                        .seq_start = mb->seq_start, .head_mask = mb->head_mask};
}

static double sum_masked(const float *x, const float *mask, int T) {
    double s = 0;
    for (int t = 0; t < T; t++)
        if (mask[t] != 0.0f) s += x[t];
    return s;
}

/* ---------------------------------------------------------------- GRPO */

typedef struct {
    TrainDevice *m, *ref;
    const TrainOptions *o;
    double count; /* the update's N */
    GrpoMetrics sum;
    double entropy_sum;
    int64_t tokens, trained;
} GrpoCtx;

/* The head's gradient for the rows of one chunk (Qwen3HeadGradFn). */
static void grpo_head_grad(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy,
                           float *dlogprob, float *dentropy) {
    grpo_loss_rows(ctx, n, rows, logprob, dlogprob, dentropy);
}

/* One micro-batch: the head's backward runs inside the forward (no second
 * pass over the logits); grpo_loss then gives the metrics, with the
 * gradients the head already took. */
static void grpo_micro(Micro *mb, void *vctx) {
    GrpoCtx *c = vctx;
    Qwen3Batch b = micro_batch(mb);
    bool kl = c->o->loss.kl_coef != 0.0, with_dent = c->o->loss.entropy_coef != 0.0;
    if (kl) train_device_forward(c->ref, &b, mb->ref_logprob, mb->entropy);
    GrpoBatch gb = {.T = mb->T, .n_seqs = mb->n_seqs, .seq_start = mb->seq_start, .logprob = mb->logprob,
                    .old_logprob = mb->old_logprob, .ref_logprob = kl ? mb->ref_logprob : NULL,
                    .entropy = mb->entropy, .mask = mb->mask, .advantage = mb->advantage};
    GrpoRows *rows = grpo_rows_new(&c->o->loss, &gb, c->count);
    train_device_forward_head_grad(c->m, &b, mb->logprob, mb->entropy, grpo_head_grad, rows, with_dent);
    grpo_rows_free(rows);
    GrpoMetrics gm;
    grpo_loss(&c->o->loss, &gb, c->count, mb->dlogprob, with_dent ? mb->dentropy : NULL, &gm);
    train_device_backward(c->m, NULL, NULL);
    c->sum.loss += gm.loss, c->sum.pg_loss += gm.pg_loss, c->sum.pg_clipfrac += gm.pg_clipfrac;
    c->sum.ppo_kl += gm.ppo_kl, c->sum.kl_loss += gm.kl_loss, c->sum.entropy += gm.entropy;
    c->sum.logprob_abs_diff += gm.logprob_abs_diff, c->sum.n_tokens += gm.n_tokens;
    c->entropy_sum += sum_masked(mb->entropy, mb->mask, mb->T);
    c->tokens += mb->T;
    c->trained += gm.n_tokens;
}

/* The update's N (grpo.h) from the sequences alone: every rank knows them. */
static double grpo_update_count(const GrpoLossConfig *cfg, const TrainSeq *seqs, int n) {
    if (!cfg->per_token) return n;
    double N = 0;
    for (int i = 0; i < n; i++) {
        int64_t k = 0;
        for (int64_t j = 1; j < seqs[i].n; j++) k += seqs[i].mask[j] != 0;
        N += k > 0 ? (double)k : 1.0;
    }
    return N;
}

static void dp_sum(Comm *dp, double *v, size_t n) {
    if (dp && dp->size > 1) comm_allreduce_sum_f64(dp, v, n);
}

/* The gradients summed over the DP ranks, where they live (on a GPU: NCCL). */
static void dp_grads(TrainDevice *m, Comm *dp) {
    if (dp && dp->size > 1) train_device_allreduce_grads(m, dp);
}

void train_grpo_update(TrainDevice *m, TrainDevice *ref, Comm *dp, const TrainSeq *seqs, int n,
                       const TrainOptions *o, float lr, TrainReport *out) {
    if (o->loss.kl_coef != 0.0 && !ref) die_runtime("train_grpo_update: kl_coef %g needs a reference model", o->loss.kl_coef);
    int dp_rank = dp ? dp->rank : 0, dp_size = dp ? dp->size : 1;
    GrpoCtx c = {.m = m, .ref = ref, .o = o, .count = grpo_update_count(&o->loss, seqs, n)};
    Micro mb = {0};
    train_device_zero_grad(m);
    int k = for_each_micro(seqs, n, dp_rank, dp_size, o->max_tokens_per_gpu, &mb, grpo_micro, &c);
    micro_free(&mb);
    dp_grads(m, dp);
    double v[10] = {c.sum.loss, c.sum.pg_loss, c.sum.pg_clipfrac, c.sum.ppo_kl, c.sum.kl_loss, c.sum.entropy,
                    c.sum.logprob_abs_diff, (double)c.sum.n_tokens, c.entropy_sum, (double)c.tokens};
    dp_sum(dp, v, 10);
    memset(out, 0, sizeof *out);
    out->loss = v[0];
    out->grpo = (GrpoMetrics){.loss = v[0], .pg_loss = v[1], .pg_clipfrac = v[2], .ppo_kl = v[3], .kl_loss = v[4],
                              .entropy = v[5], .logprob_abs_diff = v[6], .n_tokens = (int64_t)v[7]};
    out->trained_tokens = (int64_t)v[7];
    out->entropy = v[7] > 0 ? v[8] / v[7] : 0.0;
    out->tokens = (int64_t)v[9];
    out->micro_batches = k;
    out->grad_norm = train_device_adamw_step(m, &o->adam, lr);
}

/* ---------------------------------------------------------------- SFT */

typedef struct {
    TrainDevice *m;
    double n_trained; /* masked tokens of the whole update */
    double nll_sum, entropy_sum;
    int64_t tokens, trained;
} SftCtx;

static void sft_micro(Micro *mb, void *vctx) {
    SftCtx *c = vctx;
    Qwen3Batch b = micro_batch(mb);
    /* -1 / n over the step's trained positions (all micro-batches and ranks) */
    Qwen3SftRows head = {mb->mask, c->n_trained > 0 ? (float)(-1.0 / c->n_trained) : 0.0f};
    train_device_forward_head_grad(c->m, &b, mb->logprob, mb->entropy, qwen3_sft_rows, &head, false);
    for (int t = 0; t < mb->T; t++) {
        if (mb->mask[t] != 0.0f) c->nll_sum -= mb->logprob[t], c->trained++;
    }
    c->entropy_sum += sum_masked(mb->entropy, mb->mask, mb->T);
    c->tokens += mb->T;
    train_device_backward(c->m, NULL, NULL);
}

void train_sft_update(TrainDevice *m, Comm *dp, const TrainSeq *seqs, int n, const TrainOptions *o, float lr,
                      TrainReport *out) {
    int dp_rank = dp ? dp->rank : 0, dp_size = dp ? dp->size : 1;
    SftCtx c = {.m = m};
    for (int i = 0; i < n; i++)
        for (int64_t j = 1; j < seqs[i].n; j++) c.n_trained += seqs[i].mask[j] != 0;
    Micro mb = {0};
    train_device_zero_grad(m);
    int k = for_each_micro(seqs, n, dp_rank, dp_size, o->max_tokens_per_gpu, &mb, sft_micro, &c);
    micro_free(&mb);
    dp_grads(m, dp);
    double v[4] = {c.nll_sum, c.entropy_sum, (double)c.tokens, (double)c.trained};
    dp_sum(dp, v, 4);
    memset(out, 0, sizeof *out);
    out->loss = v[3] > 0 ? v[0] / v[3] : 0.0;
    out->entropy = v[3] > 0 ? v[1] / v[3] : 0.0;
    out->tokens = (int64_t)v[2];
    out->trained_tokens = (int64_t)v[3];
    out->micro_batches = k;
    out->grad_norm = train_device_adamw_step(m, &o->adam, lr);
}
