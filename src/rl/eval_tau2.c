/* eval_tau2.c — see eval_tau2.h. Field names and nesting follow τ²-bench's
 * pydantic models (Results, Info, AgentInfo, UserInfo, EnvironmentInfo,
 * SimulationRun); optional fields tau2_hpc has nothing for are left out,
 * which those models take as their defaults. */
#include "rl/eval_tau2.h"

#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "tau2/task.h"

const char *eval_tau2_termination(const char *status) {
    return strcmp(status, "truncated") == 0 ? "context_window_exceeded" : status;
}

static cJSON *agent_info(const EvalDatasetRun *r, const EvalRunInfo *info) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "implementation", "tau2_hpc");
    cJSON_AddStringToObject(a, "llm", info->checkpoint);
    cJSON *args = cJSON_AddObjectToObject(a, "llm_args");
    /* the config's values (the sampler's are floats) */
    cJSON_AddItemToObject(args, "temperature", json_float(r->ds->temperature));
    cJSON_AddItemToObject(args, "top_p", json_float(r->ds->top_p));
    if (r->ds->top_k > 0) cJSON_AddItemToObject(args, "top_k", json_int(r->ds->top_k));
    cJSON_AddItemToObject(args, "max_tokens", json_int(r->opt.max_response_len));
    return a;
}

/* The gold user replays the task's scripted turns; the policy user is the
 * trained model playing the customer; the api user is τ²-bench's
 * user simulator over an OpenAI-compatible endpoint. */
static cJSON *user_info(const EvalDatasetRun *r) {
    cJSON *u = cJSON_CreateObject();
    switch (r->user.kind) {
    case ROLLOUT_USER_GOLD:
        cJSON_AddStringToObject(u, "implementation", "gold_user");
        break;
    case ROLLOUT_USER_POLICY:
        cJSON_AddStringToObject(u, "implementation", "user_simulator");
        cJSON_AddStringToObject(u, "llm", "policy");
        break;
    case ROLLOUT_USER_API:
        cJSON_AddStringToObject(u, "implementation", "user_simulator");
        if (r->user.model) cJSON_AddStringToObject(u, "llm", r->user.model);
        cJSON *args = cJSON_AddObjectToObject(u, "llm_args");
        cJSON_AddItemToObject(args, "temperature", json_float(r->user.temperature));
        break;
    }
    return u;
}

static cJSON *simulation(const EvalDatasetRun *r, const cJSON *line, int row, const cJSON *ep) {
    cJSON *sim = cJSON_CreateObject();
    int sample = (int)json_get(ep, "sample")->valuedouble;
    char id[600];
    snprintf(id, sizeof id, "%s-%d-%d", r->ds->name, row, sample);
    cJSON_AddStringToObject(sim, "id", id);
    cJSON_AddStringToObject(sim, "task_id", json_get_str(line, "task_id"));
    /* a line from before episodes were timed has no times: empty, as
     * the model's str fields take */
    const char *start = json_get_str(ep, "start_time"), *end = json_get_str(ep, "end_time");
    const cJSON *duration = json_get(ep, "duration");
    cJSON_AddStringToObject(sim, "timestamp", end ? end : "");
    cJSON_AddStringToObject(sim, "start_time", start ? start : "");
    cJSON_AddStringToObject(sim, "end_time", end ? end : "");
    cJSON_AddItemToObject(sim, "duration", json_float(cJSON_IsNumber(duration) ? duration->valuedouble : 0.0));
    cJSON_AddStringToObject(sim, "termination_reason", eval_tau2_termination(json_get_str(ep, "status")));
    const cJSON *reward_info = json_get(ep, "reward_info");
    cJSON_AddItemToObject(sim, "reward_info",
                          cJSON_IsObject(reward_info) ? cJSON_Duplicate(reward_info, 1) : cJSON_CreateNull());
    const cJSON *messages = json_get(ep, "messages");
    cJSON_AddItemToObject(sim, "messages",
                          cJSON_IsArray(messages) ? cJSON_Duplicate(messages, 1) : cJSON_CreateArray());
    cJSON_AddItemToObject(sim, "trial", json_int(sample));
    /* what τ²-bench has no field for */
    cJSON *extra = cJSON_AddObjectToObject(sim, "info");
    cJSON_AddStringToObject(extra, "dataset", r->ds->name);
    cJSON_AddItemToObject(extra, "task_index", json_int(row));
    cJSON_AddStringToObject(extra, "status", json_get_str(ep, "status"));
    cJSON_AddItemToObject(extra, "partial_score", cJSON_Duplicate(json_get(ep, "partial_score"), 1));
    cJSON_AddItemToObject(extra, "turns", cJSON_Duplicate(json_get(ep, "turns"), 1));
    if (json_get_str(ep, "user_model")) cJSON_AddStringToObject(extra, "user_model", json_get_str(ep, "user_model"));
    return sim;
}

cJSON *eval_tau2_results(const EvalDatasetRun *r, cJSON *const *lines, int domain, const EvalRunInfo *info) {
    const Domain *d = r->rows->domains[domain];
    cJSON *res = cJSON_CreateObject();
    char now[CLOCK_ISO_LEN];
    clock_wall_iso(now);
    cJSON_AddStringToObject(res, "timestamp", now);
    cJSON *in = cJSON_AddObjectToObject(res, "info");
    cJSON_AddStringToObject(in, "git_commit", "");
    cJSON_AddItemToObject(in, "num_trials", json_int(r->opt.n_samples));
    cJSON_AddItemToObject(in, "max_steps", json_int(r->opt.episode.max_steps));
    cJSON_AddItemToObject(in, "max_errors", json_int(r->opt.episode.max_errors));
    cJSON_AddItemToObject(in, "user_info", user_info(r));
    cJSON_AddItemToObject(in, "agent_info", agent_info(r, info));
    cJSON *env = cJSON_AddObjectToObject(in, "environment_info");
    cJSON_AddStringToObject(env, "domain_name", d->spec->name);
    cJSON_AddStringToObject(env, "policy", d->policy);
    cJSON *tasks = cJSON_AddArrayToObject(res, "tasks");
    cJSON *sims = cJSON_AddArrayToObject(res, "simulations");
    for (int row = 0; row < r->rows->n_rows; row++) {
        const PromptRow *pr = &r->rows->rows[row];
        if (pr->domain != domain) continue;
        /* each task once, though a dataset may hold it in several rows */
        bool seen = false;
        for (int k = 0; k < row && !seen; k++) seen = r->rows->rows[k].task == pr->task;
        if (!seen) cJSON_AddItemToArray(tasks, cJSON_Duplicate(pr->task, 1));
        for (const cJSON *ep = json_get(lines[row], "episodes")->child; ep; ep = ep->next)
            cJSON_AddItemToArray(sims, simulation(r, lines[row], row, ep));
    }
    return res;
}
