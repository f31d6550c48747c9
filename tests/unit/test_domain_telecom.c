/* test_domain_telecom.c — the telecom domain, agent side (telecom.c), with
 * the phone side (telecom_user.c) linked in.
 *
 *   - tool schemas against tests/fixtures/tau2/tools_telecom.json, in order;
 *   - the policy assembly and the normalized base DBs (their τ²-bench hashes);
 *   - the gold replay of tests/fixtures/tau2/gold_telecom.jsonl: every task's
 *     initial state, recorded tool calls (error flag and content), env
 *     assertions, and the agent and user DB hashes afterwards;
 *   - a scripted session over the base DB recorded from τ²-bench: every
 *     agent tool and function, their error paths, and the sync of payment
 *     requests to the phone, ending with both DB hashes;
 *   - focused error paths (argument binding, types);
 *   - optionally, TAU2_TELECOM_EXTRA names a JSONL file of
 *     {id, initial_state, steps[{kind, requestor|env_type, name, arguments,
 *     content, error}], assertions[...], final_db, final_user_db} records made
 *     with τ²-bench, replayed with whole-DB comparisons.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/hmap.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/db.h"
#include "tau2/domains/domains.h"
#include "tau2/env.h"

#define FIXTURES TAU2_SOURCE_DIR "/tests/fixtures/tau2"

#include "tau2_test_sha256.h"

static void db_hash(const Db *db, char out[65]) {
    cJSON *j = db_to_json(db);
    SBuf b;
    sbuf_init(&b);
    json_dump(&b, j, JSON_DUMP_SORT_KEYS);
    sha256_hex(b.data, b.len, out);
    sbuf_free(&b);
    cJSON_Delete(j);
}

/* ---------------------------------------------------------------- fixtures */

static Domain *g_dom;
static cJSON *g_tasks;
static HMap g_task_index;

static int setup(void **state) {
    char err[512];
    g_dom = domain_load(TAU2_TEST_DATA_DIR, "telecom", err, sizeof err);
    if (!g_dom) {
        fprintf(stderr, "domain_load: %s\n", err);
        return -1;
    }
    g_tasks = json_load_file(TAU2_TEST_DATA_DIR "/domains/telecom/tasks.json", err, sizeof err);
    if (!g_tasks) {
        fprintf(stderr, "tasks: %s\n", err);
        return -1;
    }
    hmap_init(&g_task_index);
    for (const cJSON *t = g_tasks->child; t; t = t->next) {
        const char *id = json_get_str(t, "id");
        if (id) hmap_put(&g_task_index, id, (void *)t);
    }
    return 0;
}

static int teardown(void **state) {
    hmap_free(&g_task_index);
    cJSON_Delete(g_tasks);
    domain_free(g_dom);
    return 0;
}

static cJSON *parse(const char *text) {
    char err[256];
    cJSON *v = json_parse(text, strlen(text), "<test>", err, sizeof err);
    if (!v) fail_msg("bad JSON in test: %s", err);
    return v;
}

/* Tool contents must be the very text τ²-bench printed (key order, float
 * repr and separators are part of what the model sees). */
static bool content_equal(const char *got, const char *want) {
    if (strcmp(got, want) == 0) return true;
    if (!getenv("TAU2_TELECOM_LOOSE")) return false;
    /* Loose mode: compare as JSON values when both parse, to see what differs. */
    char err[16];
    cJSON *a = json_parse(got, strlen(got), "", err, sizeof err);
    cJSON *b = json_parse(want, strlen(want), "", err, sizeof err);
    bool eq = (a && b) ? json_equal(a, b, true) : (!a && !b && strcmp(got, want) == 0);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return eq;
}

/* A function result as Environment.to_json_str prints it (a top-level bool
 * goes through str(): "True"). */
static char *func_result_string(const cJSON *res) {
    if (cJSON_IsBool(res)) return xstrdup(cJSON_IsTrue(res) ? "\"True\"" : "\"False\"");
    return env_result_to_string(res);
}

/* ---------------------------------------------------------------- schemas, policy, base DBs */

static void test_tool_schemas(void **state) {
    char err[512];
    cJSON *want = json_load_file(FIXTURES "/tools_telecom.json", err, sizeof err);
    if (!want) skip();
    const cJSON *got = g_dom->agent_schemas;
    assert_int_equal(cJSON_GetArraySize(got), cJSON_GetArraySize(want));
    const cJSON *w = want->child;
    for (const cJSON *g = got->child; g && w; g = g->next, w = w->next) {
        if (!json_equal(g, w, true)) {
            char *a = json_dumps(g, 0), *b = json_dumps(w, 0);
            fprintf(stderr, "schema differs:\n  got  %s\n  want %s\n", a, b);
            free(a);
            free(b);
            fail();
        }
    }
    cJSON_Delete(want);
}

static void test_policy(void **state) {
    const char *p = g_dom->policy;
    char err[256];
    char *main_policy = domain_read_text(g_dom->dir, "main_policy.md", err, sizeof err);
    char *tech = domain_read_text(g_dom->dir, "tech_support_manual.md", err, sizeof err);
    assert_non_null(main_policy);
    assert_non_null(tech);
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "<main_policy>\n%s\n</main_policy>\n<tech_support_policy>\n%s\n</tech_support_policy>", main_policy,
                tech);
    assert_string_equal(p, b.data);
    size_t chars = 0; /* len(get_environment().policy) counts code points */
    for (const char *c = p; *c; c++) chars += ((unsigned char)*c & 0xC0) != 0x80;
    assert_int_equal(chars, 23318);
    sbuf_free(&b);
    free(main_policy);
    free(tech);
}

