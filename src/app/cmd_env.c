/* cmd_env.c — the environment subcommands: tools, replay, oracle, prepare,
 * and the "oracle" job of a config file. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/config.h"
#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "rl/sft_data.h"
#include "tau2/episode.h"
#include "tau2/evaluate.h"
#include "tau2/oracle.h"
#include "tau2/task.h"

static Domain *load_domain_or_die(const char *data_dir, const char *name) {
    char err[1024];
    Domain *d = domain_load(data_dir, name, err, sizeof err);
    if (!d) die_input("%s", err);
    return d;
}

static TaskSet *load_tasks_or_die(const Domain *d) {
    char err[1024];
    TaskSet *ts = taskset_load(d, err, sizeof err);
    if (!ts) die_input("%s", err);
    return ts;
}

/* ---------------------------------------------------------------- tools */

int cmd_tools(int argc, char **argv) {
    static const CliOption known[] = {{"--domain", CLI_VALUE}, {"--user", CLI_FLAG}, {"--data-dir", CLI_VALUE},
                                      {NULL, 0}};
    cli_check_args("tools", argc, argv, known, 0, NULL, NULL);
    const char *domain = cli_opt(argc, argv, "--domain");
    if (!domain) die_input("tools: --domain is required (one of: %s)", domain_spec_names());
    const DomainSpec *spec = domain_spec_find(domain);
    if (!spec) die_input("tools: unknown domain '%s' (valid domains: %s)", domain, domain_spec_names());
    bool user = cli_flag(argc, argv, "--user");
    if (user && !spec->user_tools) die_input("tools: domain %s has no user tools (telecom and mock do)", domain);
    const ToolDef *defs = user ? spec->user_tools : spec->agent_tools;
    int n = user ? spec->n_user_tools : spec->n_agent_tools;
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char err[256];
        cJSON *s = json_parse(defs[i].schema, strlen(defs[i].schema), defs[i].name, err, sizeof err);
        if (!s) die_runtime("built-in schema of %s is invalid: %s", defs[i].name, err);
        cJSON_AddItemToArray(arr, s);
    }
    char *out = json_dumps(arr, JSON_DUMP_INDENT | JSON_DUMP_UTF8);
    puts(out);
    free(out);
    cJSON_Delete(arr);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- replay */

static cJSON *read_trajectory(const char *path) { return cli_load_json(path); }

/* Termination of a trajectory that does not say: the stop tokens decide. */
static Termination infer_termination(const cJSON *messages) {
    for (const cJSON *m = messages->child; m; m = m->next) {
        const char *role = json_get_str(m, "role"), *c = json_get_str(m, "content");
        if (!role || !c) continue;
        if (!strcmp(role, "assistant") && strstr(c, AGENT_STOP_TOKEN)) return TERM_AGENT_STOP;
        if (!strcmp(role, "user") && (strstr(c, USER_STOP_TOKEN) || strstr(c, USER_TRANSFER_TOKEN) ||
                                      strstr(c, USER_OUT_OF_SCOPE_TOKEN)))
            return TERM_USER_STOP;
    }
    return TERM_USER_STOP;
}

static Termination parse_termination(const char *s, const char *path) {
    for (int t = TERM_USER_STOP; t <= TERM_CONTEXT_WINDOW_EXCEEDED; t++)
        if (strcmp(termination_name((Termination)t), s) == 0) return (Termination)t;
    die_input("%s: field 'termination_reason': unknown value '%s' (expected user_stop, agent_stop, max_steps, "
              "too_many_errors, agent_error, user_error, infrastructure_error or context_window_exceeded)",
              path, s);
}

/* A message's or tool call's "requestor": who acts (a user tool call runs on
 * the user's phone); absent or null means the message's role decides. */
static const char REQUESTOR_EXPECTED[] = "expected \"assistant\", \"user\" or null";
static bool requestor_ok(const cJSON *obj) {
    const cJSON *v = json_get(obj, "requestor");
    if (!v || cJSON_IsNull(v)) return true;
    return cJSON_IsString(v) && (!strcmp(v->valuestring, "assistant") || !strcmp(v->valuestring, "user"));
}

