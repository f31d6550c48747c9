/* eval_tau2.h — an evaluation's episodes as τ²-bench's own results file.
 *
 * `tau2 run` saves a Results JSON (src/tau2/data_model/simulation.py): the
 * run's Info, the tasks, and one SimulationRun per episode with its
 * messages and RewardInfo. τ²-bench's tools read that file: `tau2 view`,
 * its metrics (pass^k), the leaderboard's submission checks. An evaluation
 * writes one such file per domain of each dataset, beside results.json,
 * so an evaluated checkpoint goes through those tools unchanged
 * (doc/eval.md, "τ²-bench's results file").
 */
#ifndef TAU2_RL_EVAL_TAU2_H
#define TAU2_RL_EVAL_TAU2_H

#include <cJSON.h>

#include "rl/eval.h"

/* The Results object of dataset r's episodes in domain `domain` (index into
 * r->rows->domains); lines[row] is the task line of row (rl/eval.c: its
 * "episodes" with each episode's messages, reward_info, status, timing).
 * Caller frees. */
cJSON *eval_tau2_results(const EvalDatasetRun *r, cJSON *const *lines, int domain, const EvalRunInfo *info);

/* τ²-bench's TerminationReason for a tau2_hpc status: the same name, but
 * "truncated" (the episode's token budget ran out), which τ²-bench does
 * not have, is its nearest, "context_window_exceeded". */
const char *eval_tau2_termination(const char *status);

#endif
