/* grpo.h — the GRPO policy loss, group advantages and the dynamic-sampling
 * filter, written to give slime's numbers (slime/utils/ppo_utils.py
 * compute_policy_loss and compute_approx_kl; slime/backends/megatron_utils/
 * loss.py policy_loss_function; slime/ray/rollout.py _post_process_rewards).
 *
 * The loss works on one packed micro-batch laid out as qwen3_forward sees it:
 * trajectory s is positions [seq_start[s], seq_start[s+1]); per position the
 * current logprob (from the forward), the rollout ("old") logprob, optionally
 * the reference logprob and the entropy, and the loss mask (nonzero on agent
 * tokens). Per agent token t of trajectory s, with A = advantage[s]:
 *
 *   ρ_t   = exp(logπθ − logπold)
 *   pg_t  = max(−ρ_t·A, −clip(ρ_t, 1−ε_low, 1+ε_high)·A)
 *   kl_t  = k1: d | k2: d²/2 | k3: e^−d − 1 + d | low_var_kl: k3 clamped to
 *           [−10, 10]                     (d = logπθ − logπref)
 *   loss  = agg(pg) + β·agg(kl) − c_H·agg(H)
 *
 * agg is one of two reductions (slime's calculate_per_token_loss option):
 *
 *   per trajectory (default):  Σ_s [ Σ_{t∈s} x_t / max(n_s, 1) ] / N
 *                              N = trajectories in the whole step
 *   per token:                 Σ_s Σ_{t∈s} x_t / N
 *                              N = Σ_s max(n_s, 1) over the whole step
 *
 * where n_s is the number of agent tokens of trajectory s. A trajectory
 * without agent tokens adds nothing to the sum but still counts in N, as in
 * slime (clamp_min(mask.sum(), 1)).
 *
 * A step's batch is usually split into several micro-batches (and over data-
 * parallel ranks). N is the count over the whole step, so the caller passes
 * it (the sum of grpo_loss_count over every micro-batch of the step, all-
 * reduced over DP); then the losses, gradients and metrics of the micro-
 * batches simply add up to those of the step. N <= 0 means "this micro-batch
 * is the whole step".
 *
 * Gradients are what qwen3_backward takes: dloss/dlogprob[T] and
 * dloss/dentropy[T], zero at masked positions. Masked positions are never
 * read beyond their mask, so their logprobs may hold anything. At a tie
 * between the clipped and unclipped terms torch.maximum splits the gradient
 * in halves; both halves equal −ρ·A there, so the gradient is −ρ·A whenever
 * the clip is not active and 0 when it is. Clamped low_var_kl values pass no
 * gradient (torch.clamp).
 *
 * All sums are in double; inputs and gradients are float.
 */
#ifndef TAU2_RL_GRPO_H
#define TAU2_RL_GRPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GRPO_KL_K1,         /* d */
    GRPO_KL_K2,         /* d² / 2 */
    GRPO_KL_K3,         /* e^−d − 1 + d, unclamped */
    GRPO_KL_LOW_VAR_KL, /* k3 clamped to [−10, 10] (what slime's example scripts use) */
} GrpoKlType;

typedef struct {
    double eps_low;      /* ε_low, slime --eps-clip (0.2) */
    double eps_high;     /* ε_high, slime --eps-clip-high (0.28 here; slime: = eps_clip when unset) */
    double kl_coef;      /* β, slime --kl-loss-coef (0: no KL term) */
    GrpoKlType kl_type;  /* slime --kl-loss-type (low_var_kl here; slime's default is k1) */
    double entropy_coef; /* c_H, slime --entropy-coef (0) */
    bool per_token;      /* slime --calculate-per-token-loss (false) */
} GrpoLossConfig;

/* ε 0.2 / 0.28, β 0, low_var_kl, c_H 0, per-trajectory aggregation. */
void grpo_loss_config_default(GrpoLossConfig *cfg);

/* "k1", "k2", "k3", "low_var_kl" -> *out; -1 for any other name. */
int grpo_kl_type_parse(const char *name, GrpoKlType *out);
const char *grpo_kl_type_name(GrpoKlType t);

