/* test_domain_airline.c — the airline domain against τ²-bench.
 *
 *   - tool schemas and their order against tests/fixtures/tau2/tools_airline.json;
 *   - the gold replay of tests/fixtures/tau2/gold_airline.jsonl: every
 *     recorded tool call (error flag and content), and the final DB hash
 *     (sha256 of json.dumps(model_dump, sort_keys=True), as τ²-bench's
 *     get_db_hash) after the task's actions;
 *   - focused tests of quirks and error paths (ids, seats, each segment's
 *     checks, certificates, pydantic messages, calculate);
 *   - optionally, a differential replay: TAU2_AIRLINE_DIFF names JSONL files
 *     (colon-separated) in the gold format, made by running τ²-bench's
 *     AirlineTools on random tool calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "tau2/db.h"
#include "tau2/domains/domains.h"
#include "tau2/env.h"

static Domain *g_dom;

#include "tau2_test_sha256.h"

static void db_hash(const Db *db, char out[65]) {
    cJSON *root = db_to_json(db);
    char *text = json_dumps(root, JSON_DUMP_SORT_KEYS);
    sha256_hex(text, strlen(text), out);
    free(text);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------ helpers */

static cJSON *parse_or_fail(const char *text) {
    char err[256];
    cJSON *v = json_parse(text, strlen(text), "test", err, sizeof err);
    if (!v) fail_msg("bad JSON in test: %s", err);
    return v;
}

static const char *data_dir(void) {
    const char *dir = getenv("TAU2_DATA_DIR");
    return dir && *dir ? dir : TAU2_TEST_DATA_DIR;
}

