/* test_sft_data.c — teacher traces from oracle episodes, written as JSONL
 * rows and read back into token/mask arrays.
 *
 * The tokens of a loaded trace must be what the policy generates and sees
 * at rollout: the whole sequence equals a fresh render + encode of the
 * conversation (drift 0), the mask covers exactly the assistant turns the
 * template writes (each through its <|im_end|>, never the
 * "<|im_start|>assistant\n" header), and the conversation read back is the
 * one chat_messages_from_tau2 gives the agent. Malformed rows are reported
 * with file, line and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "rl/sft_data.h"
#include "tau2_test_util.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define QWEN_DIR TAU2_TEST_DATA_DIR "/../qwen3-tokenizer"
#define INSTRUCT_TEMPLATE TAU2_SOURCE_DIR "/tests/fixtures/jinja/qwen3_instruct_2507.jinja"

static Tokenizer *g_tok;
static ChatTemplate *g_hybrid, *g_instruct;

static int setup(void **state) {
    (void)state;
    char err[1024];
    g_tok = tok_load(QWEN_DIR "/tokenizer.json", err, sizeof err);
    if (!g_tok) fprintf(stderr, "%s\n", err);
    g_hybrid = chat_load(QWEN_DIR, err, sizeof err);
    if (!g_hybrid) fprintf(stderr, "%s\n", err);
    g_instruct = chat_load(INSTRUCT_TEMPLATE, err, sizeof err);
    if (!g_instruct) fprintf(stderr, "%s\n", err);
    return g_tok && g_hybrid && g_instruct ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    chat_free(g_hybrid);
    chat_free(g_instruct);
    tok_free(g_tok);
    return 0;
}

/* A scratch file holding text; the caller unlinks and frees the path. */
static char *write_temp(const char *text) {
    char *path = xstrdup("/tmp/test_sft_data_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

/* ---------------------------------------------------------------- oracle traces */

typedef struct {
    cJSON *rows;     /* trace rows, in file order */
    cJSON *expected; /* [i]: chat_messages_from_tau2 of episode i, as the agent saw it */
} Traces;

/* Oracle episodes of every stride-th task of a split; rows for reward 1.0. */
static void add_domain(Traces *t, const char *name, const char *split, int stride) {
    Domain *d = test_load_domain(name);
    TaskSet *ts = test_load_tasks(d);
    const cJSON **tasks;
    char err[1024];
    int n = taskset_split(ts, split, &tasks, err, sizeof err);
    assert_true(n > 0);
    char *system = episode_agent_system_prompt(d);
    for (int i = 0; i < n; i += stride) {
        Episode *ep = test_run_oracle(d, tasks[i], EPISODE_DEFAULT_MAX_STEPS);
        Evaluation ev;
        evaluate_episode(d, tasks[i], ep->messages, ep->term, NULL, &ev);
        if (ev.reward == 1.0) {
            cJSON_AddItemToArray(t->rows, sft_trace_from_episode(d, tasks[i], ep->messages, split, ev.reward));
            cJSON_AddItemToArray(t->expected, chat_messages_from_tau2(ep->messages, system));
        }
        evaluation_free(&ev);
        episode_free(ep);
    }
    free(system);
    free(tasks);
    taskset_free(ts);
    domain_free(d);
}

static char *rows_jsonl(const cJSON *rows) {
    SBuf b;
    sbuf_init(&b);
    for (const cJSON *r = rows->child; r; r = r->next) {
        json_dump(&b, r, JSON_DUMP_UTF8);
        sbuf_putc(&b, '\n');
    }
    return sbuf_take(&b);
}

/* The assistant turns a row trains on, as the template writes them. */
static char *trained_text(const ChatTemplate *ct, const cJSON *row, const cJSON *conv, const cJSON *tools) {
    SBuf b;
    sbuf_init(&b);
    char err[1024];
    const cJSON *system = conv->child;
    const cJSON *raw = json_get(row, "messages")->child;
    for (const cJSON *m = conv->child; m; m = m->next, raw = raw->next) {
        if (strcmp(json_get_str(m, "role"), "assistant") != 0 || json_get(raw, "weight")) continue;
        char *body = chat_render_assistant(ct, system, m, tools, NULL, NULL, err, sizeof err);
        assert_non_null(body);
        sbuf_puts(&b, body);
        free(body);
    }
    return sbuf_take(&b);
}

static void check_conversation(const ChatTemplate *ct, const SftConversation *c, const cJSON *row,
                               const cJSON *expected) {
    char err[1024];
    cJSON *tools = NULL;
    cJSON *conv = sft_row_conversation(row, NULL, &tools, err, sizeof err);
    assert_non_null(conv);
    /* the conversation read back is what the agent saw */
    assert_true(json_equal(conv, expected, true));
    const cJSON *md = json_get(row, "metadata");
    assert_string_equal(c->domain, json_get_str(md, "domain"));
    assert_string_equal(c->task_id, json_get_str(md, "task_id"));

    /* drift 0: the assembled ids are a fresh render + encode of it */
    size_t len;
    char *text = chat_render(ct, conv, tools, false, NULL, &len, err, sizeof err);
    assert_non_null(text);
    int32_t *ids;
    size_t n;
    tok_encode(g_tok, text, len, &ids, &n);
    assert_int_equal(n, c->n);
    assert_memory_equal(ids, c->ids, n * sizeof *ids);
    free(ids);
    free(text);

    /* mask 1 exactly on the trained turns: their bytes, each run closed by
     * <|im_end|> and preceded by the "<|im_start|>assistant\n" header */
    int32_t eos = tok_id_of(g_tok, "<|im_end|>");
    SBuf masked;
    sbuf_init(&masked);
    size_t trained = 0;
    int runs = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!c->mask[i]) continue;
        size_t k;
        const char *b = tok_token_bytes(g_tok, c->ids[i], &k);
        sbuf_put(&masked, b, k);
        trained++;
        if (i == 0 || !c->mask[i - 1]) {
            runs++;
            assert_true(i >= 2);
            char *header = tok_decode(g_tok, c->ids + i - 2, 2, 0, NULL);
            assert_string_equal(header, "assistant\n");
            free(header);
            assert_int_equal(c->ids[i - 3], tok_id_of(g_tok, "<|im_start|>"));
        }
        if (i + 1 == c->n || !c->mask[i + 1]) assert_int_equal(c->ids[i], eos);
    }
    char *want = trained_text(ct, row, conv, tools);
    assert_int_equal(masked.len, strlen(want));
    assert_memory_equal(masked.data, want, masked.len);
    assert_true(trained > 0);
    assert_int_equal(trained, c->n_trained);
    assert_int_equal(runs, c->turns);
    free(want);
    sbuf_free(&masked);
    cJSON_Delete(conv);
    cJSON_Delete(tools);
}

