/* test_llm_server.c — the OpenAI-compatible server (llm/server.h) on
 * loopback with inputs/tiny_model, driven by libcurl, and the request
 * parser and response builder (llm/openai_req.h) on their own.
 *
 * The tiny model has random weights, so its text is noise; the tests check
 * the protocol, the prompt the server builds (its token count against a
 * local render of the same conversation), seeded determinism, batching,
 * and every error path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "llm/openai_req.h"
#include "llm/server.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define MODEL_DIR TAU2_SOURCE_DIR "/inputs/tiny_model"

static Server *g_srv;
static char g_base[128];

/* ---------------------------------------------------------------- HTTP helpers */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx) {
    sbuf_put(ctx, data, size * nmemb);
    return size * nmemb;
}

/* One request; returns the response body (a new string) and *status. */
static char *http_at(const char *base, const char *method, const char *path, const char *body, size_t body_len,
                     bool chunked, long *status) {
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, path);
    CURL *c = curl_easy_init();
    SBuf out;
    sbuf_init(&out);
    sbuf_puts(&out, "");
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (chunked) h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (!chunked) curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) fprintf(stderr, "curl %s %s: %s\n", method, url, curl_easy_strerror(rc));
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return sbuf_take(&out);
}

static char *http(const char *method, const char *path, const char *body, long *status) {
    return http_at(g_base, method, path, body, body ? strlen(body) : 0, false, status);
}

/* POST a chat request; returns the parsed JSON response. */
static cJSON *chat_at(const char *base, const char *body, long *status) {
    char *text = http_at(base, "POST", "/v1/chat/completions", body, strlen(body), false, status);
    char err[512];
    cJSON *j = json_parse(text, strlen(text), "response", err, sizeof err);
    if (!j) fprintf(stderr, "not JSON: %s\n%s\n", err, text);
    assert_non_null(j);
    free(text);
    return j;
}

static cJSON *chat(const char *body, long *status) {
    return chat_at(g_base, body, status);
}

static const char *content_of(const cJSON *resp) {
    const cJSON *choice = cJSON_GetArrayItem(json_get(resp, "choices"), 0);
    return json_get_str(json_get(choice, "message"), "content");
}

static const char *finish_of(const cJSON *resp) {
    return json_get_str(cJSON_GetArrayItem(json_get(resp, "choices"), 0), "finish_reason");
}

static int usage_of(const cJSON *resp, const char *key) {
    return (int)json_get(json_get(resp, "usage"), key)->valuedouble;
}

/* An error response: the status and OpenAI's error shape. */
static void expect_error(long status, long want, const cJSON *resp, const char *param) {
    assert_int_equal(status, want);
    const cJSON *e = json_get(resp, "error");
    assert_true(cJSON_IsObject(e));
    assert_non_null(json_get_str(e, "message"));
    assert_non_null(json_get_str(e, "type"));
    assert_non_null(json_get(e, "param"));
    assert_non_null(json_get(e, "code"));
    if (param) assert_string_equal(json_get_str(e, "param"), param);
}

/* Prompt tokens of messages (template form) rendered and tokenized here. */
static int local_prompt_tokens(const char *messages_json, const char *tools_json) {
    char err[1024];
    ChatTemplate *ct = chat_load(MODEL_DIR, err, sizeof err);
    Tokenizer *tok = tok_load(MODEL_DIR "/tokenizer.json", err, sizeof err);
    assert_non_null(ct);
    assert_non_null(tok);
    cJSON *msgs = cJSON_Parse(messages_json), *tools = tools_json ? cJSON_Parse(tools_json) : NULL;
    size_t len, n;
    char *text = chat_render(ct, msgs, tools, true, NULL, &len, err, sizeof err);
    assert_non_null(text);
    int32_t *ids;
    tok_encode(tok, text, len, &ids, &n);
    free(ids);
    free(text);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    tok_free(tok);
    chat_free(ct);
    return (int)n;
}

/* ---------------------------------------------------------------- setup */