static int setup_domain(void **state) {
    char err[512];
    g_dom = domain_load(data_dir(), "airline", err, sizeof err);
    if (!g_dom) {
        fprintf(stderr, "cannot load airline: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown_domain(void **state) {
    domain_free(g_dom);
    return 0;
}

/* Call a tool with JSON-text arguments; returns the content (caller frees). */
static char *call(Env *env, const char *name, const char *args_json, bool *error) {
    cJSON *args = parse_or_fail(args_json);
    ToolResult r = env_tool_call(env, "assistant", name, args);
    cJSON_Delete(args);
    *error = r.error;
    char *content = r.content;
    r.content = NULL;
    tool_result_free(&r);
    return content;
}

static void expect_error(Env *env, const char *name, const char *args_json, const char *message) {
    bool error;
    char *content = call(env, name, args_json, &error);
    if (!error || strcmp(content, message) != 0)
        fail_msg("%s(%s):\n  got      %s%s\n  expected %s", name, args_json, error ? "" : "(no error) ", content,
                 message);
    free(content);
}

static void expect_ok(Env *env, const char *name, const char *args_json, const char *content_expected) {
    bool error;
    char *content = call(env, name, args_json, &error);
    if (error || (content_expected && strcmp(content, content_expected) != 0))
        fail_msg("%s(%s):\n  got      %s%s\n  expected %s", name, args_json, error ? "(error) " : "", content,
                 content_expected ? content_expected : "(success)");
    free(content);
}

/* Call and parse the JSON result. */
static cJSON *call_json(Env *env, const char *name, const char *args_json) {
    bool error;
    char *content = call(env, name, args_json, &error);
    if (error) fail_msg("%s(%s) failed: %s", name, args_json, content);
    cJSON *v = parse_or_fail(content);
    free(content);
    return v;
}

/* ------------------------------------------------------------------ schemas */

static void test_schemas(void **state) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/tau2/tools_airline.json", TAU2_SOURCE_DIR);
    cJSON *expected = json_load_file(path, err, sizeof err);
    if (!expected) fail_msg("%s", err);
    assert_int_equal(cJSON_GetArraySize(expected), DOMAIN_AIRLINE.n_agent_tools);
    int i = 0;
    for (const cJSON *e = expected->child; e; e = e->next, i++) {
        const cJSON *got = cJSON_GetArrayItem(g_dom->agent_schemas, i);
        const char *name = json_get_str(json_get(e, "function"), "name");
        assert_string_equal(DOMAIN_AIRLINE.agent_tools[i].name, name);
        if (!json_equal(got, e, true)) fail_msg("schema of %s differs", name);
    }
    cJSON_Delete(expected);
    /* The write tools are the ones replayed for evaluation. */
    const char *writes[] = {"book_reservation", "cancel_reservation", "send_certificate",
                            "update_reservation_baggages", "update_reservation_flights",
                            "update_reservation_passengers"};
    for (int k = 0; k < DOMAIN_AIRLINE.n_agent_tools; k++) {
        bool w = false;
        for (size_t j = 0; j < sizeof writes / sizeof writes[0]; j++)
            w = w || strcmp(writes[j], DOMAIN_AIRLINE.agent_tools[k].name) == 0;
        assert_int_equal(w, DOMAIN_AIRLINE.agent_tools[k].mutates);
    }
    assert_null(DOMAIN_AIRLINE.user_tools);
    assert_null(DOMAIN_AIRLINE.user_db_file);
}

static void test_policy(void **state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/domains/airline/policy.md", data_dir());
    size_t n;
    char *text = file_read_all(path, &n, NULL, 0);
    assert_non_null(text);
    assert_string_equal(g_dom->policy, text);
    free(text);
}

/* ------------------------------------------------------------------ replay */

static bool contents_equal(const char *got, const char *want) {
    char e1[64], e2[64];
    cJSON *a = json_parse(got, strlen(got), "got", e1, sizeof e1);
    cJSON *b = json_parse(want, strlen(want), "want", e2, sizeof e2);
    bool eq = (a && b) ? json_equal(a, b, true) : (!a && !b && strcmp(got, want) == 0);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return eq;
}

/* Replay one fixture episode; returns the number of mismatches (reported). */
static int replay_episode(const cJSON *ep, const cJSON *tasks, const char *file, int line) {
    const char *id = json_get_str(ep, "task_id");
    int bad = 0;
    Env *env = env_new(g_dom);
    const cJSON *initial = NULL;
    for (const cJSON *t = tasks ? tasks->child : NULL; t && id; t = t->next) {
        const char *tid = json_get_str(t, "id");
        if (tid && strcmp(tid, id) == 0) initial = json_get(t, "initial_state");
    }
    char err[512];
    if (env_set_initial_state(env, initial, err, sizeof err) != 0) {
        fprintf(stderr, "%s:%d task %s: initial state: %s\n", file, line, id, err);
        env_free(env);
        return 1;
    }
    int k = 0;
    const cJSON *steps = json_get(ep, "steps");
    for (const cJSON *s = steps ? steps->child : NULL; s; s = s->next, k++) {
        const char *requestor = json_get_str(s, "requestor");
        ToolResult r = env_tool_call(env, requestor ? requestor : "assistant", json_get_str(s, "name"),
                                     json_get(s, "arguments"));
        const cJSON *want_error = json_get(s, "error");
        const char *want = json_get_str(s, "content");
        bool ok = (!want_error || cJSON_IsTrue(want_error) == r.error) && (!want || contents_equal(r.content, want));
        if (!ok) {
            char *args = json_dumps(json_get(s, "arguments"), 0);
            fprintf(stderr, "%s:%d task %s step %d %s(%s):\n  got      %s%s\n  expected %s%s\n", file, line, id, k,
                    json_get_str(s, "name"), args, r.error ? "(error) " : "", r.content,
                    cJSON_IsTrue(want_error) ? "(error) " : "", want ? want : "(not kept)");
            free(args);
            bad++;
        }
        tool_result_free(&r);
    }
    int j = 0;
    for (const cJSON *a = json_get(ep, "env_assertions") ? json_get(ep, "env_assertions")->child : NULL; a;
         a = a->next, j++) {
        const char *env_type = json_get_str(a, "env_type");
        cJSON *res = env_run_function(env, env_type ? env_type : "assistant", json_get_str(a, "func_name"),
                                      json_get(a, "arguments"), err, sizeof err);
        const cJSON *assert_value = json_get(a, "assert_value");
        bool want = !assert_value || cJSON_IsTrue(assert_value);
        const cJSON *recorded = json_get(a, "result");
        if (!res || (recorded && (cJSON_IsTrue(res) == want) != cJSON_IsTrue(recorded))) {
            fprintf(stderr, "%s:%d task %s assertion %d: %s\n", file, line, id, j, res ? "differs" : err);
            bad++;
        }
        cJSON_Delete(res);
    }
    const char *want_hash = json_get_str(ep, "db_hash");
    if (want_hash) {
        char got[65];
        db_hash(env->db, got);
        if (strcmp(got, want_hash) != 0) {
            fprintf(stderr, "%s:%d task %s: DB hash %s, expected %s\n", file, line, id, got, want_hash);
            bad++;
        }
    }
    env_free(env);
    return bad;
}

static int replay_file(const char *path, const cJSON *tasks, int *n_episodes) {
    size_t len;
    char err[512];
    char *text = file_read_all(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    int bad = 0, line = 0;
    for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        line++;
        if (!*p) continue;
        cJSON *ep = json_parse(p, strlen(p), path, err, sizeof err);
        if (!ep) fail_msg("%s", err);
        bad += replay_episode(ep, tasks, path, line);
        (*n_episodes)++;
        cJSON_Delete(ep);
    }
    free(text);
    return bad;
}

static void test_gold_replay(void **state) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/domains/airline/tasks.json", data_dir());
    cJSON *tasks = json_load_file(path, err, sizeof err);
    if (!tasks) fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/tests/fixtures/tau2/gold_airline.jsonl", TAU2_SOURCE_DIR);
    int n = 0;
    int bad = replay_file(path, tasks, &n);
    cJSON_Delete(tasks);
    assert_true(n > 0);
    assert_int_equal(bad, 0);
}

