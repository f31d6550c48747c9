/* job_config.c — the owned parts of a JobConfig. Parsing lives in the app
 * layer (app/config.c); this layer only reads the struct. */
#include "rl/job_config.h"

#include <stdlib.h>
#include <string.h>

void job_config_free(JobConfig *cfg) {
    if (!cfg) return;
    char **owned[] = {
        &cfg->path,           &cfg->json,      &cfg->hash,         &cfg->job,
        &cfg->data_dir,       &cfg->output_dir, &cfg->model,       &cfg->tokenizer,
        &cfg->prompt_data,    &cfg->default_domain, &cfg->default_task_split, &cfg->user,
        &cfg->dynamic_sampling_filter, &cfg->lr_decay_style, &cfg->kl_loss_type, &cfg->sft_data,
        &cfg->user_model,     &cfg->user_base_url, &cfg->user_api_key_var, &cfg->llm_cache_dir,
        &cfg->checkpoint,
    };
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) {
        free(*owned[i]);
        *owned[i] = NULL;
    }
    for (int i = 0; i < cfg->n_eval_datasets; i++) {
        EvalDataset *d = &cfg->eval_datasets[i];
        free(d->name), free(d->path), free(d->domain), free(d->task_split);
        free(d->user_model), free(d->user_base_url), free(d->user_api_key_var);
    }
    free(cfg->eval_datasets);
    cfg->eval_datasets = NULL;
    cfg->n_eval_datasets = 0;
}