static void check_messages(const cJSON *messages, const char *path) {
    int i = 0;
    for (const cJSON *m = messages->child; m; m = m->next, i++) {
        const char *role = json_get_str(m, "role");
        if (!role || (strcmp(role, "assistant") && strcmp(role, "user") && strcmp(role, "tool") &&
                      strcmp(role, "system")))
            die_input("%s: messages[%d].role: expected \"assistant\", \"user\", \"tool\" or \"system\"", path, i);
        const cJSON *c = json_get(m, "content");
        if (c && !cJSON_IsNull(c) && !cJSON_IsString(c))
            die_input("%s: messages[%d].content: expected a string or null", path, i);
        /* τ²-bench's other message fields: the requestor decides whose tools
         * run on replay; the ids only pair calls with results */
        const cJSON *id = json_get(m, "id");
        if (id && !cJSON_IsNull(id) && !cJSON_IsString(id))
            die_input("%s: messages[%d].id: expected a string or null", path, i);
        if (!requestor_ok(m)) die_input("%s: messages[%d].requestor: %s", path, i, REQUESTOR_EXPECTED);
        const cJSON *calls = json_get(m, "tool_calls");
        if (calls && !cJSON_IsNull(calls) && !cJSON_IsArray(calls))
            die_input("%s: messages[%d].tool_calls: expected a list or null", path, i);
        int k = 0;
        for (const cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc; tc = tc->next, k++) {
            if (!json_get_str(tc, "name"))
                die_input("%s: messages[%d].tool_calls[%d].name: expected a string", path, i, k);
            if (!requestor_ok(tc))
                die_input("%s: messages[%d].tool_calls[%d].requestor: %s", path, i, k, REQUESTOR_EXPECTED);
            const cJSON *tc_id = json_get(tc, "id");
            if (tc_id && !cJSON_IsNull(tc_id) && !cJSON_IsString(tc_id))
                die_input("%s: messages[%d].tool_calls[%d].id: expected a string or null", path, i, k);
            const cJSON *a = json_get(tc, "arguments");
            if (a && !cJSON_IsObject(a))
                die_input("%s: messages[%d].tool_calls[%d].arguments: expected an object", path, i, k);
        }
    }
}

/* τ²-bench's TerminationReason names; the two that tau2_hpc's episodes never
 * end with (timeout, unexpected_error) score as any premature end: 0. */
static Termination results_termination(const char *s, const char *path, int i) {
    if (s && (!strcmp(s, "timeout") || !strcmp(s, "unexpected_error"))) return TERM_AGENT_ERROR;
    for (int t = TERM_USER_STOP; s && t <= TERM_CONTEXT_WINDOW_EXCEEDED; t++)
        if (strcmp(termination_name((Termination)t), s) == 0) return (Termination)t;
    die_input("%s: simulations[%d].termination_reason: expected one of τ²-bench's TerminationReason values "
              "(user_stop, agent_stop, max_steps, timeout, too_many_errors, agent_error, user_error, "
              "infrastructure_error, context_window_exceeded, unexpected_error)",
              path, i);
}

/* replay --results: every simulation of a τ²-bench results file (`tau2 run`'s
 * Results JSON, or an eval's tau2_<domain>.json) scored again against the
 * domain's tasks, one JSON line each with the file's reward beside ours. */
