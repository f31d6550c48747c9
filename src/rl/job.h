/* job.h — the training job: `tau2_hpc CONFIG.json` for a config whose job is
 * "sft" or "grpo" (DESIGN.md §1).
 *
 * One MPI program. The world is split by the rank layout (comm/layout.h)
 * into trainer ranks and rollout engines (or both on the same ranks, when
 * colocated). The job runs, in order:
 *
 *   SFT warm-up   when sft_data is set: updates on teacher traces (a file,
 *                 or "oracle": gold episodes of the prompt set's tasks)
 *   GRPO          num_rollout steps, each: rollout of rollout_batch_size
 *                 groups (dynamic sampling refills filtered groups) → the
 *                 step's buffer rollouts/step_NNNNNN.h5 → advantages → one
 *                 or more updates → new weights to the rollout engines
 *
 * Job steps are counted across both phases (SFT updates first, then GRPO
 * rollouts), and a checkpoint records the step, so rerunning the same
 * command after any kill resumes where the last checkpoint left off and
 * gives the same run (sync mode, CPU: bit-identical).
 *
 * Synchronous and asynchronous mode: with separate rollout ranks the
 * rollout of step t may use weights up to max_staleness versions old, so
 * rollouts of step t+1 run while the trainer works on step t. The weight
 * broadcasts and "buffer ready" notices between trainer rank 0 and the
 * rollout ranks happen in one fixed order, which both sides derive from
 * the step numbers (see job.c, sync_events).
 */
#ifndef TAU2_RL_JOB_H
#define TAU2_RL_JOB_H

#include "comm/comm.h"
#include "llm/llm_client.h"
#include "rl/job_config.h"
#include "rl/rollout.h"

/* Run the job on world (every rank calls it). data_dir is τ²-bench's data.
 * Input errors (a layout that does not fit, a bad prompt file) exit 2 with
 * the message printed once; runtime failures exit 1. Returns 0. */
int job_run(const JobConfig *cfg, const char *data_dir, Comm *world);

/* ---- shared with the eval job (rl/eval.h) ---- */

/* What a run directory will hold, each name free or of its kind: dirs
 * (NULL-terminated) folders, files (NULL-terminated) files; checked before
 * anything is made there (a file where a folder goes would otherwise be
 * found when a step's work is done). Exit 2 naming output_dir's origin. */
void job_check_run_outputs(const JobConfig *cfg, const char *run_dir, const char *const *dirs,
                           const char *const *files);

/* The rollout options cfg gives (sampling, budgets, reward weights, KV
 * budget). */
void job_rollout_options(const JobConfig *cfg, RolloutOptions *out);
/* The user cfg names, without its client (exit 2 on an unknown name). */
void job_rollout_user(const JobConfig *cfg, const char *data_dir, RolloutUser *out);

/* The "local" user: the last n = user_sim_ranks world ranks serve the user
 * model (user_model, else model) over MPI, and engine e of the n_engines
 * engines asks server e mod n.
 *
 * local_user_serve, on a server rank: first its part of the job's host
 * memory check (job_memory_check over world, which the job's other ranks
 * join with their own plans: the user model's fp32 weights and the
 * server's KV cache; exit 2 when the node's sum is over its limit), then
 * load the model (exit 2, with its own message, when it does not load),
 * meet the other ranks in local_user_ready, and serve its engines until
 * each has shut down. local_user_client, on engine e: a client with the MPI
 * endpoint of its server in *endpoint; the engine calls
 * llm_client_mpi_shutdown(client, *endpoint) when it is done. */
void local_user_serve(const JobConfig *cfg, Comm *world, int n_engines);
/* On the job's other ranks, before they write anything: wait until every
 * server rank has loaded its model (collective over world with
 * local_user_serve; nothing to wait for without server ranks). A model
 * that does not load ends the job (exit 2) before any output exists. */
void local_user_ready(const JobConfig *cfg, Comm *world);
LlmClient *local_user_client(const JobConfig *cfg, int world_size, int engine, const char *cache_dir, int *endpoint);

#endif
