/* test_user_sim.c — the user simulator's prompt, request and reply, and the
 * NL-assertion judge's request and verdict, against fixtures made by
 * τ²-bench's own code (tests/gen_user_sim_fixtures.py), byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "llm/judge.h"
#include "llm/user_sim.h"
#include "tau2_test_util.h"

#define FIXTURES TAU2_SOURCE_DIR "/tests/fixtures/user_sim"

static cJSON *load(const char *path) {
    char err[1024];
    cJSON *v = json_load_file(path, err, sizeof err);
    if (!v) fprintf(stderr, "%s\n", err);
    assert_non_null(v);
    return v;
}

static cJSON *parse(const char *text) {
    char err[512];
    cJSON *v = json_parse(text, strlen(text), "<test>", err, sizeof err);
    if (!v) fprintf(stderr, "%s\n", err);
    assert_non_null(v);
    return v;
}

/* Compare a built JSON value with Python's json.dumps text of the expected one. */
static void assert_dumps(const cJSON *got, const char *want, const char *what) {
    char *s = json_dumps(got, 0);
    if (strcmp(s, want) != 0) {
        size_t i = 0;
        while (s[i] && s[i] == want[i]) i++;
        fprintf(stderr, "%s differs at byte %zu:\n got: %.120s\nwant: %.120s\n", what, i, s + i, want + i);
    }
    assert_string_equal(s, want);
    free(s);
}

/* ---------------------------------------------------------------- system prompt */

static const cJSON *find_task(const cJSON *tasks, const char *id) {
    const cJSON *t;
    cJSON_ArrayForEach(t, tasks) if (!strcmp(json_get_str(t, "id"), id)) return t;
    return NULL;
}

static void test_system_prompts(void **state) {
    (void)state;
    cJSON *fx = load(FIXTURES "/system_prompts.json");
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, fx) {
        char err[1024];
        bool has_tools = cJSON_IsTrue(json_get(e, "has_tools"));
        const char *domain = json_get_str(e, "domain");
        cJSON *tasks = NULL;
        Domain *d = NULL;
        const cJSON *task = json_get(e, "task");
        if (domain) {
            char path[1024];
            snprintf(path, sizeof path, "%s/domains/%s/%s", TAU2_TEST_DATA_DIR, domain, json_get_str(e, "tasks_file"));
            tasks = load(path);
            task = find_task(tasks, json_get_str(e, "task_id"));
            assert_non_null(task);
            /* The user has tools exactly where τ²-bench's runner gives them. */
            d = test_load_domain(domain);
            cJSON *tools = user_sim_tools(d, task);
            assert_int_equal(tools != NULL, has_tools);
            if (tools) assert_int_equal(cJSON_GetArraySize(tools), d->spec->n_user_tools);
            cJSON_Delete(tools);
        }
        char *p = user_sim_system_prompt(TAU2_TEST_DATA_DIR, task, has_tools, err, sizeof err);
        if (!p) fprintf(stderr, "%s\n", err);
        assert_non_null(p);
        const char *want = json_get_str(e, "prompt");
        if (strcmp(p, want)) fprintf(stderr, "task %s: prompt differs\n", json_get_str(task, "id"));
        assert_string_equal(p, want);
        free(p);
        domain_free(d);
        cJSON_Delete(tasks);
        n++;
    }
    assert_true(n >= 14);
    cJSON_Delete(fx);
}