static int setup(void **state) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ServerOptions o = {.model_dir = MODEL_DIR, .port = 0, .max_batch = 8, .kv_tokens = 8192,
                       .default_max_tokens = 16, .max_body_bytes = 1 << 20};
    char err[2048];
    g_srv = server_start(&o, err, sizeof err);
    if (!g_srv) {
        fprintf(stderr, "server_start: %s\n", err);
        return -1;
    }
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", server_port(g_srv));
    return 0;
}

static int teardown(void **state) {
    server_stop(g_srv);
    curl_global_cleanup();
    return 0;
}

/* ---------------------------------------------------------------- endpoints */

static void test_health_and_models(void **state) {
    long st;
    char *body = http("GET", "/health", NULL, &st);
    assert_int_equal(st, 200);
    cJSON *j = cJSON_Parse(body);
    assert_string_equal(json_get_str(j, "status"), "ok");
    cJSON_Delete(j);
    free(body);

    body = http("GET", "/v1/models", NULL, &st);
    assert_int_equal(st, 200);
    j = cJSON_Parse(body);
    assert_string_equal(json_get_str(j, "object"), "list");
    const cJSON *m = cJSON_GetArrayItem(json_get(j, "data"), 0);
    assert_string_equal(json_get_str(m, "id"), "tiny_model");
    assert_string_equal(json_get_str(m, "object"), "model");
    assert_string_equal(server_model_name(g_srv), "tiny_model");
    cJSON_Delete(j);
    free(body);
}

