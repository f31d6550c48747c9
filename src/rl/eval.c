/* eval.c — see eval.h. */
#include "rl/eval.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <xxhash.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/sbuf.h"
#include "core/stop_signal.h"
#include "io/checkpoint.h"
#include "io/metrics.h"
#include "io/run_lock.h"
#include "io/tb_events.h"
#include "model/gpu_check.h"
#include "model/infer.h"
#include "model/infer_gpu.h"
#include "model/qwen3.h"
#include "rl/eval_tau2.h"
#include "rl/job.h"
#include "rl/job_memory.h"
#include "rl/passk.h"

/* ================================================================ datasets */

EvalSet *eval_set_load(const JobConfig *cfg, const char *data_dir, const RolloutOptions *base,
                       const RolloutUser *user, bool engine, const char *cache_dir) {
    EvalSet *es = xcalloc(1, sizeof *es);
    es->n_sets = cfg->n_eval_datasets;
    /* episodes one engine runs at once in a round, about: enough to batch
     * the decode, few enough that a kill loses little */
    es->round_episodes = cfg->eval_round_episodes > 0 ? cfg->eval_round_episodes : 32;
    es->sets = xcalloc((size_t)(es->n_sets > 0 ? es->n_sets : 1), sizeof *es->sets);
    for (int i = 0; i < es->n_sets; i++) {
        const EvalDataset *d = &cfg->eval_datasets[i];
        EvalDatasetRun *r = &es->sets[i];
        r->ds = d;
        char err[2048];
        PromptLoadOptions po = {.domain = d->domain,
                                .task_split = d->task_split,
                                .sliced = d->sliced,
                                .slice_lo = d->slice_lo,
                                .slice_hi = d->slice_hi,
                                .missing_hint = "and the dataset's metadata_overrides give none"};
        r->rows = prompts_load_opts(d->path, data_dir, &po, cfg->seed, false, false, err, sizeof err);
        if (!r->rows) die_input("%s: eval dataset '%s': %s", cfg->path, d->name, err);
        r->opt = *base;
        r->opt.sample = (SampleParams){.temperature = (float)d->temperature, .top_p = (float)d->top_p,
                                       .top_k = d->top_k};
        /* a dataset's seeds depend on its name only: every evaluation of a
         * run draws the same streams (common random numbers across checkpoints) */
        r->opt.seed = rng_derive(cfg->seed, XXH64(d->name, strlen(d->name), 0));
        r->opt.n_samples = d->n_samples;
        r->opt.max_response_len = d->max_response_len;
        if (d->max_turns > 0) r->opt.episode.max_steps = d->max_turns;
        r->opt.keep_messages = true;
        r->user = *user;
        char where[2200];
        snprintf(where, sizeof where, "%s: eval dataset '%s'", cfg->path, d->name);
        user_routes_build(&r->routes, &es->eps, cfg, d, r->rows, where);
    }
    if (es->eps.n_eps > 0 && engine) {
        es->client = user_endpoints_client(&es->eps, cfg, cache_dir);
        for (int i = 0; i < es->n_sets; i++) es->sets[i].user.client = es->client, es->sets[i].user.endpoint = 0;
    }
    return es;
}

void eval_set_free(EvalSet *es) {
    if (!es) return;
    for (int i = 0; i < es->n_sets; i++) {
        user_routes_free(&es->sets[i].routes);
        prompts_free(es->sets[i].rows);
    }
    free(es->sets);
    llm_client_free(es->client);
    user_endpoints_free(&es->eps);
    free(es);
}

/* ================================================================ one task's line */

/* A unit of work: task row `row` of dataset `set`. */
typedef struct {
    int set, row;
} EvalUnit;

static cJSON *parse_or_null(const char *text) {
    char err[256];
    cJSON *v = text && *text ? json_parse(text, strlen(text), "episode", err, sizeof err) : NULL;
    return v ? v : cJSON_CreateNull();
}

