/* task.h — τ²-bench task sets: tasks.json and split_tasks.json of a domain.
 *
 * Tasks stay JSON (the τ²-bench Task schema); accessors read what the
 * engine needs. Two kinds of older data are accepted, as the 2025-06
 * release wrote them: no split_tasks.json (every task is in split "base"),
 * and evaluation criteria without reward_basis (→ ["DB", "COMMUNICATE"]). */
#ifndef TAU2_TASK_H
#define TAU2_TASK_H

#include <stdbool.h>

#include <cJSON.h>

#include "tau2/env.h"

typedef struct {
    char *domain;
    cJSON *root;          /* the parsed tasks file (owned) */
    const cJSON **tasks;  /* task objects in file order */
    int n;
    cJSON *splits;        /* split name → array of task ids (owned) */
} TaskSet;

/* Load <domain_dir>/tasks.json and its split file. Every task is checked
 * for the fields the engine uses; errors name the file, the task index and
 * the field. */
TaskSet *taskset_load(const Domain *d, char *err, size_t errlen);
void taskset_free(TaskSet *ts);

const cJSON *taskset_find(const TaskSet *ts, const char *task_id);
/* Tasks of a split in tasks-file order (as τ²-bench filters them). Returns
 * the count and a new array (caller frees the array, not the tasks), or -1
 * with err listing the valid split names. */
int taskset_split(const TaskSet *ts, const char *split, const cJSON ***out, char *err, size_t errlen);
/* Comma-separated split names, in file order. Caller frees. */
char *taskset_split_names(const TaskSet *ts);

const char *task_id(const cJSON *task);
/* The reward basis as bit flags. */
enum {
    BASIS_DB = 1,
    BASIS_ENV_ASSERTION = 2,
    BASIS_ACTION = 4,
    BASIS_COMMUNICATE = 8,
    BASIS_NL_ASSERTION = 16,
};
int task_reward_basis(const cJSON *task);
/* The task's user_scenario.instructions.reason_for_call (or the plain
 * string instructions), for scripted users. */
const char *task_reason_for_call(const cJSON *task);

#endif