static void test_diff_replay(void **state) {
    const char *files = getenv("TAU2_AIRLINE_DIFF");
    if (!files || !*files) skip();
    char *list = xstrdup(files);
    int bad = 0, n = 0;
    char *save = NULL;
    for (char *f = strtok_r(list, ":", &save); f; f = strtok_r(NULL, ":", &save)) bad += replay_file(f, NULL, &n);
    free(list);
    fprintf(stderr, "differential replay: %d episodes, %d mismatches\n", n, bad);
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------ focused tests */

static void test_initial_hash(void **state) {
    /* τ²-bench's hash of the untouched DB: the model_dump adds status: null to every reservation. */
    Env *env = env_new(g_dom);
    char got[65];
    db_hash(env->db, got);
    assert_string_equal(got, "124e39a664b56402bcd09cb8a6a9cece6acb8462337c969799d5658e3250f263");
    env_free(env);
}

static void test_lookups(void **state) {
    Env *env = env_new(g_dom);
    expect_error(env, "get_user_details", "{\"user_id\": \"nobody\"}", "Error: User nobody not found");
    expect_error(env, "get_reservation_details", "{\"reservation_id\": \"XXXXXX\"}",
                 "Error: Reservation XXXXXX not found");
    expect_error(env, "get_flight_status", "{\"flight_number\": \"HAT999\", \"date\": \"2024-05-01\"}",
                 "Error: Flight HAT999 not found");
    expect_error(env, "get_flight_status", "{\"flight_number\": \"HAT001\", \"date\": \"2024-06-01\"}",
                 "Error: Flight HAT001 not found on date 2024-06-01");
    expect_ok(env, "get_flight_status", "{\"flight_number\": \"HAT001\", \"date\": \"2024-05-03\"}", "cancelled");
    expect_ok(env, "transfer_to_human_agents", "{\"summary\": \"x\"}", "Transfer successful");
    /* Dispatcher checks: missing and unexpected arguments, wrong JSON types. */
    expect_error(env, "get_user_details", "{}",
                 "Error: get_user_details() missing 1 required positional argument: 'user_id'");
    expect_error(env, "get_user_details", "{\"user_id\": \"a\", \"x\": 1}",
                 "Error: get_user_details() got an unexpected keyword argument 'x'");
    bool error;
    char *c = call(env, "get_user_details", "{\"user_id\": 5}", &error);
    assert_true(error);
    free(c);
    /* Results are model dumps: reservation flights in field order, status present. */
    expect_ok(env, "get_reservation_details", "{\"reservation_id\": \"4WQ150\"}",
              "{\"reservation_id\": \"4WQ150\", \"user_id\": \"chen_jackson_3290\", \"origin\": \"DFW\", "
              "\"destination\": \"LAX\", \"flight_type\": \"round_trip\", \"cabin\": \"business\", \"flights\": "
              "[{\"flight_number\": \"HAT170\", \"origin\": \"DFW\", \"destination\": \"LAX\", \"date\": "
              "\"2024-05-22\", \"price\": 883}, {\"flight_number\": \"HAT022\", \"origin\": \"LAX\", "
              "\"destination\": \"DFW\", \"date\": \"2024-05-26\", \"price\": 779}], \"passengers\": "
              "[{\"first_name\": \"Chen\", \"last_name\": \"Jackson\", \"dob\": \"1956-07-07\"}, {\"first_name\": "
              "\"Raj\", \"last_name\": \"Smith\", \"dob\": \"1967-04-01\"}, {\"first_name\": \"Fatima\", "
              "\"last_name\": \"Martin\", \"dob\": \"1970-01-20\"}], \"payment_history\": [{\"payment_id\": "
              "\"gift_card_3576581\", \"amount\": 4986}], \"created_at\": \"2024-05-02T03:10:19\", "
              "\"total_baggages\": 5, \"nonfree_baggages\": 0, \"insurance\": \"no\", \"status\": null}");
    cJSON *airports = call_json(env, "list_all_airports", "{}");
    assert_int_equal(cJSON_GetArraySize(airports), 20);
    assert_string_equal(json_get_str(cJSON_GetArrayItem(airports, 19), "city"), "LaGuardia");
    cJSON_Delete(airports);
    env_free(env);
}

static double seats_of(Env *env, const char *flight, const char *date, const char *cabin) {
    const cJSON *f = db_get(env->db, "flights", flight);
    return json_get(json_get(json_get(json_get(f, "dates"), date), "available_seats"), cabin)->valuedouble;
}

static void test_book_and_cancel(void **state) {
    Env *env = env_new(g_dom);
    /* mia_li_3668: certificate_4856383 (100.0), certificate_7504069 (250.0), credit cards. */
    cJSON *user = call_json(env, "get_user_details", "{\"user_id\": \"mia_li_3668\"}");
    cJSON_Delete(user);
    cJSON *found = call_json(env, "search_direct_flight",
                             "{\"origin\": \"JFK\", \"destination\": \"SEA\", \"date\": \"2024-05-20\"}");
    assert_true(cJSON_GetArraySize(found) > 0);
    const cJSON *first = found->child;
    const char *number = json_get_str(first, "flight_number");
    double price = json_get(json_get(first, "prices"), "economy")->valuedouble;
    double seats = seats_of(env, number, "2024-05-20", "economy");
    assert_true(cJSON_IsNull(json_get(first, "date")));
    char args[2048];
    double total = 2 * price + 2 * 30 + 50;
    snprintf(args, sizeof args,
             "{\"user_id\": \"mia_li_3668\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": "
             "\"one_way\", \"cabin\": \"economy\", \"flights\": [{\"flight_number\": \"%s\", \"date\": "
             "\"2024-05-20\"}], \"passengers\": [{\"first_name\": \"A\", \"last_name\": \"B\", \"dob\": "
             "\"1990-01-01\", \"extra\": 1}, {\"first_name\": \"C\", \"last_name\": \"D\", \"dob\": "
             "\"1991-01-01\"}], \"payment_methods\": [{\"payment_id\": \"certificate_4856383\", \"amount\": 100}, "
             "{\"payment_id\": \"credit_card_4421486\", \"amount\": %.0f}], \"total_baggages\": 3, "
             "\"nonfree_baggages\": 1, \"insurance\": \"yes\"}",
             number, total - 100);
    /* Wrong total first: nothing changes. */
    char wrong[2048];
    snprintf(wrong, sizeof wrong, "%s", args);
    char *amt = strstr(wrong, "\"amount\": 100}");
    memcpy(amt, "\"amount\": 099}", 14); /* leading zero: not JSON */
    amt[10] = ' ';                          /* " 99}": paid one less */
    char msg[256];
    snprintf(msg, sizeof msg, "Error: Payment amount does not add up, total price is %.0f, but paid %.0f", total,
             total - 1);
    expect_error(env, "book_reservation", wrong, msg);
    cJSON *r = call_json(env, "book_reservation", args);
    assert_string_equal(json_get_str(r, "reservation_id"), "HATHAT");
    assert_string_equal(json_get_str(r, "created_at"), "2024-05-15T15:00:00");
    assert_true(cJSON_IsNull(json_get(r, "status")));
    /* extra passenger keys are dropped, as pydantic does */
    assert_null(json_get(cJSON_GetArrayItem(json_get(r, "passengers"), 0), "extra"));
    cJSON_Delete(r);
    assert_true(seats_of(env, number, "2024-05-20", "economy") == seats - 2);
    /* The certificate is spent; the user lists the new reservation. */
    cJSON *u = call_json(env, "get_user_details", "{\"user_id\": \"mia_li_3668\"}");
    assert_null(json_get(json_get(u, "payment_methods"), "certificate_4856383"));
    const cJSON *list = json_get(u, "reservations");
    assert_string_equal(cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1)->valuestring, "HATHAT");
    cJSON_Delete(u);
    /* Cancelling refunds every payment and releases no seats. */
    cJSON *c = call_json(env, "cancel_reservation", "{\"reservation_id\": \"HATHAT\"}");
    assert_string_equal(json_get_str(c, "status"), "cancelled");
    const cJSON *hist = json_get(c, "payment_history");
    assert_int_equal(cJSON_GetArraySize(hist), 4);
    assert_true(json_get(cJSON_GetArrayItem(hist, 2), "amount")->valuedouble == -100);
    assert_true(json_is_int(json_get(cJSON_GetArrayItem(hist, 2), "amount")));
    cJSON_Delete(c);
    assert_true(seats_of(env, number, "2024-05-20", "economy") == seats - 2);
    /* Next ids: HATHAU, HATHAV, then "Too many reservations". */
    snprintf(args, sizeof args,
             "{\"user_id\": \"mia_li_3668\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": "
             "\"one_way\", \"cabin\": \"economy\", \"flights\": [], \"passengers\": [], \"payment_methods\": [], "
             "\"total_baggages\": 0, \"nonfree_baggages\": 0, \"insurance\": \"no\"}");
    cJSON *r2 = call_json(env, "book_reservation", args);
    assert_string_equal(json_get_str(r2, "reservation_id"), "HATHAU");
    cJSON_Delete(r2);
    cJSON *r3 = call_json(env, "book_reservation", args);
    assert_string_equal(json_get_str(r3, "reservation_id"), "HATHAV");
    cJSON_Delete(r3);
    expect_error(env, "book_reservation", args, "Error: Too many reservations");
    cJSON_Delete(found);
    env_free(env);
}