static void test_system_prompt_errors(void **state) {
    (void)state;
    char err[1024];
    cJSON *task = parse("{\"id\": \"t1\", \"user_scenario\": {\"instructions\": \"hi\"}}");
    assert_null(user_sim_system_prompt("/nonexistent/dir", task, false, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/user_simulator/simulation_guidelines.md"));
    assert_null(user_sim_system_prompt("/nonexistent/dir", task, true, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/user_simulator/simulation_guidelines_tools.md"));
    cJSON_Delete(task);

    task = parse("{\"id\": \"t2\", \"user_scenario\": {\"instructions\": {\"domain\": \"x\", \"reason_for_call\": "
                 "\"y\"}}}");
    assert_null(user_sim_system_prompt(TAU2_TEST_DATA_DIR, task, false, err, sizeof err));
    assert_non_null(strstr(err, "t2"));
    assert_non_null(strstr(err, "task_instructions"));
    cJSON_Delete(task);

    task = parse("{\"id\": \"t3\", \"user_scenario\": {\"persona\": 3, \"instructions\": \"hi\"}}");
    assert_null(user_sim_system_prompt(TAU2_TEST_DATA_DIR, task, false, err, sizeof err));
    assert_non_null(strstr(err, "user_scenario.persona"));
    cJSON_Delete(task);

    task = parse("{\"id\": \"t4\"}");
    assert_null(user_sim_system_prompt(TAU2_TEST_DATA_DIR, task, false, err, sizeof err));
    assert_non_null(strstr(err, "user_scenario"));
    cJSON_Delete(task);
}

static void test_indent(void **state) {
    (void)state;
    struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"a", "\ta"},
        {"a\n", "\ta\n"},
        {"a\n\nb", "\ta\n\n\tb"},
        {"a\r\nb\rc", "\ta\r\n\tb\r\tc"},
        {"  \n x", "  \n\t x"},
        {"a\xe2\x80\xa8" "b", "\ta\xe2\x80\xa8\tb"}, /* U+2028 breaks a line */
        {"\xc2\xa0\n", "\xc2\xa0\n"},                /* NBSP only: whitespace */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = user_sim_indent(cases[i].in, "\t");
        assert_string_equal(s, cases[i].want);
        free(s);
    }
}

/* ---------------------------------------------------------------- request */

static void test_flipped_history(void **state) {
    (void)state;
    cJSON *fx = load(FIXTURES "/flip.json");
    const cJSON *e;
    cJSON_ArrayForEach(e, fx) {
        cJSON *msgs = user_sim_request_messages(json_get_str(e, "system_prompt"), json_get(e, "messages"));
        assert_dumps(msgs, json_get_str(e, "expected"), json_get_str(e, "name"));
        cJSON_Delete(msgs);
    }
    cJSON_Delete(fx);
}

static void test_user_tools(void **state) {
    (void)state;
    Domain *mock = test_load_domain("mock");
    Domain *airline = test_load_domain("airline");
    cJSON *task = parse("{\"id\": \"t\"}");
    assert_null(user_sim_tools(airline, task));
    cJSON *all = user_sim_tools(mock, task);
    assert_int_equal(cJSON_GetArraySize(all), 2);
    assert_string_equal(json_get_str(json_get(all->child, "function"), "name"), "check_notifications");
    assert_string_equal(json_get_str(all->child, "type"), "function");
    cJSON_Delete(all);
    cJSON_Delete(task);

    task = parse("{\"id\": \"t\", \"user_tools\": [\"dismiss_notification\"]}");
    cJSON *one = user_sim_tools(mock, task);
    assert_int_equal(cJSON_GetArraySize(one), 1);
    assert_string_equal(json_get_str(json_get(one->child, "function"), "name"), "dismiss_notification");
    cJSON_Delete(one);
    cJSON_Delete(task);

    task = parse("{\"id\": \"t\", \"user_tools\": []}");
    assert_null(user_sim_tools(mock, task));
    cJSON_Delete(task);
    task = parse("{\"id\": \"t\", \"user_tools\": [\"no_such_tool\"]}");
    assert_null(user_sim_tools(mock, task));
    cJSON_Delete(task);
    domain_free(mock);
    domain_free(airline);
}

/* ---------------------------------------------------------------- reply */

static cJSON *reply(const char *openai_json, char *err, size_t n) {
    cJSON *m = parse(openai_json);
    cJSON *r = user_sim_parse_response(m, err, n);
    cJSON_Delete(m);
    return r;
}

static void test_parse_response(void **state) {
    (void)state;
    char err[512];
    cJSON *r = reply("{\"role\": \"assistant\", \"content\": \"Hi, I need help. ###STOP###\"}", err, sizeof err);
    assert_dumps(r, "{\"content\": \"Hi, I need help. ###STOP###\"}", "text");
    cJSON_Delete(r);

    r = reply("{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c9\", \"type\": \"function\", "
              "\"function\": {\"name\": \"toggle_airplane_mode\", \"arguments\": \"{\\\"on\\\": true, \\\"x\\\": 1.0}\"}},"
              "{\"id\": \"\", \"type\": \"function\", \"function\": {\"name\": \"check_status_bar\", \"arguments\": \"\"}},"
              "{\"type\": \"function\", \"function\": {\"name\": \"reboot_device\", \"arguments\": {\"now\": 1}}}]}",
              err, sizeof err);
    assert_non_null(r);
    assert_dumps(r,
                 "{\"content\": null, \"tool_calls\": [{\"id\": \"c9\", \"name\": \"toggle_airplane_mode\", "
                 "\"arguments\": {\"on\": true, \"x\": 1.0}}, {\"name\": \"check_status_bar\", \"arguments\": {}}, "
                 "{\"name\": \"reboot_device\", \"arguments\": {\"now\": 1}}]}",
                 "tool calls");
    cJSON_Delete(r);

    r = reply("{\"content\": \"<think>\\nThe agent asks for my id.\\n</think>\\n\\nIt is ana_1.\"}", err, sizeof err);
    assert_dumps(r, "{\"content\": \"It is ana_1.\"}", "think block");
    cJSON_Delete(r);
    r = reply("{\"content\": \"<think>hmm</think>\\n\", \"tool_calls\": [{\"id\": \"t\", \"function\": "
              "{\"name\": \"check_status_bar\", \"arguments\": \"{}\"}}]}",
              err, sizeof err);
    assert_dumps(r, "{\"content\": null, \"tool_calls\": [{\"id\": \"t\", \"name\": \"check_status_bar\", "
                 "\"arguments\": {}}]}", "think only");
    cJSON_Delete(r);

    r = reply("{\"content\": \"ok\", \"tool_calls\": []}", err, sizeof err);
    assert_dumps(r, "{\"content\": \"ok\"}", "empty tool_calls");
    cJSON_Delete(r);

    assert_null(reply("{\"content\": null, \"tool_calls\": [{\"id\": \"a\", \"function\": {\"name\": \"f\", "
                      "\"arguments\": \"{\\\"x\\\": \"}}]}",
                      err, sizeof err));
    assert_non_null(strstr(err, "tool_calls[0] (f): arguments are not valid JSON"));
    assert_null(reply("{\"tool_calls\": [{\"function\": {\"name\": \"g\", \"arguments\": \"[1]\"}}]}", err, sizeof err));
    assert_non_null(strstr(err, "expected a JSON object"));
    assert_null(reply("{\"tool_calls\": [{\"function\": {\"arguments\": \"{}\"}}]}", err, sizeof err));
    assert_non_null(strstr(err, "function.name"));
    assert_null(reply("{\"content\": 5}", err, sizeof err));
    assert_non_null(strstr(err, "content"));
    assert_null(reply("[]", err, sizeof err));
}

/* Replies in a real episode: the user's tool call runs against the user's
 * environment, its result comes back flipped, and a stop token in the
 * content ends the episode as user_stop (episode_submit's check). */
static void test_episode_round_trip(void **state) {
    (void)state;
    char err[1024];
    Domain *d = test_load_domain("mock");
    TaskSet *ts = test_load_tasks(d);
    const cJSON *task = taskset_find(ts, "create_task_1");
    Episode *ep = episode_new(d, task, NULL, err, sizeof err);
    assert_non_null(ep);
    assert_int_equal(ep->turn, TURN_USER);

    cJSON *m = reply("{\"content\": null, \"tool_calls\": [{\"id\": \"u1\", \"type\": \"function\", \"function\": "
                     "{\"name\": \"check_notifications\", \"arguments\": \"{}\"}}]}",
                     err, sizeof err);
    episode_submit(ep, m);
    assert_int_equal(ep->turn, TURN_USER); /* the user's own call: the user goes on */
    m = reply("{\"content\": \"Please create a task.\"}", err, sizeof err);
    episode_submit(ep, m);
    assert_int_equal(ep->turn, TURN_AGENT);
    episode_submit(ep, message_tool_call("get_users", NULL));
    episode_submit(ep, message_text("Done."));
    assert_int_equal(ep->turn, TURN_USER);

    cJSON *req = user_sim_request_messages("S", ep->messages);
    /* system, greeting, own call, its result, own text, the agent's text */
    assert_int_equal(cJSON_GetArraySize(req), 6);
    const cJSON *call = cJSON_GetArrayItem(req, 2);
    assert_string_equal(json_get_str(call, "role"), "assistant");
    const cJSON *tc = json_get(call, "tool_calls")->child;
    assert_string_equal(json_get_str(tc, "id"), "u1");
    assert_string_equal(json_get_str(json_get(tc, "function"), "arguments"), "{}");
    const cJSON *result = cJSON_GetArrayItem(req, 3);
    assert_string_equal(json_get_str(result, "role"), "tool");
    assert_string_equal(json_get_str(result, "tool_call_id"), "u1");
    assert_string_equal(json_get_str(cJSON_GetArrayItem(req, 5), "content"), "Done.");
    cJSON_Delete(req);

    m = reply("{\"content\": \"Thanks! ###STOP###\"}", err, sizeof err);
    episode_submit(ep, m);
    assert_int_equal(ep->turn, TURN_DONE);
    assert_int_equal(ep->term, TERM_USER_STOP);
    episode_free(ep);

    /* ###TRANSFER### and ###OUT-OF-SCOPE### end it the same way. */
    const char *tokens[] = {"###TRANSFER###", "Bye ###OUT-OF-SCOPE###"};
    for (int i = 0; i < 2; i++) {
        ep = episode_new(d, task, NULL, err, sizeof err);
        episode_submit(ep, message_text(tokens[i]));
        assert_int_equal(ep->term, TERM_USER_STOP);
        episode_free(ep);
    }
    taskset_free(ts);
    domain_free(d);
}

static void test_pick_model(void **state) {
    (void)state;
    cJSON *one = parse("\"qwen3-4b\"");
    cJSON *many = parse("[\"a\", \"b\", \"c\"]");
    cJSON *empty = parse("[]");
    assert_string_equal(user_sim_pick_model(one, 7), "qwen3-4b");
    assert_string_equal(user_sim_pick_model(many, 0), "a");
    assert_string_equal(user_sim_pick_model(many, 4), "b");
    assert_string_equal(user_sim_pick_model(many, 5), "c");
    assert_string_equal(user_sim_pick_model(many, -1), "c");
    assert_null(user_sim_pick_model(empty, 0));
    assert_null(user_sim_pick_model(NULL, 0));
    cJSON_Delete(one);
    cJSON_Delete(many);
    cJSON_Delete(empty);
}

/* ---------------------------------------------------------------- judge */

static void test_judge_fixtures(void **state) {
    (void)state;
    cJSON *fx = load(FIXTURES "/judge.json");
    const cJSON *e;
    cJSON_ArrayForEach(e, fx) {
        const cJSON *assertions = json_get(e, "nl_assertions");
        cJSON *msgs = judge_request_messages(json_get(e, "messages"), assertions);
        assert_dumps(msgs, json_get_str(e, "expected"), json_get_str(e, "name"));
        cJSON_Delete(msgs);

        int n = cJSON_GetArraySize(assertions);
        JudgeVerdict v[8];
        char err[512];
        int k = judge_parse_response(json_get_str(e, "reply"), n, v, err, sizeof err);
        if (k < 0) fprintf(stderr, "%s\n", err);
        assert_int_equal(k, n);
        /* The checks are data, not text sent anywhere: compared as JSON
         * values (an assertion here holds U+007F, which core/json's dump
         * does not yet escape as json.dumps does). */
        cJSON *checks = judge_checks_json(v, k);
        cJSON *want = parse(json_get_str(e, "checks"));
        assert_true(json_equal(checks, want, true));
        cJSON_Delete(want);
        cJSON_Delete(checks);
        judge_verdicts_free(v, k);
    }
    cJSON_Delete(fx);
}

static void test_judge_replies(void **state) {
    (void)state;
    char err[512];
    JudgeVerdict v[2];
    const char *fenced = "```json\n{\"results\": [{\"expectedOutcome\": \"A\", \"reasoning\": \"r\", "
                         "\"metExpectation\": \"true\"}, {\"expectedOutcome\": \"B\", \"reasoning\": \"s\", "
                         "\"metExpectation\": false}]}\n```\n";
    assert_int_equal(judge_parse_response(fenced, 2, v, err, sizeof err), 2);
    assert_true(v[0].met);
    assert_false(v[1].met);
    assert_string_equal(v[1].nl_assertion, "B");
    assert_string_equal(v[1].justification, "s");
    judge_verdicts_free(v, 2);

    const char *think = "<think>Is it {met}?</think>\n```json\n{\"results\": [{\"expectedOutcome\": \"A\", "
                        "\"reasoning\": \"r\", \"metExpectation\": true}]}\n```";
    assert_int_equal(judge_parse_response(think, 2, v, err, sizeof err), 1);
    assert_true(v[0].met);
    judge_verdicts_free(v, 1);

    const char *prose = "Here you go:\n{\"results\": [{\"expectedOutcome\": \"A\", \"reasoning\": \"r\", "
                        "\"metExpectation\": true}]}\nThanks.";
    assert_int_equal(judge_parse_response(prose, 2, v, err, sizeof err), 1); /* fewer results: taken as given */
    judge_verdicts_free(v, 1);
    assert_int_equal(judge_parse_response("{}", 2, v, err, sizeof err), 0); /* results.get(..., []) */

    assert_int_equal(judge_parse_response("I think yes", 2, v, err, sizeof err), -1);
    assert_non_null(strstr(err, "not JSON"));
    assert_int_equal(judge_parse_response("[1]", 2, v, err, sizeof err), -1);
    assert_int_equal(judge_parse_response("{\"results\": {}}", 2, v, err, sizeof err), -1);
    assert_int_equal(judge_parse_response("{\"results\": [{\"expectedOutcome\": \"A\", \"reasoning\": \"r\", "
                                          "\"metExpectation\": true}, {\"expectedOutcome\": \"B\", "
                                          "\"metExpectation\": true}]}",
                                          2, v, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "results[1]: reasoning"));
    assert_int_equal(judge_parse_response("{\"results\": [{\"expectedOutcome\": \"A\", \"reasoning\": \"r\", "
                                          "\"metExpectation\": \"maybe\"}]}",
                                          2, v, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "metExpectation"));
    assert_int_equal(judge_parse_response("{\"results\": [1, 2, 3]}", 2, v, err, sizeof err), -1);
    assert_non_null(strstr(err, "3 results for 2"));
    assert_int_equal(judge_parse_response(NULL, 2, v, err, sizeof err), -1);
}

static void test_judge_task_assertions(void **state) {
    (void)state;
    cJSON *t = parse("{\"evaluation_criteria\": {\"nl_assertions\": [\"x\"]}}");
    assert_non_null(judge_task_assertions(t));
    cJSON_Delete(t);
    t = parse("{\"evaluation_criteria\": {\"nl_assertions\": []}}");
    assert_null(judge_task_assertions(t));
    cJSON_Delete(t);
    t = parse("{\"evaluation_criteria\": null}");
    assert_null(judge_task_assertions(t));
    cJSON_Delete(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_prompts),     cmocka_unit_test(test_system_prompt_errors),
        cmocka_unit_test(test_indent),             cmocka_unit_test(test_flipped_history),
        cmocka_unit_test(test_user_tools),         cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_episode_round_trip), cmocka_unit_test(test_pick_model),
        cmocka_unit_test(test_judge_fixtures),     cmocka_unit_test(test_judge_replies),
        cmocka_unit_test(test_judge_task_assertions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
