#include "tau2/task.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/hmap.h"
#include "core/json.h"
#include "core/sbuf.h"

static int check_task(const cJSON *t, int index, const char *path, char *err, size_t errlen) {
    const char *what = NULL;
    if (!cJSON_IsObject(t)) what = "expected a task object";
    else if (!json_get_str(t, "id")) what = "field 'id': expected a string";
    else if (!cJSON_IsObject(json_get(t, "user_scenario"))) what = "field 'user_scenario': expected an object";
    else {
        const cJSON *ec = json_get(t, "evaluation_criteria");
        if (ec && !cJSON_IsNull(ec) && !cJSON_IsObject(ec)) what = "field 'evaluation_criteria': expected an object or null";
        const cJSON *actions = json_get(ec, "actions");
        if (!what && actions && !cJSON_IsNull(actions)) {
            if (!cJSON_IsArray(actions)) what = "field 'evaluation_criteria.actions': expected a list";
            for (const cJSON *a = cJSON_IsArray(actions) ? actions->child : NULL; a && !what; a = a->next)
                if (!json_get_str(a, "name")) what = "field 'evaluation_criteria.actions[].name': expected a string";
        }
        const cJSON *rb = json_get(ec, "reward_basis");
        for (const cJSON *b = cJSON_IsArray(rb) ? rb->child : NULL; b && !what; b = b->next) {
            const char *s = cJSON_IsString(b) ? b->valuestring : "";
            if (strcmp(s, "DB") && strcmp(s, "ENV_ASSERTION") && strcmp(s, "ACTION") && strcmp(s, "COMMUNICATE") &&
                strcmp(s, "NL_ASSERTION"))
                what = "field 'evaluation_criteria.reward_basis': expected DB, ENV_ASSERTION, ACTION, COMMUNICATE or "
                       "NL_ASSERTION";
        }
    }
    if (!what) return 0;
    snprintf(err, errlen, "%s: task %d (%s): %s", path, index,
             cJSON_IsObject(t) && json_get_str(t, "id") ? json_get_str(t, "id") : "?", what);
    return -1;
}

/* A task's initial_state is set up once here, in a scratch environment, so
 * that a task whose setup fails (data of the wrong shape, a misnamed
 * initialization action, a history whose replay disagrees) is refused at
 * load, naming the task, rather than failing when its episode starts. The
 * scratch environment shares the domain's base DBs, so this costs what
 * setting the states costs: tens of milliseconds for telecom's 2285 tasks. */
static int check_initial_state(const Domain *d, const cJSON *t, int index, const char *path, char *err,
                               size_t errlen) {
    const cJSON *init = json_get(t, "initial_state");
    if (!init || cJSON_IsNull(init)) return 0;
    if (!cJSON_IsObject(init)) {
        snprintf(err, errlen, "%s: task %d (%s): field 'initial_state': expected an object or null", path, index,
                 task_id(t));
        return -1;
    }
    char why[1024];
    Env *env = env_new(d);
    int rc = env_set_initial_state(env, init, why, sizeof why);
    env_free(env);
    if (rc == 0) return 0;
    snprintf(err, errlen, "%s: task %d (%s): initial_state.%s", path, index, task_id(t), why);
    return -1;
}

/* split_tasks.json: an object of split name → list of ids of tasks in
 * tasks.json. τ²-bench skips an id that names no task; here it is refused,
 * since a split that silently shrinks changes every score read from it. */
static int check_splits(const TaskSet *ts, const char *path, char *err, size_t errlen) {
    if (!cJSON_IsObject(ts->splits)) {
        snprintf(err, errlen, "%s: expected an object of split name → list of task ids", path);
        return -1;
    }
    HMap ids;
    hmap_init(&ids);
    for (int i = 0; i < ts->n; i++) hmap_put(&ids, task_id(ts->tasks[i]), (void *)ts->tasks[i]);
    int rc = 0;
    for (const cJSON *s = ts->splits->child; s && rc == 0; s = s->next) {
        if (!cJSON_IsArray(s)) {
            snprintf(err, errlen, "%s: split '%s': expected a list of task ids", path, s->string);
            rc = -1;
        }
        int i = 0;
        for (const cJSON *x = cJSON_IsArray(s) ? s->child : NULL; x && rc == 0; x = x->next, i++) {
            if (!cJSON_IsString(x)) {
                snprintf(err, errlen, "%s: split '%s', entry %d: expected a task id (a string)", path, s->string, i);
                rc = -1;
            } else if (!hmap_get(&ids, x->valuestring)) {
                snprintf(err, errlen, "%s: split '%s', entry %d: '%s' is no task of tasks.json", path, s->string, i,
                         x->valuestring);
                rc = -1;
            }
        }
    }
    hmap_free(&ids);
    return rc;
}