static void test_book_validation(void **state) {
    Env *env = env_new(g_dom);
    const char *base_fmt =
        "{\"user_id\": \"mia_li_3668\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": \"%s\", "
        "\"cabin\": \"%s\", \"flights\": %s, \"passengers\": %s, \"payment_methods\": [], \"total_baggages\": 0, "
        "\"nonfree_baggages\": 0, \"insurance\": \"%s\"}";
    char args[2048];
    snprintf(args, sizeof args, base_fmt, "one_way", "economy", "[{\"flight_number\": \"HAT001\"}]", "[]", "no");
    expect_error(env, "book_reservation", args,
                 "Error: 1 validation error for FlightInfo\ndate\n  Field required [type=missing, "
                 "input_value={'flight_number': 'HAT001'}, input_type=dict]\n    For further information visit "
                 "https://errors.pydantic.dev/2.13/v/missing");
    snprintf(args, sizeof args, base_fmt, "oneway", "first", "[]", "[]", "Yes");
    expect_error(env, "book_reservation", args,
                 "Error: 3 validation errors for Reservation\nflight_type\n  Input should be 'round_trip' or "
                 "'one_way' [type=literal_error, input_value='oneway', input_type=str]\n    For further "
                 "information visit https://errors.pydantic.dev/2.13/v/literal_error\ncabin\n  Input should be "
                 "'business', 'economy' or 'basic_economy' [type=literal_error, input_value='first', "
                 "input_type=str]\n    For further information visit "
                 "https://errors.pydantic.dev/2.13/v/literal_error\ninsurance\n  Input should be 'yes' or 'no' "
                 "[type=literal_error, input_value='Yes', input_type=str]\n    For further information visit "
                 "https://errors.pydantic.dev/2.13/v/literal_error");
    snprintf(args, sizeof args, base_fmt, "one_way", "economy", "[]",
             "[{\"first_name\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"last_name\": 3}]", "no");
    expect_error(env, "book_reservation", args,
                 "Error: 2 validation errors for Passenger\nlast_name\n  Input should be a valid string "
                 "[type=string_type, input_value=3, input_type=int]\n    For further information visit "
                 "https://errors.pydantic.dev/2.13/v/string_type\ndob\n  Field required [type=missing, "
                 "input_value={'first_name': 'aaaaaaaaa...aaaaaa', 'last_name': 3}, input_type=dict]\n    For "
                 "further information visit https://errors.pydantic.dev/2.13/v/missing");
    expect_error(env, "book_reservation",
                 "{\"user_id\": \"nobody\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": "
                 "\"one_way\", \"cabin\": \"economy\", \"flights\": [], \"passengers\": [], \"payment_methods\": "
                 "[{\"payment_id\": \"x\", \"amount\": \"12.5\"}], \"total_baggages\": 0, \"nonfree_baggages\": 0, "
                 "\"insurance\": \"no\"}",
                 "Error: 1 validation error for Payment\namount\n  Input should be a valid integer, unable to parse "
                 "string as an integer [type=int_parsing, input_value='12.5', input_type=str]\n    For further "
                 "information visit https://errors.pydantic.dev/2.13/v/int_parsing");
    /* A non-object item is refused by the argument check before the tool runs. */
    bool error;
    char *c = call(env, "book_reservation",
                   "{\"user_id\": \"nobody\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": "
                   "\"one_way\", \"cabin\": \"economy\", \"flights\": [\"HAT001\"], \"passengers\": [], "
                   "\"payment_methods\": [], \"total_baggages\": 0, \"nonfree_baggages\": 0, \"insurance\": \"no\"}",
                   &error);
    assert_true(error);
    free(c);
    env_free(env);
}

