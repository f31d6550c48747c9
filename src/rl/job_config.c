/* job_config.c — the owned parts of a JobConfig. Parsing lives in the app
 * layer (app/config.c); this layer only reads the struct. */
#include "rl/job_config.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void job_config_free(JobConfig *cfg) {
    if (!cfg) return;
    char **owned[] = {
        &cfg->path,           &cfg->json,      &cfg->hash,         &cfg->job,
        &cfg->data_dir,       &cfg->output_dir, &cfg->model,       &cfg->tokenizer,
        &cfg->prompt_data,    &cfg->default_domain, &cfg->default_task_split, &cfg->user,
        &cfg->dynamic_sampling_filter, &cfg->lr_decay_style, &cfg->kl_loss_type, &cfg->sft_data,
        &cfg->user_base_url, &cfg->user_api_key_var, &cfg->llm_cache_dir,
        &cfg->checkpoint,     &cfg->train_device, &cfg->rollout_device,
    };
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
        free(*owned[i]);
        *owned[i] = NULL;
    }
    for (int i = 0; i < cfg->n_eval_datasets; i++) {
        EvalDataset *d = &cfg->eval_datasets[i];
        free(d->name), free(d->path), free(d->domain), free(d->task_split);
        user_models_free(d->user_models), free(d->user_base_url), free(d->user_api_key_var);
    }
    user_models_free(cfg->user_models);
    cfg->user_models = NULL;
    free(cfg->eval_datasets);
    cfg->eval_datasets = NULL;
    cfg->n_eval_datasets = 0;
}

char **user_models_from_json(const cJSON *v) {
    int n = 0;
    if (cJSON_IsString(v)) {
        n = 1;
    } else if (cJSON_IsArray(v)) {
        for (const cJSON *x = v->child; x; x = x->next, n++)
            if (!cJSON_IsString(x)) return NULL;
    }
    if (n == 0) return NULL;
    char **out = xcalloc((size_t)n + 1, sizeof *out);
    if (cJSON_IsString(v)) {
        out[0] = xstrdup(v->valuestring);
        return out;
    }
    int i = 0;
    for (const cJSON *x = v->child; x; x = x->next) out[i++] = xstrdup(x->valuestring);
    return out;
}

int user_models_count(char *const *models) {
    int n = 0;
    while (models && models[n]) n++;
    return n;
}

char **user_models_dup(char *const *models) {
    if (!models) return NULL;
    int n = user_models_count(models);
    char **out = xcalloc((size_t)n + 1, sizeof *out);
    for (int i = 0; i < n; i++) out[i] = xstrdup(models[i]);
    return out;
}

void user_models_free(char **models) {
    for (int i = 0; models && models[i]; i++) free(models[i]);
    free(models);
}

const char *job_config_output_dir_origin(const JobConfig *cfg) {
    return cfg->output_dir_from_cli ? "--output-dir" : "field 'output_dir'";
}
