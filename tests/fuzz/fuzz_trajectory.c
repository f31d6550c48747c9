/* fuzz_trajectory.c — the task and trajectory readers: arbitrary bytes as a
 * trajectory (τ²-bench message list) replayed and scored against a real
 * task, and as a task whose initial state is applied. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "tau2/evaluate.h"
#include "tau2/task.h"

static Domain *g_domain;
static TaskSet *g_tasks;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("TAU2_DATA_DIR");
    char err[1024];
    g_domain = domain_load(dir ? dir : "../shared/tau2-data", "mock", err, sizeof err);
    if (!g_domain || !(g_tasks = taskset_load(g_domain, err, sizeof err))) {
        fprintf(stderr, "fuzz_trajectory: %s (set TAU2_DATA_DIR)\n", err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char err[512];
    cJSON *v = json_parse((const char *)data + 1, size - 1, "fuzz", err, sizeof err);
    if (!v) return 0;
    const cJSON *task = g_tasks->tasks[data[0] % g_tasks->n];
    if (cJSON_IsArray(v)) {
        /* As a trajectory: replay leniently and score. */
        EvalOptions opt;
        eval_options_default("mock", &opt);
        opt.strict_replay = false;
        Evaluation ev;
        evaluate_episode(g_domain, task, v, (Termination)(data[0] % 9), &opt, &ev);
        evaluation_free(&ev);
    } else {
        /* As a task's initial_state. */
        Env *env = env_new(g_domain);
        env_set_initial_state(env, v, err, sizeof err);
        env_free(env);
        /* And as a whole task: episode setup and evaluation of its greeting. */
        Episode *ep = episode_new(g_domain, v, NULL, err, sizeof err);
        if (ep) {
            Evaluation ev;
            evaluate_episode(g_domain, v, ep->messages, TERM_USER_STOP, NULL, &ev);
            evaluation_free(&ev);
            episode_free(ep);
        }
    }
    cJSON_Delete(v);
    return 0;
}