static void check_traces(const ChatTemplate *ct, const Traces *t, const char *label) {
    char err[1024];
    char *jsonl = rows_jsonl(t->rows);
    char *path = write_temp(jsonl);
    SftSet *s = sft_load(path, ct, g_tok, err, sizeof err);
    if (!s) fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    assert_int_equal(s->n, cJSON_GetArraySize(t->rows));
    const cJSON *row = t->rows->child, *exp = t->expected->child;
    for (int i = 0; i < s->n; i++, row = row->next, exp = exp->next) check_conversation(ct, &s->conv[i], row, exp);
    fprintf(stderr, "%s: %d traces, %zu tokens, %zu trained (%.1f%%)\n", label, s->n, s->n_tokens, s->n_trained,
            100.0 * (double)s->n_trained / (double)s->n_tokens);

    /* rows added in memory give the same tokens */
    SftSet *m = sft_new(ct, g_tok, NULL);
    for (row = t->rows->child; row; row = row->next) assert_int_equal(sft_add_row(m, row, NULL, err, sizeof err), 0);
    assert_int_equal(m->n, s->n);
    for (int i = 0; i < s->n; i++) {
        assert_int_equal(m->conv[i].n, s->conv[i].n);
        assert_memory_equal(m->conv[i].ids, s->conv[i].ids, s->conv[i].n * sizeof(int32_t));
        assert_memory_equal(m->conv[i].mask, s->conv[i].mask, s->conv[i].n);
    }
    sft_free(m);
    sft_free(s);
    unlink(path);
    free(path);
    free(jsonl);
}

static void test_oracle_traces(void **state) {
    (void)state;
    Traces t = {cJSON_CreateArray(), cJSON_CreateArray()};
    add_domain(&t, "mock", "base", 1);
    int n_mock = cJSON_GetArraySize(t.rows);
    assert_int_equal(n_mock, 8); /* two mock tasks are not solved by the oracle */
    add_domain(&t, "airline", "base", 4);
    assert_true(cJSON_GetArraySize(t.rows) > n_mock + 5);
    /* the message-history task keeps its history as weight-0 context */
    int with_history = 0;
    for (const cJSON *r = t.rows->child; r; r = r->next) {
        int w0 = 0;
        for (const cJSON *m = json_get(r, "messages")->child; m; m = m->next) w0 += json_get(m, "weight") != NULL;
        assert_true(w0 >= 1); /* the greeting, at least */
        with_history += w0 > 1;
    }
    assert_true(with_history >= 1);
    check_traces(g_hybrid, &t, "Qwen3 hybrid template");
    check_traces(g_instruct, &t, "Qwen3 instruct-2507 template");
    cJSON_Delete(t.rows);
    cJSON_Delete(t.expected);
}

