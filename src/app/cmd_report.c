/* cmd_report.c — `tau2_hpc report RUN_DIR`: one self-contained HTML page
 * of a run (training curves, evaluation tables and charts, a trajectory
 * viewer), written next to the run's files or where --output says.
 *
 * Inputs (doc/eval.md): RUN_DIR/metrics.jsonl (required), every
 * RUN_DIR/eval/<tag>/<dataset>/{results.json,trajectories.jsonl}, and the
 * job configuration kept in the latest checkpoint (optional). This file
 * gathers them into one JSON object; report_html.c turns that into the
 * page. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "app/cli.h"
#include "app/report_html.h"
#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "io/checkpoint.h"

/* A run with many checkpoints and datasets would otherwise embed every
 * conversation of every evaluation: the viewer keeps the first N episodes
 * of each (tag, dataset) and says so, and long messages (tool results that
 * dump a database) are cut. */
#define REPORT_DEFAULT_MAX_TRAJECTORIES 200
#define REPORT_MAX_MESSAGE_BYTES 4000

static const char *const USAGE = "usage: tau2_hpc report RUN_DIR [--output FILE] [--max-trajectories N]";

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* ---------------------------------------------------------------- JSON lines */

/* One line of a JSONL file as a JSON object; input errors exit 2 naming
 * path:line:column. */
static cJSON *parse_line_or_die(const char *path, int lineno, const char *text, size_t len) {
    char err[512];
    cJSON *v = json_parse(text, len, "", err, sizeof err);
    if (!v) {
        /* json_parse wrote ":1:<col>: <what>" for this one-line text */
        int line = 0, col = 0, used = 0;
        if (sscanf(err, ":%d:%d: %n", &line, &col, &used) == 2 && used > 0)
            die_input("%s:%d:%d: %s", path, lineno, col, err + used);
        die_input("%s:%d: %s", path, lineno, err);
    }
    if (!cJSON_IsObject(v)) die_input("%s:%d: expected a JSON object", path, lineno);
    return v;
}

typedef void (*LineFn)(void *ctx, cJSON *row, const char *path, int lineno);

/* Call fn (which takes the row) for each non-blank line of path, parsing at
 * most `limit` of them (limit < 0: all); returns the number of non-blank
 * lines. A last line without its newline that does not parse is a line
 * still being written by a live run: it is skipped with a warning. */
static int jsonl_read_or_die(const char *path, int limit, LineFn fn, void *ctx) {
    char err[512];
    size_t len;
    char *text = file_read_all(path, &len, err, sizeof err);
    if (!text) die_input("%s", err);
    int lineno = 0, count = 0;
    for (size_t pos = 0; pos < len;) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == n) continue;
        count++;
        if (limit >= 0 && count > limit) continue;
        if (!nl) {
            cJSON *probe = json_parse(s, n, "", err, sizeof err);
            if (!probe) {
                fprintf(stderr, "%s: warning: %s:%d: skipping an incomplete last line\n", g_prog_name, path, lineno);
                count--;
                continue;
            }
            cJSON_Delete(probe);
        }
        fn(ctx, parse_line_or_die(path, lineno, s, n), path, lineno);
    }
    free(text);
    return count;
}

static void add_metrics_row(void *ctx, cJSON *row, const char *path, int lineno) {
    if (!cJSON_IsNumber(json_get(row, "step"))) die_input("%s:%d: field 'step': expected a number", path, lineno);
    const cJSON *phase = json_get(row, "phase");
    if (phase && (!cJSON_IsString(phase) || (strcmp(phase->valuestring, "sft") && strcmp(phase->valuestring, "grpo") &&
                                             strcmp(phase->valuestring, "eval"))))
        die_input("%s:%d: field 'phase': expected \"sft\", \"grpo\" or \"eval\"", path, lineno);
    cJSON_AddItemToArray((cJSON *)ctx, row);
}

