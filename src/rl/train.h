/* train.h — one optimizer update of the policy from a list of sequences:
 * GRPO (rollout episodes with advantages) or SFT (teacher conversations).
 *
 * An update's sequences are spread over the data-parallel ranks (sequence i
 * of the update goes to DP rank i % dp), each rank packs its share into
 * micro-batches of at most max_tokens_per_gpu tokens (a longer sequence is a
 * micro-batch of its own), runs forward, loss and backward on each, adding
 * into the gradients; then the gradients are summed over DP and AdamW steps.
 * Every loss is normalized by a count over the whole update (grpo.h), so
 * the micro-batch and DP split does not change the update beyond float
 * rounding.
 *
 * Positions: a sequence's logprob at position t is that of token t+1, so
 * token t+1's loss mask and rollout logprob go with position t.
 */
#ifndef TAU2_RL_TRAIN_H
#define TAU2_RL_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "comm/comm.h"
#include "model/qwen3.h"
#include "model/train_device.h"
#include "rl/grpo.h"

/* One sequence (borrowed arrays). */
typedef struct {
    const int32_t *ids;        /* (n) */
    const uint8_t *mask;       /* (n) 1 on tokens trained on */
    const float *old_logprob;  /* (n) rollout logprob of each token (GRPO), or NULL (SFT) */
    int64_t n;
    double advantage;          /* GRPO */
} TrainSeq;

/* The tokens of s an update runs: up to its last trained token (at least
 * one). The tokens after it (an episode's last tool results and user turn,
 * mask 0) change no trained token's logprob in a causal model, so they are
 * left out of the micro-batches. */
int64_t train_seq_tokens(const TrainSeq *s);

typedef struct {
    GrpoLossConfig loss;
    Qwen3AdamW adam;
    int max_tokens_per_gpu;
} TrainOptions;

/* What an update reports: sums over the update, already reduced over DP. */
typedef struct {
    double loss;          /* GRPO: the total loss; SFT: mean −logprob per trained token */
    GrpoMetrics grpo;     /* GRPO's parts (pg_loss, pg_clipfrac, ppo_kl, kl_loss, entropy, ...) */
    double entropy;       /* mean entropy over trained tokens (both kinds) */
    double grad_norm;     /* before clipping */
    int64_t tokens;       /* all tokens of the update */
    int64_t trained_tokens;
    int micro_batches;    /* on this rank */
} TrainReport;

/* A GRPO update over seqs[0, n) (the whole update, identical on every
 * rank), run on the policy's train device m. ref (may be NULL when
 * loss.kl_coef == 0) is the frozen reference policy's device, with the same
 * sharding. lr is this update's learning rate. */
void train_grpo_update(TrainDevice *m, TrainDevice *ref, Comm *dp, const TrainSeq *seqs, int n,
                       const TrainOptions *o, float lr, TrainReport *out);

/* An SFT update: mean −logprob over every masked token of seqs[0, n). */
void train_sft_update(TrainDevice *m, Comm *dp, const TrainSeq *seqs, int n, const TrainOptions *o, float lr,
                      TrainReport *out);

#endif
