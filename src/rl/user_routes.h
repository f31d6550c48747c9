/* user_routes.h — which model plays the customer for each prompt row, and
 * through which endpoint of the rank's LlmClient.
 *
 * The api user's user_model, user_base_url and user_api_key_var come, field
 * by field, from the row's metadata (the slime τ² recipe's per-row fields),
 * else from the eval dataset's metadata_overrides, else from the config. A
 * user_model that lists n models is a rotation: sample s of the row's group
 * (its n_samples episodes) talks to model s % n. Each distinct
 * (base_url, model, key var) is one endpoint of the client; the training
 * job and the evaluation share this one resolution.
 *
 * Errors surface at start, before any work, naming the prompt file, the row
 * (its line) and the field: a row with no model or base URL anywhere, a key
 * variable that is unset or empty in the environment, or user fields on a
 * row when the user is not "api" (the "local" user-simulator ranks serve one
 * model; gold and policy users have no endpoint).
 */
#ifndef TAU2_RL_USER_ROUTES_H
#define TAU2_RL_USER_ROUTES_H

#include "llm/llm_client.h"
#include "rl/job_config.h"
#include "rl/prompts.h"
#include "rl/rollout.h"

/* The distinct endpoints of a rank's api user. Strings are borrowed from
 * the config and the prompt sets, which outlive it. */
typedef struct {
    LlmEndpointConfig *eps;
    int n_eps, cap;
} UserEndpoints;

/* The index of the endpoint of (base_url, model, api_key_var) in ue,
 * added if new (want's other settings come with it then). */
int user_endpoints_index(UserEndpoints *ue, const LlmEndpointConfig *want);

/* A client with ue's endpoints, in order (NULL when ue has none); the
 * response cache in cache_dir (NULL: none). Exit 2 naming cfg's path on a
 * bad endpoint. */
LlmClient *user_endpoints_client(const UserEndpoints *ue, const JobConfig *cfg, const char *cache_dir);
void user_endpoints_free(UserEndpoints *ue);

/* The resolved models of every row of one prompt set. */
typedef struct {
    RolloutUserModel *models; /* row r: models[first[r] .. first[r] + count[r]) */
    int *first, *count;
    int n_rows;
} UserRoutes;

/* Resolve every row of ps for cfg's user into out, adding endpoints to ue.
 * ds: the eval dataset the rows belong to (NULL: the training prompts).
 * `where` begins every message ("cfg.json: field 'prompt_data'"). A user
 * other than "api" leaves every count 0 (the RolloutUser's endpoint), after
 * checking that no row names user fields. Exit 2 on any error above. */
void user_routes_build(UserRoutes *out, UserEndpoints *ue, const JobConfig *cfg, const EvalDataset *ds,
                       const PromptSet *ps, const char *where);
void user_routes_free(UserRoutes *r);

/* Point prompt p at the models of row `row` (an index into ps->rows). */
void user_routes_apply(const UserRoutes *r, int row, RolloutPrompt *p);

#endif