/* One packed micro-batch (pointers borrowed). */
typedef struct {
    int T;                     /* positions */
    int n_seqs;                /* trajectories */
    const int32_t *seq_start;  /* (n_seqs + 1): 0 = seq_start[0] <= ... <= seq_start[n_seqs] = T */
    const float *logprob;      /* (T) logπθ from qwen3_forward */
    const float *old_logprob;  /* (T) logπold, the rollout logprobs */
    const float *ref_logprob;  /* (T) logπref, or NULL (then kl_coef must be 0) */
    const float *entropy;      /* (T) H from qwen3_forward, or NULL (then entropy_coef must be 0) */
    const float *mask;         /* (T) nonzero on agent tokens */
    const double *advantage;   /* (n_seqs) A of each trajectory */
} GrpoBatch;

/* Each metric is this micro-batch's share of the step's value, reduced like
 * the loss (same aggregation, same N): sums over micro-batches (and DP
 * ranks) give the step's value. */
typedef struct {
    double loss;        /* the total, = pg_loss + β·kl_loss − c_H·entropy */
    double pg_loss;     /* agg(pg_t) */
    double pg_clipfrac; /* agg(1 where the clip is active: −clip(ρ)·A > −ρ·A) */
    double ppo_kl;      /* agg(logπold − logπθ), slime's approximate KL to the old policy */
    double kl_loss;     /* agg(kl_t) to the reference (0 when ref_logprob is NULL) */
    double entropy;     /* agg(H_t) (0 when entropy is NULL) */
    double logprob_abs_diff; /* agg(|logπθ − logπold|), trainer/rollout mismatch */
    int64_t n_tokens;   /* agent tokens in this micro-batch */
} GrpoMetrics;

/* This micro-batch's part of the step's N: its trajectories (per
 * trajectory) or Σ max(n_s, 1) (per token). */
double grpo_loss_count(const GrpoLossConfig *cfg, const GrpoBatch *b);

/* Check a batch's sizes and pointers against the config; -1 with err
 * naming the problem. */
int grpo_check_batch(const GrpoLossConfig *cfg, const GrpoBatch *b, char *err, size_t errlen);

/* The loss of one micro-batch (its share of the step, see above) and its
 * gradients: dlogprob (T) and dentropy (T, may be NULL) are overwritten.
 * count is the step's N (<= 0: grpo_loss_count of this batch). metrics may
 * be NULL. The batch must pass grpo_check_batch (a bad one is a bug:
 * die_runtime). Returns metrics->loss. */
double grpo_loss(const GrpoLossConfig *cfg, const GrpoBatch *b, double count, float *dlogprob /* (T) */,
                 float *dentropy /* (T) or NULL */, GrpoMetrics *metrics);

/* grpo_loss's gradients for single positions, as the output head produces
 * their logprobs (qwen3_forward_head_grad): the per-trajectory weights and
 * each position's trajectory, computed once per micro-batch. The batch is
 * borrowed (its arrays must outlive this); its logprob array is not read
 * (the rows' logprobs are passed in). */
typedef struct {
    GrpoLossConfig cfg;
    GrpoBatch b;
    double *weight;  /* (n_seqs) weight of one agent token of trajectory s */
    int32_t *seq_of; /* (T) trajectory of each position */
} GrpoRows;

GrpoRows *grpo_rows_new(const GrpoLossConfig *cfg, const GrpoBatch *b, double count);
void grpo_rows_free(GrpoRows *r);
/* dlogprob[i] (and dentropy[i] when not NULL) at position rows[i], whose
 * logprob is logprob[i]: the bits grpo_loss gives there. */
void grpo_loss_rows(const GrpoRows *r, int n, const int32_t *rows /* (n) */, const float *logprob /* (n) */,
                    float *dlogprob /* (n) */, float *dentropy /* (n) or NULL */);

/* ------------------------------------------------------------ advantages */

/* GRPO advantages: within each group g (episodes [group_start[g],
 * group_start[g+1])), A_i = r_i − mean(r), then, with divide_by_std (slime's
 * --grpo-std-normalization, on by default), A_i /= (std(r) + 1e-6) with the
 * sample standard deviation (n − 1 in the denominator: torch.std's default,
 * which slime uses). A group of one episode gets A = 0 (torch would give
 * NaN). Groups may differ in size. Computed in double (slime: float32). */
void grpo_group_advantages(const double *reward /* (n) */, const int32_t *group_start /* (n_groups + 1) */,
                           int n_groups, bool divide_by_std, double *advantage /* (n) */);

/* The dynamic-sampling filter on one group's RAW rewards (never the shaped
 * ones): true to keep it. slime's check_reward_nonzero_std: keep when the
 * sample std (double) is > 1e-6; for binary rewards that is "not all equal".
 * A group of 0 or 1 episodes is dropped. */
bool grpo_group_keep(const double *raw_reward, int n);

#endif
