/* prompts.h — the prompt stream of a training run: the rows of a prepared
 * JSONL file (tau2_hpc prepare) resolved to τ²-bench tasks, visited epoch
 * after epoch in a seeded order.
 *
 * A row is {"index": i, "metadata": {"domain", "task_split", "task_id"}},
 * the metadata optionally with the api user's user_model (a name or a list),
 * user_base_url and user_api_key_var (type-checked here, resolved against
 * the config by rl/user_routes.h);
 * a row's own metadata beats the config's defaults (default_domain,
 * default_task_split), and a row whose domain, split or task cannot be
 * resolved is an error at load time, naming the file and line.
 *
 * The stream: position p is row order_e[p mod n] of epoch e = p div n. The
 * order of an epoch is the file order, shuffled (rollout_shuffle) with a
 * Fisher–Yates permutation drawn from rng(seed, epoch), and then, with
 * balance_data, interleaved so that domains alternate in turn (each
 * domain's rows keep their shuffled order). A run's position in the stream
 * (the data cursor) is all a checkpoint needs to resume it.
 */
#ifndef TAU2_RL_PROMPTS_H
#define TAU2_RL_PROMPTS_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "tau2/env.h"
#include "tau2/task.h"

typedef struct {
    int domain;       /* index into PromptSet.domains */
    const cJSON *task;
    char *task_split;
    int64_t row_index; /* the row's "index" */
    int line;          /* in the file (messages) */
    /* the row's own user fields (the slime τ² recipe's per-row metadata), or
     * NULL: user_model (one name or a rotation, NULL-terminated),
     * user_base_url, user_api_key_var; rl/user_routes.h resolves them */
    char **user_models;
    char *user_base_url, *user_api_key_var;
} PromptRow;

typedef struct {
    char *path;         /* the file (messages) */
    Domain **domains;   /* loaded once, in order of first appearance */
    TaskSet **tasksets;
    int n_domains;
    PromptRow *rows;
    int n_rows;
    uint64_t seed;
    bool shuffle, balance;
    /* the order of one epoch, cached */
    int64_t cached_epoch;
    int *order; /* (n_rows) */
} PromptSet;

/* How rows are resolved. A row's metadata beats the defaults; the
 * overrides (an eval dataset's metadata_overrides) beat the row. A slice
 * keeps rows [lo, hi) of the file's rows in Python's slice semantics (a
 * negative bound counts from the end, bounds are clamped); rows outside
 * it are neither parsed nor resolved. `what` names the missing-field
 * remedy in errors ("the config sets no default_domain"). */
typedef struct {
    const char *default_domain, *default_split;
    const char *domain, *task_split; /* overrides, or NULL */
    bool sliced;
    int64_t slice_lo, slice_hi;      /* when sliced; INT64_MAX for an open end */
    const char *missing_hint;        /* NULL: "and the config sets no default_domain" */
} PromptLoadOptions;

/* Load path. Domains come from data_dir. NULL with err naming the file,
 * line and field. */
PromptSet *prompts_load(const char *path, const char *data_dir, const char *default_domain,
                        const char *default_split, uint64_t seed, bool shuffle, bool balance, char *err,
                        size_t errlen);
PromptSet *prompts_load_opts(const char *path, const char *data_dir, const PromptLoadOptions *o, uint64_t seed,
                             bool shuffle, bool balance, char *err, size_t errlen);
void prompts_free(PromptSet *ps);

/* The row at stream position pos. */
const PromptRow *prompts_at(PromptSet *ps, int64_t pos);

/* The domain loaded under that name, or NULL. */
const Domain *prompts_domain(const PromptSet *ps, const char *name);

#endif