static void test_plain_chat(void **state) {
    long st;
    cJSON *r = chat("{\"model\": \"tiny_model\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                    "{\"role\": \"user\", \"content\": \"Hello there\"}], \"max_tokens\": 8, \"seed\": 3}",
                    &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_get_str(r, "object"), "chat.completion");
    assert_true(strncmp(json_get_str(r, "id"), "chatcmpl-", 9) == 0);
    assert_string_equal(json_get_str(r, "model"), "tiny_model");
    assert_true(cJSON_IsNumber(json_get(r, "created")));
    const cJSON *msg = json_get(cJSON_GetArrayItem(json_get(r, "choices"), 0), "message");
    assert_string_equal(json_get_str(msg, "role"), "assistant");
    assert_non_null(content_of(r));
    const char *fin = finish_of(r);
    assert_true(!strcmp(fin, "stop") || !strcmp(fin, "length"));
    int pt = usage_of(r, "prompt_tokens"), ct = usage_of(r, "completion_tokens");
    assert_int_equal(usage_of(r, "total_tokens"), pt + ct);
    assert_true(ct >= 1 && ct <= 8);
    if (!strcmp(fin, "length")) assert_int_equal(ct, 8);
    assert_int_equal(pt, local_prompt_tokens("[{\"role\": \"system\", \"content\": \"Be brief.\"},"
                                             "{\"role\": \"user\", \"content\": \"Hello there\"}]",
                                             NULL));
    cJSON_Delete(r);

    /* content as a list of text parts is the same conversation */
    r = chat("{\"messages\": [{\"role\": \"system\", \"content\": [{\"type\": \"text\", \"text\": \"Be \"},"
             "{\"type\": \"text\", \"text\": \"brief.\"}]}, {\"role\": \"user\", \"content\": \"Hello there\"}],"
             " \"max_tokens\": 8, \"seed\": 3}",
             &st);
    assert_int_equal(st, 200);
    assert_int_equal(usage_of(r, "prompt_tokens"), pt);
    cJSON_Delete(r);
}

#define TOOLS                                                                                                    \
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_user_details\", \"description\": \"Get a user.\", " \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"user_id\": {\"type\": \"string\"}}, "              \
    "\"required\": [\"user_id\"]}}}]"

static void test_chat_with_tools(void **state) {
    long st;
    cJSON *r = chat("{\"messages\": [{\"role\": \"user\", \"content\": \"Who is mia_li_3668?\"}], \"tools\": " TOOLS
                    ", \"max_tokens\": 4, \"temperature\": 0}",
                    &st);
    assert_int_equal(st, 200);
    assert_int_equal(usage_of(r, "prompt_tokens"),
                     local_prompt_tokens("[{\"role\": \"user\", \"content\": \"Who is mia_li_3668?\"}]", TOOLS));
    cJSON_Delete(r);
}

static void test_tool_result_history(void **state) {
    long st;
    const char *req =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"You are an agent.\"},"
        "{\"role\": \"user\", \"content\": \"Look up mia_li_3668\"},"
        "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\","
        " \"function\": {\"name\": \"get_user_details\", \"arguments\": \"{\\\"user_id\\\": \\\"mia_li_3668\\\"}\"}}]},"
        "{\"role\": \"tool\", \"tool_call_id\": \"call_1\", \"content\": \"{\\\"name\\\": \\\"Mia\\\"}\"}],"
        " \"tools\": " TOOLS ", \"max_tokens\": 4, \"seed\": 11, \"top_k\": 20, \"top_p\": 0.9}";
    cJSON *r = chat(req, &st);
    assert_int_equal(st, 200);
    /* The server turns the OpenAI form into the template form chat.h documents. */
    int want = local_prompt_tokens(
        "[{\"role\": \"system\", \"content\": \"You are an agent.\"},"
        "{\"role\": \"user\", \"content\": \"Look up mia_li_3668\"},"
        "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\", \"id\": \"call_1\","
        " \"function\": {\"name\": \"get_user_details\", \"arguments\": {\"user_id\": \"mia_li_3668\"}}}]},"
        "{\"role\": \"tool\", \"tool_call_id\": \"call_1\", \"content\": \"{\\\"name\\\": \\\"Mia\\\"}\"}]",
        TOOLS);
    assert_int_equal(usage_of(r, "prompt_tokens"), want);
    cJSON_Delete(r);
}

static void test_seeded_determinism_and_stop(void **state) {
    const char *req = "{\"messages\": [{\"role\": \"user\", \"content\": \"Tell me a story\"}], \"max_tokens\": 24,"
                      " \"seed\": 1234, \"temperature\": 1.0}";
    long st;
    cJSON *a = chat(req, &st);
    assert_int_equal(st, 200);
    cJSON *b = chat(req, &st);
    assert_int_equal(st, 200);
    assert_string_equal(content_of(a), content_of(b));
    assert_int_equal(usage_of(a, "completion_tokens"), usage_of(b, "completion_tokens"));

    /* A stop string taken from the middle of that text cuts it there. */
    const char *text = content_of(a);
    size_t n = strlen(text);
    if (n >= 12) {
        char stop[4];
        size_t at = n / 2;
        /* stay on a UTF-8 character boundary */
        while (at > 0 && ((unsigned char)text[at] & 0xC0) == 0x80) at--;
        memcpy(stop, text + at, 3);
        stop[3] = 0;
        bool ascii = true;
        for (int i = 0; i < 3; i++) ascii &= (unsigned char)stop[i] < 0x80 && stop[i] != '"' && stop[i] != '\\';
        if (ascii) {
            char body[512];
            snprintf(body, sizeof body,
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"Tell me a story\"}], \"max_tokens\": 24,"
                     " \"seed\": 1234, \"temperature\": 1.0, \"stop\": [\"%s\"]}",
                     stop);
            cJSON *c = chat(body, &st);
            assert_int_equal(st, 200);
            size_t cut = (size_t)(strstr(text, stop) - text);
            assert_int_equal(strlen(content_of(c)), cut);
            assert_memory_equal(content_of(c), text, cut);
            assert_string_equal(finish_of(c), "stop");
            cJSON_Delete(c);
        }
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

typedef struct {
    const char *base;
    const char *body;
    long status;
    char *content;
    int completion_tokens;
} Job;

static void *job_run(void *arg) {
    Job *j = arg;
    char *text = http_at(j->base, "POST", "/v1/chat/completions", j->body, strlen(j->body), false, &j->status);
    cJSON *r = cJSON_Parse(text);
    if (r && j->status == 200) {
        j->content = xstrdup(content_of(r));
        j->completion_tokens = usage_of(r, "completion_tokens");
    }
    cJSON_Delete(r);
    free(text);
    return NULL;
}

static void test_concurrent_requests_batched(void **state) {
    const char *bodies[2] = {
        "{\"messages\": [{\"role\": \"user\", \"content\": \"First request\"}], \"max_tokens\": 200, \"seed\": 5}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"The second, longer request\"}], \"max_tokens\": 200,"
        " \"seed\": 6}",
    };
    /* alone, one after the other */
    Job alone[2], together[2];
    for (int i = 0; i < 2; i++) {
        alone[i] = (Job){.base = g_base, .body = bodies[i]};
        job_run(&alone[i]);
        assert_int_equal(alone[i].status, 200);
    }
    ServerStats before;
    server_stats(g_srv, &before);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        together[i] = (Job){.base = g_base, .body = bodies[i]};
        pthread_create(&th[i], NULL, job_run, &together[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ServerStats after;
    server_stats(g_srv, &after);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(together[i].status, 200);
        /* batch-invariant decoding: the same tokens with or without company */
        assert_string_equal(together[i].content, alone[i].content);
        assert_int_equal(together[i].completion_tokens, alone[i].completion_tokens);
        free(alone[i].content);
        free(together[i].content);
    }
    assert_int_equal(after.max_running, 2);
    assert_true(after.requests >= before.requests + 2);
    double q[4], e[4];
    assert_true(server_latencies(g_srv, q, e, 4) == 4);
    for (int i = 0; i < 4; i++) assert_true(q[i] >= 0 && e[i] > 0);
}

/* ---------------------------------------------------------------- errors */

static void test_bad_requests(void **state) {
    static const struct {
        const char *body;
        const char *param; /* NULL: not checked */
    } cases[] = {
        {"{not json", NULL},
        {"[1, 2]", NULL},
        {"", NULL},
        {"{}", "messages"},
        {"{\"messages\": []}", "messages"},
        {"{\"messages\": \"hi\"}", "messages"},
        {"{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", "messages[0]"},
        {"{\"messages\": [{\"content\": \"x\"}]}", "messages[0]"},
        {"{\"messages\": [{\"role\": \"user\"}]}", "messages[0].content"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", "messages[0].content"},
        {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"function\"}]}]}",
         "messages[0].tool_calls[0]"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 2}", "n"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": true}", "stream"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": -1}", "temperature"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": \"hot\"}", "temperature"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_p\": 0}", "top_p"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_k\": 1.5}", "top_k"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}", "max_tokens"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": -3}",
         "max_completion_tokens"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"seed\": \"s\"}", "seed"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [1]}", "stop"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": \"\"}", "stop"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"x\"}]}", "tools[0]"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": {}}", "tools"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": \"required\"}", "tool_choice"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true}", "logprobs"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"model\": 3}", "model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long st;
        cJSON *r = chat(cases[i].body, &st);
        if (st != 400) fprintf(stderr, "case %zu (%s): status %ld\n", i, cases[i].body, st);
        expect_error(st, 400, r, cases[i].param);
        assert_string_equal(json_get_str(json_get(r, "error"), "type"), "invalid_request_error");
        cJSON_Delete(r);
    }
}

