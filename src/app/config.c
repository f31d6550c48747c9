#include "app/config.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/error.h"
#include "core/json.h"
#include "llm/llm_client.h"
#include "model/infer.h"
#include "tau2/env.h"

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

void config_check_keys(const cJSON *obj, const char *const *known, const char *where) {
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *best = NULL;
        int best_d = 1 << 30;
        bool ok = false;
        for (const char *const *k = known; *k; k++) {
            if (strcmp(*k, c->string) == 0) ok = true;
            int dd = edit_distance(*k, c->string);
            if (dd < best_d) best_d = dd, best = *k;
        }
        if (!ok) die_input("%s: unknown key '%s' (did you mean '%s'?)", where, c->string, best);
    }
}

static char *want_string(const cJSON *root, const char *key, const char *path, const char *dflt) {
    const cJSON *v = json_get(root, key);
    if (!v) return dflt ? xstrdup(dflt) : NULL;
    if (!cJSON_IsString(v)) die_input("%s: field '%s': expected a string", path, key);
    return xstrdup(v->valuestring);
}

static int want_int(const cJSON *root, const char *key, const char *path, int dflt) {
    const cJSON *v = json_get(root, key);
    if (!v) return dflt;
    if (!json_is_int(v) || v->valuedouble < 1 || v->valuedouble > 1e9)
        die_input("%s: field '%s': expected a positive integer", path, key);
    return (int)v->valuedouble;
}

void config_load_oracle(const char *path, OracleJobConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char err[1024];
    cJSON *root = json_load_config(path, err, sizeof err);
    if (!root) die_input("%s", err);
    if (!cJSON_IsObject(root)) die_input("%s: expected a JSON object at the top level", path);
    const char *job = json_get_str(root, "job");
    if (!job) die_input("%s: field 'job': expected a string (\"oracle\"; \"sft\", \"grpo\", \"eval\" to come)", path);
    if (strcmp(job, "oracle") != 0) {
        if (!strcmp(job, "sft") || !strcmp(job, "grpo") || !strcmp(job, "eval"))
            die_input("%s: field 'job': job \"%s\" is not available in this build yet (available: \"oracle\")", path, job);
        die_input("%s: field 'job': unknown job \"%s\" (expected \"oracle\", \"sft\", \"grpo\" or \"eval\")", path, job);
    }
    static const char *const known[] = {"job", "data_dir", "domains", "split", "max_steps", "max_errors", "output",
                                        NULL};
    config_check_keys(root, known, path);
    cfg->data_dir = want_string(root, "data_dir", path, NULL);
    cfg->split = want_string(root, "split", path, "base");
    cfg->output = want_string(root, "output", path, NULL);
    cfg->max_steps = want_int(root, "max_steps", path, 200);
    cfg->max_errors = want_int(root, "max_errors", path, 10);
    const cJSON *doms = json_get(root, "domains");
    if (!cJSON_IsArray(doms) || !doms->child)
        die_input("%s: field 'domains': expected a non-empty list of domain names (%s)", path, domain_spec_names());
    cfg->n_domains = cJSON_GetArraySize(doms);
    cfg->domains = xcalloc((size_t)cfg->n_domains, sizeof *cfg->domains);
    int i = 0;
    for (const cJSON *d = doms->child; d; d = d->next, i++) {
        if (!cJSON_IsString(d)) die_input("%s: field 'domains[%d]': expected a string", path, i);
        if (!domain_spec_find(d->valuestring))
            die_input("%s: field 'domains[%d]': unknown domain '%s' (valid domains: %s)", path, i, d->valuestring,
                      domain_spec_names());
        cfg->domains[i] = xstrdup(d->valuestring);
    }
    cJSON_Delete(root);
}

void config_free_oracle(OracleJobConfig *cfg) {
    free(cfg->data_dir);
    for (int i = 0; i < cfg->n_domains; i++) free(cfg->domains[i]);
    free(cfg->domains);
    free(cfg->split);
    free(cfg->output);
}

/* ---------------------------------------------------------------- training jobs */

/* F_MODELS: a string or a non-empty list of strings (user_model's
 * rotation), stored NULL-terminated. */
typedef enum { F_STR, F_INT, F_SEED, F_NUM, F_BOOL, F_MODELS } FieldType;

/* What a number must satisfy. */
typedef enum {
    R_ANY,
    R_POS,    /* > 0 (for integers: >= 1) */
    R_NONNEG, /* >= 0 */
    R_PROB,   /* (0, 1] */
    R_FRAC,   /* [0, 1) */
    R_LIMIT,  /* integers: -1 (no limit) or >= 1 */
} Range;

/* One key of a job config: where it goes in JobConfig, what it accepts and
 * what it is when absent. Defaults that depend on other keys (tokenizer,
 * output_dir, sft_global_batch_size, sft_lr) and required keys are handled
 * after the table, in config_load_job. */
typedef struct {
    const char *key;
    FieldType type;
    size_t off;                 /* of the value in JobConfig */
    Range range;                /* numbers */
    double dflt;                /* numbers and booleans */
    const char *dflt_str;       /* strings (NULL: none) */
    const char *const *choices; /* strings: the allowed values, NULL-terminated; NULL: any string */
    bool nullable;              /* strings: JSON null means none */
} JobField;