/* ---------------------------------------------------------------- row forms */

#define TOOLS_JSON                                                                                        \
    "[{\"type\": \"function\", \"function\": {\"name\": \"calculate\", \"description\": \"Calculate.\", " \
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"expression\": {\"type\": \"string\"}}, "   \
    "\"required\": [\"expression\"]}}}]"

static SftSet *load_text(const char *text, char *err, size_t errlen, char **path_out) {
    char *path = write_temp(text);
    SftSet *s = sft_load(path, g_hybrid, g_tok, err, errlen);
    if (path_out)
        *path_out = path;
    else {
        unlink(path);
        free(path);
    }
    return s;
}

/* Arguments as an object or as a JSON string, tools at the top or (as a
 * string) in metadata, "messages" or "prompt": the same tokens. */
static void test_row_forms_agree(void **state) {
    (void)state;
    const char *obj =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"2+2?\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", "
        "\"function\": {\"name\": \"calculate\", \"arguments\": {\"expression\": \"2+2\", \"scale\": 1.5}}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"4\"},"
        " {\"role\": \"assistant\", \"content\": \"It is 4.\"}, {\"role\": \"user\", \"content\": \"###STOP###\"}],"
        " \"tools\": " TOOLS_JSON ", \"metadata\": {\"domain\": \"math\", \"task_id\": 7}}\n";
    const char *str =
        "\n{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"2+2?\"},"
        " {\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", "
        "\"function\": {\"name\": \"calculate\", \"arguments\": "
        "\"{\\\"expression\\\":\\\"2+2\\\",\\\"scale\\\":1.5}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"4\"},"
        " {\"role\": \"assistant\", \"content\": \"It is 4.\", \"weight\": 1}, {\"role\": \"user\", \"content\": "
        "\"###STOP###\"}],"
        " \"metadata\": {\"tools\": \"[{\\\"type\\\": \\\"function\\\", \\\"function\\\": {\\\"name\\\": "
        "\\\"calculate\\\", "
        "\\\"description\\\": \\\"Calculate.\\\", \\\"parameters\\\": {\\\"type\\\": \\\"object\\\", "
        "\\\"properties\\\": "
        "{\\\"expression\\\": {\\\"type\\\": \\\"string\\\"}}, \\\"required\\\": [\\\"expression\\\"]}}}]\"}}\n\n";
    char err[1024];
    SBuf both;
    sbuf_init(&both);
    sbuf_puts(&both, obj);
    sbuf_puts(&both, str);
    SftSet *s = load_text(both.data, err, sizeof err, NULL);
    if (!s) fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    assert_int_equal(s->n, 2);
    assert_string_equal(s->conv[0].task_id, "7");
    assert_string_equal(s->conv[0].domain, "math");
    assert_string_equal(s->conv[1].domain, "");
    assert_int_equal(s->conv[0].n, s->conv[1].n);
    assert_memory_equal(s->conv[0].ids, s->conv[1].ids, s->conv[0].n * sizeof(int32_t));
    assert_memory_equal(s->conv[0].mask, s->conv[1].mask, s->conv[0].n);
    assert_int_equal(s->conv[0].turns, 2);
    /* the tool call as the template writes it, then the answer */
    SBuf masked;
    sbuf_init(&masked);
    for (size_t i = 0; i < s->conv[0].n; i++) {
        if (!s->conv[0].mask[i]) continue;
        size_t k;
        const char *b = tok_token_bytes(g_tok, s->conv[0].ids[i], &k);
        sbuf_put(&masked, b, k);
    }
    sbuf_putc(&masked, '\0');
    assert_string_equal(masked.data, "<tool_call>\n{\"name\": \"calculate\", \"arguments\": {\"expression\": \"2+2\", "
                                     "\"scale\": 1.5}}\n</tool_call><|im_end|>It is 4.<|im_end|>");
    sbuf_free(&masked);
    sbuf_free(&both);
    sft_free(s);
}

/* ---------------------------------------------------------------- errors */

static void expect_error(const char *text, const char *needle) {
    char err[1024];
    char *path;
    SftSet *s = load_text(text, err, sizeof err, &path);
    assert_null(s);
    char want[1200];
    snprintf(want, sizeof want, needle, path);
    if (!strstr(err, want)) fprintf(stderr, "error '%s' lacks '%s'\n", err, want);
    assert_non_null(strstr(err, want));
    unlink(path);
    free(path);
}

#define GOOD \
    "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n"