static void test_http_errors(void **state) {
    long st;
    char *body = http("GET", "/v1/nothing", NULL, &st);
    cJSON *r = cJSON_Parse(body);
    expect_error(st, 404, r, NULL);
    cJSON_Delete(r);
    free(body);

    body = http("GET", "/v1/chat/completions", NULL, &st);
    r = cJSON_Parse(body);
    expect_error(st, 405, r, NULL);
    cJSON_Delete(r);
    free(body);

    body = http("POST", "/health", "{}", &st);
    r = cJSON_Parse(body);
    expect_error(st, 405, r, NULL);
    cJSON_Delete(r);
    free(body);

    /* bodies over the cap (1 MiB here): with a length, and chunked */
    size_t big = (2u << 20);
    char *huge = xmalloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = 0;
    for (int chunked = 0; chunked < 2; chunked++) {
        body = http_at(g_base, "POST", "/v1/chat/completions", huge, big, chunked, &st);
        r = cJSON_Parse(body);
        expect_error(st, 413, r, NULL);
        cJSON_Delete(r);
        free(body);
    }
    free(huge);

    /* a prompt longer than the KV cache (8192 tokens here) */
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "{\"messages\": [{\"role\": \"user\", \"content\": \"");
    for (int i = 0; i < 6000; i++) sbuf_puts(&b, "zq xv ");
    sbuf_puts(&b, "\"}]}");
    r = chat(b.data, &st);
    expect_error(st, 400, r, "messages");
    assert_string_equal(json_get_str(json_get(r, "error"), "code"), "context_length_exceeded");
    cJSON_Delete(r);
    sbuf_free(&b);

    /* the server still answers */
    body = http("GET", "/health", NULL, &st);
    assert_int_equal(st, 200);
    free(body);
}