static const char *const JOB_NAMES[] = {"sft", "grpo", "eval", NULL};
/* what user_base_url must be (llm_url_is_http) */
static const char URL_EXPECTED[] = "an http:// or https:// URL with a host (and a port in 1..65535)";
static const char *const USER_NAMES[] = {"gold", "policy", "api", "local", NULL};
static const char *const FILTER_NAMES[] = {"reward_nonzero_std", NULL};
static const char *const LR_DECAY_NAMES[] = {"constant", "linear", "cosine", NULL};
static const char *const KL_LOSS_NAMES[] = {"k1", "k2", "k3", "low_var_kl", NULL};
static const char *const TRAIN_DEVICE_NAMES[] = {"cpu", "cuda", "cpu_mirror", NULL};
static const char *const ROLLOUT_DEVICE_NAMES[] = {"cpu", "cuda", NULL};

#define OFF(field) offsetof(JobConfig, field)

/* In the order of rl/job_config.h; doc/config.md describes each key. */
static const JobField JOB_FIELDS[] = {
    {.key = "job", .type = F_STR, .off = OFF(job), .choices = JOB_NAMES},
    {.key = "data_dir", .type = F_STR, .off = OFF(data_dir), .nullable = true},
    {.key = "output_dir", .type = F_STR, .off = OFF(output_dir)},
    {.key = "seed", .type = F_SEED, .off = OFF(seed), .range = R_NONNEG, .dflt = 1234},

    {.key = "model", .type = F_STR, .off = OFF(model)},
    {.key = "tokenizer", .type = F_STR, .off = OFF(tokenizer)},

    {.key = "tensor_parallel", .type = F_INT, .off = OFF(tensor_parallel), .range = R_POS, .dflt = 1},
    {.key = "data_parallel", .type = F_INT, .off = OFF(data_parallel), .range = R_NONNEG, .dflt = 0},
    {.key = "rollout_groups", .type = F_INT, .off = OFF(rollout_groups), .range = R_NONNEG, .dflt = 0},
    {.key = "rollout_tensor_parallel", .type = F_INT, .off = OFF(rollout_tensor_parallel), .range = R_POS, .dflt = 1},
    {.key = "user_sim_ranks", .type = F_INT, .off = OFF(user_sim_ranks), .range = R_NONNEG, .dflt = 0},
    {.key = "colocate", .type = F_BOOL, .off = OFF(colocate), .dflt = 1},

    {.key = "prompt_data", .type = F_STR, .off = OFF(prompt_data)},
    {.key = "default_domain", .type = F_STR, .off = OFF(default_domain), .nullable = true},
    {.key = "default_task_split", .type = F_STR, .off = OFF(default_task_split), .dflt_str = "base"},
    {.key = "rollout_shuffle", .type = F_BOOL, .off = OFF(rollout_shuffle), .dflt = 1},
    {.key = "balance_data", .type = F_BOOL, .off = OFF(balance_data), .dflt = 0},

    {.key = "num_rollout", .type = F_INT, .off = OFF(num_rollout), .range = R_POS, .dflt = 0},
    {.key = "rollout_batch_size", .type = F_INT, .off = OFF(rollout_batch_size), .range = R_POS, .dflt = 0},
    {.key = "n_samples_per_prompt", .type = F_INT, .off = OFF(n_samples_per_prompt), .range = R_POS, .dflt = 8},
    {.key = "rollout_max_response_len", .type = F_INT, .off = OFF(rollout_max_response_len), .range = R_POS,
     .dflt = 8192},
    {.key = "rollout_max_turn_len", .type = F_INT, .off = OFF(rollout_max_turn_len), .range = R_POS, .dflt = 1024},
    {.key = "rollout_temperature", .type = F_NUM, .off = OFF(rollout_temperature), .range = R_NONNEG, .dflt = 1.0},
    {.key = "rollout_top_p", .type = F_NUM, .off = OFF(rollout_top_p), .range = R_PROB, .dflt = 1.0},
    {.key = "rollout_top_k", .type = F_INT, .off = OFF(rollout_top_k), .range = R_NONNEG, .dflt = 0},
    {.key = "max_steps", .type = F_INT, .off = OFF(max_steps), .range = R_POS, .dflt = 200},
    {.key = "max_errors", .type = F_INT, .off = OFF(max_errors), .range = R_POS, .dflt = 10},
    {.key = "user", .type = F_STR, .off = OFF(user), .dflt_str = "gold", .choices = USER_NAMES},
    {.key = "user_model", .type = F_MODELS, .off = OFF(user_models), .nullable = true},
    {.key = "user_base_url", .type = F_STR, .off = OFF(user_base_url), .nullable = true},
    {.key = "user_api_key_var", .type = F_STR, .off = OFF(user_api_key_var), .nullable = true},
    {.key = "user_temperature", .type = F_NUM, .off = OFF(user_temperature), .range = R_NONNEG, .dflt = 0.0},
    {.key = "user_max_tokens", .type = F_INT, .off = OFF(user_max_tokens), .range = R_NONNEG, .dflt = 0},
    {.key = "user_timeout_s", .type = F_NUM, .off = OFF(user_timeout_s), .range = R_POS, .dflt = 120},
    {.key = "user_max_retries", .type = F_INT, .off = OFF(user_max_retries), .range = R_NONNEG, .dflt = 5},
    {.key = "user_max_concurrency", .type = F_INT, .off = OFF(user_max_concurrency), .range = R_POS, .dflt = 16},
    {.key = "user_requests_per_minute", .type = F_NUM, .off = OFF(user_requests_per_minute), .range = R_NONNEG,
     .dflt = 0},
    {.key = "nl_judge", .type = F_BOOL, .off = OFF(nl_judge), .dflt = 1},
    {.key = "llm_cache_dir", .type = F_STR, .off = OFF(llm_cache_dir), .nullable = true},
    {.key = "dynamic_sampling_filter", .type = F_STR, .off = OFF(dynamic_sampling_filter), .choices = FILTER_NAMES,
     .nullable = true},
    {.key = "max_sampling_rounds", .type = F_INT, .off = OFF(max_sampling_rounds), .range = R_NONNEG, .dflt = 4},
    {.key = "max_staleness", .type = F_INT, .off = OFF(max_staleness), .range = R_NONNEG, .dflt = 0},
    {.key = "kv_cache_tokens", .type = F_INT, .off = OFF(kv_cache_tokens), .range = R_NONNEG, .dflt = 0},
    {.key = "chunked_prefill_size", .type = F_INT, .off = OFF(chunked_prefill_size), .range = R_LIMIT,
     .dflt = INFER_DEFAULT_STEP_TOKENS},

    {.key = "partial_alpha", .type = F_NUM, .off = OFF(partial_alpha), .range = R_NONNEG, .dflt = 0.25},
    {.key = "w_action", .type = F_NUM, .off = OFF(w_action), .range = R_NONNEG, .dflt = 0.5},
    {.key = "w_comm", .type = F_NUM, .off = OFF(w_comm), .range = R_NONNEG, .dflt = 0.15},
    {.key = "w_env", .type = F_NUM, .off = OFF(w_env), .range = R_NONNEG, .dflt = 0.35},
    {.key = "telecom_w_action", .type = F_NUM, .off = OFF(telecom_w_action), .range = R_NONNEG, .dflt = 0.35},
    {.key = "telecom_w_comm", .type = F_NUM, .off = OFF(telecom_w_comm), .range = R_NONNEG, .dflt = 0.35},
    {.key = "telecom_w_env", .type = F_NUM, .off = OFF(telecom_w_env), .range = R_NONNEG, .dflt = 0.30},
    {.key = "telecom_alpha_scale", .type = F_NUM, .off = OFF(telecom_alpha_scale), .range = R_NONNEG, .dflt = 1.6},

    {.key = "global_batch_size", .type = F_INT, .off = OFF(global_batch_size), .range = R_POS, .dflt = 0},
    {.key = "max_tokens_per_gpu", .type = F_INT, .off = OFF(max_tokens_per_gpu), .range = R_POS, .dflt = 16384},
    {.key = "lr", .type = F_NUM, .off = OFF(lr), .range = R_POS, .dflt = 1e-6},
    {.key = "min_lr", .type = F_NUM, .off = OFF(min_lr), .range = R_NONNEG, .dflt = 0},
    {.key = "lr_decay_style", .type = F_STR, .off = OFF(lr_decay_style), .dflt_str = "constant",
     .choices = LR_DECAY_NAMES},
    {.key = "lr_warmup_fraction", .type = F_NUM, .off = OFF(lr_warmup_fraction), .range = R_FRAC, .dflt = 0},
    {.key = "weight_decay", .type = F_NUM, .off = OFF(weight_decay), .range = R_NONNEG, .dflt = 0.1},
    {.key = "adam_beta1", .type = F_NUM, .off = OFF(adam_beta1), .range = R_FRAC, .dflt = 0.9},
    {.key = "adam_beta2", .type = F_NUM, .off = OFF(adam_beta2), .range = R_FRAC, .dflt = 0.98},
    {.key = "adam_eps", .type = F_NUM, .off = OFF(adam_eps), .range = R_POS, .dflt = 1e-8},
    {.key = "clip_grad", .type = F_NUM, .off = OFF(clip_grad), .range = R_NONNEG, .dflt = 1.0},
    {.key = "eps_clip", .type = F_NUM, .off = OFF(eps_clip), .range = R_NONNEG, .dflt = 0.2},
    {.key = "eps_clip_high", .type = F_NUM, .off = OFF(eps_clip_high), .range = R_NONNEG, .dflt = 0.28},
    {.key = "kl_coef", .type = F_NUM, .off = OFF(kl_coef), .range = R_NONNEG, .dflt = 0},
    {.key = "kl_loss_type", .type = F_STR, .off = OFF(kl_loss_type), .dflt_str = "low_var_kl",
     .choices = KL_LOSS_NAMES},
    {.key = "entropy_coef", .type = F_NUM, .off = OFF(entropy_coef), .range = R_NONNEG, .dflt = 0},
    {.key = "calculate_per_token_loss", .type = F_BOOL, .off = OFF(calculate_per_token_loss), .dflt = 0},
    {.key = "recompute_activations", .type = F_BOOL, .off = OFF(recompute_activations), .dflt = 0},
    {.key = "train_device", .type = F_STR, .off = OFF(train_device), .dflt_str = "cpu", .choices = TRAIN_DEVICE_NAMES},
    {.key = "rollout_device", .type = F_STR, .off = OFF(rollout_device), .dflt_str = "cpu",
     .choices = ROLLOUT_DEVICE_NAMES},
    {.key = "offload_train", .type = F_BOOL, .off = OFF(offload_train), .dflt = 0},
    {.key = "offload_rollout", .type = F_BOOL, .off = OFF(offload_rollout), .dflt = 0},

    {.key = "sft_data", .type = F_STR, .off = OFF(sft_data), .nullable = true},
    {.key = "sft_num_epoch", .type = F_INT, .off = OFF(sft_num_epoch), .range = R_POS, .dflt = 1},
    {.key = "sft_global_batch_size", .type = F_INT, .off = OFF(sft_global_batch_size), .range = R_POS, .dflt = 0},
    {.key = "sft_lr", .type = F_NUM, .off = OFF(sft_lr), .range = R_POS, .dflt = 0},

    {.key = "save_interval", .type = F_INT, .off = OFF(save_interval), .range = R_NONNEG, .dflt = 0},
    {.key = "keep_checkpoints", .type = F_INT, .off = OFF(keep_checkpoints), .range = R_POS, .dflt = 3},
    {.key = "save_rollouts", .type = F_BOOL, .off = OFF(save_rollouts), .dflt = 1},

    {.key = "checkpoint", .type = F_STR, .off = OFF(checkpoint), .nullable = true},
    {.key = "eval_interval", .type = F_INT, .off = OFF(eval_interval), .range = R_NONNEG, .dflt = 0},
};