/* Each flight of a booking or of a change is checked in τ²-bench's order:
 * the flight, its date, its status, the cabin's seats. A failing second
 * segment ends the call with its message and leaves the DB as it was. */
static void test_segment_checks(void **state) {
    Env *env = env_new(g_dom);
    const struct {
        const char *segment, *message;
    } bad[] = {
        {"{\"flight_number\": \"HAT999\", \"date\": \"2024-05-26\"}", "Error: Flight HAT999 not found"},
        {"{\"flight_number\": \"HAT114\", \"date\": \"2024-06-30\"}",
         "Error: Flight HAT114 not found on date 2024-06-30"},
        {"{\"flight_number\": \"HAT114\", \"date\": \"2024-05-06\"}",
         "Error: Flight HAT114 not available on date 2024-05-06"},
        {"{\"flight_number\": \"HAT002\", \"date\": \"2024-05-24\"}", "Error: Not enough seats on flight HAT002"},
    };
    const char *good = "{\"flight_number\": \"HAT114\", \"date\": \"2024-05-26\"}";
    char before[65], after[65], args[2048];
    db_hash(env->db, before);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args,
                 "{\"user_id\": \"mia_li_3668\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": "
                 "\"round_trip\", \"cabin\": \"economy\", \"flights\": [%s, %s], \"passengers\": [{\"first_name\": "
                 "\"A\", \"last_name\": \"B\", \"dob\": \"2000-01-01\"}], \"payment_methods\": [], "
                 "\"total_baggages\": 0, \"nonfree_baggages\": 0, \"insurance\": \"no\"}",
                 good, bad[i].segment);
        expect_error(env, "book_reservation", args, bad[i].message);
        snprintf(args, sizeof args,
                 "{\"reservation_id\": \"CDXEBS\", \"cabin\": \"economy\", \"flights\": [%s, %s], "
                 "\"payment_id\": \"credit_card_0000000\"}",
                 good, bad[i].segment);
        expect_error(env, "update_reservation_flights", args, bad[i].message);
    }
    db_hash(env->db, after);
    assert_string_equal(before, after);
    /* Three passengers on the two economy seats left on HAT114 that day. */
    snprintf(args, sizeof args,
             "{\"user_id\": \"mia_li_3668\", \"origin\": \"JFK\", \"destination\": \"SEA\", \"flight_type\": "
             "\"one_way\", \"cabin\": \"economy\", \"flights\": [%s], \"passengers\": [{\"first_name\": \"A\", "
             "\"last_name\": \"B\", \"dob\": \"2000-01-01\"}, {\"first_name\": \"C\", \"last_name\": \"D\", \"dob\": "
             "\"2000-01-01\"}, {\"first_name\": \"E\", \"last_name\": \"F\", \"dob\": \"2000-01-01\"}], "
             "\"payment_methods\": [], \"total_baggages\": 0, \"nonfree_baggages\": 0, \"insurance\": \"no\"}",
             good);
    assert_true(seats_of(env, "HAT114", "2024-05-26", "economy") == 2);
    expect_error(env, "book_reservation", args, "Error: Not enough seats on flight HAT114");
    env_free(env);
}

