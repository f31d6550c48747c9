/* user_routes.c — see user_routes.h. */
#include "rl/user_routes.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static bool same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int user_endpoints_index(UserEndpoints *ue, const LlmEndpointConfig *want) {
    for (int i = 0; i < ue->n_eps; i++) {
        const LlmEndpointConfig *e = &ue->eps[i];
        if (same_str(e->base_url, want->base_url) && same_str(e->model, want->model) &&
            same_str(e->api_key_var, want->api_key_var))
            return i;
    }
    if (ue->n_eps == ue->cap) {
        ue->cap = ue->cap ? 2 * ue->cap : 4;
        ue->eps = xrealloc(ue->eps, (size_t)ue->cap * sizeof *ue->eps);
    }
    ue->eps[ue->n_eps] = *want;
    return ue->n_eps++;
}

LlmClient *user_endpoints_client(const UserEndpoints *ue, const JobConfig *cfg, const char *cache_dir) {
    if (ue->n_eps == 0) return NULL;
    LlmClientOptions lo = {.cache_dir = cache_dir, .seed = cfg->seed};
    char err[1024];
    LlmClient *c = llm_client_new(ue->eps, ue->n_eps, &lo, err, sizeof err);
    if (!c) die_input("%s: the api user: %s", cfg->path, err);
    return c;
}

void user_endpoints_free(UserEndpoints *ue) {
    free(ue->eps);
    memset(ue, 0, sizeof *ue);
}

/* A row of a non-api user that names user fields: refused, saying why. */
static void refuse_row_fields(const JobConfig *cfg, const PromptSet *ps, const PromptRow *row, const char *where) {
    const char *field = row->user_models ? "user_model" : row->user_base_url ? "user_base_url"
                      : row->user_api_key_var ? "user_api_key_var" : NULL;
    if (!field) return;
    if (strcmp(cfg->user, "local") == 0 && row->user_models)
        die_input("%s: %s:%d: metadata.user_model: the \"local\" user cannot change models per row (its "
                  "user-simulator ranks serve one model, the config's user_model); drop the field, or use user "
                  "\"api\" for per-row user models", where, ps->path, row->line);
    die_input("%s: %s:%d: metadata.%s: per-row user fields need user \"api\" (the user is \"%s\")", where, ps->path,
              row->line, field, cfg->user);
}

/* The endpoint settings every api endpoint shares, from the config. */
static void endpoint_from_config(const JobConfig *cfg, LlmEndpointConfig *ep) {
    llm_endpoint_defaults(ep);
    ep->timeout_s = cfg->user_timeout_s;
    ep->max_retries = cfg->user_max_retries;
    ep->max_concurrency = cfg->user_max_concurrency;
    ep->requests_per_minute = cfg->user_requests_per_minute;
}

void user_routes_build(UserRoutes *out, UserEndpoints *ue, const JobConfig *cfg, const EvalDataset *ds,
                       const PromptSet *ps, const char *where) {
    memset(out, 0, sizeof *out);
    out->n_rows = ps->n_rows;
    out->first = xcalloc((size_t)(ps->n_rows > 0 ? ps->n_rows : 1), sizeof *out->first);
    out->count = xcalloc((size_t)(ps->n_rows > 0 ? ps->n_rows : 1), sizeof *out->count);
    bool api = strcmp(cfg->user, "api") == 0;
    const char *above = ds ? "the dataset's metadata_overrides" : "the config";
    int n_models = 0, cap = 0;
    for (int r = 0; r < ps->n_rows; r++) {
        const PromptRow *row = &ps->rows[r];
        if (!api) {
            refuse_row_fields(cfg, ps, row, where);
            continue;
        }
        /* field by field: the row, the dataset's overrides, the config */
        char *const *models = row->user_models ? row->user_models
                            : ds && ds->user_models ? ds->user_models : cfg->user_models;
        const char *url = row->user_base_url ? row->user_base_url
                        : ds && ds->user_base_url ? ds->user_base_url : cfg->user_base_url;
        const char *key = row->user_api_key_var ? row->user_api_key_var
                        : ds && ds->user_api_key_var ? ds->user_api_key_var : cfg->user_api_key_var;
        if (!models)
            die_input("%s: %s:%d: metadata.user_model: missing (the user is \"api\", and neither the row nor %s%s "
                      "names the user model)", where, ps->path, row->line, above, ds ? " nor the config" : "");
        if (!url)
            die_input("%s: %s:%d: metadata.user_base_url: missing (the user is \"api\", and neither the row nor "
                      "%s%s gives the endpoint's URL)", where, ps->path, row->line, above, ds ? " nor the config" : "");
        if (key && (!getenv(key) || !*getenv(key))) {
            const char *from = row->user_api_key_var ? "metadata.user_api_key_var"
                             : ds && ds->user_api_key_var ? "metadata_overrides.user_api_key_var"
                             : "user_api_key_var (the config's)";
            die_input("%s: %s:%d: %s: the environment variable %s is unset or empty (it must hold the user "
                      "endpoint's API key)", where, ps->path, row->line, from, key);
        }
        int n = user_models_count(models);
        if (n_models + n > cap) {
            cap = 2 * (n_models + n) + 8;
            out->models = xrealloc(out->models, (size_t)cap * sizeof *out->models);
        }
        out->first[r] = n_models;
        out->count[r] = n;
        for (int i = 0; i < n; i++) {
            LlmEndpointConfig ep;
            endpoint_from_config(cfg, &ep);
            ep.base_url = url;
            ep.model = models[i];
            ep.api_key_var = key;
            out->models[n_models++] = (RolloutUserModel){user_endpoints_index(ue, &ep), models[i]};
        }
    }
}

void user_routes_free(UserRoutes *r) {
    free(r->models);
    free(r->first);
    free(r->count);
    memset(r, 0, sizeof *r);
}

void user_routes_apply(const UserRoutes *r, int row, RolloutPrompt *p) {
    if (!r || row < 0 || row >= r->n_rows || r->count[row] == 0) {
        p->user_models = NULL;
        p->n_user_models = 0;
        return;
    }
    p->user_models = &r->models[r->first[row]];
    p->n_user_models = r->count[row];
}
