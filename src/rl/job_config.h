/* job_config.h — the settings of a training job (an "sft" or "grpo" config
 * under inputs/), as the rl layer's job loops read them.
 *
 * The app layer parses the JSON config into this struct (app/config.h,
 * config_load_job), checks every key and value and the rank layout before
 * any work, and fills the defaults written here. Names follow slime's flags
 * with '-' as '_' where slime has one (doc/config.md lists each key with its
 * slime flag). Strings are owned (job_config_free).
 */
#ifndef TAU2_RL_JOB_CONFIG_H
#define TAU2_RL_JOB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

/* One evaluation dataset (the "eval" object's "datasets"; doc/eval.md).
 * Sampling values are resolved: the dataset's own, else the eval defaults,
 * else the rollout's. */
typedef struct {
    char *name;             /* [A-Za-z0-9_.-]+, unique: file names and metric keys */
    char *path;             /* the JSONL file, without its slice */
    bool sliced;            /* "file.jsonl@[lo:hi]" */
    int64_t slice_lo, slice_hi; /* Python slice bounds; INT64_MAX for an open end */
    /* metadata_overrides: beat every row's metadata (NULL: the row's) */
    char *domain, *task_split;
    char **user_models;     /* user_model: one name or a rotation (NULL-terminated); NULL: the job's */
    char *user_base_url, *user_api_key_var; /* NULL: the job's */
    int max_turns;          /* τ²-bench steps per episode (0: the job's max_steps) */
    double temperature, top_p;
    int top_k, max_response_len, n_samples;
} EvalDataset;