TaskSet *taskset_load(const Domain *d, char *err, size_t errlen) {
    size_t n = strlen(d->dir) + 32;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/tasks.json", d->dir);
    cJSON *root = json_load_file(path, err, errlen);
    if (!root) {
        free(path);
        return NULL;
    }
    /* Some task files wrap the list as {"tasks": [...]}. */
    cJSON *list = root;
    if (cJSON_IsObject(root) && cJSON_IsArray(json_get(root, "tasks"))) list = json_get(root, "tasks");
    if (!cJSON_IsArray(list)) {
        snprintf(err, errlen, "%s: expected a list of tasks", path);
        cJSON_Delete(root);
        free(path);
        return NULL;
    }
    TaskSet *ts = xcalloc(1, sizeof *ts);
    ts->domain = xstrdup(d->spec->name);
    ts->root = root;
    ts->n = cJSON_GetArraySize(list);
    ts->tasks = xcalloc((size_t)ts->n + 1, sizeof *ts->tasks);
    int i = 0;
    for (const cJSON *t = list->child; t; t = t->next, i++) {
        if (check_task(t, i, path, err, errlen) != 0 || check_initial_state(d, t, i, path, err, errlen) != 0) {
            taskset_free(ts);
            free(path);
            return NULL;
        }
        ts->tasks[i] = t;
    }
    snprintf(path, n, "%s/split_tasks.json", d->dir);
    struct stat st;
    if (stat(path, &st) == 0) {
        ts->splits = json_load_file(path, err, errlen);
        if (!ts->splits || check_splits(ts, path, err, errlen) != 0) {
            taskset_free(ts);
            free(path);
            return NULL;
        }
    } else {
        /* 2025-06 release: no split file; every task is in "base". */
        ts->splits = cJSON_CreateObject();
        cJSON *ids = cJSON_AddArrayToObject(ts->splits, "base");
        for (i = 0; i < ts->n; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(task_id(ts->tasks[i])));
    }
    free(path);
    return ts;
}

void taskset_free(TaskSet *ts) {
    if (!ts) return;
    free(ts->domain);
    cJSON_Delete(ts->root);
    cJSON_Delete(ts->splits);
    free(ts->tasks);
    free(ts);
}

const char *task_id(const cJSON *task) { return json_get_str(task, "id"); }

const cJSON *taskset_find(const TaskSet *ts, const char *id) {
    for (int i = 0; i < ts->n; i++)
        if (strcmp(task_id(ts->tasks[i]), id) == 0) return ts->tasks[i];
    return NULL;
}

char *taskset_split_names(const TaskSet *ts) {
    SBuf b;
    sbuf_init(&b);
    for (const cJSON *s = ts->splits->child; s; s = s->next) {
        if (b.len) sbuf_puts(&b, ", ");
        sbuf_puts(&b, s->string);
    }
    return sbuf_take(&b);
}

int taskset_split(const TaskSet *ts, const char *split, const cJSON ***out, char *err, size_t errlen) {
    const cJSON *ids = json_get(ts->splits, split);
    if (!cJSON_IsArray(ids)) {
        char *names = taskset_split_names(ts);
        snprintf(err, errlen, "unknown split '%s' for domain %s (valid splits: %s)", split, ts->domain, names);
        free(names);
        return -1;
    }
    /* Membership through a hash set keeps big splits (telecom full: 2285) linear. */
    HMap members;
    hmap_init(&members);
    for (const cJSON *x = ids->child; x; x = x->next)
        if (cJSON_IsString(x)) hmap_put(&members, x->valuestring, (void *)x);
    const cJSON **sel = xcalloc((size_t)ts->n + 1, sizeof *sel);
    int m = 0;
    for (int i = 0; i < ts->n; i++)
        if (hmap_get(&members, task_id(ts->tasks[i]))) sel[m++] = ts->tasks[i];
    hmap_free(&members);
    *out = sel;
    return m;
}

int task_reward_basis(const cJSON *task) {
    const cJSON *ec = json_get(task, "evaluation_criteria");
    const cJSON *rb = json_get(ec, "reward_basis");
    if (!rb || cJSON_IsNull(rb)) return BASIS_DB | BASIS_COMMUNICATE;
    int bits = 0;
    for (const cJSON *b = rb->child; b; b = b->next) {
        const char *s = cJSON_IsString(b) ? b->valuestring : "";
        if (!strcmp(s, "DB")) bits |= BASIS_DB;
        else if (!strcmp(s, "ENV_ASSERTION")) bits |= BASIS_ENV_ASSERTION;
        else if (!strcmp(s, "ACTION")) bits |= BASIS_ACTION;
        else if (!strcmp(s, "COMMUNICATE")) bits |= BASIS_COMMUNICATE;
        else if (!strcmp(s, "NL_ASSERTION")) bits |= BASIS_NL_ASSERTION;
    }
    return bits;
}

const char *task_reason_for_call(const cJSON *task) {
    const cJSON *ins = json_get(json_get(task, "user_scenario"), "instructions");
    if (cJSON_IsString(ins)) return ins->valuestring;
    const char *r = json_get_str(ins, "reason_for_call");
    return r ? r : "Hi.";
}
