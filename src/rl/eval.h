/* eval.h — evaluation of a policy on τ²-bench datasets: the eval job
 * (`"job": "eval"`) and the periodic evaluation of a training run
 * (eval_interval) run this same code (doc/eval.md).
 *
 * A dataset is a prepared JSONL file (optionally a row slice) whose rows
 * resolve to tasks with the dataset's metadata_overrides; each task is
 * played n_samples_per_eval_prompt times with the policy as the agent,
 * through the rollout (rl/rollout.h) with the conversations kept.
 *
 * Work is spread over the engines of a communicator in rounds; after each
 * round the rank with rank 0 appends every finished task (its n episodes,
 * one JSON line) to eval/<tag>/episodes.jsonl. A rerun of the same
 * evaluation skips the tasks that file holds, so a killed evaluation
 * resumes, and because an episode's tokens depend only on the weights, the
 * task and its seed stream (never on which engine ran it), the result is
 * the one an uninterrupted run gives.
 *
 * At the end, rank 0 writes per dataset results.json (the recipe's
 * evaluate_tau2.py fields plus pass@k and pass^k) and trajectories.jsonl,
 * and returns the metrics row (eval/<name>, eval/<name>-pass@k, ...).
 * Episodes that ended as infrastructure_error are counted and left out of
 * every rate.
 */
#ifndef TAU2_RL_EVAL_H
#define TAU2_RL_EVAL_H

#include <stdint.h>

#include <cJSON.h>

#include "comm/comm.h"
#include "rl/job_config.h"
#include "rl/prompts.h"
#include "rl/rollout.h"
#include "rl/user_routes.h"

typedef struct {
    const EvalDataset *ds; /* borrowed from the config */
    PromptSet *rows;       /* its rows, resolved (row order; the slice applied) */
    RolloutUser user;      /* who plays the customer for this dataset */
    UserRoutes routes;     /* api user: the models of each row (row, then overrides, then config) */
    RolloutOptions opt;    /* sampling, budget, seed of this dataset */
} EvalDatasetRun;

typedef struct {
    EvalDatasetRun *sets;
    int n_sets;
    UserEndpoints eps; /* api users: one per distinct (base_url, model, key var) over every dataset's rows */
    LlmClient *client; /* with those endpoints; engines only */
    int round_episodes; /* per engine per round */
} EvalSet;

/* Load and resolve every dataset of cfg (exit 2 naming the config, the
 * dataset and the row on any error: a domain or split that neither the rows
 * nor the overrides give, an unknown task). base is the rollout options of
 * the job (reward weights, turn length, KV budget) and user the job's user;
 * an api user gets a client on engine ranks (engine true), with the
 * response cache in cache_dir (NULL: none), and one endpoint per distinct
 * model of the rows (a row's metadata, else the dataset's overrides, else
 * the config: rl/user_routes.h). A "local" user (the user-simulator ranks
 * over MPI) keeps the client and endpoint user already has. */
EvalSet *eval_set_load(const JobConfig *cfg, const char *data_dir, const RolloutOptions *base,
                       const RolloutUser *user, bool engine, const char *cache_dir);
void eval_set_free(EvalSet *es);

/* The engine options of the largest rollout call one engine makes in
 * eval_run (rollout_engine_options): the most KV tokens (rollout_kv_budget,
 * or a dataset's kv_cache_tokens) and sequences of any dataset's calls. */
InferOptions eval_set_engine_options(const EvalSet *es);

typedef struct {
    const char *run_dir;    /* eval/<tag>/ goes under it */
    const char *tag;        /* "step_000040", or "model" */
    int64_t step;           /* the metrics row's step */
    const char *checkpoint; /* named in results.json */
} EvalRunInfo;

/* Evaluate pol on every dataset of es; collective over c, whose every rank
 * runs an engine. On c's rank 0, *row_out (when not NULL) receives the
 * metrics row (caller frees). Returns 0 when done, or the number of the
 * signal (core/stop_signal.h) that stopped it between two rounds, the
 * finished tasks saved. */
int eval_run(EvalSet *es, const RolloutPolicy *pol, Comm *c, const EvalRunInfo *info, cJSON **row_out);

/* The eval job: load the model (and the checkpoint, if any), evaluate,
 * write the metrics row to output_dir/metrics.jsonl. Every rank of world is
 * an engine. Returns 0 (a signalled stop also exits 0: rerun to resume). */
int eval_job_run(const JobConfig *cfg, const char *data_dir, Comm *world);

#endif