static void test_base_db_hashes(void **state) {
    Env *env = env_new(g_dom);
    char h[65];
    db_hash(env->db, h);
    assert_string_equal(h, "304cf5ef059852e117ea801ab9a5efc24c9713ec887679dc2e30acceb4b6742d");
    db_hash(env->user_db, h);
    assert_string_equal(h, "e1f3a8637388808221228ff3f87294444e6b64caf721f5eb243a85d0a9380b28");
    /* A device record: defaults filled in, datetimes as str(datetime). */
    const cJSON *devices = db_table(env->db, "devices");
    cJSON *want = parse("{\"device_id\": \"D1001\", \"device_type\": \"phone\", \"model\": \"Smartphone X\", "
                        "\"imei\": \"123456789012345\", \"is_esim_capable\": true, \"activated\": true, "
                        "\"activation_date\": \"2025-01-20 14:30:00\", \"last_esim_transfer_date\": null}");
    char *got = json_dumps(devices->child, 0), *exp = json_dumps(want, 0);
    assert_string_equal(got, exp); /* key order included */
    free(got);
    free(exp);
    cJSON_Delete(want);
    env_free(env);
}

/* Normalizing an already normal DB copies nothing; a merged record with
 * ints, a datetime with 'T' and missing fields is fixed up. */
static void test_normalize_merge(void **state) {
    Env *env = env_new(g_dom);
    cJSON *init = parse("{\"initialization_data\": {\"agent_data\": {\"plans\": [{\"plan_id\": \"P9\", \"name\": \"X\", "
                        "\"data_limit_gb\": 3, \"price_per_month\": 10, \"data_refueling_price_per_gb\": 2}]}}, "
                        "\"initialization_actions\": null, \"message_history\": null}");
    char err[512];
    assert_int_equal(env_set_initial_state(env, init, err, sizeof err), 0);
    const cJSON *plans = db_table(env->db, "plans");
    assert_int_equal(cJSON_GetArraySize(plans), 1);
    assert_true(json_is_float(json_get(plans->child, "data_limit_gb")));
    cJSON *args = parse("{\"id\": \"P9\"}");
    ToolResult r = env_tool_call(env, "assistant", "get_details_by_id", args);
    cJSON_Delete(args);
    assert_false(r.error);
    assert_string_equal(r.content, "{\"plan_id\": \"P9\", \"name\": \"X\", \"data_limit_gb\": 3.0, \"price_per_month\": "
                                   "10.0, \"data_refueling_price_per_gb\": 2.0}");
    tool_result_free(&r);
    cJSON_Delete(init);
    env_free(env);
}

/* ---------------------------------------------------------------- gold replay */

/* Replay one gold record; returns the number of mismatches (printed). */
static int replay_gold(const cJSON *g) {
    const char *id = json_get_str(g, "task_id");
    const cJSON *task = id ? hmap_get(&g_task_index, id) : NULL;
    if (!task) {
        fprintf(stderr, "gold: unknown task %s\n", id ? id : "?");
        return 1;
    }
    int bad = 0;
    char err[1024];
    Env *env = env_new(g_dom);
    if (env_set_initial_state(env, json_get(task, "initial_state"), err, sizeof err) != 0) {
        fprintf(stderr, "%s: initial state: %s\n", id, err);
        env_free(env);
        return 1;
    }
    int i = 0;
    const cJSON *steps = json_get(g, "steps");
    for (const cJSON *s = cJSON_IsArray(steps) ? steps->child : NULL; s; s = s->next, i++) {
        ToolResult r = env_tool_call(env, json_get_str(s, "requestor"), json_get_str(s, "name"),
                                     json_get(s, "arguments"));
        const char *want = json_get_str(s, "content");
        if (r.error != cJSON_IsTrue(json_get(s, "error")) || (want && !content_equal(r.content, want))) {
            fprintf(stderr, "%s step %d (%s): got%s %s\n  want %s\n", id, i, json_get_str(s, "name"),
                    r.error ? " error" : "", r.content, want ? want : "(error flag only)");
            bad++;
        }
        tool_result_free(&r);
    }
    const cJSON *want_asserts = json_get(g, "env_assertions");
    const cJSON *asserts = json_get(json_get(task, "evaluation_criteria"), "env_assertions");
    const cJSON *wa = cJSON_IsArray(want_asserts) ? want_asserts->child : NULL;
    i = 0;
    for (const cJSON *a = cJSON_IsArray(asserts) ? asserts->child : NULL; a; a = a->next, i++) {
        cJSON *res = env_run_function(env, json_get_str(a, "env_type"), json_get_str(a, "func_name"),
                                      json_get(a, "arguments"), err, sizeof err);
        bool met = res && cJSON_IsBool(res) && cJSON_IsTrue(res) == cJSON_IsTrue(json_get(a, "assert_value"));
        if (!wa || met != cJSON_IsTrue(wa)) {
            fprintf(stderr, "%s assertion %d (%s): got %s%s\n", id, i, json_get_str(a, "func_name"),
                    met ? "met" : "not met", res ? "" : err);
            bad++;
        }
        cJSON_Delete(res);
        if (wa) wa = wa->next;
    }
    char h[65];
    const char *want_hash = json_get_str(g, "db_hash");
    db_hash(env->db, h);
    if (want_hash && strcmp(h, want_hash) != 0) {
        fprintf(stderr, "%s: agent DB hash differs\n", id);
        bad++;
    }
    want_hash = json_get_str(g, "user_db_hash");
    db_hash(env->user_db, h);
    if (want_hash && strcmp(h, want_hash) != 0) {
        fprintf(stderr, "%s: user DB hash differs\n", id);
        bad++;
    }
    env_free(env);
    return bad;
}

