/* evaluate.c — reward and partial credit (see evaluate.h). The structure
 * mirrors τ²-bench's evaluator modules: environment (DB + env assertions),
 * actions, communication, NL assertions, then the product over the basis. */
#include "tau2/evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/task.h"

void partial_credit_defaults(const char *domain, PartialCreditWeights *w) {
    if (domain && strcmp(domain, "telecom") == 0) {
        w->w_action = 0.35, w->w_comm = 0.35, w->w_env = 0.30, w->alpha = 0.25 * 1.6;
    } else {
        w->w_action = 0.5, w->w_comm = 0.15, w->w_env = 0.35, w->alpha = 0.25;
    }
}

void eval_options_default(const char *domain, EvalOptions *o) {
    memset(o, 0, sizeof *o);
    partial_credit_defaults(domain, &o->weights);
    o->strict_replay = true;
}

void evaluation_free(Evaluation *e) {
    cJSON_Delete(e->info);
    e->info = NULL;
}

/* ---------------------------------------------------------------- environment */

typedef struct {
    bool db_match;
    double env_reward;
    int env_met, env_total;
    cJSON *env_checks; /* array, owned */
    const char *note;
} EnvResult;

static void run_gold_actions(Env *gold, const cJSON *actions) {
    for (const cJSON *a = cJSON_IsArray(actions) ? actions->child : NULL; a; a = a->next) {
        const char *req = json_get_str(a, "requestor");
        const char *name = json_get_str(a, "name");
        if (!name) continue;
        /* make_tool_call: no sync; failures are only logged by τ²-bench. */
        ToolResult r = env_tool_call_nosync(gold, req ? req : "assistant", name, json_get(a, "arguments"));
        tool_result_free(&r);
    }
}

static void evaluate_environment(const Domain *d, const cJSON *task, const cJSON *messages, const EvalOptions *opt,
                                 EnvResult *res) {
    const cJSON *ec = json_get(task, "evaluation_criteria");
    const cJSON *actions = json_get(ec, "actions");
    const cJSON *assertions = json_get(ec, "env_assertions");
    res->db_match = true;
    res->env_reward = 1.0;
    res->env_met = res->env_total = 0;
    res->env_checks = cJSON_CreateArray();
    res->note = NULL;
    bool no_actions = !actions || cJSON_IsNull(actions);
    bool no_assertions = !assertions || cJSON_IsNull(assertions);
    if (no_actions && no_assertions) {
        res->note = "No expected actions or env assertions";
        return;
    }
    const cJSON *init = json_get(task, "initial_state");
    char err[512];
    Env *pred = env_new(d);
    if (env_apply_initialization(pred, init, err, sizeof err) != 0 ||
        env_replay_messages(pred, messages, opt->strict_replay, err, sizeof err) != 0) {
        res->db_match = false;
        res->note = "replay of the trajectory failed";
    }
    env_sync(pred);
    Env *gold = env_new(d);
    if (env_set_initial_state(gold, init, err, sizeof err) == 0) run_gold_actions(gold, actions);
    if (res->db_match) {
        bool agent_eq = db_equal(pred->db, gold->db);
        bool user_eq = (!pred->user_db && !gold->user_db) ||
                       (pred->user_db && gold->user_db && db_equal(pred->user_db, gold->user_db));
        res->db_match = agent_eq && user_eq;
    }
    for (const cJSON *a = cJSON_IsArray(assertions) ? assertions->child : NULL; a; a = a->next) {
        const char *env_type = json_get_str(a, "env_type");
        const char *func = json_get_str(a, "func_name");
        const cJSON *want = json_get(a, "assert_value");
        bool expected = !want || cJSON_IsNull(want) || cJSON_IsTrue(want);
        bool met = false;
        cJSON *got = (env_type && func) ? env_run_function(pred, env_type, func, json_get(a, "arguments"), err, sizeof err)
                                        : NULL;
        if (got && cJSON_IsBool(got)) met = (cJSON_IsTrue(got) != 0) == expected;
        cJSON_Delete(got);
        cJSON *check = cJSON_CreateObject();
        cJSON_AddItemToObject(check, "env_assertion", cJSON_Duplicate(a, 1));
        cJSON_AddBoolToObject(check, "met", met);
        cJSON_AddItemToObject(check, "reward", json_float(met ? 1.0 : 0.0));
        cJSON_AddItemToArray(res->env_checks, check);
        res->env_total++;
        if (met) res->env_met++;
        else res->env_reward = 0.0;
    }
    env_free(pred);
    env_free(gold);
}

/* ---------------------------------------------------------------- actions */

/* Action.compare_with_tool_call: same name, and equal on compare_args (all
 * of the call's own arguments when compare_args is null). */
