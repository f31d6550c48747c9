/* prompts.c — see prompts.h. */
#include "rl/prompts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "llm/llm_client.h"
#include "rl/job_config.h"

static int find_domain(PromptSet *ps, const char *name, const char *data_dir, char *err, size_t errlen) {
    for (int i = 0; i < ps->n_domains; i++)
        if (strcmp(ps->domains[i]->spec->name, name) == 0) return i;
    Domain *d = domain_load(data_dir, name, err, errlen);
    if (!d) return -1;
    TaskSet *ts = taskset_load(d, err, errlen);
    if (!ts) {
        domain_free(d);
        return -1;
    }
    ps->domains = xrealloc(ps->domains, (size_t)(ps->n_domains + 1) * sizeof *ps->domains);
    ps->tasksets = xrealloc(ps->tasksets, (size_t)(ps->n_domains + 1) * sizeof *ps->tasksets);
    ps->domains[ps->n_domains] = d;
    ps->tasksets[ps->n_domains] = ts;
    return ps->n_domains++;
}

static bool split_has(const TaskSet *ts, const char *split, const char *id) {
    const cJSON *ids = json_get(ts->splits, split);
    for (const cJSON *x = ids ? ids->child : NULL; x; x = x->next)
        if (cJSON_IsString(x) && strcmp(x->valuestring, id) == 0) return true;
    return false;
}

static int row_error(char *err, size_t errlen, const char *path, int line, const char *fmt, const char *a,
                     const char *b) {
    char msg[2048];
    snprintf(msg, sizeof msg, fmt, a, b);
    snprintf(err, errlen, "%s:%d: %s", path, line, msg);
    return -1;
}

/* Resolve one row. */
static int add_row(PromptSet *ps, const cJSON *row, const char *path, int line, const char *data_dir,
                   const PromptLoadOptions *o, char *err, size_t errlen) {
    if (!cJSON_IsObject(row)) return row_error(err, errlen, path, line, "expected a JSON object%s%s", "", "");
    const cJSON *md = json_get(row, "metadata");
    if (md && !cJSON_IsObject(md)) return row_error(err, errlen, path, line, "metadata: expected an object%s%s", "", "");
    const char *dom = o->domain ? o->domain : json_get_str(md, "domain");
    if (!dom) dom = o->default_domain;
    if (!dom)
        return row_error(err, errlen, path, line, "metadata.domain: missing, %s%s",
                         o->missing_hint ? o->missing_hint : "and the config sets no default_domain", "");
    if (!domain_spec_find(dom))
        return row_error(err, errlen, path, line, "metadata.domain: unknown domain '%s' (valid domains: %s)", dom,
                         domain_spec_names());
    const char *split = o->task_split ? o->task_split : json_get_str(md, "task_split");
    if (!split) split = o->default_split;
    if (!split)
        return row_error(err, errlen, path, line, "metadata.task_split: missing, %s%s",
                         o->missing_hint ? o->missing_hint : "and the config sets no default_task_split", "");
    const char *tid = json_get_str(md, "task_id");
    if (!tid) return row_error(err, errlen, path, line, "metadata.task_id: expected a string%s%s", "", "");
    char derr[1024];
    int di = find_domain(ps, dom, data_dir, derr, sizeof derr);
    if (di < 0) return row_error(err, errlen, path, line, "metadata.domain '%s': %s", dom, derr);
    const TaskSet *ts = ps->tasksets[di];
    const cJSON *task = taskset_find(ts, tid);
    if (!task) return row_error(err, errlen, path, line, "metadata.task_id: no task '%s' in domain %s", tid, dom);
    if (!json_get(ts->splits, split)) {
        char *names = taskset_split_names(ts);
        char msg[256];
        snprintf(msg, sizeof msg, "%s (valid splits: %s)", split, names);
        free(names);
        return row_error(err, errlen, path, line, "metadata.task_split: unknown split %s%s", msg, "");
    }
    if (!split_has(ts, split, tid))
        return row_error(err, errlen, path, line, "metadata.task_id: task '%s' is not in split '%s'", tid, split);
    const cJSON *idx = json_get(row, "index");
    /* the api user's per-row fields: their types here, their meaning in rl/user_routes.h */
    const cJSON *um = json_get(md, "user_model"), *url = json_get(md, "user_base_url"),
                *key = json_get(md, "user_api_key_var");
    char **models = NULL;
    if (um && !cJSON_IsNull(um) && !(models = user_models_from_json(um)))
        return row_error(err, errlen, path, line, "metadata.user_model: expected a model name or a non-empty list of "
                         "model names%s%s", "", "");
    if (url && !cJSON_IsNull(url) &&
        (!cJSON_IsString(url) || !llm_url_is_http(url->valuestring))) {
        user_models_free(models);
        return row_error(err, errlen, path, line,
                         "metadata.user_base_url: expected an http:// or https:// URL with a host%s%s",
                         "", "");
    }
    if (key && !cJSON_IsNull(key) && (!cJSON_IsString(key) || !*key->valuestring)) {
        user_models_free(models);
        return row_error(err, errlen, path, line,
                         "metadata.user_api_key_var: expected the name of an environment variable%s%s", "", "");
    }
    ps->rows = xrealloc(ps->rows, (size_t)(ps->n_rows + 1) * sizeof *ps->rows);
    PromptRow *r = &ps->rows[ps->n_rows];
    r->domain = di;
    r->task = task;
    r->task_split = xstrdup(split);
    r->row_index = json_is_int(idx) ? (int64_t)idx->valuedouble : ps->n_rows;
    r->line = line;
    r->user_models = models;
    r->user_base_url = cJSON_IsString(url) ? xstrdup(url->valuestring) : NULL;
    r->user_api_key_var = cJSON_IsString(key) ? xstrdup(key->valuestring) : NULL;
    ps->n_rows++;
    return 0;
}

