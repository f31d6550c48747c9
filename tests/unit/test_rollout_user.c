/* test_rollout_user.c — the api user end to end in the rollout: per-row user
 * models (rl/user_routes.h), model rotation within a group, and the
 * NL-assertion judge, against the fault server's scripted mode (a user
 * simulator that ends the conversation at once, a judge that gives the
 * verdict it is told to) with the tiny model as the agent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "model/qwen3.h"
#include "rl/prompts.h"
#include "rl/rollout.h"
#include "rl/user_routes.h"
#include "tau2_test_util.h"

#include "../llm/fault_server.c"

#define MODEL_DIR TAU2_SOURCE_DIR "/inputs/tiny_model"
#define ROW_KEY_VAR "TAU2_TEST_ROW_USER_KEY"

/* A job config with the api user's settings only (strings borrowed). */
static JobConfig api_config(char **models, const char *url) {
    JobConfig c;
    memset(&c, 0, sizeof c);
    c.path = "test.json";
    c.seed = 5;
    c.user = "api";
    c.user_models = models;
    c.user_base_url = (char *)url;
    c.user_timeout_s = 10;
    c.user_max_retries = 1;
    c.user_max_concurrency = 8;
    return c;
}

static PromptSet *load_rows(const char *text, char *path, size_t pathlen) {
    snprintf(path, pathlen, "/tmp/test_rollout_user_%d.jsonl", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    char err[1024];
    PromptSet *ps = prompts_load(path, TAU2_TEST_DATA_DIR, "mock", "base", 1, false, false, err, sizeof err);
    if (!ps) fail_msg("prompts_load: %s", err);
    return ps;
}

/* A row's user fields beat the dataset's overrides, which beat the config,
 * field by field; equal (base_url, model, key var) share an endpoint. */
static void test_routes_precedence(void **state) {
    (void)state;
    setenv(ROW_KEY_VAR, "sk-row", 1);
    char path[256];
    PromptSet *ps = load_rows(
        "{\"index\": 0, \"metadata\": {\"task_id\": \"create_task_1\"}}\n"
        "{\"index\": 1, \"metadata\": {\"task_id\": \"update_task_1\", \"user_model\": \"row-x\"}}\n"
        "{\"index\": 2, \"metadata\": {\"task_id\": \"create_task_1\", \"user_model\": [\"row-a\", \"cfg-a\"],"
        " \"user_api_key_var\": \"" ROW_KEY_VAR "\"}}\n"
        "{\"index\": 3, \"metadata\": {\"task_id\": \"create_task_1\", \"user_model\": \"cfg-b\","
        " \"user_base_url\": \"http://127.0.0.1:9/v1\"}}\n"
        "{\"index\": 4, \"metadata\": {\"task_id\": \"update_task_1\", \"user_model\": \"row-x\"}}\n",
        path, sizeof path);
    char *models[] = {"cfg-a", "cfg-b", NULL};
    JobConfig cfg = api_config(models, "http://127.0.0.1:8/v1");
    UserEndpoints ue = {0};
    UserRoutes r;
    user_routes_build(&r, &ue, &cfg, NULL, ps, "test");
    assert_int_equal(r.n_rows, 5);
    /* row 0: the config's rotation */
    assert_int_equal(r.count[0], 2);
    assert_string_equal(r.models[r.first[0]].model, "cfg-a");
    assert_string_equal(r.models[r.first[0] + 1].model, "cfg-b");
    int cfg_a = r.models[r.first[0]].endpoint, cfg_b = r.models[r.first[0] + 1].endpoint;
    assert_int_not_equal(cfg_a, cfg_b);
    /* row 1 and row 4: the same model, the same endpoint */
    assert_int_equal(r.count[1], 1);
    assert_string_equal(r.models[r.first[1]].model, "row-x");
    assert_int_equal(r.models[r.first[1]].endpoint, r.models[r.first[4]].endpoint);
    /* row 2: its own rotation with its own key: cfg-a with a key is another endpoint */
    assert_int_equal(r.count[2], 2);
    assert_string_equal(r.models[r.first[2] + 1].model, "cfg-a");
    assert_int_not_equal(r.models[r.first[2] + 1].endpoint, cfg_a);
    assert_string_equal(ue.eps[r.models[r.first[2]].endpoint].api_key_var, ROW_KEY_VAR);
    /* row 3: another base URL */
    assert_int_not_equal(r.models[r.first[3]].endpoint, cfg_b);
    assert_string_equal(ue.eps[r.models[r.first[3]].endpoint].base_url, "http://127.0.0.1:9/v1");
    assert_int_equal(ue.n_eps, 6); /* cfg-a, cfg-b, row-x, row-a+key, cfg-a+key, cfg-b@9 */
    assert_int_equal(ue.eps[cfg_a].max_concurrency, 8);

    /* an eval dataset's overrides sit between the row and the config */
    char *ds_models[] = {"ds-m", NULL};
    EvalDataset ds = {.name = "d", .user_models = ds_models};
    UserRoutes rd;
    user_routes_build(&rd, &ue, &cfg, &ds, ps, "test");
    assert_int_equal(rd.count[0], 1);
    assert_string_equal(rd.models[rd.first[0]].model, "ds-m");
    assert_string_equal(rd.models[rd.first[1]].model, "row-x");
    assert_int_equal(rd.models[rd.first[1]].endpoint, r.models[r.first[1]].endpoint);

    RolloutPrompt p = {0};
    user_routes_apply(&rd, 2, &p);
    assert_int_equal(p.n_user_models, 2);
    assert_ptr_equal(p.user_models, &rd.models[rd.first[2]]);

    /* a user other than api: no routes */
    JobConfig gold = cfg;
    gold.user = "gold";
    UserRoutes rg;
    PromptSet *plain = load_rows("{\"index\": 0, \"metadata\": {\"task_id\": \"create_task_1\"}}\n", path, sizeof path);
    user_routes_build(&rg, &ue, &gold, NULL, plain, "test");
    assert_int_equal(rg.count[0], 0);
    user_routes_apply(&rg, 0, &p);
    assert_null(p.user_models);
    assert_int_equal(p.n_user_models, 0);

    user_routes_free(&r);
    user_routes_free(&rd);
    user_routes_free(&rg);
    user_endpoints_free(&ue);
    prompts_free(ps);
    prompts_free(plain);
    unlink(path);
    unsetenv(ROW_KEY_VAR);
}

/* A mock task graded on DB and NL_ASSERTION (no mock task has that basis:
 * create_task_1_nl_eval, whose assertions the judge grades, given it). */
static cJSON *nl_task(const TaskSet *ts) {
    cJSON *t = cJSON_Duplicate(taskset_find(ts, "create_task_1_nl_eval"), 1);
    assert_non_null(t);
    cJSON *ec = cJSON_GetObjectItemCaseSensitive(t, "evaluation_criteria");
    cJSON *basis = cJSON_CreateArray();
    cJSON_AddItemToArray(basis, cJSON_CreateString("DB"));
    cJSON_AddItemToArray(basis, cJSON_CreateString("NL_ASSERTION"));
    json_set(ec, "reward_basis", basis);
    return t;
}

typedef struct {
    Qwen3 *model;
    Tokenizer *tok;
    ChatTemplate *ct;
    Domain *dom;
    TaskSet *ts;
    cJSON *task;
    FaultServer *server;
    char url[64];
    LlmClient *client;
} World;

static void world_open(World *w) {
    char err[2048];
    w->model = qwen3_load_dir(MODEL_DIR, err, sizeof err);
    if (!w->model) fail_msg("qwen3_load_dir: %s", err);
    if (rollout_load_text(MODEL_DIR, NULL, w->model->config.vocab_size, &w->tok, &w->ct, err, sizeof err) != 0)
        fail_msg("rollout_load_text: %s", err);
    w->dom = test_load_domain("mock");
    w->ts = test_load_tasks(w->dom);
    w->task = nl_task(w->ts);
    FaultSpec spec = {.scripted = true, .judge_met = true};
    int port = 0;
    w->server = fault_server_start(&spec, &port);
    assert_non_null(w->server);
    snprintf(w->url, sizeof w->url, "http://127.0.0.1:%d/v1", port);
    /* two user models behind the one server: endpoints 0 and 1 */
    LlmEndpointConfig eps[2];
    for (int i = 0; i < 2; i++) {
        llm_endpoint_defaults(&eps[i]);
        eps[i].base_url = w->url;
        eps[i].model = i == 0 ? "sim-a" : "sim-b";
        eps[i].timeout_s = 10;
        eps[i].max_retries = 1;
    }
    LlmClientOptions lo = {.seed = 3};
    w->client = llm_client_new(eps, 2, &lo, err, sizeof err);
    if (!w->client) fail_msg("llm_client_new: %s", err);
}

static void world_close(World *w) {
    llm_client_free(w->client);
    fault_server_stop(w->server);
    cJSON_Delete(w->task);
    taskset_free(w->ts);
    domain_free(w->dom);
    chat_free(w->ct);
    tok_free(w->tok);
    qwen3_free(w->model);
}

/* One group of three samples of the NL task; the buffer's episodes. */
static RolloutBuffer *run_group(World *w, bool judge) {
    RolloutPolicy pol = {.model = w->model, .tok = w->tok, .ct = w->ct};
    RolloutUser user = {.kind = ROLLOUT_USER_API, .data_dir = TAU2_TEST_DATA_DIR, .client = w->client,
                        .endpoint = 0, .model = "sim-a", .judge = judge};
    static const RolloutUserModel rotation[2] = {{0, "sim-a"}, {1, "sim-b"}};
    RolloutPrompt p = {.domain = w->dom, .task = w->task, .task_split = "base", .index = 0, .group_id = 0,
                       .user_models = rotation, .n_user_models = 2};
    RolloutOptions opt = {.sample = {.temperature = 1.0f, .top_p = 1.0f}, .seed = 11, .n_samples = 3,
                          .max_response_len = 96, .max_turn_len = 16, .episode = {20, 10},
                          .keep_messages = true};
    partial_credit_defaults("mock", &opt.weights);
    partial_credit_defaults("telecom", &opt.telecom_weights);
    RolloutBuffer *rb = rollout_buffer_new(0, 0, "");
    RolloutStats st = {0};
    char err[2048];
    if (rollout_run(&pol, &user, &p, 1, &opt, rb, &st, err, sizeof err) != 0) fail_msg("rollout_run: %s", err);
    assert_int_equal(rb->n_episodes, 3);
    assert_int_equal(st.infra_errors, 0);
    return rb;
}

static cJSON *parse(const char *text) {
    char err[256];
    cJSON *v = json_parse(text, strlen(text), "test", err, sizeof err);
    if (!v) fail_msg("%s", err);
    return v;
}

/* Check the group's episodes: user stop, sample s played by model s % 2,
 * the NL assertions in the reward info with the scripted verdict, and the
 * reward it makes (DB is met: the user asked for nothing). */
static void check_group(RolloutBuffer *rb, bool judged, bool met) {
    static const char *const models[] = {"sim-a", "sim-b", "sim-a"};
    for (int i = 0; i < 3; i++) {
        RolloutEpisode e = rollout_buffer_episode(rb, i);
        assert_string_equal(e.termination, "user_stop");
        cJSON *ref = parse(e.task_ref), *info = parse(e.reward_info);
        assert_string_equal(json_get_str(ref, "user_model"), models[i]);
        assert_string_equal(json_get_str(ref, "task_id"), "create_task_1_nl_eval");
        const cJSON *nl = json_get(info, "nl_assertions");
        const cJSON *bd = json_get(info, "reward_breakdown");
        if (judged) {
            assert_true(cJSON_IsArray(nl));
            assert_int_equal(cJSON_GetArraySize(nl), 2);
            for (const cJSON *c = nl->child; c; c = c->next) assert_int_equal(cJSON_IsTrue(json_get(c, "met")), met);
            assert_string_equal(json_get_str(nl->child, "nl_assertion"), "The task is created successfully");
            assert_true(cJSON_IsTrue(json_get(info, "nl_assertion_judged")));
            assert_true(json_get(bd, "NL_ASSERTION")->valuedouble == (met ? 1.0 : 0.0));
            assert_true(e.reward_raw == (met ? 1.0 : 0.0));
        } else {
            /* no judge: NL_ASSERTION left out, the reward is DB's */
            assert_true(cJSON_IsNull(nl));
            assert_true(cJSON_IsFalse(json_get(info, "nl_assertion_judged")));
            assert_null(json_get(bd, "NL_ASSERTION"));
            assert_true(e.reward_raw == 1.0);
        }
        assert_true(json_get(bd, "DB")->valuedouble == 1.0);
        assert_true(json_get(info, "reward")->valuedouble == e.reward_raw);
        cJSON_Delete(ref);
        cJSON_Delete(info);
    }
}

/* The model named in request i's body. */
static char *request_model(FaultServer *s, int i, bool *judge) {
    char *body = NULL;
    assert_true(fault_server_request(s, i, NULL, &body, NULL));
    cJSON *req = parse(body);
    *judge = is_judge_request(req);
    char *m = xstrdup(json_get_str(req, "model"));
    cJSON_Delete(req);
    free(body);
    return m;
}

static void test_judge_end_to_end(void **state) {
    (void)state;
    World w;
    world_open(&w);

    /* met: the reward is the other components' (DB: 1) */
    RolloutBuffer *rb = run_group(&w, true);
    check_group(rb, true, true);
    rollout_buffer_free(rb);
    assert_int_equal(fault_server_judge_count(w.server), 3);
    /* the user turns went to each sample's model, every judge request to the group's first */
    int n = fault_server_request_count(w.server), users[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        bool judge;
        char *m = request_model(w.server, i, &judge);
        if (judge) assert_string_equal(m, "sim-a");
        else users[strcmp(m, "sim-a") == 0 ? 0 : 1]++;
        free(m);
    }
    assert_int_equal(users[0], 2);
    assert_int_equal(users[1], 1);

    /* not met: reward 0 whatever the other components say */
    fault_server_set_judge(w.server, false);
    rb = run_group(&w, true);
    check_group(rb, true, false);
    rollout_buffer_free(rb);
    assert_int_equal(fault_server_judge_count(w.server), 6);

    /* no judge: nothing asked, NL_ASSERTION not judged */
    rb = run_group(&w, false);
    check_group(rb, false, false);
    rollout_buffer_free(rb);
    assert_int_equal(fault_server_judge_count(w.server), 6);

    world_close(&w);
}

/* The scripted judge grades each expected outcome of the request. */
static void test_scripted_outcomes(void **state) {
    (void)state;
    cJSON *a = judge_outcomes("x\n        expectedOutcomes:\n        ['it\\'s done', \"say \\\"hi\\\"\", 'a\\\\b']\n");
    assert_int_equal(cJSON_GetArraySize(a), 3);
    assert_string_equal(cJSON_GetArrayItem(a, 0)->valuestring, "it's done");
    assert_string_equal(cJSON_GetArrayItem(a, 1)->valuestring, "say \"hi\"");
    assert_string_equal(cJSON_GetArrayItem(a, 2)->valuestring, "a\\b");
    cJSON_Delete(a);
    a = judge_outcomes("no list here");
    assert_int_equal(cJSON_GetArraySize(a), 0);
    cJSON_Delete(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_precedence),
        cmocka_unit_test(test_scripted_outcomes),
        cmocka_unit_test(test_judge_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