static bool action_matches(const cJSON *action, const cJSON *tc) {
    const char *an = json_get_str(action, "name"), *tn = json_get_str(tc, "name");
    if (!an || !tn || strcmp(an, tn) != 0) return false;
    const cJSON *cmp = json_get(action, "compare_args");
    const cJSON *targs = json_get(tc, "arguments");
    const cJSON *aargs = json_get(action, "arguments");
    bool use_call_keys = !cmp || cJSON_IsNull(cmp);
    if (!use_call_keys && cJSON_GetArraySize(cmp) == 0) return true;
    /* Build both restricted dicts and compare with Python's == (1 == 1.0). */
    cJSON *x = cJSON_CreateObject(), *y = cJSON_CreateObject();
    const cJSON *keys_src = use_call_keys ? targs : cmp;
    for (const cJSON *k = keys_src ? keys_src->child : NULL; k; k = k->next) {
        const char *key = use_call_keys ? k->string : (cJSON_IsString(k) ? k->valuestring : NULL);
        if (!key) continue;
        const cJSON *tv = json_get(targs, key), *av = json_get(aargs, key);
        if (tv && !json_get(x, key)) cJSON_AddItemToObject(x, key, cJSON_Duplicate(tv, 1));
        if (av && !json_get(y, key)) cJSON_AddItemToObject(y, key, cJSON_Duplicate(av, 1));
    }
    bool eq = json_equal(x, y, false);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return eq;
}

static cJSON *evaluate_actions(const cJSON *task, const cJSON *messages, int *matched, int *total) {
    const cJSON *actions = json_get(json_get(task, "evaluation_criteria"), "actions");
    cJSON *checks = cJSON_CreateArray();
    *matched = *total = 0;
    for (const cJSON *a = cJSON_IsArray(actions) ? actions->child : NULL; a; a = a->next) {
        bool found = false;
        for (const cJSON *m = messages->child; m && !found; m = m->next) {
            const char *role = json_get_str(m, "role");
            if (!role || (strcmp(role, "assistant") && strcmp(role, "user"))) continue;
            const cJSON *calls = json_get(m, "tool_calls");
            for (const cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc && !found; tc = tc->next)
                found = action_matches(a, tc);
        }
        cJSON *check = cJSON_CreateObject();
        cJSON_AddItemToObject(check, "action", cJSON_Duplicate(a, 1));
        cJSON_AddBoolToObject(check, "action_match", found);
        cJSON_AddItemToObject(check, "action_reward", json_float(found ? 1.0 : 0.0));
        cJSON_AddNullToObject(check, "tool_type");
        cJSON_AddItemToArray(checks, check);
        (*total)++;
        if (found) (*matched)++;
    }
    return checks;
}

/* ---------------------------------------------------------------- communicate */