static void test_gold_replay(void **state) {
    char err[512];
    size_t len;
    char *text = file_read_all(FIXTURES "/gold_telecom.jsonl", &len, err, sizeof err);
    if (!text) skip();
    int n = 0, bad = 0, bad_tasks = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (!*line) continue;
        cJSON *g = json_parse(line, strlen(line), "gold_telecom.jsonl", err, sizeof err);
        assert_non_null(g);
        int b = replay_gold(g);
        bad += b;
        bad_tasks += b > 0;
        n++;
        cJSON_Delete(g);
    }
    free(text);
    fprintf(stderr, "gold replay: %d tasks, %d mismatching (%d mismatches)\n", n, bad_tasks, bad);
    assert_true(n > 0);
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------- scripted session */

typedef struct {
    bool func;           /* env function (initialization action / assertion) rather than a tool call */
    const char *side;    /* requestor or env_type */
    const char *name;
    const char *args;
    const char *content; /* as τ²-bench printed it; NULL: only the error flag is checked */
    bool error;
} Step;

/* Recorded from τ²-bench (get_environment(), then each call in turn through
 * get_response / run_env_function_call), new-bill ids as telecom.c makes them. */
static const Step SESSION[] = {
    {true, "user", "set_user_info", "{\"name\":\"John Smith\",\"phone_number\":\"555-123-2002\"}", "null", false},
    {false, "assistant", "get_customer_by_phone", "{\"phone_number\":\"555-123-2002\"}", NULL, false},
    {false, "assistant", "get_customer_by_phone", "{\"phone_number\":\"555-123-2001\"}", NULL, false},
    {false, "assistant", "get_customer_by_phone", "{\"phone_number\":\"555-123-2005\"}", NULL, false},
    {false, "assistant", "get_customer_by_phone", "{\"phone_number\":\"555-123-1004\"}", NULL, false},
    {false, "assistant", "get_customer_by_phone", "{\"phone_number\":\"000\"}", "Error: Customer with phone number 000 not found", true},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C1001\"}", NULL, false},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C1002\"}", NULL, false},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C1003\"}", NULL, false},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C1004\"}", NULL, false},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C9999\"}", "Error: Customer with ID C9999 not found", true},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"\"}", "Error: Customer with ID  not found", true},
    {false, "assistant", "get_customer_by_name", "{\"full_name\":\"john smith\",\"dob\":\"1985-06-15\"}", NULL, false},
    {false, "assistant", "get_customer_by_name", "{\"full_name\":\"John Smith\",\"dob\":\"1985-06-16\"}", "[]", false},
    {false, "assistant", "get_customer_by_name", "{\"full_name\":\"EMMA WILSON\",\"dob\":\"1995-08-17\"}", NULL, false},
    {false, "assistant", "get_customer_by_name", "{\"full_name\":\"Nobody\",\"dob\":\"x\"}", "[]", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"L1001\"}", "{\"line_id\": \"L1001\", \"phone_number\": \"555-123-2001\", \"status\": \"Active\", \"plan_id\": \"P1001\", \"device_id\": \"D1001\", \"data_used_gb\": 3.2, \"data_refueling_gb\": 0.0, \"roaming_enabled\": false, \"contract_end_date\": \"2026-12-31\", \"last_plan_change_date\": \"2025-01-10\", \"last_sim_replacement_date\": null, \"suspension_start_date\": null}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"L1003\"}", "{\"line_id\": \"L1003\", \"phone_number\": \"555-123-2003\", \"status\": \"Suspended\", \"plan_id\": \"P1001\", \"device_id\": \"D1003\", \"data_used_gb\": 0.0, \"data_refueling_gb\": 0.0, \"roaming_enabled\": false, \"contract_end_date\": \"2026-06-30\", \"last_plan_change_date\": \"2024-10-05\", \"last_sim_replacement_date\": null, \"suspension_start_date\": \"2025-02-01\"}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"L9999\"}", "Error: Line with ID L9999 not found", true},
    {false, "assistant", "get_details_by_id", "{\"id\":\"D1002\"}", "{\"device_id\": \"D1002\", \"device_type\": \"phone\", \"model\": \"Smartphone Pro Max\", \"imei\": \"234567890123456\", \"is_esim_capable\": true, \"activated\": true, \"activation_date\": \"2025-02-15 11:45:00\", \"last_esim_transfer_date\": \"2025-01-20 09:30:00\"}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"D1009\"}", "{\"device_id\": \"D1009\", \"device_type\": \"phone\", \"model\": \"Smartphone Lite\", \"imei\": \"901234567890123\", \"is_esim_capable\": false, \"activated\": true, \"activation_date\": \"2024-12-10 15:45:00\", \"last_esim_transfer_date\": null}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"D9\"}", "Error: Device with ID D9 not found", true},
    {false, "assistant", "get_details_by_id", "{\"id\":\"B1001\"}", NULL, false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"B1003\"}", "{\"bill_id\": \"B1003\", \"customer_id\": \"C1001\", \"period_start\": \"2025-03-01\", \"period_end\": \"2025-03-31\", \"issue_date\": \"2025-03-01\", \"total_due\": 0.0, \"due_date\": \"2025-03-15\", \"line_items\": [], \"status\": \"Draft\"}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"B77\"}", "Error: Bill with ID B77 not found", true},
    {false, "assistant", "get_details_by_id", "{\"id\":\"C1002\"}", NULL, false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"C1004\"}", NULL, false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"P1003\"}", "{\"plan_id\": \"P1003\", \"name\": \"Unlimited Plus\", \"data_limit_gb\": 999.0, \"price_per_month\": 85.0, \"data_refueling_price_per_gb\": 0.1}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"P1005\"}", "{\"plan_id\": \"P1005\", \"name\": \"IoT Basic\", \"data_limit_gb\": 1.0, \"price_per_month\": 15.0, \"data_refueling_price_per_gb\": 10.0}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"P0\"}", "Error: Plan with ID P0 not found", true},
    {false, "assistant", "get_details_by_id", "{\"id\":\"X1\"}", "Error: Unknown ID format or type: X1", true},
    {false, "assistant", "get_details_by_id", "{\"id\":\"\"}", "Error: Unknown ID format or type: ", true},
    {false, "assistant", "get_details_by_id", "{\"id\":\"l1001\"}", "Error: Unknown ID format or type: l1001", true},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\"}", NULL, false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\",\"limit\":1}", "[{\"bill_id\": \"B1003\", \"customer_id\": \"C1001\", \"period_start\": \"2025-03-01\", \"period_end\": \"2025-03-31\", \"issue_date\": \"2025-03-01\", \"total_due\": 0.0, \"due_date\": \"2025-03-15\", \"line_items\": [], \"status\": \"Draft\"}]", false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\",\"limit\":0}", "[]", false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\",\"limit\":-1}", NULL, false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\",\"limit\":100}", NULL, false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1002\",\"limit\":2}", NULL, false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1004\"}", "[]", false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C9\"}", "Error: Customer with ID C9 not found", true},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "{\"line_id\": \"L1001\", \"data_used_gb\": \"3.2\", \"data_limit_gb\": \"5.0\", \"data_refueling_gb\": \"0.0\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1003\"}", "{\"line_id\": \"L1003\", \"data_used_gb\": \"0.0\", \"data_limit_gb\": \"5.0\", \"data_refueling_gb\": \"0.0\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1004\"}", "Error: Line L1004 not found for customer C1001", true},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C9\",\"line_id\":\"L1\"}", "Error: Customer with ID C9 not found", true},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1002\",\"line_id\":\"L1008\"}", "{\"line_id\": \"L1008\", \"data_used_gb\": \"11.2\", \"data_limit_gb\": \"999.0\", \"data_refueling_gb\": \"0.0\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1003\",\"line_id\":\"L1009\"}", "{\"line_id\": \"L1009\", \"data_used_gb\": \"0.0\", \"data_limit_gb\": \"15.0\", \"data_refueling_gb\": \"0.0\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {false, "assistant", "suspend_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1003\",\"reason\":\"x\"}", "Error: Line must be active to suspend", true},
    {false, "assistant", "suspend_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"reason\":\"travel\"}", NULL, false},
    {false, "assistant", "suspend_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"reason\":\"again\"}", "Error: Line must be active to suspend", true},
    {false, "assistant", "suspend_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1009\",\"reason\":\"x\"}", "Error: Line L1009 not found for customer C1001", true},
    {false, "assistant", "suspend_line", "{\"customer_id\":\"C1009\",\"line_id\":\"L1009\",\"reason\":\"x\"}", "Error: Customer with ID C1009 not found", true},
    {false, "assistant", "resume_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "{\"message\": \"Line resumed successfully\", \"line\": {\"line_id\": \"L1001\", \"phone_number\": \"555-123-2001\", \"status\": \"Active\", \"plan_id\": \"P1001\", \"device_id\": \"D1001\", \"data_used_gb\": 3.2, \"data_refueling_gb\": 0.0, \"roaming_enabled\": false, \"contract_end_date\": \"2026-12-31\", \"last_plan_change_date\": \"2025-01-10\", \"last_sim_replacement_date\": null, \"suspension_start_date\": null}}", false},
    {false, "assistant", "resume_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "Error: Line must be suspended to resume", true},
    {false, "assistant", "resume_line", "{\"customer_id\":\"C1003\",\"line_id\":\"L1009\"}", "{\"message\": \"Line resumed successfully\", \"line\": {\"line_id\": \"L1009\", \"phone_number\": \"555-123-2009\", \"status\": \"Active\", \"plan_id\": \"P1002\", \"device_id\": \"D1009\", \"data_used_gb\": 0.0, \"data_refueling_gb\": 0.0, \"roaming_enabled\": false, \"contract_end_date\": \"2026-08-15\", \"last_plan_change_date\": \"2024-08-20\", \"last_sim_replacement_date\": \"2025-01-15\", \"suspension_start_date\": null}}", false},
    {false, "assistant", "suspend_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\",\"reason\":\"x\"}", NULL, false},
    {false, "assistant", "get_customer_by_phone", "{\"phone_number\":\"555-123-2002\"}", NULL, false},
    {false, "assistant", "resume_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\"}", "{\"message\": \"Line resumed successfully\", \"line\": {\"line_id\": \"L1002\", \"phone_number\": \"555-123-2002\", \"status\": \"Active\", \"plan_id\": \"P1002\", \"device_id\": \"D1002\", \"data_used_gb\": 8.7, \"data_refueling_gb\": 0.0, \"roaming_enabled\": true, \"contract_end_date\": \"2026-12-31\", \"last_plan_change_date\": \"2024-12-15\", \"last_sim_replacement_date\": \"2025-01-20\", \"suspension_start_date\": null}}", false},
    {false, "assistant", "enable_roaming", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "Roaming enabled successfully", false},
    {false, "assistant", "enable_roaming", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "Roaming was already enabled", false},
    {false, "assistant", "disable_roaming", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "Roaming disabled successfully", false},
    {false, "assistant", "disable_roaming", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "Roaming was already disabled", false},
    {false, "assistant", "enable_roaming", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "Roaming enabled successfully", false},
    {false, "assistant", "disable_roaming", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\"}", "Roaming disabled successfully", false},
    {false, "assistant", "enable_roaming", "{\"customer_id\":\"C1002\",\"line_id\":\"L1002\"}", "Error: Line L1002 not found for customer C1002", true},
    {false, "assistant", "send_payment_request", "{\"customer_id\":\"C1001\",\"bill_id\":\"B1004\"}", "Error: Bill B1004 not found for customer C1001", true},
    {false, "assistant", "send_payment_request", "{\"customer_id\":\"C9\",\"bill_id\":\"B1004\"}", "Error: Customer with ID C9 not found", true},
    {false, "assistant", "send_payment_request", "{\"customer_id\":\"C1001\",\"bill_id\":\"B1002\"}", "Payment request sent to the customer for bill B1002", false},
    {false, "assistant", "send_payment_request", "{\"customer_id\":\"C1001\",\"bill_id\":\"B1001\"}", "Error: A bill is already awaiting payment for this customer", true},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\"}", NULL, false},
    {false, "user", "check_payment_request", "{}", "You have a payment request for bill B1002 of 150.0 USD.", false},
    {false, "user", "make_payment", "{}", "Payment of 150.0 USD has been made for bill B1002.", false},
    {false, "user", "check_payment_request", "{}", "No payment request has been made.", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"B1002\"}", NULL, false},
    {false, "assistant", "send_payment_request", "{\"customer_id\":\"C1002\",\"bill_id\":\"B1005\"}", "Payment request sent to the customer for bill B1005", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"gb_amount\":1.5}", "{\"message\": \"Successfully added 1.5 GB of data for line L1001 for $7.50\", \"new_data_refueling_gb\": \"1.5\", \"charge\": \"7.5\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"gb_amount\":0}", "Error: Refuel amount must be positive", true},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"gb_amount\":-1}", "Error: Refuel amount must be positive", true},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"gb_amount\":2}", "{\"message\": \"Successfully added 2 GB of data for line L1001 for $10.00\", \"new_data_refueling_gb\": \"3.5\", \"charge\": \"10.0\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1003\",\"gb_amount\":0.3}", "{\"message\": \"Successfully added 0.3 GB of data for line L1003 for $1.50\", \"new_data_refueling_gb\": \"0.3\", \"charge\": \"1.5\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1002\",\"line_id\":\"L1004\",\"gb_amount\":3.0}", "{\"message\": \"Successfully added 3.0 GB of data for line L1004 for $0.30\", \"new_data_refueling_gb\": \"3.0\", \"charge\": \"0.30000000000000004\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1002\",\"line_id\":\"L1005\",\"gb_amount\":1}", "{\"message\": \"Successfully added 1 GB of data for line L1005 for $0.10\", \"new_data_refueling_gb\": \"1.0\", \"charge\": \"0.1\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1003\",\"line_id\":\"L1009\",\"gb_amount\":0.5}", "{\"message\": \"Successfully added 0.5 GB of data for line L1009 for $1.00\", \"new_data_refueling_gb\": \"0.5\", \"charge\": \"1.0\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1003\",\"line_id\":\"L1009\",\"gb_amount\":0.25}", "{\"message\": \"Successfully added 0.25 GB of data for line L1009 for $0.50\", \"new_data_refueling_gb\": \"0.75\", \"charge\": \"0.5\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\",\"gb_amount\":0.1}", "{\"message\": \"Successfully added 0.1 GB of data for line L1002 for $0.20\", \"new_data_refueling_gb\": \"0.1\", \"charge\": \"0.2\"}", false},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C9\",\"line_id\":\"L1\",\"gb_amount\":1.0}", "Error: Customer with ID C9 not found", true},
    {false, "assistant", "refuel_data", "{\"customer_id\":\"C1001\",\"line_id\":\"L1009\",\"gb_amount\":1.0}", "Error: Line L1009 not found for customer C1001", true},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1002\"}", NULL, false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1003\"}", NULL, false},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C1002\"}", NULL, false},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "{\"line_id\": \"L1001\", \"data_used_gb\": \"3.2\", \"data_limit_gb\": \"5.0\", \"data_refueling_gb\": \"3.5\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {false, "assistant", "transfer_to_human_agents", "{\"summary\":\"help\"}", "Transfer successful", false},
    {true, "assistant", "get_available_plan_ids", "{}", "[\"P1001\", \"P1002\", \"P1003\", \"P1004\", \"P1005\"]", false},
    {true, "assistant", "set_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\",\"data_used_gb\":15.1}", "Data usage set to 15.1 GB for line L1002", false},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\"}", "{\"line_id\": \"L1002\", \"data_used_gb\": \"15.1\", \"data_limit_gb\": \"15.0\", \"data_refueling_gb\": \"0.1\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {true, "assistant", "set_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"data_used_gb\":7}", "Data usage set to 7 GB for line L1001", false},
    {false, "assistant", "get_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "{\"line_id\": \"L1001\", \"data_used_gb\": \"7\", \"data_limit_gb\": \"5.0\", \"data_refueling_gb\": \"3.5\", \"cycle_end_date\": \"2025-02-28\"}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"L1001\"}", "{\"line_id\": \"L1001\", \"phone_number\": \"555-123-2001\", \"status\": \"Active\", \"plan_id\": \"P1001\", \"device_id\": \"D1001\", \"data_used_gb\": 7, \"data_refueling_gb\": 3.5, \"roaming_enabled\": true, \"contract_end_date\": \"2026-12-31\", \"last_plan_change_date\": \"2025-01-10\", \"last_sim_replacement_date\": null, \"suspension_start_date\": null}", false},
    {true, "assistant", "set_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1004\",\"data_used_gb\":1.0}", "Line L1004 not found for customer C1001", true},
    {true, "assistant", "set_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\"}", "TelecomTools.set_data_usage() missing 1 required positional argument: 'data_used_gb'", true},
    {true, "assistant", "set_data_usage", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"data_used_gb\":1.0,\"zzz\":1}", "TelecomTools.set_data_usage() got an unexpected keyword argument 'zzz'", true},
    {true, "assistant", "assert_data_refueling_amount", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"expected_amount\":3.5}", "\"True\"", false},
    {true, "assistant", "assert_data_refueling_amount", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"expected_amount\":3}", "\"False\"", false},
    {true, "assistant", "assert_data_refueling_amount", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\",\"expected_amount\":0.1}", "\"True\"", false},
    {true, "assistant", "assert_data_refueling_amount", "{\"customer_id\":\"C1001\",\"line_id\":\"L1007\",\"expected_amount\":0.1}", "Line L1007 not found for customer C1001", true},
    {true, "assistant", "assert_line_status", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"expected_status\":\"Active\"}", "\"True\"", false},
    {true, "assistant", "assert_line_status", "{\"customer_id\":\"C1001\",\"line_id\":\"L1003\",\"expected_status\":\"Active\"}", "\"False\"", false},
    {true, "assistant", "assert_no_overdue_bill", "{\"overdue_bill_id\":\"B1234321\"}", "\"True\"", false},
    {true, "assistant", "assert_no_overdue_bill", "{\"overdue_bill_id\":\"B1005\"}", "\"False\"", false},
    {true, "assistant", "assert_no_overdue_bill", "{\"overdue_bill_id\":\"B1001\"}", "\"True\"", false},
    {true, "assistant", "assert_overdue_bill_exists", "{\"customer_id\":\"C1002\",\"overdue_bill_id\":\"B1005\"}", "Overdue bill B1005 is not overdue", true},
    {true, "assistant", "assert_overdue_bill_exists", "{\"customer_id\":\"C1002\",\"overdue_bill_id\":\"B1004\"}", "Overdue bill B1004 is not overdue", true},
    {true, "assistant", "assert_overdue_bill_exists", "{\"customer_id\":\"C1001\",\"overdue_bill_id\":\"B1005\"}", "Overdue bill B1005 not found", true},
    {true, "assistant", "suspend_line_for_overdue_bill", "{\"customer_id\":\"C1001\",\"line_id\":\"L1003\",\"new_bill_id\":\"B1234321\",\"contract_ended\":false}", "Line must be active to suspend for unpaid bill", true},
    {true, "assistant", "suspend_line_for_overdue_bill", "{\"customer_id\":\"C1002\",\"line_id\":\"L1004\",\"new_bill_id\":\"B1234321\",\"contract_ended\":false}", "Line L1004 suspended for unpaid bill B1234321. Contract ended: False", false},
    {true, "assistant", "suspend_line_for_overdue_bill", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\",\"new_bill_id\":\"B1234321\",\"contract_ended\":true}", "Line L1002 suspended for unpaid bill B1234321. Contract ended: True", false},
    {true, "assistant", "suspend_line_for_overdue_bill", "{\"customer_id\":\"C1001\",\"line_id\":\"L1001\",\"new_bill_id\":\"B7\",\"contract_ended\":false}", "Customer already has an overdue bill", true},
    {true, "assistant", "assert_overdue_bill_exists", "{\"customer_id\":\"C1001\",\"overdue_bill_id\":\"B1234321\"}", "\"True\"", false},
    {true, "assistant", "assert_no_overdue_bill", "{\"overdue_bill_id\":\"B1234321\"}", "\"False\"", false},
    {true, "assistant", "assert_line_status", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\",\"expected_status\":\"Suspended\"}", "\"True\"", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"L1002\"}", "{\"line_id\": \"L1002\", \"phone_number\": \"555-123-2002\", \"status\": \"Suspended\", \"plan_id\": \"P1002\", \"device_id\": \"D1002\", \"data_used_gb\": 15.1, \"data_refueling_gb\": 0.1, \"roaming_enabled\": false, \"contract_end_date\": \"2025-01-31\", \"last_plan_change_date\": \"2024-12-15\", \"last_sim_replacement_date\": \"2025-01-20\", \"suspension_start_date\": \"2025-02-25\"}", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"B1234321\"}", "{\"bill_id\": \"B1234321\", \"customer_id\": \"C1002\", \"period_start\": \"2025-01-01\", \"period_end\": \"2025-01-31\", \"issue_date\": \"2025-01-01\", \"total_due\": 85.0, \"due_date\": \"2025-01-15\", \"line_items\": [{\"description\": \"Charge for line L1004\", \"amount\": 85.0, \"date\": \"2025-02-25\", \"item_type\": \"Charge\"}], \"status\": \"Overdue\"}", false},
    {false, "assistant", "get_bills_for_customer", "{\"customer_id\":\"C1001\"}", NULL, false},
    {false, "assistant", "send_payment_request", "{\"customer_id\":\"C1001\",\"bill_id\":\"B1234321\"}", "Payment request sent to the customer for bill B1234321", false},
    {false, "user", "check_payment_request", "{}", "You have a payment request for bill B1234321 of 85.0 USD.", false},
    {false, "user", "make_payment", "{}", "Payment of 85.0 USD has been made for bill B1234321.", false},
    {true, "assistant", "assert_no_overdue_bill", "{\"overdue_bill_id\":\"B1234321\"}", "\"True\"", false},
    {false, "assistant", "get_details_by_id", "{\"id\":\"B1234321\"}", "{\"bill_id\": \"B1234321\", \"customer_id\": \"C1002\", \"period_start\": \"2025-01-01\", \"period_end\": \"2025-01-31\", \"issue_date\": \"2025-01-01\", \"total_due\": 85.0, \"due_date\": \"2025-01-15\", \"line_items\": [{\"description\": \"Charge for line L1004\", \"amount\": 85.0, \"date\": \"2025-02-25\", \"item_type\": \"Charge\"}], \"status\": \"Paid\"}", false},
    {false, "assistant", "resume_line", "{\"customer_id\":\"C1001\",\"line_id\":\"L1002\"}", "{\"message\": \"Line resumed successfully\", \"line\": {\"line_id\": \"L1002\", \"phone_number\": \"555-123-2002\", \"status\": \"Active\", \"plan_id\": \"P1002\", \"device_id\": \"D1002\", \"data_used_gb\": 15.1, \"data_refueling_gb\": 0.1, \"roaming_enabled\": false, \"contract_end_date\": \"2025-01-31\", \"last_plan_change_date\": \"2024-12-15\", \"last_sim_replacement_date\": \"2025-01-20\", \"suspension_start_date\": null}}", false},
    {false, "assistant", "get_customer_by_id", "{\"customer_id\":\"C1001\"}", NULL, false},
};