static int replay_results(const char *path, const char *data_dir) {
    cJSON *res = read_trajectory(path);
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    const char *domain = json_get_str(json_get(json_get(res, "info"), "environment_info"), "domain_name");
    if (!domain) die_input("%s: field 'info.environment_info.domain_name': expected a string (τ²-bench's Results JSON)", name);
    const cJSON *sims = json_get(res, "simulations");
    if (!cJSON_IsArray(sims)) die_input("%s: field 'simulations': expected a list", name);
    Domain *d = load_domain_or_die(data_dir, domain);
    TaskSet *ts = load_tasks_or_die(d);
    /* every simulation is checked before any is scored: a bad file prints nothing */
    int i = 0;
    for (const cJSON *sim = sims->child; sim; sim = sim->next, i++) {
        const char *tid = json_get_str(sim, "task_id");
        if (!tid) die_input("%s: simulations[%d].task_id: expected a string", name, i);
        if (!taskset_find(ts, tid))
            die_input("%s: simulations[%d].task_id: no task '%s' in domain %s (%s/tasks.json)", name, i, tid, domain,
                      d->dir);
        const cJSON *messages = json_get(sim, "messages");
        if (!cJSON_IsArray(messages))
            die_input("%s: simulations[%d].messages: expected a list (a full-duplex run keeps ticks instead: "
                      "not supported)",
                      name, i);
        char where[1100];
        snprintf(where, sizeof where, "%s: simulations[%d]", name, i);
        check_messages(messages, where);
        results_termination(json_get_str(sim, "termination_reason"), name, i);
    }
    EvalOptions opt;
    eval_options_default(domain, &opt);
    opt.strict_replay = false;
    int n = 0, equal = 0, differ = 0, unrecorded = 0, nl_skipped = 0;
    for (const cJSON *sim = sims->child; sim; sim = sim->next, n++) {
        const cJSON *task = taskset_find(ts, json_get_str(sim, "task_id"));
        const char *reason = json_get_str(sim, "termination_reason");
        Evaluation ev;
        evaluate_episode(d, task, json_get(sim, "messages"), results_termination(reason, name, n), &opt, &ev);
        const cJSON *recorded = json_get(json_get(sim, "reward_info"), "reward");
        cJSON *line = cJSON_CreateObject();
        const cJSON *id = json_get(sim, "id");
        cJSON_AddItemToObject(line, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
        cJSON_AddStringToObject(line, "task_id", task_id(task));
        const cJSON *trial = json_get(sim, "trial");
        cJSON_AddItemToObject(line, "trial", trial ? cJSON_Duplicate(trial, 1) : cJSON_CreateNull());
        cJSON_AddStringToObject(line, "termination_reason", reason);
        cJSON_AddItemToObject(line, "reward", json_float(ev.reward));
        if (cJSON_IsNumber(recorded)) {
            bool same = fabs(recorded->valuedouble - ev.reward) < 1e-9;
            cJSON_AddItemToObject(line, "recorded_reward", json_float(recorded->valuedouble));
            cJSON_AddBoolToObject(line, "equal", same);
            equal += same, differ += !same;
        } else {
            cJSON_AddNullToObject(line, "recorded_reward");
            cJSON_AddNullToObject(line, "equal");
            unrecorded++;
        }
        cJSON_AddBoolToObject(line, "nl_not_judged", ev.nl_not_judged);
        nl_skipped += ev.nl_not_judged;
        char *text = json_dumps(line, JSON_DUMP_UTF8);
        puts(text);
        free(text);
        cJSON_Delete(line);
        evaluation_free(&ev);
    }
    fprintf(stderr,
            "replay: %d simulations of domain %s: reward equal to the file's on %d, different on %d, not recorded on "
            "%d; NL_ASSERTION not judged on %d\n",
            n, domain, equal, differ, unrecorded, nl_skipped);
    cJSON_Delete(res);
    taskset_free(ts);
    domain_free(d);
    return EXIT_OK;
}

int cmd_replay(int argc, char **argv) {
    static const CliOption known[] = {{"--domain", CLI_VALUE},   {"--task", CLI_VALUE},     {"--trajectory", CLI_VALUE},
                                      {"--results", CLI_VALUE},  {"--data-dir", CLI_VALUE}, {NULL, 0}};
    cli_check_args("replay", argc, argv, known, 0, NULL, NULL);
    const char *domain = cli_opt(argc, argv, "--domain");
    const char *tid = cli_opt(argc, argv, "--task");
    const char *path = cli_opt(argc, argv, "--trajectory");
    const char *results = cli_opt(argc, argv, "--results");
    if (results && (domain || tid || path))
        die_input("replay: --results takes the domain and the tasks from the file: without --domain, --task, "
                  "--trajectory");
    if (results) return replay_results(results, cli_data_dir(cli_opt(argc, argv, "--data-dir"), NULL));
    if (!domain || !tid || !path)
        die_input("replay: usage: tau2_hpc replay --domain D --task ID --trajectory T.json|-, "
                  "or tau2_hpc replay --results RESULTS.json|-");
    Domain *d = load_domain_or_die(cli_data_dir(cli_opt(argc, argv, "--data-dir"), NULL), domain);
    TaskSet *ts = load_tasks_or_die(d);
    const cJSON *task = taskset_find(ts, tid);
    if (!task) die_input("replay: no task '%s' in domain %s (%d tasks in %s/tasks.json)", tid, domain, ts->n, d->dir);
    cJSON *traj = read_trajectory(path);
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    const cJSON *messages = cJSON_IsArray(traj) ? traj : json_get(traj, "messages");
    if (!cJSON_IsArray(messages))
        die_input("%s: expected a list of messages or an object with a 'messages' list (τ²-bench's trajectory JSON)",
                  name);
    check_messages(messages, name);
    const cJSON *reason_v = cJSON_IsObject(traj) ? json_get(traj, "termination_reason") : NULL;
    if (reason_v && !cJSON_IsNull(reason_v) && !cJSON_IsString(reason_v))
        die_input("%s: field 'termination_reason': expected a string or null", name);
    const char *reason = cJSON_IsObject(traj) ? json_get_str(traj, "termination_reason") : NULL;
    Termination term = reason ? parse_termination(reason, name) : infer_termination(messages);
    EvalOptions opt;
    eval_options_default(domain, &opt);
    opt.strict_replay = false;
    Evaluation ev;
    evaluate_episode(d, task, messages, term, &opt, &ev);
    char *out = json_dumps(ev.info, JSON_DUMP_INDENT | JSON_DUMP_UTF8);
    puts(out);
    free(out);
    evaluation_free(&ev);
    cJSON_Delete(traj);
    taskset_free(ts);
    domain_free(d);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- oracle */

typedef struct {
    int n, full, nl_skipped, infra;
    double sum;
} OracleTotals;

/* Run the oracle on one domain's tasks; print a line per task. Episodes
 * go to jsonl (if given), and those with reward 1.0 as teacher traces
 * (rl/sft_data.h) to sft (if given); *n_sft counts the traces. */
static void oracle_domain_traces(const char *data_dir, const char *domain, const char *split, const char *only_task,
                                 const EpisodeOptions *eo, FILE *jsonl, FILE *sft, int *n_sft, OracleTotals *tot) {
    Domain *d = load_domain_or_die(data_dir, domain);
    TaskSet *ts = load_tasks_or_die(d);
    const cJSON **tasks = NULL;
    int n;
    char err[1024];
    if (only_task) {
        const cJSON *t = taskset_find(ts, only_task);
        if (!t) die_input("oracle: no task '%s' in domain %s", only_task, domain);
        tasks = xmalloc(sizeof *tasks);
        tasks[0] = t;
        n = 1;
    } else if ((n = taskset_split(ts, split, &tasks, err, sizeof err)) < 0) {
        die_input("oracle: %s", err);
    }
    EvalOptions opt;
    eval_options_default(domain, &opt);
    for (int i = 0; i < n; i++) {
        Episode *ep = oracle_play(d, tasks[i], eo, err, sizeof err);
        if (!ep) die_runtime("oracle: task %s: %s", task_id(tasks[i]), err);
        Evaluation ev;
        evaluate_episode(d, tasks[i], ep->messages, ep->term, &opt, &ev);
        printf("%s %s: reward %.1f (%s, %d steps)%s\n", domain, task_id(tasks[i]), ev.reward,
               termination_name(ep->term), ep->step_count,
               ev.nl_not_judged ? " [NL_ASSERTION not judged: left out of the basis]" : "");
        if (jsonl) {
            cJSON *row = cJSON_CreateObject();
            cJSON_AddStringToObject(row, "domain", domain);
            cJSON_AddStringToObject(row, "task_id", task_id(tasks[i]));
            cJSON_AddItemToObject(row, "reward", json_float(ev.reward));
            cJSON_AddStringToObject(row, "termination_reason", termination_name(ep->term));
            cJSON_AddItemToObject(row, "reward_info", cJSON_Duplicate(ev.info, 1));
            cJSON_AddItemToObject(row, "messages", cJSON_Duplicate(ep->messages, 1));
            char *line = json_dumps(row, JSON_DUMP_UTF8);
            fprintf(jsonl, "%s\n", line);
            free(line);
            cJSON_Delete(row);
        }
        if (sft && ev.reward == 1.0) {
            cJSON *row = sft_trace_from_episode(d, tasks[i], ep->messages, split, ev.reward);
            char *line = json_dumps(row, JSON_DUMP_UTF8);
            if (fprintf(sft, "%s\n", line) < 0) die_runtime("oracle: cannot write teacher traces: %s", strerror(errno));
            free(line);
            cJSON_Delete(row);
            (*n_sft)++;
        }
        tot->n++;
        tot->sum += ev.reward;
        if (ev.reward == 1.0) tot->full++;
        if (ev.nl_not_judged) tot->nl_skipped++;
        if (ev.infrastructure_error) tot->infra++;
        evaluation_free(&ev);
        episode_free(ep);
    }
    free(tasks);
    taskset_free(ts);
    domain_free(d);
}

static void oracle_domain(const char *data_dir, const char *domain, const char *split, const char *only_task,
                          const EpisodeOptions *eo, FILE *jsonl, OracleTotals *tot) {
    oracle_domain_traces(data_dir, domain, split, only_task, eo, jsonl, NULL, NULL, tot);
}

static void print_totals(const OracleTotals *t) {
    printf("total: %d tasks, reward 1.0 on %d (%.1f%%), mean reward %.4f; NL_ASSERTION not judged on %d\n", t->n,
           t->full, t->n ? 100.0 * t->full / t->n : 0.0, t->n ? t->sum / t->n : 0.0, t->nl_skipped);
}

/* Teacher traces go to "<path>.tmp.<pid>" first, renamed into place when
 * every episode has run: a failed run leaves no file (a die removes the
 * registered temporary) and never a partial one. */
static FILE *sft_open(const char *path, char **tmp) {
    size_t n = strlen(path) + 32;
    *tmp = xmalloc(n);
    snprintf(*tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(*tmp, "w");
    if (!f) die_input("oracle: --sft-out: cannot write %s (through %s): %s", path, *tmp, strerror(errno));
    tmpfile_register(*tmp);
    return f;
}

static void sft_close(FILE *f, char *tmp, const char *path) {
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) die_runtime("oracle: cannot write %s: %s", tmp, strerror(errno));
    if (fclose(f) != 0) die_runtime("oracle: cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) die_runtime("oracle: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    tmpfile_unregister(tmp);
    free(tmp);
}

int cmd_oracle(int argc, char **argv) {
    static const CliOption known[] = {{"--domain", CLI_VALUE}, {"--split", CLI_VALUE}, {"--task", CLI_VALUE},
                                      {"--data-dir", CLI_VALUE}, {"--max-steps", CLI_VALUE},
                                      {"--max-errors", CLI_VALUE}, {"--sft-out", CLI_VALUE}, {NULL, 0}};
    cli_check_args("oracle", argc, argv, known, 0, NULL, NULL);
    const char *domain = cli_opt(argc, argv, "--domain");
    if (!domain) die_input("oracle: --domain is required (one of: %s)", domain_spec_names());
    const char *split = cli_opt(argc, argv, "--split");
    EpisodeOptions eo = {EPISODE_DEFAULT_MAX_STEPS, EPISODE_DEFAULT_MAX_ERRORS};
    const char *ms = cli_opt(argc, argv, "--max-steps"), *me = cli_opt(argc, argv, "--max-errors");
    if (ms) eo.max_steps = (int)cli_long("oracle", "--max-steps", ms, 1, INT_MAX, "a positive integer");
    if (me) eo.max_errors = (int)cli_long("oracle", "--max-errors", me, 1, INT_MAX, "a positive integer");
    const char *sft_path = cli_opt(argc, argv, "--sft-out");
    char err[1024];
    if (sft_path && path_check_output(sft_path, 0, err, sizeof err) != 0) die_input("oracle: --sft-out: %s", err);
    char *sft_tmp = NULL;
    FILE *sft = sft_path ? sft_open(sft_path, &sft_tmp) : NULL;
    int n_sft = 0;
    OracleTotals tot = {0};
    oracle_domain_traces(cli_data_dir(cli_opt(argc, argv, "--data-dir"), NULL), domain, split ? split : "base",
                         cli_opt(argc, argv, "--task"), &eo, NULL, sft, &n_sft, &tot);
    print_totals(&tot);
    if (sft) {
        sft_close(sft, sft_tmp, sft_path);
        printf("%d teacher traces (reward 1.0) written to %s\n", n_sft, sft_path);
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------- prepare */

static void mkdir_p(const char *path) {
    char err[1024];
    if (dir_create_all(path, err, sizeof err) != 0) die_input("prepare: %s", err);
}

/* Append one split's rows to buf; returns the number of rows. */
static int prepare_rows(SBuf *buf, const TaskSet *ts, const char *domain, const char *split) {
    const cJSON **tasks;
    char err[1024];
    int n = taskset_split(ts, split, &tasks, err, sizeof err);
    if (n < 0) die_input("prepare: %s", err);
    for (int i = 0; i < n; i++) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddItemToObject(row, "index", json_int(i));
        cJSON *md = cJSON_AddObjectToObject(row, "metadata");
        cJSON_AddStringToObject(md, "domain", domain);
        cJSON_AddStringToObject(md, "task_split", split);
        cJSON_AddStringToObject(md, "task_id", task_id(tasks[i]));
        json_dump(buf, row, 0);
        sbuf_putc(buf, '\n');
        cJSON_Delete(row);
    }
    free(tasks);
    return n;
}

/* One output file of prepare, made before any is written. */
typedef struct {
    char name[256];
    SBuf rows;
    int n;
} PreparedFile;

static void write_or_die(const char *dir, const char *name, const SBuf *b) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, name);
    char err[1024];
    if (file_write_atomic(path, b->data ? b->data : "", b->len, err, sizeof err) != 0) die_runtime("prepare: %s", err);
    free(path);
}

int cmd_prepare(int argc, char **argv) {
    static const CliOption known[] = {{"--output-dir", CLI_VALUE}, {"--domains", CLI_LIST},
                                      {"--multi-domain-train", CLI_LIST}, {"--multi-domain-name", CLI_VALUE},
                                      {"--data-dir", CLI_VALUE}, {NULL, 0}};
    cli_check_args("prepare", argc, argv, known, 0, NULL, NULL);
    const char *out_dir = cli_opt(argc, argv, "--output-dir");
    if (!out_dir) die_input("prepare: --output-dir is required");
    const char *domains[16], *multi[16];
    int nd = cli_opt_list(argc, argv, "--domains", domains, 16);
    if (nd == 0) {
        /* The recipe's defaults. */
        domains[0] = "retail", domains[1] = "airline", domains[2] = "telecom", domains[3] = "mock";
        nd = 4;
    }
    int nm = cli_opt_list(argc, argv, "--multi-domain-train", multi, 16);
    const char *multi_name = cli_opt(argc, argv, "--multi-domain-name");
    const char *data_dir = cli_data_dir(cli_opt(argc, argv, "--data-dir"), NULL);
    for (int i = 0; i < nd + nm; i++) {
        const char *dn = i < nd ? domains[i] : multi[i - nd];
        if (!domain_spec_find(dn)) die_input("prepare: unknown domain '%s' (valid domains: %s)", dn, domain_spec_names());
    }
    if (multi_name && nm == 0)
        die_input("prepare: --multi-domain-name names the --multi-domain-train file: give that too");
    if (multi_name && (!multi_name[0] || strchr(multi_name, '/') || !strcmp(multi_name, ".") ||
                       !strcmp(multi_name, "..")))
        die_input("prepare: --multi-domain-name: expected a file name inside --output-dir, got '%s'", multi_name);

    /* Every file is made in memory before the first is written: a bad
     * domain or split leaves the output directory as it was. */
    PreparedFile files[2 * 16 + 1];
    int nf = 0;
    for (int i = 0; i < nd; i++) {
        Domain *d = load_domain_or_die(data_dir, domains[i]);
        TaskSet *ts = load_tasks_or_die(d);
        /* The recipe prepares train and test; a domain without them (mock) its base split. */
        const char *splits[2] = {"train", "test"};
        int ns = 2;
        if (!json_get(ts->splits, "train") && !json_get(ts->splits, "test")) splits[0] = "base", ns = 1;
        for (int s = 0; s < ns; s++) {
            if (!json_get(ts->splits, splits[s])) continue;
            PreparedFile *f = &files[nf++];
            sbuf_init(&f->rows);
            f->n = prepare_rows(&f->rows, ts, domains[i], splits[s]);
            snprintf(f->name, sizeof f->name, "%s_%s_tasks.jsonl", domains[i], splits[s]);
        }
        taskset_free(ts);
        domain_free(d);
    }
    if (nm) {
        PreparedFile *f = &files[nf++];
        sbuf_init(&f->rows);
        f->n = 0;
        for (int i = 0; i < nm; i++) {
            Domain *d = load_domain_or_die(data_dir, multi[i]);
            TaskSet *ts = load_tasks_or_die(d);
            f->n += prepare_rows(&f->rows, ts, multi[i], "train");
            taskset_free(ts);
            domain_free(d);
        }
        const char *name = multi_name ? multi_name : "multi_domain_train_tasks.jsonl";
        if (strlen(name) >= sizeof f->name) die_input("prepare: --multi-domain-name: longer than %zu characters",
                                                      sizeof f->name - 1);
        for (int k = 0; k < nf - 1; k++)
            if (!strcmp(files[k].name, name))
                die_input("prepare: --multi-domain-name: '%s' is also a per-domain file's name", name);
        snprintf(f->name, sizeof f->name, "%s", name);
    }
    /* and every name checked before the first is written (a folder of a
     * file's name would otherwise stop the command halfway) */
    mkdir_p(out_dir);
    for (int k = 0; k < nf; k++) {
        size_t n = strlen(out_dir) + strlen(files[k].name) + 2;
        char *path = xmalloc(n), err[1200];
        snprintf(path, n, "%s/%s", out_dir, files[k].name);
        if (path_check_output(path, 0, err, sizeof err) != 0) die_input("prepare: --output-dir: %s", err);
        free(path);
    }
    int total = 0;
    for (int k = 0; k < nf; k++) {
        write_or_die(out_dir, files[k].name, &files[k].rows);
        printf("%s/%s: %d tasks\n", out_dir, files[k].name, files[k].n);
        total += files[k].n;
        sbuf_free(&files[k].rows);
    }
    printf("total: %d task rows written\n", total);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- config job */

int cmd_run_oracle_config(const char *path, int argc, char **argv) {
    static const CliOption known[] = {{"--data-dir", CLI_VALUE}, {NULL, 0}};
    cli_check_args("run", argc, argv, known, 0, NULL, NULL);
    OracleJobConfig cfg;
    config_load_oracle(path, &cfg);
    const char *data_dir = cli_data_dir(cli_opt(argc, argv, "--data-dir"), cfg.data_dir);
    /* every domain and its split first, so that a refused config leaves
     * nothing behind (the output's folders are made below) */
    for (int i = 0; i < cfg.n_domains; i++) {
        char err[1024];
        Domain *d = domain_load(data_dir, cfg.domains[i], err, sizeof err);
        TaskSet *ts = d ? taskset_load(d, err, sizeof err) : NULL;
        if (!ts) die_input("%s: %s%s", path, cfg.data_dir ? "field 'data_dir': " : "", err);
        const cJSON **tasks = NULL;
        int n = taskset_split(ts, cfg.split, &tasks, err, sizeof err);
        free(tasks);
        taskset_free(ts);
        domain_free(d);
        if (n < 0) die_input("%s: field 'split': %s", path, err);
    }
    FILE *jsonl = NULL;
    char *tmp = NULL;
    if (cfg.output) {
        size_t n = strlen(cfg.output) + 16;
        tmp = xmalloc(n);
        snprintf(tmp, n, "%s.tmp", cfg.output);
        char *parent = xstrdup(cfg.output);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            mkdir_p(parent);
        }
        free(parent);
        char err[1024];
        if (path_check_output(cfg.output, 0, err, sizeof err) != 0) die_input("%s: field 'output': %s", path, err);
        jsonl = fopen(tmp, "w");
        if (!jsonl) die_input("%s: field 'output': cannot write %s: %s", path, tmp, strerror(errno));
        tmpfile_register(tmp);
    }
    EpisodeOptions eo = {cfg.max_steps, cfg.max_errors};
    OracleTotals tot = {0};
    clock_t t0 = clock();
    for (int i = 0; i < cfg.n_domains; i++)
        oracle_domain(data_dir, cfg.domains[i], cfg.split, NULL, &eo, jsonl, &tot);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    print_totals(&tot);
    printf("%.2f s CPU, %.0f episodes/s\n", secs, secs > 0 ? tot.n / secs : 0.0);
    if (jsonl) {
        if (fclose(jsonl) != 0 || rename(tmp, cfg.output) != 0) die_runtime("cannot write %s: %s", cfg.output, strerror(errno));
        tmpfile_unregister(tmp);
        printf("episodes written to %s\n", cfg.output);
    }
    free(tmp);
    config_free_oracle(&cfg);
    return EXIT_OK;
}