#undef OFF

enum { N_JOB_FIELDS = (int)(sizeof JOB_FIELDS / sizeof JOB_FIELDS[0]) };

/* Report a field's value (or its absence) against what was expected, and
 * exit 2. Long values are cut: the message is for a person. */
static noreturn void field_error(const char *path, const char *key, const char *expected, const cJSON *got) {
    char *shown = got ? json_dumps(got, JSON_DUMP_COMPACT) : xstrdup("nothing");
    if (strlen(shown) > 80) strcpy(shown + 72, " ...");
    die_input("%s: field '%s': expected %s, got %s", path, key, expected, shown);
}

/* What a field accepts, in words, for messages. */
static void field_expected(const JobField *f, char *buf, size_t n) {
    switch (f->type) {
    case F_STR:
        if (f->choices) {
            size_t used = (size_t)snprintf(buf, n, "one of");
            for (const char *const *c = f->choices; *c && used < n; c++)
                used += (size_t)snprintf(buf + used, n - used, "%s \"%s\"", c == f->choices ? "" : ",", *c);
            if (f->nullable && used < n) snprintf(buf + used, n - used, " or null");
        } else {
            snprintf(buf, n, f->nullable ? "a non-empty string or null" : "a non-empty string");
        }
        return;
    case F_BOOL: snprintf(buf, n, "true or false"); return;
    case F_MODELS: snprintf(buf, n, "a model name, a non-empty list of model names, or null"); return;
    case F_SEED: snprintf(buf, n, "a non-negative integer (at most 2^53)"); return;
    case F_INT:
        snprintf(buf, n, f->range == R_POS     ? "a positive integer"
                         : f->range == R_LIMIT ? "-1 (no limit) or a positive integer"
                                               : "a non-negative integer");
        return;
    case F_NUM:
        switch (f->range) {
        case R_POS: snprintf(buf, n, "a number > 0"); return;
        case R_NONNEG: snprintf(buf, n, "a number >= 0"); return;
        case R_PROB: snprintf(buf, n, "a number in (0, 1]"); return;
        case R_FRAC: snprintf(buf, n, "a number in [0, 1)"); return;
        case R_ANY:
        case R_LIMIT: snprintf(buf, n, "a number"); return;
        }
    }
}