/* ---------------------------------------------------------------- evaluations */

typedef struct {
    char **name;
    int n, cap;
} Names;

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The subdirectories of dir, sorted by name (none when dir is missing). */
static Names list_subdirs(const char *dir) {
    Names out = {0};
    DIR *d = opendir(dir);
    if (!d) return out;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        bool sub = cli_is_dir(p);
        free(p);
        if (!sub) continue;
        if (out.n == out.cap) {
            out.cap = out.cap ? 2 * out.cap : 16;
            out.name = xrealloc(out.name, (size_t)out.cap * sizeof *out.name);
        }
        out.name[out.n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (out.n > 1) qsort(out.name, (size_t)out.n, sizeof *out.name, cmp_name);
    return out;
}

static void names_free(Names *ns) {
    for (int i = 0; i < ns->n; i++) free(ns->name[i]);
    free(ns->name);
}

/* Cut a long message text at a UTF-8 character boundary and say so. */
static void trim_content(cJSON *msg) {
    cJSON *c = json_get(msg, "content");
    if (!cJSON_IsString(c)) return;
    size_t len = strlen(c->valuestring);
    if (len <= REPORT_MAX_MESSAGE_BYTES) return;
    size_t cut = REPORT_MAX_MESSAGE_BYTES;
    while (cut > 0 && ((unsigned char)c->valuestring[cut] & 0xC0) == 0x80) cut--;
    SBuf b;
    sbuf_init(&b);
    sbuf_put(&b, c->valuestring, cut);
    sbuf_printf(&b, "\n… [%zu more bytes not shown in the report]", len - cut);
    json_set(msg, "content", cJSON_CreateString(b.data));
    sbuf_free(&b);
}

typedef struct {
    cJSON *episodes;      /* array the kept episodes go to */
    const cJSON *results; /* results.json's rows, or NULL */
    int index;
} EpisodeSink;

static void add_episode(void *ctx, cJSON *ep, const char *path, int lineno) {
    EpisodeSink *sink = ctx;
    const cJSON *msgs = json_get(ep, "messages");
    if (msgs && !cJSON_IsArray(msgs) && !cJSON_IsNull(msgs))
        die_input("%s:%d: field 'messages': expected a list of messages", path, lineno);
    for (cJSON *m = msgs ? msgs->child : NULL; m; m = m->next) trim_content(m);
    /* trajectories.jsonl follows the order of results.json's rows: take
     * from the row what the trajectory line does not repeat (the reason an
     * episode was not scored, its step and turn counts). */
    const cJSON *row = sink->results ? cJSON_GetArrayItem(sink->results, sink->index) : NULL;
    static const char *const from_row[] = {"error", "steps", "turns", "task_index", NULL};
    for (const char *const *k = from_row; *k; k++) {
        const cJSON *v = json_get(row, *k);
        if (v && !json_get(ep, *k)) cJSON_AddItemToObject(ep, *k, cJSON_Duplicate(v, 1));
    }
    sink->index++;
    cJSON_AddItemToArray(sink->episodes, ep);
}

static long tag_step(const char *tag) {
    long step = 0;
    if (strncmp(tag, "step_", 5) == 0) step = strtol(tag + 5, NULL, 10);
    return step;
}

/* One eval/<tag>/<dataset> directory as {"tag", "step", "dataset",
 * "summary", "n_episodes", "episodes"}, or NULL when it holds neither
 * results.json nor trajectories.jsonl. */
static cJSON *load_eval_group(const char *dir, const char *tag, const char *dataset, int max_traj) {
    char *results_path = path_join(dir, "results.json");
    char *traj_path = path_join(dir, "trajectories.jsonl");
    bool have_results = is_file(results_path), have_traj = is_file(traj_path);
    if (!have_results && !have_traj) {
        free(results_path);
        free(traj_path);
        return NULL;
    }
    cJSON *summary = NULL, *rows = NULL;
    if (have_results) {
        char err[512];
        summary = json_load_file(results_path, err, sizeof err);
        if (!summary) die_input("%s", err);
        if (!cJSON_IsObject(summary)) die_input("%s: expected a JSON object (doc/eval.md)", results_path);
        rows = cJSON_DetachItemFromObjectCaseSensitive(summary, "results");
        if (rows && !cJSON_IsArray(rows))
            die_input("%s: field 'results': expected a list of episode rows", results_path);
    }
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "tag", tag);
    const cJSON *step = json_get(summary, "step");
    cJSON_AddNumberToObject(g, "step", cJSON_IsNumber(step) ? step->valuedouble : (double)tag_step(tag));
    cJSON_AddStringToObject(g, "dataset", dataset);
    cJSON_AddItemToObject(g, "summary", summary ? summary : cJSON_CreateObject());
    cJSON *episodes = cJSON_CreateArray();
    int n_episodes = 0;
    if (have_traj) {
        EpisodeSink sink = {episodes, rows, 0};
        n_episodes = jsonl_read_or_die(traj_path, max_traj, add_episode, &sink);
    } else {
        /* no conversations: the viewer still lists the scored rows */
        int i = 0;
        for (const cJSON *r = rows ? rows->child : NULL; r; r = r->next, i++)
            if (i < max_traj) cJSON_AddItemToArray(episodes, cJSON_Duplicate(r, 1));
        n_episodes = i;
    }
    cJSON_AddNumberToObject(g, "n_episodes", n_episodes);
    cJSON_AddItemToObject(g, "episodes", episodes);
    cJSON_Delete(rows);
    free(results_path);
    free(traj_path);
    return g;
}