/* The JSON line of one finished task: its n episodes from rb[first ..]. */
static cJSON *unit_line(const EvalDatasetRun *r, int row, const RolloutBuffer *rb, int first) {
    const PromptRow *pr = &r->rows->rows[row];
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "dataset", r->ds->name);
    cJSON_AddItemToObject(line, "task_index", json_int(row));
    cJSON_AddStringToObject(line, "task_id", task_id(pr->task));
    cJSON_AddStringToObject(line, "domain", r->rows->domains[pr->domain]->spec->name);
    cJSON_AddStringToObject(line, "task_split", pr->task_split);
    cJSON *eps = cJSON_AddArrayToObject(line, "episodes");
    for (int s = 0; s < r->opt.n_samples; s++) {
        RolloutEpisode e = rollout_buffer_episode(rb, first + s);
        cJSON *ep = cJSON_CreateObject();
        bool infra = strcmp(e.termination, termination_name(TERM_INFRASTRUCTURE_ERROR)) == 0;
        cJSON *msgs = parse_or_null(e.messages);
        cJSON_AddItemToObject(ep, "sample", json_int(s));
        /* the model that played the customer (api and local users) */
        cJSON *ref = parse_or_null(e.task_ref);
        const char *user_model = json_get_str(ref, "user_model");
        if (user_model) cJSON_AddStringToObject(ep, "user_model", user_model);
        /* when it ran (τ²-bench's results file); not in results.json, which
         * depends on the weights and the seeds only */
        static const char *const times[] = {"start_time", "end_time", "duration"};
        for (int k = 0; k < 3; k++)
            if (json_get(ref, times[k])) cJSON_AddItemToObject(ep, times[k], cJSON_Duplicate(json_get(ref, times[k]), 1));
        cJSON_Delete(ref);
        cJSON_AddItemToObject(ep, "reward", json_float(e.reward_raw));
        cJSON_AddBoolToObject(ep, "success", !infra && e.reward_raw > 1.0 - 1e-6);
        cJSON_AddItemToObject(ep, "steps", json_int(cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : 0));
        cJSON_AddItemToObject(ep, "turns", json_int(e.turns));
        cJSON_AddStringToObject(ep, "status", e.termination);
        if (infra) cJSON_AddStringToObject(ep, "error", "infrastructure_error: the user simulator or judge failed");
        else cJSON_AddNullToObject(ep, "error");
        cJSON_AddItemToObject(ep, "partial_score", json_float(e.reward_partial));
        cJSON_AddItemToObject(ep, "reward_info", parse_or_null(e.reward_info));
        cJSON_AddItemToObject(ep, "messages", msgs);
        cJSON_AddItemToArray(eps, ep);
    }
    return line;
}

/* ================================================================ results */

typedef struct {
    int tasks, episodes, infra, successes, truncated;
    double reward, partial, steps, turns;
    int *n, *c; /* per task: scored samples, successes */
    cJSON *terminations;
} DatasetStats;

static void stats_add_line(DatasetStats *st, const cJSON *line) {
    int n = 0, c = 0;
    for (const cJSON *ep = json_get(line, "episodes")->child; ep; ep = ep->next) {
        const char *status = json_get_str(ep, "status");
        cJSON *cnt = json_get(st->terminations, status);
        if (cnt) cJSON_SetNumberValue(cnt, cnt->valuedouble + 1);
        else cJSON_AddItemToObject(st->terminations, status, json_int(1));
        if (strcmp(status, termination_name(TERM_INFRASTRUCTURE_ERROR)) == 0) {
            st->infra++;
            continue;
        }
        bool ok = cJSON_IsTrue(json_get(ep, "success"));
        n++, c += ok;
        st->episodes++;
        st->successes += ok;
        st->truncated += strcmp(status, "truncated") == 0;
        st->reward += json_get(ep, "reward")->valuedouble;
        st->partial += json_get(ep, "partial_score")->valuedouble;
        st->steps += json_get(ep, "steps")->valuedouble;
        st->turns += json_get(ep, "turns")->valuedouble;
    }
    if (n > 0) {
        st->n[st->tasks] = n;
        st->c[st->tasks] = c;
        st->tasks++;
    }
}

/* pass@k and pass^k for k = 1, 2, 4, ... while every scored task has k
 * samples, into two objects {"1": .., "2": ..}. */
static void stats_passk(const DatasetStats *st, cJSON *at, cJSON *hat) {
    int kmax = INT32_MAX;
    for (int t = 0; t < st->tasks; t++) kmax = st->n[t] < kmax ? st->n[t] : kmax;
    if (st->tasks == 0) return;
    for (int k = 1; k <= kmax; k *= 2) {
        double a, h;
        char err[256], key[16];
        if (passk_at_mean(st->n, st->c, st->tasks, k, &a, err, sizeof err) != 0 ||
            passk_hat_mean(st->n, st->c, st->tasks, k, &h, err, sizeof err) != 0)
            die_runtime("eval: pass@%d: %s", k, err);
        snprintf(key, sizeof key, "%d", k);
        cJSON_AddItemToObject(at, key, json_float(a));
        cJSON_AddItemToObject(hat, key, json_float(h));
    }
}

static double ratio(double a, int b) { return b > 0 ? a / b : 0.0; }

/* Write results.json and trajectories.jsonl of one dataset from its task
 * lines (in task order) and add its metrics to row. */