static bool in_range(Range r, double v) {
    switch (r) {
    case R_ANY: return true;
    case R_POS: return v > 0;
    case R_NONNEG: return v >= 0;
    case R_PROB: return v > 0 && v <= 1;
    case R_FRAC: return v >= 0 && v < 1;
    case R_LIMIT: return v == -1 || v >= 1;
    }
    return false;
}

/* Set one field from its JSON value v (NULL: absent, take the default). */
static void job_field_set(JobConfig *cfg, const JobField *f, const cJSON *v, const char *path) {
    char *base = (char *)cfg + f->off;
    char expected[160];
    field_expected(f, expected, sizeof expected);
    switch (f->type) {
    case F_STR: {
        char **dst = (char **)base;
        if (!v) {
            *dst = f->dflt_str ? xstrdup(f->dflt_str) : NULL;
            return;
        }
        if (cJSON_IsNull(v) && f->nullable) return;
        /* every string key names a path, a name or a choice: none is empty */
        if (!cJSON_IsString(v) || !*v->valuestring) field_error(path, f->key, expected, v);
        if (f->choices) {
            const char *const *c = f->choices;
            while (*c && strcmp(*c, v->valuestring) != 0) c++;
            if (!*c) field_error(path, f->key, expected, v);
        }
        *dst = xstrdup(v->valuestring);
        return;
    }
    case F_MODELS: {
        char ***dst = (char ***)base;
        if (!v || cJSON_IsNull(v)) return;
        if (!(*dst = user_models_from_json(v))) field_error(path, f->key, expected, v);
        return;
    }
    case F_BOOL:
        if (!v) {
            *(bool *)base = f->dflt != 0;
            return;
        }
        if (!cJSON_IsBool(v)) field_error(path, f->key, expected, v);
        *(bool *)base = cJSON_IsTrue(v);
        return;
    case F_INT:
        if (!v) {
            *(int *)base = (int)f->dflt;
            return;
        }
        if (!json_is_int(v) || !in_range(f->range, v->valuedouble)) field_error(path, f->key, expected, v);
        if (v->valuedouble > INT_MAX) {
            char big[200];
            snprintf(big, sizeof big, "%s (at most %d)", expected, INT_MAX);
            field_error(path, f->key, big, v);
        }
        *(int *)base = (int)v->valuedouble;
        return;
    case F_SEED:
        if (!v) {
            *(uint64_t *)base = (uint64_t)f->dflt;
            return;
        }
        /* Integers beyond 2^53 do not survive the trip through a double. */
        if (!json_is_int(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0)
            field_error(path, f->key, expected, v);
        *(uint64_t *)base = (uint64_t)v->valuedouble;
        return;
    case F_NUM:
        if (!v) {
            *(double *)base = f->dflt;
            return;
        }
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !in_range(f->range, v->valuedouble))
            field_error(path, f->key, expected, v);
        *(double *)base = v->valuedouble;
        return;
    }
}