PromptSet *prompts_load(const char *path, const char *data_dir, const char *default_domain,
                        const char *default_split, uint64_t seed, bool shuffle, bool balance, char *err,
                        size_t errlen) {
    PromptLoadOptions o = {.default_domain = default_domain, .default_split = default_split};
    return prompts_load_opts(path, data_dir, &o, seed, shuffle, balance, err, errlen);
}

/* Python's slice bounds over n rows. */
static int64_t slice_bound(int64_t b, int64_t n) {
    if (b < 0) b += n;
    if (b < 0) b = 0;
    if (b > n) b = n;
    return b;
}

PromptSet *prompts_load_opts(const char *path, const char *data_dir, const PromptLoadOptions *o, uint64_t seed,
                             bool shuffle, bool balance, char *err, size_t errlen) {
    size_t len;
    char *text = file_read_all(path, &len, err, errlen);
    if (!text) return NULL;
    /* the non-blank lines first: a slice counts rows, and may count from the end */
    int n_lines = 0, cap = 0;
    char **starts = NULL;
    size_t *lens = NULL;
    int *lines = NULL;
    int line = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) nl = text + len;
        line++;
        size_t n = (size_t)(nl - p);
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k == n) continue;
        if (n_lines == cap) {
            cap = cap ? 2 * cap : 64;
            starts = xrealloc(starts, (size_t)cap * sizeof *starts);
            lens = xrealloc(lens, (size_t)cap * sizeof *lens);
            lines = xrealloc(lines, (size_t)cap * sizeof *lines);
        }
        starts[n_lines] = p, lens[n_lines] = n, lines[n_lines] = line;
        n_lines++;
    }
    int64_t lo = 0, hi = n_lines;
    if (o->sliced) lo = slice_bound(o->slice_lo, n_lines), hi = slice_bound(o->slice_hi, n_lines);
    PromptSet *ps = xcalloc(1, sizeof *ps);
    ps->seed = seed, ps->shuffle = shuffle, ps->balance = balance, ps->cached_epoch = -1;
    ps->path = xstrdup(path);
    int rc = 0;
    for (int64_t i = lo; i < hi && rc == 0; i++) {
        char where[512], jerr[512];
        snprintf(where, sizeof where, "%s:%d", path, lines[i]);
        cJSON *row = json_parse(starts[i], lens[i], where, jerr, sizeof jerr);
        rc = row ? add_row(ps, row, path, lines[i], data_dir, o, err, errlen) : -1;
        if (!row) snprintf(err, errlen, "%s", jerr);
        cJSON_Delete(row);
    }
    free(starts), free(lens), free(lines), free(text);
    if (rc != 0) {
        prompts_free(ps);
        return NULL;
    }
    if (ps->n_rows == 0) {
        if (o->sliced)
            snprintf(err, errlen, "%s: the slice [%" PRId64 ":%" PRId64 "] selects no rows (the file has %d)", path,
                     o->slice_lo, o->slice_hi, n_lines);
        else
            snprintf(err, errlen, "%s: no prompt rows (expected JSONL rows {\"index\", \"metadata\": {\"domain\", "
                                  "\"task_split\", \"task_id\"}}, as tau2_hpc prepare writes)", path);
        prompts_free(ps);
        return NULL;
    }
    ps->order = xmalloc((size_t)ps->n_rows * sizeof(int));
    return ps;
}