static void write_dataset(const EvalDatasetRun *r, cJSON **lines, const EvalRunInfo *info, const char *dir,
                          cJSON *row) {
    int n_rows = r->rows->n_rows;
    DatasetStats st = {.n = xcalloc((size_t)n_rows, sizeof(int)), .c = xcalloc((size_t)n_rows, sizeof(int)),
                       .terminations = cJSON_CreateObject()};
    for (int i = 0; i < n_rows; i++) stats_add_line(&st, lines[i]);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "checkpoint", info->checkpoint);
    cJSON_AddItemToObject(res, "step", json_int((double)info->step));
    cJSON_AddStringToObject(res, "dataset", r->ds->name);
    /* the domains and splits of its rows, in order of appearance */
    SBuf doms, splits;
    sbuf_init(&doms), sbuf_init(&splits);
    for (int i = 0; i < r->rows->n_domains; i++) {
        if (i) sbuf_put(&doms, ",", 1);
        const char *name = r->rows->domains[i]->spec->name;
        sbuf_put(&doms, name, strlen(name));
    }
    for (int i = 0; i < n_rows; i++) {
        const char *sp = r->rows->rows[i].task_split;
        bool seen = false;
        for (int k = 0; k < i && !seen; k++) seen = strcmp(r->rows->rows[k].task_split, sp) == 0;
        if (seen) continue;
        if (splits.len) sbuf_put(&splits, ",", 1);
        sbuf_put(&splits, sp, strlen(sp));
    }
    sbuf_put(&doms, "", 1), sbuf_put(&splits, "", 1);
    cJSON_AddStringToObject(res, "domain", doms.data);
    cJSON_AddStringToObject(res, "task_split", splits.data);
    sbuf_free(&doms), sbuf_free(&splits);
    cJSON_AddItemToObject(res, "n_samples", json_int(r->opt.n_samples));
    cJSON_AddItemToObject(res, "total_tasks", json_int(n_rows));
    cJSON_AddItemToObject(res, "total_episodes", json_int(st.episodes));
    cJSON_AddItemToObject(res, "successes", json_int(st.successes));
    cJSON_AddItemToObject(res, "pass_at_1", json_float(ratio(st.successes, st.episodes)));
    cJSON_AddItemToObject(res, "avg_reward", json_float(ratio(st.reward, st.episodes)));
    cJSON_AddItemToObject(res, "avg_steps", json_float(ratio(st.steps, st.episodes)));
    cJSON_AddItemToObject(res, "avg_turns", json_float(ratio(st.turns, st.episodes)));
    cJSON_AddItemToObject(res, "avg_partial_score", json_float(ratio(st.partial, st.episodes)));
    cJSON_AddItemToObject(res, "truncated_ratio", json_float(ratio(st.truncated, st.episodes)));
    cJSON_AddItemToObject(res, "infrastructure_errors", json_int(st.infra));
    cJSON *at = cJSON_AddObjectToObject(res, "pass_at_k"), *hat = cJSON_AddObjectToObject(res, "pass_hat_k");
    stats_passk(&st, at, hat);
    cJSON_AddItemToObject(res, "termination_counts", st.terminations);
    cJSON *results = cJSON_AddArrayToObject(res, "results");
    SBuf traj;
    sbuf_init(&traj);
    for (int i = 0; i < n_rows; i++) {
        const cJSON *line = lines[i];
        for (const cJSON *ep = json_get(line, "episodes")->child; ep; ep = ep->next) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "task_id", json_get_str(line, "task_id"));
            cJSON_AddItemToObject(o, "task_index", json_int(i));
            cJSON_AddItemToObject(o, "sample", cJSON_Duplicate(json_get(ep, "sample"), 1));
            cJSON_AddStringToObject(o, "domain", json_get_str(line, "domain"));
            static const char *const keys[] = {"reward", "success", "steps", "turns", "status", "error",
                                               "partial_score", "reward_info"};
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(json_get(ep, keys[k]), 1));
            if (json_get_str(ep, "user_model")) cJSON_AddStringToObject(o, "user_model", json_get_str(ep, "user_model"));
            /* the trajectory line: the same fields and the conversation */
            cJSON *t = cJSON_Duplicate(o, 1);
            cJSON_AddItemToObject(t, "messages", cJSON_Duplicate(json_get(ep, "messages"), 1));
            json_dump(&traj, t, JSON_DUMP_UTF8);
            sbuf_put(&traj, "\n", 1);
            cJSON_Delete(t);
            cJSON_AddItemToArray(results, o);
        }
    }
    char path[2300], err[2048];
    snprintf(path, sizeof path, "%s/%s", dir, r->ds->name);
    if (dir_create_all(path, err, sizeof err) != 0) die_runtime("%s", err);
    char *text = cJSON_Print(res);
    snprintf(path, sizeof path, "%s/%s/results.json", dir, r->ds->name);
    if (file_write_atomic(path, text, strlen(text), err, sizeof err) != 0) die_runtime("%s", err);
    free(text);
    snprintf(path, sizeof path, "%s/%s/trajectories.jsonl", dir, r->ds->name);
    if (file_write_atomic(path, traj.data ? traj.data : "", traj.len, err, sizeof err) != 0) die_runtime("%s", err);
    sbuf_free(&traj);
    for (int k = 0; k < r->rows->n_domains; k++) {
        cJSON *t2 = eval_tau2_results(r, lines, k, info);
        SBuf b;
        sbuf_init(&b);
        json_dump(&b, t2, JSON_DUMP_UTF8);
        snprintf(path, sizeof path, "%s/%s/tau2_%s.json", dir, r->ds->name, r->rows->domains[k]->spec->name);
        if (file_write_atomic(path, b.data, b.len, err, sizeof err) != 0) die_runtime("%s", err);
        sbuf_free(&b);
        cJSON_Delete(t2);
    }

    /* the metrics row */
    char key[512];
    const char *name = r->ds->name;
    snprintf(key, sizeof key, "eval/%s", name);
    cJSON_AddNumberToObject(row, key, ratio(st.reward, st.episodes));
    for (const cJSON *x = at->child; x; x = x->next) {
        snprintf(key, sizeof key, "eval/%s-pass@%s", name, x->string);
        cJSON_AddNumberToObject(row, key, x->valuedouble);
    }
    for (const cJSON *x = hat->child; x; x = x->next) {
        snprintf(key, sizeof key, "eval/%s-pass^%s", name, x->string);
        cJSON_AddNumberToObject(row, key, x->valuedouble);
    }
    snprintf(key, sizeof key, "eval/%s/partial_score", name);
    cJSON_AddNumberToObject(row, key, ratio(st.partial, st.episodes));
    snprintf(key, sizeof key, "eval/%s/avg_steps", name);
    cJSON_AddNumberToObject(row, key, ratio(st.steps, st.episodes));
    snprintf(key, sizeof key, "eval/%s/avg_turns", name);
    cJSON_AddNumberToObject(row, key, ratio(st.turns, st.episodes));
    snprintf(key, sizeof key, "eval/%s/truncated_ratio", name);
    cJSON_AddNumberToObject(row, key, ratio(st.truncated, st.episodes));
    snprintf(key, sizeof key, "eval/%s/infrastructure_errors", name);
    cJSON_AddNumberToObject(row, key, st.infra);
    snprintf(key, sizeof key, "eval/%s/episodes", name);
    cJSON_AddNumberToObject(row, key, st.episodes);
    for (const cJSON *x = st.terminations->child; x; x = x->next) {
        snprintf(key, sizeof key, "eval/%s/termination/%s", name, x->string);
        cJSON_AddNumberToObject(row, key, x->valuedouble);
    }

    printf("eval %s %-20s tasks %4d  episodes %5d  reward %.3f  pass@1 %.3f", info->tag, name, n_rows, st.episodes,
           ratio(st.reward, st.episodes), ratio(st.successes, st.episodes));
    const cJSON *last_at = NULL, *last_hat = NULL;
    for (const cJSON *x = at->child; x; x = x->next) last_at = x;
    for (const cJSON *x = hat->child; x; x = x->next) last_hat = x;
    if (last_at && strcmp(last_at->string, "1") != 0)
        printf("  pass@%s %.3f  pass^%s %.3f", last_at->string, last_at->valuedouble, last_hat->string,
               last_hat->valuedouble);
    if (st.infra) printf("  infrastructure errors %d", st.infra);
    printf("\n");
    cJSON_Delete(res);
    free(st.n);
    free(st.c);
}