static int cmp_group(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    double sx = json_get(x, "step")->valuedouble, sy = json_get(y, "step")->valuedouble;
    if (sx != sy) return sx < sy ? -1 : 1;
    int c = strcmp(json_get_str(x, "tag"), json_get_str(y, "tag"));
    return c ? c : strcmp(json_get_str(x, "dataset"), json_get_str(y, "dataset"));
}

/* Every evaluation of the run, ordered by step, tag, dataset. */
static cJSON *load_evals(const char *run_dir, int max_traj, int *n_traj) {
    char *eval_dir = path_join(run_dir, "eval");
    Names tags = list_subdirs(eval_dir);
    cJSON **groups = NULL;
    int n = 0, cap = 0;
    for (int t = 0; t < tags.n; t++) {
        char *tag_dir = path_join(eval_dir, tags.name[t]);
        Names sets = list_subdirs(tag_dir);
        for (int s = 0; s < sets.n; s++) {
            char *dir = path_join(tag_dir, sets.name[s]);
            cJSON *g = load_eval_group(dir, tags.name[t], sets.name[s], max_traj);
            free(dir);
            if (!g) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                groups = xrealloc(groups, (size_t)cap * sizeof *groups);
            }
            groups[n++] = g;
        }
        names_free(&sets);
        free(tag_dir);
    }
    if (n > 1) qsort(groups, (size_t)n, sizeof *groups, cmp_group);
    cJSON *arr = cJSON_CreateArray();
    *n_traj = 0;
    for (int i = 0; i < n; i++) {
        *n_traj += cJSON_GetArraySize(json_get(groups[i], "episodes"));
        cJSON_AddItemToArray(arr, groups[i]);
    }
    free(groups);
    names_free(&tags);
    free(eval_dir);
    return arr;
}

/* ---------------------------------------------------------------- config */

/* The job configuration from the latest checkpoint's config attribute, or
 * NULL (no checkpoint yet, or one that cannot be read: the report is still
 * useful without it, so that is a warning). */
