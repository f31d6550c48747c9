/* config.h — job configs (the JSON files under inputs/). Errors name the file, the field
 * and what was expected, and exit 2 before any work; an unknown key is
 * reported with the nearest valid key. */
#ifndef TAU2_APP_CONFIG_H
#define TAU2_APP_CONFIG_H

#include <cJSON.h>

#include "rl/job_config.h"

/* Exit 2 when obj has a key not in `known` (NULL-terminated), suggesting
 * the nearest known key. `where` names the object ("inputs/x.json"). */
void config_check_keys(const cJSON *obj, const char *const *known, const char *where);

typedef struct {
    char *data_dir;   /* NULL: --data-dir / TAU2_DATA_DIR / default */
    char **domains;
    int n_domains;
    char *split;      /* default "base" */
    int max_steps;    /* default 200 */
    int max_errors;   /* default 10 */
    char *output;     /* JSONL of episodes, or NULL */
} OracleJobConfig;

/* Load a config whose job is "oracle" (exit 2 on any error; other jobs are
 * reported as not available in this build). */
void config_load_oracle(const char *path, OracleJobConfig *cfg);
void config_free_oracle(OracleJobConfig *cfg);

/* Load a config whose job is "sft" or "grpo" into cfg (which the caller
 * frees with job_config_free). Checks every key, type and range, fills the
 * defaults written in rl/job_config.h, requires what the job needs and checks
 * that the batch sizes fit together; any error exits 2 with a message naming
 * the file and the field. doc/config.md lists the keys. Checks that need the
 * world size (the rank layout) are left to the job. */
void config_load_job(const char *path, JobConfig *cfg);

#endif