/* ================================================================ the run */

/* The lines of episodes.jsonl that match this evaluation, into lines[set][row]
 * (a line for a dataset or row this config does not have, or with another
 * sample count, is left out: the task runs again). */
static int read_done(EvalSet *es, const char *path, cJSON ***lines) {
    size_t len;
    char *text = file_read_all(path, &len, NULL, 0);
    if (!text) return 0;
    int found = 0, stale = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) break; /* metrics_open cuts a partial last line */
        /* json_parse keeps Python's int/float distinction: a resumed task
         * prints exactly as a fresh one */
        char perr[256];
        cJSON *o = json_parse(p, (size_t)(nl - p), path, perr, sizeof perr);
        const char *name = json_get_str(o, "dataset");
        const cJSON *ti = json_get(o, "task_index"), *eps = json_get(o, "episodes");
        int set = -1;
        for (int i = 0; name && i < es->n_sets; i++)
            if (strcmp(es->sets[i].ds->name, name) == 0) set = i;
        int row = json_is_int(ti) ? (int)ti->valuedouble : -1;
        if (set < 0 || row < 0 || row >= es->sets[set].rows->n_rows || !cJSON_IsArray(eps) ||
            cJSON_GetArraySize(eps) != es->sets[set].opt.n_samples ||
            strcmp(json_get_str(o, "task_id") ? json_get_str(o, "task_id") : "",
                   task_id(es->sets[set].rows->rows[row].task)) != 0) {
            stale++;
            cJSON_Delete(o);
            continue;
        }
        cJSON_Delete(lines[set][row]);
        lines[set][row] = o;
        found++;
    }
    free(text);
    if (stale) printf("eval: %s: %d lines do not match this evaluation's datasets; those tasks run again\n", path, stale);
    return found;
}

