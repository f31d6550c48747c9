/* evaluate.h — τ²-bench's reward for one episode, with its breakdown, and
 * the partial-credit score used for reward shaping (DESIGN.md §4).
 *
 * Reward: 0 when the episode did not end by a user or agent stop; otherwise
 * the product over the task's reward_basis of the 0/1 components DB,
 * ENV_ASSERTION, ACTION, COMMUNICATE and NL_ASSERTION. NL assertions need
 * a judge; without one a basis that contains NL_ASSERTION is evaluated on
 * its other components and the result says NL_ASSERTION was not judged
 * (never that it was met). */
#ifndef TAU2_EVALUATE_H
#define TAU2_EVALUATE_H

#include <stdbool.h>

#include <cJSON.h>

#include "tau2/env.h"
#include "tau2/episode.h"

typedef struct {
    double w_action, w_comm, w_env; /* component weights */
    double alpha;                   /* shaped = reward + alpha * partial */
} PartialCreditWeights;

/* The defaults of DESIGN.md §4 (telecom has its own). */
void partial_credit_defaults(const char *domain, PartialCreditWeights *w);

/* An NL-assertion judge: fill *checks with a JSON array of
 * {"nl_assertion", "met", "justification"}. Returns 0, or -1 when the judge
 * could not answer (an infrastructure error). */
typedef int (*NlJudgeFn)(void *ctx, const cJSON *task, const cJSON *messages, cJSON **checks, char *err,
                         size_t errlen);

typedef struct {
    PartialCreditWeights weights;
    NlJudgeFn judge; /* NULL: NL assertions are not judged */
    void *judge_ctx;
    bool strict_replay; /* live episodes: true; re-grading edited trajectories: false */
} EvalOptions;

void eval_options_default(const char *domain, EvalOptions *o);

typedef struct {
    double reward;  /* τ²-bench's binary task reward */
    double partial; /* partial credit in [0, 1] */
    double shaped;  /* reward + alpha * partial */
    bool nl_not_judged;
    bool infrastructure_error;
    cJSON *info; /* RewardInfo JSON plus "partial_credit" (owned) */
} Evaluation;

/* Evaluate an episode's messages (the full trajectory, including the task's
 * message history) that ended with `term`. Returns 0; fills *out. */
int evaluate_episode(const Domain *d, const cJSON *task, const cJSON *messages, Termination term,
                     const EvalOptions *opt, Evaluation *out);
void evaluation_free(Evaluation *e);

#endif
