/* test_llm_client.c — the chat-completions client against a loopback
 * server that drops connections, rate-limits, fails, stalls and answers
 * garbage on purpose (tests/llm/fault_server.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "llm/llm_cache.h"
#include "llm/llm_client.h"

#include "../llm/fault_server.c"

#define KEY_VAR "TAU2_TEST_LLM_API_KEY"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Small backoffs: a test takes seconds, not minutes. The timeout is
 * generous for a loopback answer on a loaded machine; tests of timeouts
 * shorten it. */
static LlmEndpointConfig test_endpoint(const char *url) {
    LlmEndpointConfig e;
    llm_endpoint_defaults(&e);
    e.base_url = url;
    e.model = "test-model";
    e.timeout_s = 2.0;
    e.connect_timeout_s = 2.0;
    e.max_retries = 3;
    e.backoff_base_s = 0.01;
    e.backoff_max_s = 0.05;
    e.retry_after_max_s = 5;
    e.max_concurrency = 64;
    return e;
}

typedef struct {
    FaultServer *server;
    int port;
    char url[64];
} Fixture;

static void fixture_start(Fixture *f, const FaultSpec *spec) {
    f->port = 0;
    f->server = fault_server_start(spec, &f->port);
    assert_non_null(f->server);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/v1", f->port);
}

static LlmClient *client_new(const LlmEndpointConfig *e, const char *cache_dir) {
    char err[512];
    LlmClientOptions opt = {.cache_dir = cache_dir, .seed = 1234};
    LlmClient *c = llm_client_new(e, 1, &opt, err, sizeof err);
    if (!c) fail_msg("llm_client_new: %s", err);
    return c;
}

/* {"messages": [system, user text], "temperature": 0.0, "seed": seed, ...} */
static cJSON *make_body(const char *text, int seed, bool tools) {
    cJSON *b = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(b, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "system");
    cJSON_AddStringToObject(m, "content", "You are a customer.");
    cJSON_AddItemToArray(msgs, m);
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", text);
    cJSON_AddItemToArray(msgs, m);
    if (tools) {
        cJSON *t = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"lookup\",\"description\":\"Find\","
                               "\"parameters\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}}}}}]");
        cJSON_AddItemToObject(b, "tools", t);
    }
    cJSON_AddNumberToObject(b, "temperature", 0.5);
    cJSON_AddNumberToObject(b, "seed", seed);
    cJSON_AddNumberToObject(b, "max_tokens", 64);
    cJSON_AddBoolToObject(b, "stream", true); /* the client must drop it */
    return b;
}

/* Submit one request and wait for it. */
static LlmResult run_one(LlmClient *c, const char *text) {
    cJSON *b = make_body(text, 1, false);
    LlmResult r;
    llm_client_complete(c, 0, b, &r);
    cJSON_Delete(b);
    return r;
}

static const char *content_of(const LlmResult *r) {
    return r->message ? json_get_str(r->message, "content") : NULL;
}

/* Poll until nothing is pending; results land in res[tag]. Fails on a
 * lost or duplicated result. */
static void drain(LlmClient *c, LlmResult *res, bool *seen, int n) {
    double give_up = now() + 60;
    while (llm_client_pending(c) > 0) {
        assert_true(now() < give_up);
        LlmResult out[8];
        int k = llm_client_poll(c, 0.5, out, 8);
        for (int i = 0; i < k; i++) {
            long tag = (long)(intptr_t)out[i].tag;
            assert_true(tag >= 0 && tag < n);
            assert_false(seen[tag]);
            seen[tag] = true;
            res[tag] = out[i];
        }
    }
    for (int i = 0; i < n; i++) assert_true(seen[i]);
}

/* ---- tests ---- */