static const JobField *job_field_find(const char *key) {
    for (int i = 0; i < N_JOB_FIELDS; i++)
        if (strcmp(JOB_FIELDS[i].key, key) == 0) return &JOB_FIELDS[i];
    return NULL;
}

/* Exit 2 naming `key` when the job needs it and the config lacks it. */
static void require_key(const cJSON *root, const char *key, const char *job, const char *path) {
    if (json_get(root, key)) return;
    char expected[200];
    field_expected(job_field_find(key), expected, sizeof expected);
    size_t used = strlen(expected);
    snprintf(expected + used, sizeof expected - used, " (required for job \"%s\")", job);
    field_error(path, key, expected, NULL);
}

/* "runs/<file name without .json>" */
static char *default_output_dir(const char *path) {
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    size_t len = strlen(name);
    if (len > 5 && strcmp(name + len - 5, ".json") == 0) len -= 5;
    size_t n = len + sizeof "runs/";
    char *dir = xmalloc(n);
    snprintf(dir, n, "runs/%.*s", (int)len, name);
    return dir;
}

/* ---------------------------------------------------------------- the "eval" object */

/* A number at obj[key] in [lo, hi] (hi < lo: no upper bound) into *out, or
 * leave *out when absent; `where` names the object in messages. */
static void eval_number(const cJSON *obj, const char *key, const char *where, const char *path, double lo, double hi,
                        bool integer, bool lo_open, double *out) {
    const cJSON *v = json_get(obj, key);
    if (!v) return;
    bool ok = cJSON_IsNumber(v) && isfinite(v->valuedouble) && (lo_open ? v->valuedouble > lo : v->valuedouble >= lo) &&
              (hi < lo || v->valuedouble <= hi) && (!integer || (json_is_int(v) && v->valuedouble <= INT_MAX));
    if (ok) {
        *out = v->valuedouble;
        return;
    }
    char field[256], expected[128];
    snprintf(field, sizeof field, "%s.%s", where, key);
    if (integer) snprintf(expected, sizeof expected, lo_open ? "an integer > %g" : "an integer >= %g", lo);
    else if (hi >= lo) snprintf(expected, sizeof expected, "a number in %s%g, %g]", lo_open ? "(" : "[", lo, hi);
    else snprintf(expected, sizeof expected, lo_open ? "a number > %g" : "a number >= %g", lo);
    field_error(path, field, expected, v);
}

/* A string at obj[key] (NULL when absent or null); other types exit 2. */
static char *eval_string(const cJSON *obj, const char *key, const char *where, const char *path) {
    const cJSON *v = json_get(obj, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) {
        char field[256];
        snprintf(field, sizeof field, "%s.%s", where, key);
        field_error(path, field, "a string", v);
    }
    return xstrdup(v->valuestring);
}

/* The sampling keys of "defaults" and of each dataset. */
static const char *const EVAL_SAMPLING_KEYS[] = {"temperature", "top_p", "top_k", "max_response_len",
                                                 "n_samples_per_eval_prompt", NULL};

static void eval_sampling(const cJSON *obj, const char *where, const char *path, EvalDataset *d) {
    double t = d->temperature, p = d->top_p, k = d->top_k, len = d->max_response_len, n = d->n_samples;
    eval_number(obj, "temperature", where, path, 0, -1, false, false, &t);
    eval_number(obj, "top_p", where, path, 0, 1, false, true, &p);
    eval_number(obj, "top_k", where, path, 0, -1, true, false, &k);
    eval_number(obj, "max_response_len", where, path, 0, -1, true, true, &len);
    eval_number(obj, "n_samples_per_eval_prompt", where, path, 0, -1, true, true, &n);
    d->temperature = t, d->top_p = p, d->top_k = (int)k, d->max_response_len = (int)len, d->n_samples = (int)n;
}

/* "file.jsonl@[lo:hi]" -> path and slice (Python's: either bound may be
 * empty or negative). A path without "@[" is the whole file. */