static void test_updates(void **state) {
    Env *env = env_new(g_dom);
    /* CDXEBS: harper_garcia_8677, economy, 2 passengers, nonfree 0, four segments. */
    cJSON *u = call_json(env, "get_user_details", "{\"user_id\": \"harper_garcia_8677\"}");
    const char *credit = NULL, *gift = NULL, *cert = NULL;
    for (const cJSON *pm = json_get(u, "payment_methods")->child; pm; pm = pm->next) {
        const char *src = json_get_str(pm, "source");
        if (strcmp(src, "credit_card") == 0 && !credit) credit = pm->string;
        if (strcmp(src, "gift_card") == 0 && !gift) gift = pm->string;
        if (strcmp(src, "certificate") == 0 && !cert) cert = pm->string;
    }
    assert_non_null(credit);
    assert_non_null(gift);
    assert_non_null(cert);
    char args[1024];
    expect_error(env, "update_reservation_baggages",
                 "{\"reservation_id\": \"CDXEBS\", \"total_baggages\": 5, \"nonfree_baggages\": 1, "
                 "\"payment_id\": \"nope\"}",
                 "Error: Payment method not found");
    snprintf(args, sizeof args,
             "{\"reservation_id\": \"CDXEBS\", \"total_baggages\": 5, \"nonfree_baggages\": 1, "
             "\"payment_id\": \"%s\"}",
             cert);
    expect_error(env, "update_reservation_baggages", args, "Error: Certificate cannot be used to update reservation");
    snprintf(args, sizeof args,
             "{\"reservation_id\": \"CDXEBS\", \"total_baggages\": 5, \"nonfree_baggages\": 1000, "
             "\"payment_id\": \"%s\"}",
             gift);
    expect_error(env, "update_reservation_baggages", args, "Error: Gift card balance is not enough");
    snprintf(args, sizeof args,
             "{\"reservation_id\": \"CDXEBS\", \"total_baggages\": 6, \"nonfree_baggages\": 2, \"payment_id\": "
             "\"%s\"}",
             credit);
    cJSON *r = call_json(env, "update_reservation_baggages", args);
    const cJSON *hist = json_get(r, "payment_history");
    int n_hist = cJSON_GetArraySize(hist);
    assert_true(json_get(cJSON_GetArrayItem(hist, n_hist - 1), "amount")->valuedouble == 100);
    cJSON_Delete(r);
    /* Fewer bags cost nothing and add no payment. */
    snprintf(args, sizeof args,
             "{\"reservation_id\": \"CDXEBS\", \"total_baggages\": 1, \"nonfree_baggages\": 0, \"payment_id\": "
             "\"%s\"}",
             credit);
    r = call_json(env, "update_reservation_baggages", args);
    assert_int_equal(cJSON_GetArraySize(json_get(r, "payment_history")), n_hist);
    cJSON_Delete(r);
    /* Passengers: count must match. */
    expect_error(env, "update_reservation_passengers",
                 "{\"reservation_id\": \"CDXEBS\", \"passengers\": [{\"first_name\": \"A\", \"last_name\": \"B\", "
                 "\"dob\": \"2000-01-01\"}]}",
                 "Error: Number of passengers does not match");
    /* Flights: an unknown cabin reaches available_seats[cabin] → KeyError. */
    const char *segs = "[{\"flight_number\": \"HAT114\", \"date\": \"2024-05-26\"}, {\"flight_number\": \"HAT032\", "
                       "\"date\": \"2024-05-27\"}, {\"flight_number\": \"HAT144\", \"date\": \"2024-05-29\"}, "
                       "{\"flight_number\": \"HAT066\", \"date\": \"2024-05-29\"}]";
    snprintf(args, sizeof args, "{\"reservation_id\": \"CDXEBS\", \"cabin\": \"first\", \"flights\": %s, "
             "\"payment_id\": \"%s\"}", segs, credit);
    expect_error(env, "update_reservation_flights", args, "Error: 'first'");
    /* Same flights, same cabin: difference 0, no payment, no seat change. */
    double seats = seats_of(env, "HAT114", "2024-05-26", "economy");
    snprintf(args, sizeof args, "{\"reservation_id\": \"CDXEBS\", \"cabin\": \"economy\", \"flights\": %s, "
             "\"payment_id\": \"%s\"}", segs, credit);
    r = call_json(env, "update_reservation_flights", args);
    assert_int_equal(cJSON_GetArraySize(json_get(r, "payment_history")), n_hist);
    assert_string_equal(json_get_str(cJSON_GetArrayItem(json_get(r, "flights"), 0), "flight_number"), "HAT114");
    cJSON_Delete(r);
    /* Another cabin reprices every segment but still moves no seats. */
    snprintf(args, sizeof args, "{\"reservation_id\": \"CDXEBS\", \"cabin\": \"business\", \"flights\": %s, "
             "\"payment_id\": \"%s\"}", segs, credit);
    r = call_json(env, "update_reservation_flights", args);
    assert_string_equal(json_get_str(r, "cabin"), "business");
    assert_int_equal(cJSON_GetArraySize(json_get(r, "payment_history")), n_hist + 1);
    cJSON_Delete(r);
    assert_true(seats_of(env, "HAT114", "2024-05-26", "economy") == seats);
    cJSON_Delete(u);
    env_free(env);
}

