/* tau2_test_util.h — shared helpers for the environment tests. */
#ifndef TAU2_TEST_UTIL_H
#define TAU2_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "tau2/env.h"
#include "tau2/episode.h"
#include "tau2/evaluate.h"
#include "tau2/oracle.h"
#include "tau2/task.h"

static inline Domain *test_load_domain(const char *name) {
    char err[1024];
    Domain *d = domain_load(TAU2_TEST_DATA_DIR, name, err, sizeof err);
    if (!d) {
        fprintf(stderr, "cannot load domain %s: %s\n", name, err);
        exit(1);
    }
    return d;
}

static inline TaskSet *test_load_tasks(const Domain *d) {
    char err[1024];
    TaskSet *ts = taskset_load(d, err, sizeof err);
    if (!ts) {
        fprintf(stderr, "cannot load tasks: %s\n", err);
        exit(1);
    }
    return ts;
}

/* Run the oracle on a task; the caller frees the episode. */
static inline Episode *test_run_oracle(const Domain *d, const cJSON *task, int max_steps) {
    char err[1024];
    EpisodeOptions eo = {max_steps, EPISODE_DEFAULT_MAX_ERRORS};
    Episode *ep = episode_new(d, task, &eo, err, sizeof err);
    if (!ep) {
        fprintf(stderr, "episode_new(%s): %s\n", task_id(task), err);
        exit(1);
    }
    Oracle o;
    oracle_init(&o, task);
    episode_run(ep, &o.agent, &o.user);
    return ep;
}

/* Lines of a JSONL fixture (NULL if the file is absent). */
static inline cJSON *test_load_jsonl(const char *path) {
    size_t len;
    char err[512];
    char *text = file_read_all(path, &len, err, sizeof err);
    if (!text) return NULL;
    cJSON *arr = cJSON_CreateArray();
    char *line = text;
    int lineno = 1;
    while (*line) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (n) {
            cJSON *v = json_parse(line, n, path, err, sizeof err);
            if (!v) {
                fprintf(stderr, "%s:%d: %s\n", path, lineno, err);
                exit(1);
            }
            cJSON_AddItemToArray(arr, v);
        }
        if (!nl) break;
        line = nl + 1;
        lineno++;
    }
    free(text);
    return arr;
}

#endif