static void eval_parse_path(const char *text, const char *where, const char *path, EvalDataset *d) {
    const char *at = strstr(text, "@[");
    size_t n = strlen(text);
    if (!at) {
        d->path = xstrdup(text);
        return;
    }
    char field[256];
    snprintf(field, sizeof field, "%s.path", where);
    const char *expected = "\"FILE.jsonl\" or \"FILE.jsonl@[START:END]\" (integers, either may be empty or negative)";
    cJSON *shown = cJSON_CreateString(text);
    if (at == text || text[n - 1] != ']') field_error(path, field, expected, shown);
    const char *p = at + 2, *colon = strchr(p, ':');
    if (!colon || colon > text + n - 1) field_error(path, field, expected, shown);
    int64_t bound[2] = {0, INT64_MAX};
    const char *part[2][2] = {{p, colon}, {colon + 1, text + n - 1}};
    for (int b = 0; b < 2; b++) {
        const char *s = part[b][0], *e = part[b][1];
        if (s == e) continue;
        char *end;
        char buf[32];
        if ((size_t)(e - s) >= sizeof buf) field_error(path, field, expected, shown);
        memcpy(buf, s, (size_t)(e - s));
        buf[e - s] = '\0';
        long long v = strtoll(buf, &end, 10);
        if (*end != '\0' || end == buf) field_error(path, field, expected, shown);
        bound[b] = v;
    }
    cJSON_Delete(shown);
    d->path = xstrndup(text, (size_t)(at - text));
    d->sliced = true;
    d->slice_lo = bound[0];
    d->slice_hi = bound[1];
}

/* A dataset's name is a directory under eval/step_N/: not "." or "..",
 * and short enough for any filesystem's name limit with room to spare. */
static bool eval_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !strcmp(s, ".") || !strcmp(s, "..")) return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.')) return false;
    return true;
}

/* The "eval" object: {"defaults": {...}, "datasets": [{...}, ...]}, the
 * recipe's eval config. NULL (absent) leaves no datasets. */
static void config_load_eval(JobConfig *cfg, const cJSON *ev, const char *path) {
    if (!ev) return;
    if (!cJSON_IsObject(ev)) field_error(path, "eval", "an object {\"defaults\": {...}, \"datasets\": [...]}", ev);
    static const char *const eval_keys[] = {"defaults", "datasets", "round_episodes", NULL};
    char where[300];
    snprintf(where, sizeof where, "%s: field 'eval'", path);
    config_check_keys(ev, eval_keys, where);
    EvalDataset base = {.temperature = cfg->rollout_temperature, .top_p = cfg->rollout_top_p,
                        .top_k = cfg->rollout_top_k, .max_response_len = cfg->rollout_max_response_len,
                        .n_samples = 1};
    double round = 32;
    eval_number(ev, "round_episodes", "eval", path, 0, -1, true, true, &round);
    cfg->eval_round_episodes = (int)round;
    const cJSON *defaults = json_get(ev, "defaults");
    if (defaults) {
        if (!cJSON_IsObject(defaults)) field_error(path, "eval.defaults", "an object", defaults);
        snprintf(where, sizeof where, "%s: field 'eval.defaults'", path);
        config_check_keys(defaults, EVAL_SAMPLING_KEYS, where);
        eval_sampling(defaults, "eval.defaults", path, &base);
    }
    const cJSON *list = json_get(ev, "datasets");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        field_error(path, "eval.datasets", "a non-empty array of datasets {\"name\", \"path\", ...}", list);
    int n = cJSON_GetArraySize(list);
    cfg->eval_datasets = xcalloc((size_t)n, sizeof *cfg->eval_datasets);
    static const char *const ds_keys[] = {"name", "path", "metadata_overrides", "temperature", "top_p", "top_k",
                                          "max_response_len", "n_samples_per_eval_prompt", NULL};
    static const char *const md_keys[] = {"domain", "task_split", "user_model", "user_base_url", "user_api_key_var",
                                          "max_turns", NULL};
    int i = 0;
    for (const cJSON *x = list->child; x; x = x->next, i++) {
        char field[64];
        snprintf(field, sizeof field, "eval.datasets[%d]", i);
        if (!cJSON_IsObject(x)) field_error(path, field, "an object {\"name\", \"path\", ...}", x);
        snprintf(where, sizeof where, "%s: field '%s'", path, field);
        config_check_keys(x, ds_keys, where);
        EvalDataset *d = &cfg->eval_datasets[i];
        *d = base;
        cfg->n_eval_datasets = i + 1; /* owned from here on */
        d->name = eval_string(x, "name", field, path);
        char sub[128];
        snprintf(sub, sizeof sub, "%s.name", field);
        if (!d->name || !eval_name_ok(d->name))
            field_error(path, sub,
                        "a name of up to 128 letters, digits, '_', '-' and '.', not \".\" or \"..\" (it names "
                        "files and metrics)",
                        json_get(x, "name"));
        for (int k = 0; k < i; k++)
            if (strcmp(cfg->eval_datasets[k].name, d->name) == 0)
                field_error(path, sub, "a name no other dataset has", json_get(x, "name"));
        char *p = eval_string(x, "path", field, path);
        snprintf(sub, sizeof sub, "%s.path", field);
        if (!p) field_error(path, sub, "a JSONL file, optionally with a row slice (\"file.jsonl@[0:10]\")", NULL);
        eval_parse_path(p, field, path, d);
        free(p);
        eval_sampling(x, field, path, d);
        const cJSON *md = json_get(x, "metadata_overrides");
        if (md) {
            snprintf(sub, sizeof sub, "%s.metadata_overrides", field);
            if (!cJSON_IsObject(md)) field_error(path, sub, "an object", md);
            snprintf(where, sizeof where, "%s: field '%s'", path, sub);
            config_check_keys(md, md_keys, where);
            char f2[200];
            d->domain = eval_string(md, "domain", sub, path);
            d->task_split = eval_string(md, "task_split", sub, path);
            const cJSON *um = json_get(md, "user_model");
            if (um && !cJSON_IsNull(um) && !(d->user_models = user_models_from_json(um))) {
                snprintf(f2, sizeof f2, "%s.user_model", sub);
                field_error(path, f2, "a model name or a non-empty list of model names", um);
            }
            d->user_base_url = eval_string(md, "user_base_url", sub, path);
            d->user_api_key_var = eval_string(md, "user_api_key_var", sub, path);
            double mt = 0;
            eval_number(md, "max_turns", sub, path, 0, -1, true, true, &mt);
            d->max_turns = (int)mt;
            if (d->domain && !domain_spec_find(d->domain)) {
                char names[200];
                snprintf(names, sizeof names, "a domain name (%s)", domain_spec_names());
                snprintf(f2, sizeof f2, "%s.domain", sub);
                field_error(path, f2, names, json_get(md, "domain"));
            }
            if (d->user_base_url && !llm_url_is_http(d->user_base_url)) {
                snprintf(f2, sizeof f2, "%s.user_base_url", sub);
                field_error(path, f2, URL_EXPECTED, json_get(md, "user_base_url"));
            }
        }
    }
}