/* A full queue answers 503; stopping answers what is in flight with 503. */
static void test_queue_full_and_stop(void **state) {
    ServerOptions o = {.model_dir = MODEL_DIR, .max_batch = 1, .max_queue = 1, .kv_tokens = 8192};
    char err[2048], base[128];
    Server *s = server_start(&o, err, sizeof err);
    assert_non_null(s);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", server_port(s));
    const char *body = "{\"messages\": [{\"role\": \"user\", \"content\": \"go\"}], \"max_tokens\": 100000,"
                       " \"seed\": 1}";
    Job jobs[2] = {{.base = base, .body = body}, {.base = base, .body = body}};
    pthread_t th[2];
    ServerStats st;
    /* The seed makes the first request run to its length limit (thousands
     * of tokens), so the second one waits in the queue meanwhile. */
    pthread_create(&th[0], NULL, job_run, &jobs[0]);
    int waited = 0;
    do {
        usleep(1000);
        server_stats(s, &st);
    } while (st.running < 1 && ++waited < 20000);
    assert_int_equal(st.running, 1);
    pthread_create(&th[1], NULL, job_run, &jobs[1]);
    waited = 0;
    do {
        usleep(1000);
        server_stats(s, &st);
    } while (st.queued < 1 && ++waited < 20000);
    assert_int_equal(st.queued, 1);
    long code;
    cJSON *r = chat_at(base, body, &code);
    expect_error(code, 503, r, NULL);
    assert_string_equal(json_get_str(json_get(r, "error"), "code"), "queue_full");
    cJSON_Delete(r);
    server_stop(s);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].status, 503);
    }
}

/* ---------------------------------------------------------------- openai_req alone */

static void test_parse_request_fields(void **state) {
    const char *body =
        "{\"model\": \"m\", \"messages\": [{\"role\": \"developer\", \"content\": \"s\"},"
        "{\"role\": \"assistant\", \"content\": \"ok\", \"tool_calls\": [{\"id\": \"c\", \"type\": \"function\","
        " \"function\": {\"name\": \"f\", \"arguments\": \"not json\"}}]}],"
        " \"temperature\": 0.5, \"top_p\": 0.25, \"top_k\": -1, \"max_tokens\": 9, \"max_completion_tokens\": 7,"
        " \"seed\": -2, \"stop\": [\"a\", \"bc\"], \"tool_choice\": \"none\", \"user\": \"ignored\","
        " \"chat_template_kwargs\": {\"enable_thinking\": false}}";
    OpenAIChatRequest q;
    OpenAIError e;
    assert_int_equal(openai_chat_request_parse(body, strlen(body), &q, &e), 0);
    assert_string_equal(q.model, "m");
    assert_string_equal(json_get_str(cJSON_GetArrayItem(q.messages, 0), "role"), "system");
    const cJSON *fn = json_get(cJSON_GetArrayItem(json_get(cJSON_GetArrayItem(q.messages, 1), "tool_calls"), 0),
                               "function");
    assert_string_equal(json_get(fn, "arguments")->valuestring, "not json"); /* kept as a string */
    assert_true(q.temperature == 0.5f && q.top_p == 0.25f && q.top_k == 0);
    assert_int_equal(q.max_tokens, 7);
    assert_true(q.has_seed && q.seed == (uint64_t)-2);
    assert_int_equal(q.n_stop, 2);
    assert_string_equal(q.stop[1], "bc");
    assert_false(q.parse_tool_calls);
    assert_true(cJSON_IsFalse(json_get(q.template_kwargs, "enable_thinking")));
    openai_chat_request_free(&q);
}