static void test_certificates(void **state) {
    Env *env = env_new(g_dom);
    expect_ok(env, "send_certificate", "{\"user_id\": \"mia_li_3668\", \"amount\": 100}",
              "Certificate certificate_3221322 added to user mia_li_3668 with amount 100.");
    expect_ok(env, "send_certificate", "{\"user_id\": \"mia_li_3668\", \"amount\": 50.0}",
              "Certificate certificate_3221323 added to user mia_li_3668 with amount 50.0.");
    expect_ok(env, "send_certificate", "{\"user_id\": \"mia_li_3668\", \"amount\": 7}",
              "Certificate certificate_3221324 added to user mia_li_3668 with amount 7.");
    expect_error(env, "send_certificate", "{\"user_id\": \"mia_li_3668\", \"amount\": 7}",
                 "Error: Too many certificates");
    expect_error(env, "send_certificate", "{\"user_id\": \"nobody\", \"amount\": 7}", "Error: User nobody not found");
    cJSON *u = call_json(env, "get_user_details", "{\"user_id\": \"mia_li_3668\"}");
    const cJSON *c = json_get(json_get(u, "payment_methods"), "certificate_3221322");
    assert_non_null(c);
    assert_true(json_is_float(json_get(c, "amount")));
    assert_string_equal(c->child->string, "source");
    cJSON_Delete(u);
    env_free(env);
}

static void test_onestop_dates(void **state) {
    Env *env = env_new(g_dom);
    /* Pairs carry their dates; an overnight first leg searches the next day
     * as "2024-05-<day+1>" without zero padding, as τ²-bench does. */
    cJSON *pairs = call_json(env, "search_onestop_flight",
                             "{\"origin\": \"JFK\", \"destination\": \"SEA\", \"date\": \"2024-05-20\"}");
    for (const cJSON *p = pairs->child; p; p = p->next) {
        assert_int_equal(cJSON_GetArraySize(p), 2);
        assert_string_equal(json_get_str(p->child, "date"), "2024-05-20");
        const char *d2 = json_get_str(p->child->next, "date");
        assert_true(strcmp(d2, "2024-05-20") == 0 || strcmp(d2, "2024-05-21") == 0);
    }
    cJSON_Delete(pairs);
    /* A date whose last two characters are not a number fails only when some
     * first leg arrives the next day. */
    bool error;
    char *c = call(env, "search_onestop_flight", "{\"origin\": \"JFK\", \"destination\": \"SEA\", \"date\": \"x\"}",
                   &error);
    assert_false(error);
    assert_string_equal(c, "[]");
    free(c);
    env_free(env);
}