typedef struct {
    char *path; /* the config file (for messages) */
    char *json; /* the config as read, compact JSON (stored in checkpoints) */
    char *hash; /* hex digest of json (rollout buffers carry it) */

    /* ---- job ---- */
    char *job;        /* "sft", "grpo" (a grpo job with sft_data runs the SFT warm-up first) or "eval" */
    char *data_dir;   /* τ²-bench data (NULL: --data-dir / TAU2_DATA_DIR / fallback) */
    char *output_dir; /* run directory: ckpt/, rollouts/, metrics.jsonl ("runs/<config name>") */
    bool output_dir_from_cli; /* --output-dir gave it, not the config: messages name that */
    uint64_t seed;    /* one seed for sampling, shuffling, dropout-free init (1234) */

    /* ---- model ---- */
    char *model;     /* Hugging Face directory: config.json, weights, tokenizer, chat template (required) */
    char *tokenizer; /* tokenizer.json path or directory (default: model) */

    /* ---- rank layout (DESIGN.md §1) ---- */
    int tensor_parallel;         /* trainer TP size (1) */
    int data_parallel;           /* trainer DP size (0: what the world size leaves) */
    int rollout_groups;          /* rollout engines (0: one per trainer TP group when colocated, else 1) */
    int rollout_tensor_parallel; /* ranks per rollout engine (1) */
    int user_sim_ranks;          /* ranks serving the user simulator (0) */
    bool colocate;               /* trainer and rollout alternate on the same ranks (true) */

    /* ---- prompts ---- */
    char *prompt_data;        /* prepared JSONL (tau2_hpc prepare) (required for grpo) */
    char *default_domain;     /* metadata default for rows without one (NULL) */
    char *default_task_split; /* ("base") */
    bool rollout_shuffle;     /* reshuffle the prompts every epoch (true) */
    bool balance_data;        /* interleave domains evenly (false) */

    /* ---- rollout ---- */
    int num_rollout;              /* GRPO steps (rollouts) of the run (required for grpo) */
    int rollout_batch_size;       /* prompts (GRPO groups) per step (required for grpo) */
    int n_samples_per_prompt;     /* episodes per prompt, the group size (8) */
    int rollout_max_response_len; /* token budget of one episode after its prompt (8192) */
    int rollout_max_turn_len;     /* new tokens of one agent turn at most (1024) */
    double rollout_temperature;   /* (1.0) */
    double rollout_top_p;         /* (1.0) */
    int rollout_top_k;            /* (0 = off) */
    int max_steps;                /* τ²-bench orchestrator steps per episode (200; the recipe's max_steps) */
    int max_errors;               /* tool errors before too_many_errors (10) */
    char *user;                   /* "gold", "policy" or "api" ("gold") */
    /* the api user (llm/llm_client.h, llm/user_sim.h); the recipe's per-dataset names */
    char **user_models;           /* user_model: the model name sent to the endpoint, or a list that sample s of
                                   * a group takes s % n of (NULL-terminated; NULL: none). "local": one
                                   * directory, the model the user-simulator ranks serve */
    char *user_base_url;          /* e.g. http://host:port/v1 (required for "api") */
    char *user_api_key_var;       /* environment variable holding the key, or NULL for none */
    double user_temperature;      /* (0.0, τ²-bench's) */
    int user_max_tokens;          /* per user turn (0: the endpoint's default; policy user: rollout_max_turn_len) */
    double user_timeout_s;        /* per request (120) */
    int user_max_retries;         /* (5) */
    int user_max_concurrency;     /* requests in flight per endpoint (16) */
    double user_requests_per_minute; /* (0: no limit) */
    bool nl_judge;                /* api user: judge NL assertions through the same endpoint (true) */
    char *llm_cache_dir;          /* response cache directory, or NULL for none */
    char *dynamic_sampling_filter;/* NULL or "reward_nonzero_std" */
    int max_sampling_rounds;      /* rounds of extra prompts to refill filtered groups (4) */
    int max_staleness;            /* 0: synchronous; k: rollouts may use weights k steps old (0) */
    int kv_cache_tokens;          /* KV cache budget per rollout engine, tokens (0: sized from the batch) */
    int chunked_prefill_size;     /* pending tokens one engine step feeds at most (-1: no limit) */

    /* ---- reward shaping (DESIGN.md §4) ---- */
    double partial_alpha;       /* α (0.25) */
    double w_action, w_comm, w_env;             /* (0.5, 0.15, 0.35) */
    double telecom_w_action, telecom_w_comm, telecom_w_env; /* (0.35, 0.35, 0.30) */
    double telecom_alpha_scale; /* α × this on telecom (1.6) */

    /* ---- training ---- */
    int global_batch_size;  /* episodes (grpo) or conversations (sft) per optimizer step (required) */
    int max_tokens_per_gpu; /* tokens per micro-batch on one trainer rank (16384) */
    double lr;              /* (1e-6) */
    double min_lr;          /* (0) */
    char *lr_decay_style;   /* "constant", "linear", "cosine" ("constant") */
    double lr_warmup_fraction; /* (0) */
    double weight_decay;    /* (0.1) */
    double adam_beta1, adam_beta2, adam_eps; /* (0.9, 0.98, 1e-8) */
    double clip_grad;       /* global grad-norm clip (1.0) */
    double eps_clip, eps_clip_high; /* (0.2, 0.28) */
    double kl_coef;         /* β (0) */
    char *kl_loss_type;     /* "k1", "k2", "k3", "low_var_kl" ("low_var_kl") */
    double entropy_coef;    /* (0) */
    bool calculate_per_token_loss; /* (false: per-trajectory mean) */
    bool recompute_activations;    /* (false) */
    char *train_device;            /* where the training step runs: "cpu", "cuda", "cpu_mirror" ("cpu") */
    char *rollout_device;          /* where the inference engines run: "cpu", "cuda" ("cpu") */
    /* colocated, the phases take turns with the GPU's memory: */
    bool offload_train;   /* the trainer's device memory freed for each rollout phase (colocate, rollout on cuda) */
    bool offload_rollout; /* the GPU rollout engine freed for each training phase (colocate, train on cuda) */

    /* ---- SFT (job "sft", or the warm-up of a grpo job) ---- */
    char *sft_data;            /* teacher traces JSONL, or "oracle": oracle episodes of prompt_data's tasks */
    int sft_num_epoch;         /* passes over the traces (1) */
    int sft_global_batch_size; /* conversations per SFT step (global_batch_size) */
    double sft_lr;             /* (lr) */

    /* ---- checkpoints and outputs ---- */
    int save_interval;     /* optimizer steps between checkpoints (0: only at the end) */
    int keep_checkpoints;  /* newest checkpoints kept (3) */
    bool save_rollouts;    /* keep rollouts/step_NNNNNN.h5 after training on it (true) */

    /* ---- evaluation (job "eval", or eval_interval in a grpo job; doc/eval.md) ---- */
    char *checkpoint;      /* eval job: a checkpoint file, or a ckpt directory (its latest); NULL: model's weights */
    int eval_interval;     /* GRPO steps between evaluations, also before the first and after the last (0: none) */
    EvalDataset *eval_datasets;
    int n_eval_datasets;
    int eval_round_episodes; /* episodes per engine per round: what a kill can lose at most (32) */
} JobConfig;

void job_config_free(JobConfig *cfg);

/* Where output_dir came from, as a message names it: "--output-dir" or
 * "field 'output_dir'". */
const char *job_config_output_dir_origin(const JobConfig *cfg);

/* A user_model value (config, dataset override or prompt row): a string, or
 * a non-empty array of strings, as a new NULL-terminated array of new
 * strings; NULL when v is neither. */
char **user_models_from_json(const cJSON *v);
int user_models_count(char *const *models);
char **user_models_dup(char *const *models);
void user_models_free(char **models);

#endif
