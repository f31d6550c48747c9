#include "app/config.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
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
    cJSON *root = json_load_file(path, err, sizeof err);
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