/* The most samples of a dataset's prompt: a round's episodes are split
 * into calls of round_episodes / that many prompts per engine. */
static int most_samples(const EvalSet *es) {
    int m = 1;
    for (int i = 0; i < es->n_sets; i++)
        if (es->sets[i].opt.n_samples > m) m = es->sets[i].opt.n_samples;
    return m;
}

static int prompts_per_call(const EvalSet *es) {
    int per_engine = es->round_episodes / most_samples(es);
    return per_engine < 1 ? 1 : per_engine;
}

InferOptions eval_set_engine_options(const EvalSet *es) {
    InferOptions most = {0};
    for (int i = 0; i < es->n_sets; i++) {
        InferOptions io = rollout_engine_options(&es->sets[i].opt, es->sets[i].user.kind == ROLLOUT_USER_POLICY,
                                                 prompts_per_call(es));
        if (io.kv_tokens > most.kv_tokens) most.kv_tokens = io.kv_tokens;
        if (io.max_seqs > most.max_seqs) most.max_seqs = io.max_seqs;
    }
    return most;
}

int eval_run(EvalSet *es, const RolloutPolicy *pol, Comm *c, const EvalRunInfo *info, cJSON **row_out) {
    bool root = c->rank == 0;
    double t0 = clock_now_s();
    char dir[2100], path[2200], err[2048];
    snprintf(dir, sizeof dir, "%s/eval/%s", info->run_dir, info->tag);
    snprintf(path, sizeof path, "%s/episodes.jsonl", dir);
    if (row_out) *row_out = NULL;

    /* every task, and which are done (rank 0 reads, everyone learns) */
    int n_units = 0;
    for (int i = 0; i < es->n_sets; i++) n_units += es->sets[i].rows->n_rows;
    EvalUnit *units = xmalloc((size_t)(n_units > 0 ? n_units : 1) * sizeof *units);
    cJSON ***lines = xcalloc((size_t)es->n_sets, sizeof *lines);
    for (int i = 0, u = 0; i < es->n_sets; i++) {
        lines[i] = xcalloc((size_t)es->sets[i].rows->n_rows, sizeof **lines);
        for (int r = 0; r < es->sets[i].rows->n_rows; r++) units[u++] = (EvalUnit){i, r};
    }
    char *done = xcalloc((size_t)(n_units > 0 ? n_units : 1), 1);
    MetricsLog *log = NULL;
    int n_done = 0;
    if (root) {
        if (dir_create_all(dir, err, sizeof err) != 0) die_runtime("%s", err);
        n_done = read_done(es, path, lines);
        log = metrics_open(path, 0, err, sizeof err);
        if (!log) die_runtime("%s", err);
        for (int u = 0; u < n_units; u++) done[u] = lines[units[u].set][units[u].row] != NULL;
        if (n_done) printf("eval %s: resuming, %d of %d tasks done\n", info->tag, n_done, n_units);
    }
    comm_broadcast(c, done, (size_t)(n_units > 0 ? n_units : 1), 0);
    int *pending = xmalloc((size_t)(n_units > 0 ? n_units : 1) * sizeof *pending);
    int n_pending = 0;
    for (int u = 0; u < n_units; u++)
        if (!done[u]) pending[n_pending++] = u;

    /* rounds: engine e takes the round's tasks k with k % engines == e */
    int engines = c->size, per_engine = prompts_per_call(es);
    int per_round = engines * per_engine, stopped = 0;
    int64_t total_eps = 0, done_eps = 0, ok_eps = 0, run_eps = 0;
    for (int u = 0; u < n_units; u++) {
        int ns = es->sets[units[u].set].opt.n_samples;
        total_eps += ns;
        if (done[u]) done_eps += ns;
    }
    for (int base = 0; base < n_pending && !stopped; base += per_round) {
        int n_round = n_pending - base < per_round ? n_pending - base : per_round;
        RolloutBuffer *mine = rollout_buffer_new(0, 0, "");
        /* this engine's tasks, dataset by dataset (a rollout call has one set of options) */
        for (int k = c->rank; k < n_round;) {
            int set = units[pending[base + k]].set, n = 0;
            RolloutPrompt *ps = xcalloc((size_t)per_engine + 1, sizeof *ps);
            while (k < n_round && units[pending[base + k]].set == set) {
                int row = units[pending[base + k]].row;
                const PromptRow *pr = &es->sets[set].rows->rows[row];
                ps[n++] = (RolloutPrompt){.domain = es->sets[set].rows->domains[pr->domain], .task = pr->task,
                                          .task_split = pr->task_split, .index = row, .group_id = base + k};
                user_routes_apply(&es->sets[set].routes, row, &ps[n - 1]);
                k += engines;
            }
            if (rollout_run(pol, &es->sets[set].user, ps, n, &es->sets[set].opt, mine, NULL, err, sizeof err) != 0)
                die_runtime("eval dataset '%s': %s", es->sets[set].ds->name, err);
            free(ps);
        }
        size_t len;
        char *bytes = rollout_buffer_pack(mine, 0, mine->n_episodes, &len);
        rollout_buffer_free(mine);
        char *all = NULL;
        size_t *counts = xcalloc((size_t)engines, sizeof *counts);
        comm_gatherv_bytes(c, bytes, len, 0, &all, counts);
        free(bytes);
        if (root) {
            RolloutBuffer **pieces = xcalloc((size_t)engines, sizeof *pieces);
            int *cursor = xcalloc((size_t)engines, sizeof *cursor);
            size_t off = 0;
            for (int e = 0; e < engines; e++) {
                pieces[e] = rollout_buffer_new(0, 0, "");
                rollout_buffer_unpack(pieces[e], all + off, counts[e]);
                off += counts[e];
            }
            for (int k = 0; k < n_round; k++) {
                EvalUnit un = units[pending[base + k]];
                const EvalDatasetRun *r = &es->sets[un.set];
                int e = k % engines;
                cJSON *line = unit_line(r, un.row, pieces[e], cursor[e]);
                cursor[e] += r->opt.n_samples;
                if (metrics_write(log, line, err, sizeof err) != 0) die_runtime("%s", err);
                for (const cJSON *ep = json_get(line, "episodes")->child; ep; ep = ep->next)
                    ok_eps += cJSON_IsTrue(json_get(ep, "success"));
                run_eps += r->opt.n_samples;
                lines[un.set][un.row] = line;
            }
            for (int e = 0; e < engines; e++) rollout_buffer_free(pieces[e]);
            free(pieces);
            free(cursor);
            double el = clock_now_s() - t0;
            int64_t now_done = done_eps + run_eps;
            double eta = run_eps > 0 ? el / (double)run_eps * (double)(total_eps - now_done) : 0.0;
            printf("eval %s: %" PRId64 "/%" PRId64 " episodes, success so far %.3f, %.0f s, ETA %.0f s\n", info->tag,
                   now_done, total_eps, run_eps > 0 ? (double)ok_eps / (double)run_eps : 0.0, el, eta);
            fflush(stdout);
        }
        free(all);
        free(counts);
        /* stop between rounds, every rank alike */
        float f = (float)stop_signal_pending();
        if (c->size > 1) comm_allreduce_max_f32(c, &f, 1);
        if (base + per_round < n_pending) stopped = (int)f;
    }
    metrics_close(log);

    if (root && !stopped) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "step", (double)info->step);
        cJSON_AddStringToObject(row, "phase", "eval");
        cJSON_AddStringToObject(row, "eval/tag", info->tag);
        for (int i = 0; i < es->n_sets; i++) write_dataset(&es->sets[i], lines[i], info, dir, row);
        cJSON_AddNumberToObject(row, "perf/eval_time", clock_now_s() - t0);
        fflush(stdout);
        if (row_out) *row_out = row;
        else cJSON_Delete(row);
    }
    for (int i = 0; i < es->n_sets; i++) {
        for (int r = 0; r < es->sets[i].rows->n_rows; r++) cJSON_Delete(lines[i][r]);
        free(lines[i]);
    }
    free(lines);
    free(units);
    free(done);
    free(pending);
    return stopped;
}