void prompts_free(PromptSet *ps) {
    if (!ps) return;
    for (int i = 0; i < ps->n_rows; i++) {
        free(ps->rows[i].task_split);
        user_models_free(ps->rows[i].user_models);
        free(ps->rows[i].user_base_url);
        free(ps->rows[i].user_api_key_var);
    }
    free(ps->path);
    free(ps->rows);
    for (int i = 0; i < ps->n_domains; i++) {
        taskset_free(ps->tasksets[i]);
        domain_free(ps->domains[i]);
    }
    free(ps->tasksets);
    free(ps->domains);
    free(ps->order);
    free(ps);
}

/* Rows of one epoch: shuffled, then domains interleaved. */
static void build_order(PromptSet *ps, int64_t epoch) {
    int n = ps->n_rows;
    for (int i = 0; i < n; i++) ps->order[i] = i;
    if (ps->shuffle) {
        uint64_t s = rng_derive(ps->seed, (uint64_t)epoch);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(rng_uniform(s, 0, (uint64_t)i) * (double)(i + 1));
            int t = ps->order[i];
            ps->order[i] = ps->order[j];
            ps->order[j] = t;
        }
    }
    if (ps->balance && ps->n_domains > 1) {
        int *out = xmalloc((size_t)n * sizeof(int));
        int *next = xcalloc((size_t)ps->n_domains, sizeof(int)); /* scan position per domain */
        int k = 0;
        while (k < n) {
            for (int d = 0; d < ps->n_domains && k < n; d++) {
                while (next[d] < n && ps->rows[ps->order[next[d]]].domain != d) next[d]++;
                if (next[d] < n) out[k++] = ps->order[next[d]++];
            }
        }
        memcpy(ps->order, out, (size_t)n * sizeof(int));
        free(out);
        free(next);
    }
    ps->cached_epoch = epoch;
}

const PromptRow *prompts_at(PromptSet *ps, int64_t pos) {
    int64_t epoch = pos / ps->n_rows;
    if (epoch != ps->cached_epoch) build_order(ps, epoch);
    return &ps->rows[ps->order[pos % ps->n_rows]];
}

const Domain *prompts_domain(const PromptSet *ps, const char *name) {
    for (int i = 0; i < ps->n_domains; i++)
        if (strcmp(ps->domains[i]->spec->name, name) == 0) return ps->domains[i];
    return NULL;
}