static void test_calculate(void **state) {
    Env *env = env_new(g_dom);
    static const char *const cases[][2] = {
        {"2 + 2", "4.0"},
        {"1/3", "0.33"},
        {"2.675*1", "2.67"},
        {"0.005", "0.01"},
        {"-0.001", "-0.0"},
        {"7//2", "3.0"},
        {"-7.5//2", "-4.0"},
        {"-2**2", "-4.0"},
        {"2**1000", "1.0715086071862673e+301"},
        {"99999999999999999999", "1e+20"},
        {"(1200 - 150) * 0.9", "945.0"},
        {" 00", "0.0"},
        {"1 + + 2", "3.0"},
        {"1/0", "Error: division by zero"},
        {"1.0/0", "Error: float division by zero"},
        {"1//0", "Error: integer division or modulo by zero"},
        {"1.0//0", "Error: float floor division by zero"},
        {"0**-1", "Error: 0.0 cannot be raised to a negative power"},
        {"10**400", "Error: int too large to convert to float"},
        {"2.0**10000", "Error: (34, 'Numerical result out of range')"},
        {"(-8)**0.5", "Error: float() argument must be a string or a real number, not 'complex'"},
        {"()", "Error: float() argument must be a string or a real number, not 'tuple'"},
        {"...", "Error: float() argument must be a string or a real number, not 'ellipsis'"},
        {"3 (4)", "Error: 'int' object is not callable"},
        {"", "Error: invalid syntax (<string>, line 0)"},
        {"2 +", "Error: invalid syntax (<string>, line 1)"},
        {"(2", "Error: '(' was never closed (<string>, line 1)"},
        {"2)", "Error: unmatched ')' (<string>, line 1)"},
        {"(1 2 3", "Error: invalid syntax. Perhaps you forgot a comma? (<string>, line 1)"},
        {"(1 2", "Error: '(' was never closed (<string>, line 1)"},
        {"01", "Error: leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal "
               "integers (<string>, line 1)"},
        {"1e5", "Error: Invalid characters in expression"},
        {"abs(-1)", "Error: Invalid characters in expression"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *args = cJSON_CreateObject();
        cJSON_AddStringToObject(args, "expression", cases[i][0]);
        ToolResult r = env_tool_call(env, "assistant", "calculate", args);
        if (strcmp(r.content, cases[i][1]) != 0)
            fail_msg("calculate(%s): got %s, expected %s", cases[i][0], r.content, cases[i][1]);
        assert_int_equal(r.error, strncmp(cases[i][1], "Error: ", 7) == 0);
        tool_result_free(&r);
        cJSON_Delete(args);
    }
    /* Long inputs neither crash nor recurse without bound. */
    size_t n = 200000;
    char *big = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = i % 2 ? '+' : '1';
    big[n - 1] = '1';
    big[n] = '\0';
    cJSON *args = cJSON_CreateObject();
    cJSON_AddStringToObject(args, "expression", big);
    ToolResult r = env_tool_call(env, "assistant", "calculate", args);
    tool_result_free(&r);
    memset(big, '-', n - 1);
    cJSON_ReplaceItemInObject(args, "expression", cJSON_CreateString(big));
    r = env_tool_call(env, "assistant", "calculate", args);
    assert_true(r.error);
    tool_result_free(&r);
    memset(big, '(', n - 1);
    cJSON_ReplaceItemInObject(args, "expression", cJSON_CreateString(big));
    r = env_tool_call(env, "assistant", "calculate", args);
    assert_true(r.error);
    tool_result_free(&r);
    cJSON_Delete(args);
    free(big);
    env_free(env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schemas),       cmocka_unit_test(test_policy),
        cmocka_unit_test(test_initial_hash),  cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_book_and_cancel), cmocka_unit_test(test_book_validation),
        cmocka_unit_test(test_segment_checks),  cmocka_unit_test(test_updates),
        cmocka_unit_test(test_certificates),    cmocka_unit_test(test_onestop_dates),
        cmocka_unit_test(test_calculate),       cmocka_unit_test(test_gold_replay),
        cmocka_unit_test(test_diff_replay),
    };
    return cmocka_run_group_tests(tests, setup_domain, teardown_domain);
}