static void test_errors(void **state) {
    (void)state;
    expect_error(GOOD "\n{\"messages\": [}\n", "%s:3: not valid JSON (column 15:");
    expect_error(GOOD "{\"tools\": []}\n", "%s:2: messages: missing");
    expect_error("{\"messages\": {}}\n", "%s:1: messages: expected a non-empty list");
    expect_error("[1]\n", "%s:1: expected a JSON object");
    expect_error(GOOD GOOD
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
                 "\"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", "
                 "\"arguments\": \"{bad\"}}]}]}\n",
                 "%s:3: messages[1].tool_calls[0].function.arguments: expected a JSON object or a string holding one");
    expect_error("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"tool_calls\": "
                 "[{\"function\": {\"arguments\": {}}}]}]}\n",
                 "%s:1: messages[1].tool_calls[0].function.name: expected a string");
    expect_error(
        "{\"messages\": [{\"role\": \"user\", \"content\": 5}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n",
        "%s:1: messages[0].content: expected a string or null");
    expect_error("{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n", "%s:1: messages[0].role: expected");
    expect_error("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": "
                 "\"x\", \"weight\": 2}]}\n",
                 "%s:1: messages[1].weight: expected 0 or 1");
    expect_error("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": "
                 "\"x\", \"weight\": 0}]}\n",
                 "%s:1: messages: no assistant turn to train on");
    expect_error(
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"x\"},"
        " {\"role\": \"user\", \"content\": \"more\"}, {\"role\": \"assistant\", \"content\": \"y\", \"weight\": "
        "0}]}\n",
        "%s:1: prompt[3].weight: 0 is only supported before the first trained assistant turn");
    expect_error(GOOD "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"system\", \"content\": "
                      "\"x\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n",
                 "%s:2: messages[1].role: \"system\" is only allowed as the first message");
    expect_error("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": "
                 "\"x\"}], \"tools\": {\"a\": 1}}\n",
                 "%s:1: tools: expected a list of tool schemas");
    expect_error("\n\n", "%s: no traces");

    char err[512];
    assert_null(sft_load("/nonexistent/traces.jsonl", g_hybrid, g_tok, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/traces.jsonl"));

    /* rows added in memory: the message names the field; the set is unchanged */
    SftSet *s = sft_new(g_hybrid, g_tok, NULL);
    cJSON *row = cJSON_Parse("{\"metadata\": {}}");
    assert_int_equal(sft_add_row(s, row, NULL, err, sizeof err), -1);
    assert_string_equal(err, "row: messages: missing (expected a list of chat messages)");
    assert_int_equal(s->n, 0);
    cJSON_Delete(row);
    sft_free(s);
}

/* A set with template variables reads files too, and a failed read
 * leaves the set as it was. */
static void test_read_with_kwargs(void **state) {
    (void)state;
    char err[1024];
    cJSON *kwargs = cJSON_Parse("{\"enable_thinking\": false}");
    SftSet *s = sft_new(g_instruct, g_tok, kwargs);
    cJSON_Delete(kwargs);
    char *good = write_temp(GOOD);
    int rc = sft_read(s, good, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(s->n, 1);
    const SftConversation *c = &s->conv[0];
    size_t first = 0;
    while (!c->mask[first]) first++;
    assert_int_equal(first, c->n_prompt);
    char *prompt = tok_decode(g_tok, c->ids, first, 0, NULL);
    assert_string_equal(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    char *trained = tok_decode(g_tok, c->ids + first, c->n_trained, 0, NULL);
    assert_string_equal(trained, "hello<|im_end|>");
    /* what the template writes after the closing token is context */
    assert_int_equal(c->n, first + c->n_trained + 1);
    assert_int_equal(c->mask[c->n - 1], 0);
    free(trained);
    free(prompt);
    size_t tokens = s->n_tokens;
    char *bad = write_temp(GOOD "{\"messages\": 3}\n");
    assert_int_equal(sft_read(s, bad, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: messages: expected a non-empty list"));
    assert_int_equal(s->n, 1);
    assert_int_equal(s->n_tokens, tokens);
    /* a conversation longer than the model's context is refused, naming its line */
    s->max_tokens = c->n - 1;
    char *two = write_temp("\n" GOOD);
    assert_int_equal(sft_read(s, two, err, sizeof err), -1);
    if (!strstr(err, ":2: ") || !strstr(err, "longer than the model's context (max_position_embeddings"))
        fail_msg("got '%s'", err);
    assert_int_equal(s->n, 1);
    s->max_tokens = c->n;
    assert_int_equal(sft_read(s, two, err, sizeof err), 0);
    assert_int_equal(s->n, 2);
    sft_free(s);
    unlink(good);
    unlink(bad);
    unlink(two);
    free(good);
    free(bad);
    free(two);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_traces),
        cmocka_unit_test(test_row_forms_agree),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_read_with_kwargs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