static bool str_is(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* Run one step; returns whether it matched. */
static bool run_step(Env *env, const Step *s, int i) {
    cJSON *args = parse(s->args);
    char *got = NULL;
    bool error;
    if (s->func) {
        char err[1024];
        cJSON *res = env_run_function(env, s->side, s->name, args, err, sizeof err);
        error = res == NULL;
        got = error ? xstrdup(err) : func_result_string(res);
        cJSON_Delete(res);
    } else {
        ToolResult r = env_tool_call(env, s->side, s->name, args);
        error = r.error;
        got = r.content;
    }
    bool ok = error == s->error && (!s->content || content_equal(got, s->content));
    if (!ok) fprintf(stderr, "step %d %s(%s): got%s %s\n  want %s\n", i, s->name, s->args, error ? " error" : "", got,
                     s->content ? s->content : "(error flag only)");
    free(got);
    cJSON_Delete(args);
    return ok;
}

static void test_scripted_session(void **state) {
    Env *env = env_new(g_dom);
    int bad = 0;
    for (size_t i = 0; i < sizeof SESSION / sizeof SESSION[0]; i++) bad += !run_step(env, &SESSION[i], (int)i);
    char h[65];
    db_hash(env->db, h);
    if (strcmp(h, "3aa18b7fa404c600f543ecca1ed579621238a7563b3b7535a2cd2c262afe8ae1") != 0) {
        cJSON *j = db_to_json(env->db);
        char *s = json_dumps(j, JSON_DUMP_SORT_KEYS);
        fprintf(stderr, "agent DB after session:\n%s\n", s);
        free(s);
        cJSON_Delete(j);
        bad++;
    }
    db_hash(env->user_db, h);
    if (strcmp(h, "682600256109d73df5e70f89b27b0b9dae14d2831f47690543c323803b6a9cea") != 0) {
        fprintf(stderr, "user DB hash differs after session\n");
        bad++;
    }
    env_free(env);
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------- error paths */

static void expect_func_error(Env *env, const char *name, const char *args, const char *want) {
    char err[1024];
    cJSON *a = parse(args);
    cJSON *res = env_run_function(env, "assistant", name, a, err, sizeof err);
    cJSON_Delete(a);
    assert_null(res);
    assert_string_equal(err, want);
}

static void test_error_paths(void **state) {
    Env *env = env_new(g_dom);
    expect_func_error(env, "set_data_usage", "{}",
                      "TelecomTools.set_data_usage() missing 3 required positional arguments: 'customer_id', "
                      "'line_id', and 'data_used_gb'");
    expect_func_error(env, "assert_line_status", "{\"customer_id\": \"C1001\"}",
                      "TelecomTools.assert_line_status() missing 2 required positional arguments: 'line_id' and "
                      "'expected_status'");
    expect_func_error(env, "assert_no_overdue_bill", "{\"overdue_bill_id\": \"B1\", \"x\": 1}",
                      "TelecomTools.assert_no_overdue_bill() got an unexpected keyword argument 'x'");
    /* Non-string ids match nothing and print as Python would. */
    expect_func_error(env, "set_data_usage", "{\"customer_id\": 7, \"line_id\": \"L1\", \"data_used_gb\": 1}",
                      "Customer with ID 7 not found");
    expect_func_error(env, "suspend_line_for_overdue_bill",
                      "{\"customer_id\": \"C1001\", \"line_id\": null, \"new_bill_id\": \"B1\", \"contract_ended\": false}",
                      "Line with ID None not found");
    expect_func_error(env, "assert_data_refueling_amount",
                      "{\"customer_id\": \"C1001\", \"line_id\": \"L1001\", \"expected_amount\": \"2\"}",
                      "unsupported operand type(s) for -: expected_amount must be a number");
    char err[256];
    assert_null(env_run_function(env, "assistant", "no_such_function", NULL, err, sizeof err));

    /* Tool calls: schema checks happen before the tool runs, and fail softly. */
    static const char *const bad_calls[][2] = {
        {"get_customer_by_id", "{}"},
        {"get_customer_by_id", "{\"customer_id\": 5}"},
        {"get_customer_by_id", "{\"customer_id\": \"C1001\", \"extra\": 1}"},
        {"refuel_data", "{\"customer_id\": \"C1001\", \"line_id\": \"L1001\", \"gb_amount\": \"2\"}"},
        {"get_bills_for_customer", "{\"customer_id\": \"C1001\", \"limit\": \"x\"}"},
        {"no_such_tool", "{}"},
    };
    for (size_t i = 0; i < sizeof bad_calls / sizeof bad_calls[0]; i++) {
        cJSON *a = parse(bad_calls[i][1]);
        ToolResult r = env_tool_call(env, "assistant", bad_calls[i][0], a);
        assert_true(r.error);
        assert_true(strncmp(r.content, "Error: ", 7) == 0);
        tool_result_free(&r);
        cJSON_Delete(a);
    }
    /* A negative limit slices from the end, as Python's [:limit]. */
    cJSON *a = parse("{\"customer_id\": \"C1001\", \"limit\": -2}");
    ToolResult r = env_tool_call(env, "assistant", "get_bills_for_customer", a);
    cJSON_Delete(a);
    cJSON *bills = parse(r.content);
    assert_int_equal(cJSON_GetArraySize(bills), 1);
    assert_string_equal(json_get_str(bills->child, "bill_id"), "B1003");
    cJSON_Delete(bills);
    tool_result_free(&r);
    /* The user tools are there too, and sync reaches the phone. */
    assert_non_null(env_find_tool(env, "user", "check_payment_request"));
    env_free(env);
}

/* ---------------------------------------------------------------- optional differential replay */

static int replay_extra(const cJSON *rec) {
    const char *id = json_get_str(rec, "id");
    int bad = 0;
    char err[1024];
    Env *env = env_new(g_dom);
    const cJSON *init = json_get(rec, "initial_state");
    if (init && !cJSON_IsNull(init) && env_set_initial_state(env, init, err, sizeof err) != 0) {
        fprintf(stderr, "%s: initial state: %s\n", id, err);
        env_free(env);
        return 1;
    }
    int i = 0;
    const cJSON *steps = json_get(rec, "steps");
    for (const cJSON *s = cJSON_IsArray(steps) ? steps->child : NULL; s; s = s->next, i++) {
        bool func = str_is(json_get_str(s, "kind"), "func");
        Step st = {func, json_get_str(s, func ? "env_type" : "requestor"), json_get_str(s, "name"), NULL,
                   json_get_str(s, "content"), cJSON_IsTrue(json_get(s, "error"))};
        char *args = json_dumps(json_get(s, "arguments"), 0);
        st.args = args;
        if (!run_step(env, &st, i)) {
            fprintf(stderr, "  in %s\n", id);
            bad++;
        }
        free(args);
    }
    const cJSON *asserts = json_get(rec, "assertions");
    for (const cJSON *a = cJSON_IsArray(asserts) ? asserts->child : NULL; a; a = a->next) {
        cJSON *res = env_run_function(env, json_get_str(a, "env_type"), json_get_str(a, "func_name"),
                                      json_get(a, "arguments"), err, sizeof err);
        const cJSON *want = json_get(a, "result");
        if ((want == NULL) != (res == NULL) || (res && !json_equal(res, want, true))) {
            fprintf(stderr, "%s: assertion %s differs\n", id, json_get_str(a, "func_name"));
            bad++;
        }
        cJSON_Delete(res);
    }
    const char *keys[2] = {"final_db", "final_user_db"};
    Db *dbs[2] = {env->db, env->user_db};
    for (int k = 0; k < 2; k++) {
        const cJSON *want = json_get(rec, keys[k]);
        if (!want) continue;
        cJSON *got = db_to_json(dbs[k]);
        if (!json_equal(got, want, true)) {
            char *a = json_dumps(got, JSON_DUMP_SORT_KEYS), *b = json_dumps(want, JSON_DUMP_SORT_KEYS);
            fprintf(stderr, "%s: %s differs\n  got  %s\n  want %s\n", id, keys[k], a, b);
            free(a);
            free(b);
            bad++;
        }
        cJSON_Delete(got);
    }
    env_free(env);
    return bad;
}

static void test_extra_fixture(void **state) {
    const char *path = getenv("TAU2_TELECOM_EXTRA");
    if (!path || !*path) skip();
    char err[512];
    size_t len;
    char *text = file_read_all(path, &len, err, sizeof err);
    assert_non_null(text);
    int n = 0, bad = 0;
    clock_t t0 = clock();
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (!*line) continue;
        cJSON *rec = json_parse(line, strlen(line), path, err, sizeof err);
        assert_non_null(rec);
        bad += replay_extra(rec) > 0;
        n++;
        cJSON_Delete(rec);
    }
    free(text);
    fprintf(stderr, "extra replay: %d records, %d mismatching, %.2fs\n", n, bad,
            (double)(clock() - t0) / CLOCKS_PER_SEC);
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tool_schemas),   cmocka_unit_test(test_policy),
        cmocka_unit_test(test_base_db_hashes), cmocka_unit_test(test_normalize_merge),
        cmocka_unit_test(test_gold_replay),    cmocka_unit_test(test_scripted_session),
        cmocka_unit_test(test_error_paths),    cmocka_unit_test(test_extra_fixture),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