/* Lowercase ASCII letters; bytes of other scripts pass through unchanged. */
static char *lower_copy(const char *s, bool drop_commas) {
    size_t n = strlen(s);
    char *o = xmalloc(n + 1), *p = o;
    for (; *s; s++) {
        char c = *s;
        if (drop_commas && c == ',') continue;
        *p++ = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    *p = '\0';
    return o;
}

static bool blank(const char *s) {
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return false;
    return true;
}

static cJSON *evaluate_communicate(const cJSON *task, const cJSON *messages, int *met_count, int *total) {
    const cJSON *infos = json_get(json_get(task, "evaluation_criteria"), "communicate_info");
    cJSON *checks = cJSON_CreateArray();
    *met_count = *total = 0;
    for (const cJSON *info = cJSON_IsArray(infos) ? infos->child : NULL; info; info = info->next) {
        if (!cJSON_IsString(info)) continue;
        char *needle = lower_copy(info->valuestring, false);
        const char *found_in = NULL;
        for (const cJSON *m = messages->child; m && !found_in; m = m->next) {
            const char *role = json_get_str(m, "role");
            const char *content = json_get_str(m, "content");
            if (!role || strcmp(role, "assistant") || !content || blank(content)) continue;
            char *hay = lower_copy(content, true);
            if (strstr(hay, needle)) found_in = content;
            free(hay);
        }
        free(needle);
        SBuf j;
        sbuf_init(&j);
        if (found_in) sbuf_printf(&j, "Information '%s' communicated in the message:\n '%s'", info->valuestring, found_in);
        else sbuf_printf(&j, "Information '%s' not communicated.", info->valuestring);
        cJSON *check = cJSON_CreateObject();
        cJSON_AddStringToObject(check, "info", info->valuestring);
        cJSON_AddBoolToObject(check, "met", found_in != NULL);
        cJSON_AddStringToObject(check, "justification", j.data);
        sbuf_free(&j);
        cJSON_AddItemToArray(checks, check);
        (*total)++;
        if (found_in) (*met_count)++;
    }
    return checks;
}

/* ---------------------------------------------------------------- combine */

static cJSON *basis_json(int basis) {
    cJSON *a = cJSON_CreateArray();
    /* τ²-bench's RewardType order. */
    if (basis & BASIS_DB) cJSON_AddItemToArray(a, cJSON_CreateString("DB"));
    if (basis & BASIS_ENV_ASSERTION) cJSON_AddItemToArray(a, cJSON_CreateString("ENV_ASSERTION"));
    if (basis & BASIS_NL_ASSERTION) cJSON_AddItemToArray(a, cJSON_CreateString("NL_ASSERTION"));
    if (basis & BASIS_ACTION) cJSON_AddItemToArray(a, cJSON_CreateString("ACTION"));
    if (basis & BASIS_COMMUNICATE) cJSON_AddItemToArray(a, cJSON_CreateString("COMMUNICATE"));
    return a;
}

/* The task's own basis list, in its own order (or the default). */
static cJSON *task_basis_json(const cJSON *task) {
    const cJSON *rb = json_get(json_get(task, "evaluation_criteria"), "reward_basis");
    if (cJSON_IsArray(rb)) return cJSON_Duplicate(rb, 1);
    return basis_json(BASIS_DB | BASIS_COMMUNICATE);
}

static double frac(int num, int den) { return den ? (double)num / den : 0.0; }

int evaluate_episode(const Domain *d, const cJSON *task, const cJSON *messages, Termination term,
                     const EvalOptions *opt, Evaluation *out) {
    memset(out, 0, sizeof *out);
    EvalOptions defaults;
    if (!opt) {
        eval_options_default(d->spec->name, &defaults);
        opt = &defaults;
    }
    const cJSON *ec = json_get(task, "evaluation_criteria");
    int basis = task_reward_basis(task);
    cJSON *info = cJSON_CreateObject();
    out->info = info;

    if (term == TERM_INFRASTRUCTURE_ERROR) {
        out->infrastructure_error = true;
        cJSON_AddItemToObject(info, "reward", json_float(0.0));
        cJSON_AddNullToObject(info, "reward_basis");
        cJSON *i = cJSON_AddObjectToObject(info, "info");
        cJSON_AddStringToObject(i, "note", "Infrastructure error: excluded from training and metrics");
        return 0;
    }

    /* Components, computed whether or not the episode ended well: the
     * partial credit of a cut-off episode still tells how far it got. */
    EnvResult env;
    evaluate_environment(d, task, messages, opt, &env);
    int a_matched, a_total, c_met, c_total;
    cJSON *action_checks = evaluate_actions(task, messages, &a_matched, &a_total);
    cJSON *comm_checks = evaluate_communicate(task, messages, &c_met, &c_total);
    double db_reward = env.db_match ? 1.0 : 0.0;
    double action_reward = (a_matched == a_total) ? 1.0 : 0.0;
    double comm_reward = (c_met == c_total) ? 1.0 : 0.0;

    cJSON *nl_checks = NULL;
    double nl_reward = 1.0;
    bool needs_nl = (basis & BASIS_NL_ASSERTION) != 0;
    bool stopped = term == TERM_USER_STOP || term == TERM_AGENT_STOP;
    /* τ²-bench judges only episodes that ended with a stop: the others
     * score 0 whatever the judge says, so no request is spent on them. */
    if (needs_nl && opt->judge && stopped) {
        char err[256];
        if (opt->judge(opt->judge_ctx, task, messages, &nl_checks, err, sizeof err) != 0) {
            out->infrastructure_error = true;
        } else {
            for (const cJSON *c = nl_checks ? nl_checks->child : NULL; c; c = c->next)
                if (!cJSON_IsTrue(json_get(c, "met"))) nl_reward = 0.0;
        }
    } else if (needs_nl && !opt->judge) {
        out->nl_not_judged = true;
    }

    bool ended_well = term == TERM_USER_STOP || term == TERM_AGENT_STOP;
    double reward = 0.0;
    cJSON *breakdown = cJSON_CreateObject();
    if (!ended_well) {
        cJSON_AddItemToObject(info, "reward", json_float(0.0));
        cJSON_AddNullToObject(info, "db_check");
        cJSON_AddNullToObject(info, "env_assertions");
        cJSON_AddNullToObject(info, "action_checks");
        cJSON_AddNullToObject(info, "nl_assertions");
        cJSON_AddNullToObject(info, "communicate_checks");
        cJSON_AddNullToObject(info, "reward_basis");
        cJSON_AddNullToObject(info, "reward_breakdown");
        cJSON *i = cJSON_AddObjectToObject(info, "info");
        SBuf note;
        sbuf_init(&note);
        sbuf_printf(&note, "Simulation terminated prematurely. Termination reason: %s", termination_name(term));
        cJSON_AddStringToObject(i, "note", note.data);
        sbuf_free(&note);
        cJSON_Delete(breakdown);
    } else if (!ec || cJSON_IsNull(ec)) {
        reward = 1.0;
        cJSON_AddItemToObject(info, "reward", json_float(1.0));
        cJSON_AddNullToObject(info, "reward_basis");
        cJSON *i = cJSON_AddObjectToObject(info, "info");
        cJSON_AddStringToObject(i, "note", "No evaluation criteria");
        cJSON_Delete(breakdown);
    } else {
        reward = 1.0;
        if (basis & BASIS_DB) {
            cJSON_AddItemToObject(breakdown, "DB", json_float(db_reward));
            reward *= db_reward;
        }
        if (basis & BASIS_ENV_ASSERTION) {
            cJSON_AddItemToObject(breakdown, "ENV_ASSERTION", json_float(env.env_reward));
            reward *= env.env_reward;
        }
        if (basis & BASIS_ACTION) {
            cJSON_AddItemToObject(breakdown, "ACTION", json_float(action_reward));
            reward *= action_reward;
        }
        if ((basis & BASIS_NL_ASSERTION) && !out->nl_not_judged) {
            cJSON_AddItemToObject(breakdown, "NL_ASSERTION", json_float(nl_reward));
            reward *= nl_reward;
        }
        if (basis & BASIS_COMMUNICATE) {
            cJSON_AddItemToObject(breakdown, "COMMUNICATE", json_float(comm_reward));
            reward *= comm_reward;
        }
        cJSON_AddItemToObject(info, "reward", json_float(reward));
        cJSON *dbc = cJSON_AddObjectToObject(info, "db_check");
        cJSON_AddBoolToObject(dbc, "db_match", env.db_match);
        cJSON_AddItemToObject(dbc, "db_reward", json_float(db_reward));
        cJSON_AddItemToObject(info, "env_assertions", cJSON_Duplicate(env.env_checks, 1));
        cJSON_AddItemToObject(info, "action_checks", cJSON_Duplicate(action_checks, 1));
        if (nl_checks) cJSON_AddItemToObject(info, "nl_assertions", cJSON_Duplicate(nl_checks, 1));
        else cJSON_AddNullToObject(info, "nl_assertions");
        cJSON_AddItemToObject(info, "communicate_checks", cJSON_Duplicate(comm_checks, 1));
        cJSON_AddItemToObject(info, "reward_basis", task_basis_json(task));
        cJSON_AddItemToObject(info, "reward_breakdown", breakdown);
        cJSON *i = cJSON_AddObjectToObject(info, "info");
        if (env.note) cJSON_AddStringToObject(i, "env", env.note);
        if (out->nl_not_judged)
            cJSON_AddStringToObject(i, "nl",
                                    "NL_ASSERTION not judged (no judge configured): left out of the reward basis");
    }
    out->reward = out->infrastructure_error ? 0.0 : reward;

    /* Partial credit over the components the task has. */
    PartialCreditWeights w = opt->weights;
    double num = 0, den = 0;
    double p_action = frac(a_matched, a_total), p_comm = frac(c_met, c_total), p_env = frac(env.env_met, env.env_total);
    if (a_total) num += w.w_action * p_action, den += w.w_action;
    if (c_total) num += w.w_comm * p_comm, den += w.w_comm;
    if (env.env_total) num += w.w_env * p_env, den += w.w_env;
    out->partial = den > 0 ? num / den : 0.0;
    out->shaped = out->reward + w.alpha * out->partial;
    cJSON *pc = cJSON_AddObjectToObject(info, "partial_credit");
    if (a_total) cJSON_AddItemToObject(pc, "p_action", json_float(p_action));
    if (c_total) cJSON_AddItemToObject(pc, "p_comm", json_float(p_comm));
    if (env.env_total) cJSON_AddItemToObject(pc, "p_env", json_float(p_env));
    cJSON_AddItemToObject(pc, "partial", json_float(out->partial));
    cJSON_AddItemToObject(pc, "alpha", json_float(w.alpha));
    cJSON_AddItemToObject(pc, "shaped_reward", json_float(out->shaped));
    cJSON_AddBoolToObject(info, "nl_assertion_judged", !out->nl_not_judged);

    cJSON_Delete(env.env_checks);
    cJSON_Delete(action_checks);
    cJSON_Delete(comm_checks);
    cJSON_Delete(nl_checks);
    return 0;
}