static cJSON *load_config(const char *run_dir) {
    char *ckpt_dir = path_join(run_dir, "ckpt");
    cJSON *job = NULL;
    if (cli_is_dir(ckpt_dir)) {
        char path[4096], err[512];
        char *text = NULL;
        if (ckpt_latest(ckpt_dir, path, sizeof path, err, sizeof err) == 0)
            text = ckpt_read_config(path, err, sizeof err);
        cJSON *doc = text ? json_parse(text, strlen(text), path, err, sizeof err) : NULL;
        if (doc) job = cJSON_DetachItemFromObjectCaseSensitive(doc, "job");
        else fprintf(stderr, "%s: warning: report: %s (the report leaves the configuration out)\n", g_prog_name, err);
        if (job && !cJSON_IsObject(job)) cJSON_Delete(job), job = NULL;
        cJSON_Delete(doc);
        free(text);
    }
    free(ckpt_dir);
    return job;
}

/* ---------------------------------------------------------------- command */

/* The last path component of dir, trailing slashes ignored. */
static char *run_name(const char *dir) {
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/') start--;
    return end > start ? xstrndup(dir + start, end - start) : xstrdup(dir);
}

int cmd_report(int argc, char **argv) {
    static const CliOption known[] = {{"--output", CLI_VALUE}, {"--max-trajectories", CLI_VALUE}, {NULL, 0}};
    const char *run_dir;
    cli_check_args("report", argc, argv, known, 1, &run_dir, USAGE);
    if (!run_dir) die_input("report: a run directory is required (%s)", USAGE);
    const char *output = cli_opt(argc, argv, "--output");
    int max_traj = REPORT_DEFAULT_MAX_TRAJECTORIES;
    const char *mt = cli_opt(argc, argv, "--max-trajectories");
    if (mt) max_traj = (int)cli_long("report", "--max-trajectories", mt, 0, 1000000, NULL);
    if (!cli_is_dir(run_dir)) die_input("report: %s: no such run directory", run_dir);
    char *out_path = output ? xstrdup(output) : path_join(run_dir, "report.html");
    char err[1024];
    if (path_check_output(out_path, 0, err, sizeof err) != 0) die_input("report: %s%s", output ? "--output: " : "", err);
    char *metrics_path = path_join(run_dir, "metrics.jsonl");
    if (!is_file(metrics_path))
        die_input("report: %s: missing (a run directory holds the metrics.jsonl its job writes)", metrics_path);

    cJSON *data = cJSON_CreateObject();
    cJSON *run = cJSON_AddObjectToObject(data, "run");
    char *name = run_name(run_dir);
    cJSON_AddStringToObject(run, "name", name);
    char *abs = realpath(run_dir, NULL); /* libc's malloc: released with free */
    cJSON_AddStringToObject(run, "dir", abs ? abs : run_dir);
    free(abs);
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    cJSON_AddStringToObject(run, "generated", when);
    cJSON_AddNumberToObject(data, "max_trajectories", max_traj);
    cJSON *config = load_config(run_dir);
    cJSON_AddItemToObject(data, "config", config ? config : cJSON_CreateNull());
    cJSON *metrics = cJSON_AddArrayToObject(data, "metrics");
    int n_rows = jsonl_read_or_die(metrics_path, -1, add_metrics_row, metrics);
    int n_traj = 0;
    cJSON *evals = load_evals(run_dir, max_traj, &n_traj);
    int n_evals = cJSON_GetArraySize(evals);
    cJSON_AddItemToObject(data, "eval", evals);

    SBuf page;
    sbuf_init(&page);
    report_html_write(&page, name, data);
    if (file_write_atomic(out_path, page.data, page.len, err, sizeof err) != 0) die_runtime("report: %s", err);
    printf("report: wrote %s (%.1f KiB: %d metrics rows, %d evaluations, %d trajectories)\n", out_path,
           page.len / 1024.0, n_rows, n_evals, n_traj);

    free(out_path);
    sbuf_free(&page);
    cJSON_Delete(data);
    free(name);
    free(metrics_path);
    return EXIT_OK;
}