static void test_many_in_flight_with_every_fault(void **state) {
    (void)state;
    FaultSpec spec = {.seed = 42, .max_faults = -1, .retry_after_s = 1, .slow_s = 1.5};
    for (int k = FAULT_OK; k <= FAULT_NO_CHOICES; k++) spec.weight[k] = 1;
    spec.weight[FAULT_OK] = 6;
    Fixture f;
    fixture_start(&f, &spec);
    LlmEndpointConfig e = test_endpoint(f.url);
    e.timeout_s = 0.7;
    LlmClient *c = client_new(&e, NULL);

    enum { N = 60 };
    LlmResult res[N];
    bool seen[N] = {0};
    for (int i = 0; i < N; i++) {
        char text[64];
        snprintf(text, sizeof text, "request %d", i);
        cJSON *b = make_body(text, i, false);
        long id = llm_client_submit(c, 0, b, (void *)(intptr_t)i);
        assert_int_equal(id, i);
        cJSON_Delete(b);
    }
    assert_int_equal(llm_client_pending(c), N);
    drain(c, res, seen, N);

    int ok = 0, failed = 0;
    long attempts = 0;
    for (int i = 0; i < N; i++) {
        attempts += res[i].attempts;
        if (res[i].ok) {
            char want[64];
            snprintf(want, sizeof want, "echo: request %d", i);
            assert_string_equal(content_of(&res[i]), want);
            assert_null(res[i].error);
            assert_true(res[i].attempts >= 1 && res[i].attempts <= 4);
            ok++;
        } else {
            /* Every fault in this mix is transient: a failure used up all its tries. */
            assert_non_null(res[i].error);
            assert_null(res[i].message);
            assert_int_equal(res[i].attempts, e.max_retries + 1);
            failed++;
        }
        llm_result_free(&res[i]);
    }
    LlmEndpointStats st;
    llm_client_stats(c, 0, &st);
    assert_int_equal(st.submitted, N);
    assert_int_equal(st.successes, ok);
    assert_int_equal(st.failures, failed);
    assert_int_equal(st.requests, attempts);
    assert_int_equal(st.retries, attempts - N);
    assert_true(ok > N / 2);
    print_message("mix: %d ok, %d failed, %ld attempts, %ld 429s\n", ok, failed, attempts, st.http_429);
    for (int k = FAULT_OK; k <= FAULT_NO_CHOICES; k++) assert_true(fault_server_count(f.server, k) > 0);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_retry_after_is_honored(void **state) {
    (void)state;
    FaultSpec spec = {.retry_after_s = 1};
    Fixture f;
    fixture_start(&f, &spec);
    LlmEndpointConfig e = test_endpoint(f.url);
    LlmClient *c = client_new(&e, NULL);
    double t0 = now();
    LlmResult r = run_one(c, "hello [fault:429,ok]");
    double dt = now() - t0;
    assert_true(r.ok);
    assert_int_equal(r.attempts, 2);
    assert_true(dt >= 0.9);
    LlmEndpointStats st;
    llm_client_stats(c, 0, &st);
    assert_int_equal(st.http_429, 1);
    assert_int_equal(st.retries, 1);
    llm_result_free(&r);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_persistent_500_fails_after_all_retries(void **state) {
    (void)state;
    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    LlmEndpointConfig e = test_endpoint(f.url);
    LlmClient *c = client_new(&e, NULL);
    LlmResult r = run_one(c, "hello [fault:500]");
    assert_false(r.ok);
    assert_int_equal(r.attempts, e.max_retries + 1);
    assert_int_equal(r.http_status, 500);
    assert_int_equal(fault_server_count(f.server, FAULT_500), e.max_retries + 1);
    assert_non_null(strstr(r.error, "after 4 attempts"));
    assert_non_null(strstr(r.error, "HTTP 500"));
    assert_non_null(strstr(r.error, f.url));
    llm_result_free(&r);

    /* 503 then good: recovered on the second try. */
    r = run_one(c, "hello [fault:503,ok]");
    assert_true(r.ok);
    assert_int_equal(r.attempts, 2);
    llm_result_free(&r);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_400_fails_at_once(void **state) {
    (void)state;
    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    LlmEndpointConfig e = test_endpoint(f.url);
    LlmClient *c = client_new(&e, NULL);
    LlmResult r = run_one(c, "hello [fault:400]");
    assert_false(r.ok);
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.http_status, 400);
    assert_non_null(strstr(r.error, "Invalid request"));
    assert_int_equal(fault_server_request_count(f.server), 1);
    llm_result_free(&r);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_malformed_responses_are_retried(void **state) {
    (void)state;
    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    LlmEndpointConfig e = test_endpoint(f.url);
    LlmClient *c = client_new(&e, NULL);
    LlmResult r = run_one(c, "a [fault:malformed,nochoices,ok]");
    assert_true(r.ok);
    assert_int_equal(r.attempts, 3);
    assert_string_equal(content_of(&r), "echo: a [fault:malformed,nochoices,ok]");
    assert_string_equal(r.finish_reason, "stop");
    assert_non_null(r.usage);
    llm_result_free(&r);
    r = run_one(c, "b [fault:malformed]");
    assert_false(r.ok);
    assert_int_equal(r.attempts, e.max_retries + 1);
    assert_non_null(strstr(r.error, "not valid JSON"));
    llm_result_free(&r);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_timeouts_and_dropped_connections(void **state) {
    (void)state;
    FaultSpec spec = {.slow_s = 2.0};
    Fixture f;
    fixture_start(&f, &spec);
    LlmEndpointConfig e = test_endpoint(f.url);
    e.timeout_s = 0.5;
    LlmClient *c = client_new(&e, NULL);
    LlmResult r = run_one(c, "slow [fault:slow,ok]");
    assert_true(r.ok);
    assert_int_equal(r.attempts, 2);
    llm_result_free(&r);
    r = run_one(c, "drop [fault:drop,drop,ok]");
    assert_true(r.ok);
    assert_true(r.attempts >= 1);
    llm_result_free(&r);
    r = run_one(c, "always slow [fault:slow]");
    assert_false(r.ok);
    assert_int_equal(r.attempts, e.max_retries + 1);
    assert_int_equal(r.http_status, 0);
    llm_result_free(&r);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_connection_refused(void **state) {
    (void)state;
    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    fault_server_stop(f.server); /* the port is now closed */
    LlmEndpointConfig e = test_endpoint(f.url);
    LlmClient *c = client_new(&e, NULL);
    LlmResult r = run_one(c, "anyone?");
    assert_false(r.ok);
    assert_int_equal(r.attempts, e.max_retries + 1);
    assert_non_null(r.error);
    llm_result_free(&r);
    llm_client_free(c);
}

static void test_concurrency_limit(void **state) {
    (void)state;
    /* Faults that end an attempt while the server still counts it (slow)
     * are left out: the client moves on after its timeout. */
    FaultSpec spec = {.seed = 7, .max_faults = 2, .delay_s = 0.03};
    spec.weight[FAULT_OK] = 3;
    spec.weight[FAULT_500] = spec.weight[FAULT_503] = spec.weight[FAULT_DROP] = spec.weight[FAULT_MALFORMED] = 1;
    spec.weight[FAULT_429] = 1; /* no Retry-After header: plain backoff */
    Fixture f;
    fixture_start(&f, &spec);
    LlmEndpointConfig e = test_endpoint(f.url);
    e.max_concurrency = 4;
    LlmClient *c = client_new(&e, NULL);
    enum { N = 30 };
    LlmResult res[N];
    bool seen[N] = {0};
    for (int i = 0; i < N; i++) {
        char text[64];
        snprintf(text, sizeof text, "limited %d", i);
        cJSON *b = make_body(text, i, false);
        llm_client_submit(c, 0, b, (void *)(intptr_t)i);
        cJSON_Delete(b);
    }
    drain(c, res, seen, N);
    for (int i = 0; i < N; i++) {
        assert_true(res[i].ok);
        llm_result_free(&res[i]);
    }
    int peak = fault_server_max_inflight(f.server);
    print_message("concurrency: peak %d of %d allowed\n", peak, e.max_concurrency);
    assert_true(peak <= e.max_concurrency);
    assert_true(peak >= 2);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_requests_per_minute(void **state) {
    (void)state;
    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    LlmEndpointConfig e = test_endpoint(f.url);
    e.requests_per_minute = 300; /* 5 per second, bursts of 5 */
    LlmClient *c = client_new(&e, NULL);
    enum { N = 10 };
    LlmResult res[N];
    bool seen[N] = {0};
    double t0 = now();
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "paced %d", i);
        cJSON *b = make_body(text, i, false);
        llm_client_submit(c, 0, b, (void *)(intptr_t)i);
        cJSON_Delete(b);
    }
    drain(c, res, seen, N);
    double dt = now() - t0;
    for (int i = 0; i < N; i++) {
        assert_true(res[i].ok);
        llm_result_free(&res[i]);
    }
    /* 5 at once, then one every 0.2 s. */
    assert_true(dt >= 0.9);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static void test_tool_calls_and_request_body(void **state) {
    (void)state;
    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    LlmEndpointConfig e = test_endpoint(f.url);
    LlmClient *c = client_new(&e, NULL);
    cJSON *b = make_body("find my order [tool]", 3, true);
    LlmResult r;
    assert_int_equal(llm_client_complete(c, 0, b, &r), 0);
    cJSON_Delete(b);
    assert_true(r.ok);
    assert_false(r.from_cache);
    assert_string_equal(json_get_str(r.message, "role"), "assistant");
    assert_true(cJSON_IsNull(json_get(r.message, "content")));
    const cJSON *call = cJSON_GetArrayItem(json_get(r.message, "tool_calls"), 0);
    assert_string_equal(json_get_str(call, "type"), "function");
    assert_string_equal(json_get_str(json_get(call, "function"), "name"), "lookup");
    cJSON *args = cJSON_Parse(json_get_str(json_get(call, "function"), "arguments"));
    assert_string_equal(json_get_str(args, "text"), "find my order [tool]");
    cJSON_Delete(args);
    assert_string_equal(r.finish_reason, "tool_calls");
    llm_result_free(&r);

    /* What went over the wire: the endpoint's model, no "stream", the rest as given. */
    char *body = NULL;
    assert_true(fault_server_request(f.server, 0, NULL, &body, NULL));
    cJSON *sent = cJSON_Parse(body);
    free(body);
    assert_string_equal(json_get_str(sent, "model"), "test-model");
    assert_null(json_get(sent, "stream"));
    assert_int_equal(json_get(sent, "seed")->valueint, 3);
    assert_int_equal(cJSON_GetArraySize(json_get(sent, "tools")), 1);
    cJSON_Delete(sent);
    llm_client_free(c);
    fault_server_stop(f.server);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

static char *g_key;
static int g_files, g_key_hits;
static int scan_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    if (flag != FTW_F) return 0;
    g_files++;
    size_t len;
    char *data = file_read_all(path, &len, NULL, 0);
    assert_non_null(data);
    if (memmem(data, len, g_key, strlen(g_key))) g_key_hits++;
    free(data);
    return 0;
}

static void test_cache_and_api_key(void **state) {
    (void)state;
    char key[96];
    snprintf(key, sizeof key, "sk-tau2test-%d-%ld-SECRET", (int)getpid(), (long)time(NULL));
    g_key = key;
    setenv(KEY_VAR, key, 1);
    char dir[] = "/tmp/tau2_llm_cache_XXXXXX";
    assert_non_null(mkdtemp(dir));

    Fixture f;
    fixture_start(&f, &(FaultSpec){0});
    LlmEndpointConfig e = test_endpoint(f.url);
    e.api_key_var = KEY_VAR;
    enum { N = 12 };
    char texts[N][48];
    for (int i = 0; i < N; i++) snprintf(texts[i], sizeof texts[i], i == 0 ? "cached %d [tool]" : "cached %d", i);

    /* First run: every request goes to the server and is stored. */
    LlmClient *c = client_new(&e, dir);
    LlmResult first[N];
    bool seen[N] = {0};
    for (int i = 0; i < N; i++) {
        cJSON *b = make_body(texts[i], i, true);
        llm_client_submit(c, 0, b, (void *)(intptr_t)i);
        cJSON_Delete(b);
    }
    drain(c, first, seen, N);
    int served = fault_server_request_count(f.server);
    assert_int_equal(served, N);
    for (int i = 0; i < N; i++) {
        assert_true(first[i].ok);
        assert_false(first[i].from_cache);
    }
    /* The key arrived as a bearer token. */
    char want[160];
    snprintf(want, sizeof want, "Authorization: Bearer %s\n", key);
    for (int i = 0; i < served; i++) {
        char *headers = NULL;
        assert_true(fault_server_request(f.server, i, &headers, NULL, NULL));
        assert_non_null(strstr(headers, want));
        free(headers);
    }
    llm_client_free(c);

    /* Rerun: all from the cache, nothing on the network, same answers. */
    c = client_new(&e, dir);
    LlmResult again[N];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        cJSON *b = make_body(texts[i], i, true);
        llm_client_submit(c, 0, b, (void *)(intptr_t)i);
        cJSON_Delete(b);
    }
    drain(c, again, seen, N);
    assert_int_equal(fault_server_request_count(f.server), served);
    for (int i = 0; i < N; i++) {
        assert_true(again[i].ok);
        assert_true(again[i].from_cache);
        assert_int_equal(again[i].attempts, 0);
        assert_true(json_equal(again[i].message, first[i].message, true));
        assert_true(json_equal(again[i].usage, first[i].usage, true));
        assert_string_equal(again[i].finish_reason, first[i].finish_reason);
        llm_result_free(&first[i]);
        llm_result_free(&again[i]);
    }
    LlmEndpointStats st;
    llm_client_stats(c, 0, &st);
    assert_int_equal(st.cache_hits, N);
    assert_int_equal(st.requests, 0);

    /* Another seed is another request. */
    cJSON *b = make_body(texts[1], 999, true);
    LlmResult r;
    assert_int_equal(llm_client_complete(c, 0, b, &r), 0);
    cJSON_Delete(b);
    assert_false(r.from_cache);
    llm_result_free(&r);
    assert_int_equal(fault_server_request_count(f.server), served + 1);

    /* Failures are not cached; an error body echoing the key is redacted. */
    for (int pass = 0; pass < 2; pass++) {
        r = run_one(c, "who am i [fault:401]");
        assert_false(r.ok);
        assert_false(r.from_cache);
        assert_int_equal(r.attempts, 1);
        assert_null(strstr(r.error, key));
        assert_non_null(strstr(r.error, "[redacted]"));
        llm_result_free(&r);
    }
    r = run_one(c, "broken [fault:500]");
    assert_false(r.ok);
    assert_null(strstr(r.error, key));
    llm_result_free(&r);
    assert_int_equal(fault_server_request_count(f.server), served + 1 + 2 + e.max_retries + 1);
    llm_client_free(c);
    fault_server_stop(f.server);

    /* No file in the cache holds the key. */
    g_files = g_key_hits = 0;
    assert_int_equal(nftw(dir, scan_entry, 16, FTW_PHYS), 0);
    assert_int_equal(g_files, N + 1);
    assert_int_equal(g_key_hits, 0);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    unsetenv(KEY_VAR);
}

static void test_config_errors(void **state) {
    (void)state;
    char err[512];
    LlmEndpointConfig e = test_endpoint("http://127.0.0.1:1/v1");
    unsetenv("TAU2_TEST_LLM_UNSET_VAR");
    e.api_key_var = "TAU2_TEST_LLM_UNSET_VAR";
    assert_null(llm_client_new(&e, 1, NULL, err, sizeof err));
    assert_non_null(strstr(err, "TAU2_TEST_LLM_UNSET_VAR"));
    setenv("TAU2_TEST_LLM_UNSET_VAR", "", 1);
    assert_null(llm_client_new(&e, 1, NULL, err, sizeof err));
    assert_non_null(strstr(err, "not set or empty"));
    unsetenv("TAU2_TEST_LLM_UNSET_VAR");

    e = test_endpoint("ftp://example.com");
    assert_null(llm_client_new(&e, 1, NULL, err, sizeof err));
    assert_non_null(strstr(err, "http://"));
    e = test_endpoint("http://127.0.0.1:1/v1");
    e.model = "";
    assert_null(llm_client_new(&e, 1, NULL, err, sizeof err));
    assert_non_null(strstr(err, "model"));
    e = test_endpoint("http://127.0.0.1:1/v1");
    e.max_concurrency = 0;
    assert_null(llm_client_new(&e, 1, NULL, err, sizeof err));
    assert_null(llm_client_new(&e, 0, NULL, err, sizeof err));

    /* Keys that differ only in the endpoint differ. */
    char k1[LLM_CACHE_KEY_HEX], k2[LLM_CACHE_KEY_HEX];
    llm_cache_key("http://a/v1", "m", "{}", k1);
    llm_cache_key("http://b/v1", "m", "{}", k2);
    assert_string_not_equal(k1, k2);
    assert_int_equal(strlen(k1), 32);
}

int main(void) {
    /* The loopback server must not be reached through a proxy from the environment. */
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_many_in_flight_with_every_fault),
        cmocka_unit_test(test_retry_after_is_honored),
        cmocka_unit_test(test_persistent_500_fails_after_all_retries),
        cmocka_unit_test(test_400_fails_at_once),
        cmocka_unit_test(test_malformed_responses_are_retried),
        cmocka_unit_test(test_timeouts_and_dropped_connections),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_concurrency_limit),
        cmocka_unit_test(test_requests_per_minute),
        cmocka_unit_test(test_tool_calls_and_request_body),
        cmocka_unit_test(test_cache_and_api_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