/* ================================================================ the eval job */

/* The checkpoint's weights into m (a full model); returns its step. */
static int64_t load_weights(const JobConfig *cfg, Qwen3 *m, const char *path) {
    int n = m->n_tensors;
    CkptTensor *tw = xcalloc((size_t)n, sizeof *tw);
    for (int i = 0; i < n; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        size_t full = (size_t)t->full_shape[0] * (size_t)(t->ndim > 1 ? t->full_shape[1] : 1);
        tw[i] = (CkptTensor){.name = t->name, .ndim = t->ndim, .data = xmalloc(full * sizeof(float))};
        for (int d = 0; d < t->ndim; d++) tw[i].shape[d] = t->full_shape[d];
    }
    CkptState st;
    char err[2048];
    if (ckpt_load(path, &st, tw, NULL, NULL, n, err, sizeof err) != 0)
        die_input("%s: field 'checkpoint': %s", cfg->path, err);
    for (int i = 0; i < n; i++) {
        qwen3_set_tensor(m, m->params_memory, i, tw[i].data);
        free(tw[i].data);
    }
    free(tw);
    int64_t step = st.step;
    ckpt_state_free(&st);
    return step;
}

int eval_job_run(const JobConfig *cfg, const char *data_dir, Comm *world) {
    bool root = world->rank == 0;
    char err[2048];
    /* a "local" user: the last user_sim_ranks ranks serve the user model over
     * MPI; engine e asks server e mod n; the engines evaluate on their own comm */
    bool local = strcmp(cfg->user, "local") == 0;
    int n_us = local ? cfg->user_sim_ranks : 0, n_eng = world->size - n_us;
    if (n_eng < 1)
        die_input("%s: field 'user_sim_ranks': %d of %d ranks serve the user, none is left to evaluate (run with at "
                  "least %d ranks)", cfg->path, n_us, world->size, n_us + 1);
    /* the output directory is made after the setup below; whether it can be, now */
    if (root && dir_check_creatable(cfg->output_dir, err, sizeof err) != 0)
        die_input("%s: %s: %s", cfg->path, job_config_output_dir_origin(cfg), err);
    if (root && cfg->llm_cache_dir && dir_check_creatable(cfg->llm_cache_dir, err, sizeof err) != 0)
        die_input("%s: field 'llm_cache_dir': %s", cfg->path, err);
    bool serving = world->rank >= n_eng;
    Comm *engines = comm_split(world, serving, world->rank);
    if (serving) {
        local_user_serve(cfg, world, n_eng);
        comm_free(engines);
        return 0;
    }
    /* rollout_device "cuda": each engine rank on a GPU (its index among the
     * node's engine ranks); collective over the engines */
    bool on_gpu = strcmp(cfg->rollout_device, "cuda") == 0;
    int node_rank = on_gpu ? comm_node_rank(engines) : 0;
    if (on_gpu && gpu_check(1, 1, "rollout_tensor_parallel", "the GPU inference engine", err, sizeof err) != 0)
        die_input("%s: field 'rollout_device': %s", cfg->path, err);
    /* the model's shape, text and datasets first: the memory plan is
     * checked before the weights load */
    char path[2100];
    Qwen3Config mcfg;
    snprintf(path, sizeof path, "%s/config.json", cfg->model);
    if (qwen3_config_load(path, &mcfg, err, sizeof err) != 0) die_input("%s: field 'model': %s", cfg->path, err);
    char ckpt[2048] = "";
    if (cfg->checkpoint) {
        struct stat sb;
        if (stat(cfg->checkpoint, &sb) != 0)
            die_input("%s: field 'checkpoint': %s: no such file or directory", cfg->path, cfg->checkpoint);
        if (ckpt_resolve(cfg->checkpoint, ckpt, sizeof ckpt, err, sizeof err) != 0)
            die_input("%s: field 'checkpoint': %s", cfg->path, err);
    }
    Tokenizer *tok;
    ChatTemplate *ct;
    if (rollout_load_text(cfg->model, cfg->tokenizer, mcfg.vocab_size, &tok, &ct, err, sizeof err) != 0)
        die_input("%s: %s", cfg->path, err);

    /* the datasets set sampling, seeds and budgets; the rest is the job's */
    RolloutOptions base;
    job_rollout_options(cfg, &base);
    RolloutUser user;
    job_rollout_user(cfg, data_dir, &user);
    LlmClient *local_client = NULL;
    char cache[2100];
    snprintf(cache, sizeof cache, "%s/llm_cache", cfg->output_dir);
    if (local) {
        local_client = local_user_client(cfg, world->size, world->rank,
                                         cfg->llm_cache_dir ? cfg->llm_cache_dir : cache, &user.endpoint);
        user.client = local_client;
    }
    EvalSet *es = eval_set_load(cfg, data_dir, &base, &user, true, cfg->llm_cache_dir ? cfg->llm_cache_dir : cache);

    /* each engine rank: the full weights (twice while a checkpoint's are
     * read into them) and its CPU engine's KV cache; summed per node with
     * the user's server ranks (local_user_serve) */
    InferOptions io = eval_set_engine_options(es);
    JobMemory mem = {.weights = (double)qwen3_shard_num_parameters(&mcfg, 1) * sizeof(float) *
                                (cfg->checkpoint ? 2 : 1)};
    if (!on_gpu) mem.kv_cache = infer_kv_cache_bytes(&mcfg, 1, io.kv_tokens, 0);
    if (job_memory_check(world, &mem, err, sizeof err) != 0)
        die_input("%s: fields 'model'%s%s and 'kv_cache_tokens' (or the datasets' sizes): %s", cfg->path,
                  cfg->checkpoint ? ", 'checkpoint'" : "", n_us > 0 && cfg->user_models ? ", 'user_model'" : "", err);
#ifdef TAU2_HAVE_CUDA
    if (on_gpu) { /* each engine rank's GPU engine at its largest call, summed per GPU */
        InferGpuPlan p;
        infer_gpu_plan(&mcfg, &io, cfg->chunked_prefill_size, &p);
        JobMemory dev[JOB_PHASES] = {{0}};
        job_memory_add_infer_gpu(&dev[0], &p);
        dev[JOB_PHASE_ROLLOUT] = dev[0]; /* one phase: the same parts */
        JobGpu gpu;
        job_gpu_read(engines, true, node_rank, &gpu);
        if (job_gpu_memory_check(engines, dev, &gpu, NULL, err, sizeof err) != 0)
            die_input("%s: fields 'model', 'kv_cache_tokens' and 'chunked_prefill_size' (or the datasets' sizes): %s",
                      cfg->path, err);
    }
#endif
    Qwen3 *model = qwen3_load_dir(cfg->model, err, sizeof err);
    if (!model) die_input("%s: field 'model': %s", cfg->path, err);
    char tag[64] = "model";
    int64_t step = 0;
    if (cfg->checkpoint) {
        step = load_weights(cfg, model, ckpt);
        snprintf(tag, sizeof tag, "step_%06" PRId64, step);
    }

    local_user_ready(cfg, world);
    MetricsLog *metrics = NULL;
    TbWriter *tb = NULL;
    RunLock *lock = NULL;
    if (root) {
        /* a training job may be writing the directory the checkpoint is in:
         * the refusal tells to write the evaluation elsewhere */
        char what[1200];
        snprintf(what, sizeof what, "eval job %s", cfg->path);
        lock = run_lock_acquire(cfg->output_dir, what, run_lock_wait_s(), err, sizeof err);
        if (!lock) die_input("%s: %s: %s", cfg->path, job_config_output_dir_origin(cfg), err);
        const char *dirs[] = {"tb", "eval", NULL}, *files[] = {"metrics.jsonl", NULL};
        job_check_run_outputs(cfg, cfg->output_dir, dirs, files);
        char mpath[2100];
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", cfg->output_dir);
        metrics = metrics_open(mpath, 0, err, sizeof err);
        if (!metrics) die_runtime("%s", err);
        snprintf(mpath, sizeof mpath, "%s/tb", cfg->output_dir);
        tb = tb_open(mpath, err, sizeof err);
        if (!tb) die_runtime("%s", err);
        int tasks = 0;
        for (int i = 0; i < es->n_sets; i++) tasks += es->sets[i].rows->n_rows;
        printf("eval of %s%s%s on %d datasets (%d tasks) with %d engines; results in %s/eval/%s\n", cfg->model,
               cfg->checkpoint ? " + " : "", ckpt, es->n_sets, tasks, engines->size, cfg->output_dir, tag);
        fflush(stdout);
    }
    comm_barrier(engines);
    RolloutPolicy pol = {.model = model, .tok = tok, .ct = ct, .on_gpu = on_gpu, .gpu_device = node_rank};
    EvalRunInfo info = {.run_dir = cfg->output_dir, .tag = tag, .step = step,
                        .checkpoint = cfg->checkpoint ? ckpt : cfg->model};
    cJSON *row = NULL;
    int stopped = eval_run(es, &pol, engines, &info, &row);
    if (local_client) llm_client_mpi_shutdown(local_client, user.endpoint);
    if (root) {
        if (row && metrics_write(metrics, row, err, sizeof err) != 0) die_runtime("%s", err);
        if (row && tb_write_row(tb, row, (double)time(NULL), err, sizeof err) != 0) die_runtime("%s", err);
        if (stopped)
            printf("stopped by signal %d at step %" PRId64 "; finished tasks saved in %s/eval/%s (rerun the same "
                   "command to resume)\n", stopped, step, cfg->output_dir, tag);
        else
            printf("done: results in %s/eval/%s\n", cfg->output_dir, tag);
        fflush(stdout);
    }
    cJSON_Delete(row);
    metrics_close(metrics);
    tb_close(tb);
    run_lock_release(lock);
    eval_set_free(es);
    llm_client_free(local_client);
    comm_free(engines);
    chat_free(ct);
    tok_free(tok);
    qwen3_free(model);
    return 0;
}