void config_load_job(const char *path, JobConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char err[1024];
    cJSON *root = json_load_config(path, err, sizeof err);
    if (!root) die_input("%s", err);
    if (!cJSON_IsObject(root)) die_input("%s: expected a JSON object at the top level", path);

    /* The job first: an oracle config handed here should say so, not list
     * its keys as unknown. */
    const JobField *job_field = job_field_find("job");
    char expected[200];
    field_expected(job_field, expected, sizeof expected);
    const cJSON *job = json_get(root, "job");
    if (!cJSON_IsString(job) || (strcmp(job->valuestring, "sft") != 0 && strcmp(job->valuestring, "grpo") != 0 &&
                                 strcmp(job->valuestring, "eval") != 0))
        field_error(path, "job", expected, job);

    const char *known[N_JOB_FIELDS + 2];
    for (int i = 0; i < N_JOB_FIELDS; i++) known[i] = JOB_FIELDS[i].key;
    known[N_JOB_FIELDS] = "eval";
    known[N_JOB_FIELDS + 1] = NULL;
    config_check_keys(root, known, path);

    cfg->path = xstrdup(path);
    for (int i = 0; i < N_JOB_FIELDS; i++)
        job_field_set(cfg, &JOB_FIELDS[i], json_get(root, JOB_FIELDS[i].key), path);
    bool grpo = strcmp(cfg->job, "grpo") == 0, eval = strcmp(cfg->job, "eval") == 0;

    /* What each job cannot run without. */
    require_key(root, "model", cfg->job, path);
    config_load_eval(cfg, json_get(root, "eval"), path);
    if (eval) {
        if (cfg->n_eval_datasets == 0)
            field_error(path, "eval", "an object with \"datasets\": [...] (required for job \"eval\")",
                        json_get(root, "eval"));
    } else if (grpo) {
        require_key(root, "prompt_data", cfg->job, path);
        require_key(root, "num_rollout", cfg->job, path);
        require_key(root, "rollout_batch_size", cfg->job, path);
        require_key(root, "global_batch_size", cfg->job, path);
    } else {
        require_key(root, "sft_data", cfg->job, path);
        if (!cfg->sft_data)
            field_error(path, "sft_data", "a string (required for job \"sft\")", json_get(root, "sft_data"));
        if (!json_get(root, "global_batch_size") && !json_get(root, "sft_global_batch_size"))
            field_error(path, "global_batch_size",
                        "a positive integer (job \"sft\" needs global_batch_size or sft_global_batch_size)", NULL);
    }

    /* Defaults that are other keys' values. */
    if (!cfg->tokenizer) cfg->tokenizer = xstrdup(cfg->model);
    if (!cfg->output_dir) cfg->output_dir = default_output_dir(path);
    if (cfg->eval_interval > 0 && cfg->n_eval_datasets == 0)
        field_error(path, "eval", "an object with \"datasets\": [...] (eval_interval is set)", json_get(root, "eval"));
    if (cfg->eval_interval > 0 && !cfg->colocate)
        field_error(path, "eval_interval",
                    "0 when colocate is false (periodic evaluation runs on colocated ranks; evaluate the checkpoints "
                    "of a separate-mode run with an eval job)",
                    json_get(root, "eval_interval"));
    if (eval && cfg->rollout_tensor_parallel > 1)
        field_error(path, "rollout_tensor_parallel",
                    "1 (an eval job runs one engine per rank; engines of several ranks run in grpo and sft jobs)",
                    json_get(root, "rollout_tensor_parallel"));
    if (cfg->checkpoint && !eval)
        field_error(path, "checkpoint", "null (only an eval job loads a checkpoint; training resumes from its "
                    "output_dir)", json_get(root, "checkpoint"));
    /* slime's --colocate turns on --offload-train and --offload-rollout;
     * here each where the other phase's engine is on the GPU to use it */
    if (!json_get(root, "offload_train"))
        cfg->offload_train = cfg->colocate && strcmp(cfg->rollout_device, "cuda") == 0;
    if (!json_get(root, "offload_rollout"))
        cfg->offload_rollout = cfg->colocate && strcmp(cfg->train_device, "cuda") == 0;
    if (cfg->offload_train && !cfg->colocate)
        field_error(path, "offload_train", "false when colocate is false (the trainer keeps its ranks to itself)",
                    json_get(root, "offload_train"));
    if (cfg->offload_rollout && !cfg->colocate)
        field_error(path, "offload_rollout", "false when colocate is false (the engines keep their ranks to themselves)",
                    json_get(root, "offload_rollout"));
    if (!json_get(root, "global_batch_size")) cfg->global_batch_size = cfg->sft_global_batch_size;
    if (!json_get(root, "sft_global_batch_size")) cfg->sft_global_batch_size = cfg->global_batch_size;
    if (!json_get(root, "sft_lr")) cfg->sft_lr = cfg->lr;

    /* Values that must agree with each other. */
    if (cfg->default_domain && !domain_spec_find(cfg->default_domain)) {
        char names[200];
        snprintf(names, sizeof names, "a domain name (%s) or null", domain_spec_names());
        field_error(path, "default_domain", names, json_get(root, "default_domain"));
    }
    if (cfg->sft_data && strcmp(cfg->sft_data, "oracle") == 0 && !cfg->prompt_data)
        field_error(path, "prompt_data", "a string (sft_data \"oracle\" replays prompt_data's tasks)", NULL);
    if (grpo) {
        /* slime asserts this: a rollout's episodes are cut into whole
         * optimizer steps (steps per rollout = episodes / global batch). */
        long long episodes = (long long)cfg->rollout_batch_size * cfg->n_samples_per_prompt;
        if (episodes % cfg->global_batch_size != 0) {
            snprintf(expected, sizeof expected,
                     "a divisor of rollout_batch_size * n_samples_per_prompt = %d * %d = %lld (episodes per rollout)",
                     cfg->rollout_batch_size, cfg->n_samples_per_prompt, episodes);
            field_error(path, "global_batch_size", expected, json_get(root, "global_batch_size"));
        }
        if (cfg->dynamic_sampling_filter && cfg->n_samples_per_prompt < 2)
            field_error(path, "dynamic_sampling_filter",
                        "null when n_samples_per_prompt is 1 (a group of one has no reward spread: every group would "
                        "be dropped)",
                        json_get(root, "dynamic_sampling_filter"));
    }
    /* The api user's model and endpoint may come from the config, an eval
     * dataset's metadata_overrides or each prompt row (their metadata):
     * a row without any is an error when the prompts load (rl/user_routes.h). */
    if (strcmp(cfg->user, "api") == 0 && cfg->user_base_url && !llm_url_is_http(cfg->user_base_url))
        field_error(path, "user_base_url", URL_EXPECTED, json_get(root, "user_base_url"));
    if (strcmp(cfg->user, "local") == 0 && user_models_count(cfg->user_models) > 1)
        field_error(path, "user_model",
                    "one model directory when user is \"local\" (the user-simulator ranks serve one model; a "
                    "rotation of models needs user \"api\")",
                    json_get(root, "user_model"));
    if (strcmp(cfg->user, "local") != 0 && cfg->user_sim_ranks > 0) {
        snprintf(expected, sizeof expected, "0 unless user is \"local\" (the ranks serve the local user's model; "
                 "the user is \"%s\")", cfg->user);
        field_error(path, "user_sim_ranks", expected, json_get(root, "user_sim_ranks"));
    }
    if (strcmp(cfg->user, "local") == 0 && cfg->user_sim_ranks < 1)
        field_error(path, "user_sim_ranks",
                    "a positive integer when user is \"local\" (the ranks that serve the user-simulator model)",
                    json_get(root, "user_sim_ranks"));
    if (cfg->colocate && cfg->max_staleness > 0)
        field_error(path, "max_staleness",
                    "0 when colocate is true (asynchronous rollouts need ranks of their own: set colocate to false)",
                    json_get(root, "max_staleness"));
    if (cfg->min_lr > cfg->lr) {
        snprintf(expected, sizeof expected, "a number <= lr (%g)", cfg->lr);
        field_error(path, "min_lr", expected, json_get(root, "min_lr"));
    }
    if (cfg->sft_data && cfg->min_lr > cfg->sft_lr) {
        snprintf(expected, sizeof expected, "a number >= min_lr (%g)", cfg->min_lr);
        field_error(path, "sft_lr", expected, json_get(root, "sft_lr"));
    }

    /* The config as read, and its digest: checkpoints and rollout buffers
     * carry them so a resumed run can tell whether its config changed. */
    cfg->json = json_dumps(root, JSON_DUMP_COMPACT);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH64(cfg->json, strlen(cfg->json), 0));
    cfg->hash = xstrdup(hex);
    cJSON_Delete(root);
}