static void test_response_tool_calls(void **state) {
    const char *text = "Let me check.\n<tool_call>\n{\"name\": \"get_user_details\", \"arguments\": "
                       "{\"user_id\": \"mia_li_3668\", \"n\": 1.0}}\n</tool_call>";
    OpenAIChatResult res = {.id = "chatcmpl-x", .model = "m", .created = 5, .text = text, .text_len = strlen(text),
                            .parse_tool_calls = true, .id_seed = 9, .finish = "stop", .prompt_tokens = 3,
                            .completion_tokens = 4};
    char *s = openai_chat_response_json(&res);
    cJSON *r = cJSON_Parse(s);
    free(s);
    assert_string_equal(finish_of(r), "tool_calls");
    assert_string_equal(content_of(r), "Let me check.");
    const cJSON *msg = json_get(cJSON_GetArrayItem(json_get(r, "choices"), 0), "message");
    const cJSON *tc = cJSON_GetArrayItem(json_get(msg, "tool_calls"), 0);
    assert_true(strncmp(json_get_str(tc, "id"), "call_", 5) == 0);
    assert_string_equal(json_get_str(tc, "type"), "function");
    assert_string_equal(json_get_str(json_get(tc, "function"), "name"), "get_user_details");
    assert_string_equal(json_get_str(json_get(tc, "function"), "arguments"),
                        "{\"user_id\": \"mia_li_3668\", \"n\": 1.0}");
    assert_int_equal(usage_of(r, "total_tokens"), 7);
    cJSON_Delete(r);

    /* only a call: content null; a malformed block: the raw text, no calls */
    int n;
    const char *only = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    cJSON *m = openai_assistant_message(only, strlen(only), true, 1, &n);
    assert_int_equal(n, 1);
    assert_true(cJSON_IsNull(json_get(m, "content")));
    cJSON_Delete(m);
    const char *bad = "x <tool_call>\n{\"name\": \"f\", \"arguments\": [}\n</tool_call>";
    m = openai_assistant_message(bad, strlen(bad), true, 1, &n);
    assert_int_equal(n, 0);
    assert_string_equal(json_get_str(m, "content"), bad);
    assert_null(json_get(m, "tool_calls"));
    cJSON_Delete(m);
    /* tool calls left as text when the request has no tools */
    m = openai_assistant_message(only, strlen(only), false, 1, &n);
    assert_int_equal(n, 0);
    assert_string_equal(json_get_str(m, "content"), only);
    cJSON_Delete(m);
    /* a stopped-at-length finish stays "length" even with calls */
    res.finish = "length";
    s = openai_chat_response_json(&res);
    r = cJSON_Parse(s);
    free(s);
    assert_string_equal(finish_of(r), "length");
    cJSON_Delete(r);
}

static void test_error_json(void **state) {
    OpenAIError e;
    openai_error_set(&e, 400, "messages[0].role", NULL, "bad \xff role \"x\"");
    char *s = openai_error_json(&e);
    cJSON *r = cJSON_Parse(s);
    assert_non_null(r);
    const cJSON *err = json_get(r, "error");
    assert_string_equal(json_get_str(err, "param"), "messages[0].role");
    assert_true(cJSON_IsNull(json_get(err, "code")));
    assert_string_equal(json_get_str(err, "type"), "invalid_request_error");
    cJSON_Delete(r);
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_request_fields),
        cmocka_unit_test(test_response_tool_calls),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_health_and_models),
        cmocka_unit_test(test_plain_chat),
        cmocka_unit_test(test_chat_with_tools),
        cmocka_unit_test(test_tool_result_history),
        cmocka_unit_test(test_seeded_determinism_and_stop),
        cmocka_unit_test(test_concurrent_requests_batched),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_queue_full_and_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
