/* test_trajectory.c — tool-call parsing, chat-template pieces and
 * token-in/token-out assembly on real τ²-bench oracle episodes.
 *
 * For every domain, oracle episodes are played with the policy's side
 * going through the text layer as a model's would: each gold agent message
 * is rendered as the model writes it, encoded (these are the "sampled"
 * ids), decoded, parsed back into tool calls and handed to the episode.
 * The assembled trajectory must equal a fresh render + encode of the final
 * conversation (drift 0), the mask must cover exactly the agent's turns, and
 * the episode must score what the oracle scores without the text layer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tau2_test_util.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "text/toolcall.h"
#include "text/trajectory.h"

#define QWEN_DIR TAU2_TEST_DATA_DIR "/../qwen3-tokenizer"
#define INSTRUCT_TEMPLATE TAU2_SOURCE_DIR "/tests/fixtures/jinja/qwen3_instruct_2507.jinja"

static Tokenizer *g_tok;

static int setup(void **state) {
    (void)state;
    char err[1024];
    g_tok = tok_load(QWEN_DIR "/tokenizer.json", err, sizeof err);
    if (!g_tok) fprintf(stderr, "%s\n", err);
    return g_tok ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tok_free(g_tok);
    return 0;
}

/* ---------------------------------------------------------------- tool calls */

static cJSON *parse(const char *text) { return toolcall_parse(text, strlen(text), NULL); }

static void test_toolcall_plain_text(void **state) {
    (void)state;
    cJSON *m = parse("  Hello there.\n\n");
    assert_string_equal(json_get_str(m, "content"), "  Hello there.\n\n"); /* kept byte for byte */
    assert_true(cJSON_IsNull(json_get(m, "tool_calls")));
    cJSON_Delete(m);
}

static void test_toolcall_blocks(void **state) {
    (void)state;
    cJSON *m = parse("Let me look.\n<tool_call>\n{\"name\": \"get_user_details\", \"arguments\": {\"user_id\": \"a_1\"}}\n"
                     "</tool_call>\n<tool_call>  {\"name\":\"calculate\",\"arguments\":\"{\\\"expression\\\": \\\"2+2\\\"}\"}"
                     "</tool_call>");
    assert_string_equal(json_get_str(m, "content"), "Let me look.");
    const cJSON *calls = json_get(m, "tool_calls");
    assert_int_equal(cJSON_GetArraySize(calls), 2);
    assert_string_equal(json_get_str(calls->child, "name"), "get_user_details");
    assert_string_equal(json_get_str(json_get(calls->child, "arguments"), "user_id"), "a_1");
    /* arguments given as a JSON string are parsed */
    assert_string_equal(json_get_str(json_get(calls->child->next, "arguments"), "expression"), "2+2");
    assert_int_equal(toolcall_count_errors(m), 0);
    cJSON_Delete(m);

    m = parse("<tool_call>\n{\"name\": \"think\", \"arguments\": {}}\n</tool_call>");
    assert_true(cJSON_IsNull(json_get(m, "content")));
    cJSON_Delete(m);
}

static void expect_error(const char *text, const cJSON *known, const char *needle) {
    cJSON *m = toolcall_parse(text, strlen(text), known);
    assert_int_equal(toolcall_count_errors(m), 1);
    const cJSON *tc = json_get(m, "tool_calls")->child;
    const char *e = json_get_str(tc, "parse_error");
    if (!strstr(e, needle)) fprintf(stderr, "error '%s' lacks '%s'\n", e, needle);
    assert_non_null(strstr(e, needle));
    assert_string_equal(json_get_str(tc, "name"), ""); /* never matches a gold action */
    cJSON_Delete(m);
}

static void test_toolcall_errors(void **state) {
    (void)state;
    cJSON *known = cJSON_CreateArray();
    cJSON_AddItemToArray(known, cJSON_CreateString("get_user_details"));
    expect_error("<tool_call>\n{\"name\": \"get_user_details\", \"arguments\": {\"user_id\": }\n</tool_call>", known,
                 "not valid JSON");
    expect_error("<tool_call>{\"arguments\": {}}</tool_call>", known, "no \"name\"");
    expect_error("<tool_call>[1, 2]</tool_call>", known, "no \"name\"");
    expect_error("<tool_call>{\"name\": \"get_user_details\", \"arguments\": [1]}</tool_call>", known, "JSON object");
    expect_error("<tool_call>{\"name\": \"get_user_details\", \"arguments\": \"{bad\"}</tool_call>", known,
                 "JSON object");
    expect_error("<tool_call>{\"name\": \"delete_everything\", \"arguments\": {}}</tool_call>", known,
                 "no tool named 'delete_everything'");
    expect_error("Sure.\n<tool_call>\n{\"name\": \"get_user_details\", \"arguments\": {\"user_id\"", known,
                 "not closed");
    expect_error("<tool_call></tool_call>", known, "not valid JSON");
    /* a block cut short by the next block: one error, then the good call */
    cJSON *m = toolcall_parse("<tool_call>{\"name\": <tool_call>{\"name\": \"get_user_details\", \"arguments\": {}}</tool_call>",
                              strlen("<tool_call>{\"name\": <tool_call>{\"name\": \"get_user_details\", \"arguments\": {}}</tool_call>"),
                              known);
    assert_int_equal(cJSON_GetArraySize(json_get(m, "tool_calls")), 2);
    assert_int_equal(toolcall_count_errors(m), 1);
    cJSON_Delete(m);
    cJSON_Delete(known);
}

/* ---------------------------------------------------------------- template pieces */

static void test_assistant_turn_text(void **state) {
    (void)state;
    char err[2048];
    ChatTemplate *ct = chat_load(QWEN_DIR, err, sizeof err);
    if (!ct) fprintf(stderr, "%s\n", err);
    assert_non_null(ct);
    assert_string_equal(chat_eos_token(ct), "<|im_end|>");
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", "Let me check.");
    cJSON *calls = cJSON_AddArrayToObject(msg, "tool_calls");
    cJSON *tc = cJSON_CreateObject();
    cJSON *fn = cJSON_AddObjectToObject(tc, "function");
    cJSON_AddStringToObject(fn, "name", "get_order_details");
    cJSON *args = cJSON_AddObjectToObject(fn, "arguments");
    cJSON_AddStringToObject(args, "order_id", "#W123");
    cJSON_AddItemToObject(args, "amount", json_float(12.5));
    cJSON_AddItemToArray(calls, tc);
    char *after = NULL;
    char *body = chat_render_assistant(ct, NULL, msg, NULL, NULL, &after, err, sizeof err);
    assert_non_null(body);
    assert_string_equal(body, "Let me check.\n<tool_call>\n{\"name\": \"get_order_details\", \"arguments\": "
                              "{\"order_id\": \"#W123\", \"amount\": 12.5}}\n</tool_call><|im_end|>");
    assert_string_equal(after, "\n");
    char *gen = chat_render_generation_prompt(ct, NULL, NULL, NULL, err, sizeof err);
    assert_string_equal(gen, "<|im_start|>assistant\n");
    /* tool results are grouped into one user turn */
    cJSON *tools = cJSON_CreateArray();
    for (int i = 0; i < 2; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "role", "tool");
        cJSON_AddStringToObject(t, "content", i ? "second" : "first");
        cJSON_AddItemToArray(tools, t);
    }
    char *delta = chat_render_delta(ct, NULL, tools, NULL, true, NULL, err, sizeof err);
    assert_string_equal(delta, "<|im_start|>user\n<tool_response>\nfirst\n</tool_response>\n<tool_response>\nsecond\n"
                               "</tool_response><|im_end|>\n<|im_start|>assistant\n");
    free(delta);
    free(gen);
    free(body);
    free(after);
    cJSON_Delete(tools);
    cJSON_Delete(msg);
    chat_free(ct);
}

/* A model that writes its tool call compactly ({"name":"x",...}) produced
 * other tokens than the template renders: the trajectory keeps the sampled
 * ids and traj_drift reports the difference; an unclosed turn gets its
 * end-of-turn token as context. */
static void test_drift_detected(void **state) {
    (void)state;
    char err[2048];
    ChatTemplate *ct = chat_load(QWEN_DIR, err, sizeof err);
    assert_non_null(ct);
    cJSON *msgs = cJSON_CreateArray();
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", "What is 2+2?");
    cJSON_AddItemToArray(msgs, u);
    Trajectory tr;
    assert_int_equal(traj_begin(&tr, ct, g_tok, msgs, NULL, NULL, err, sizeof err), 0);
    size_t prompt = tr.n;
    const char *sampled = "<tool_call>\n{\"name\":\"calculate\",\"arguments\":{\"expression\":\"2+2\"}}\n</tool_call>";
    int32_t *ids;
    size_t n;
    tok_encode(g_tok, sampled, strlen(sampled), &ids, &n); /* stopped at </tool_call>: no <|im_end|> */
    cJSON *parsed = toolcall_parse(sampled, strlen(sampled), NULL);
    json_set(parsed, "role", cJSON_CreateString("assistant"));
    traj_add_agent_turn(&tr, ids, NULL, n, chat_message_from_tau2(parsed));
    assert_int_equal(tr.truncated_turns, 1);
    assert_int_equal(tr.ids[prompt + n], tok_id_of(g_tok, "<|im_end|>"));
    assert_int_equal(tr.mask[prompt + n], 0);
    size_t first;
    long drift = traj_drift(&tr, &first, err, sizeof err);
    assert_true(drift > 0);
    assert_true(first >= prompt && first < prompt + n); /* inside the sampled turn */
    for (size_t i = 0; i < tr.n; i++) assert_int_equal(tr.mask[i], i >= prompt && i < prompt + n);
    free(ids);
    cJSON_Delete(parsed);
    cJSON_Delete(msgs);
    traj_free(&tr);
    chat_free(ct);
}

/* ---------------------------------------------------------------- oracle episodes */

typedef struct {
    int episodes, agent_turns, drifted, reward_mismatch, mask_mismatch;
    size_t tokens;
} Stats;

/* Move the episode on until it is the agent's turn (or over). */
static void run_user(Episode *ep, Oracle *o) {
    while (ep->turn == TURN_USER) {
        Termination fail = TERM_NONE;
        cJSON *m = o->user.next(&o->user, ep, &fail);
        if (!m) {
            episode_abort(ep, fail);
            return;
        }
        episode_submit(ep, m);
    }
}

/* One episode through the text layer; checks drift, mask and reward. */
static void play(const ChatTemplate *ct, const Domain *d, const cJSON *task, double want_reward, Stats *st) {
    char err[2048];
    EpisodeOptions eo = {EPISODE_DEFAULT_MAX_STEPS, EPISODE_DEFAULT_MAX_ERRORS};
    Episode *ep = episode_new(d, task, &eo, err, sizeof err);
    assert_non_null(ep);
    Oracle o;
    oracle_init(&o, task);
    run_user(ep, &o);

    cJSON *prompt = chat_messages_from_tau2(ep->messages, d->policy);
    Trajectory tr;
    int rc = traj_begin(&tr, ct, g_tok, prompt, d->agent_schemas, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "traj_begin: %s\n", err);
    assert_int_equal(rc, 0);
    cJSON_Delete(prompt);
    const cJSON *system = tr.messages->child;
    SBuf agent_text; /* what the mask says the policy wrote */
    sbuf_init(&agent_text);
    SBuf want_text;
    sbuf_init(&want_text);

    while (ep->turn == TURN_AGENT) {
        Termination fail = TERM_NONE;
        cJSON *gold = o.agent.next(&o.agent, ep, &fail);
        assert_non_null(gold);
        json_set(gold, "role", cJSON_CreateString("assistant"));
        cJSON *gold_t = chat_message_from_tau2(gold);
        char *body = chat_render_assistant(ct, system, gold_t, tr.tools, NULL, NULL, err, sizeof err);
        assert_non_null(body);
        cJSON_Delete(gold_t);
        sbuf_puts(&want_text, body);
        /* the "sampled" ids, and the model's text without its end-of-turn token */
        int32_t *ids;
        size_t n;
        tok_encode(g_tok, body, strlen(body), &ids, &n);
        size_t text_len;
        char *text = tok_decode(g_tok, ids, n - 1, 0, &text_len);
        cJSON *parsed = toolcall_parse(text, text_len, d->agent_schemas);
        assert_int_equal(toolcall_count_errors(parsed), 0);
        /* the parse gives back the gold message */
        const char *gc = json_get_str(gold, "content"), *pc = json_get_str(parsed, "content");
        assert_true((gc == NULL) == (pc == NULL));
        if (gc) assert_string_equal(gc, pc);
        const cJSON *gcalls = json_get(gold, "tool_calls"), *pcalls = json_get(parsed, "tool_calls");
        assert_int_equal(cJSON_GetArraySize(gcalls), cJSON_GetArraySize(pcalls));
        for (const cJSON *a = cJSON_IsArray(gcalls) ? gcalls->child : NULL, *b = cJSON_IsArray(pcalls) ? pcalls->child : NULL;
             a && b; a = a->next, b = b->next) {
            assert_string_equal(json_get_str(a, "name"), json_get_str(b, "name"));
            assert_true(json_equal(json_get(a, "arguments"), json_get(b, "arguments"), true));
        }
        cJSON_Delete(gold);
        episode_submit(ep, parsed);
        cJSON *last = cJSON_GetArrayItem(ep->messages, cJSON_GetArraySize(ep->messages) - 1);
        while (last && strcmp(json_get_str(last, "role"), "assistant") != 0) last = last->prev;
        traj_add_agent_turn(&tr, ids, NULL, n, chat_message_from_tau2(last));
        st->agent_turns++;
        free(ids);
        free(text);
        free(body);

        int from = cJSON_GetArraySize(ep->messages);
        /* the environment's answers were appended with the agent message */
        while (from > 0 && strcmp(json_get_str(cJSON_GetArrayItem(ep->messages, from - 1), "role"), "assistant") != 0)
            from--;
        run_user(ep, &o);
        cJSON *fresh = chat_messages_from_tau2_range(ep->messages, from);
        rc = ep->turn == TURN_DONE ? traj_finish(&tr, fresh, err, sizeof err) : traj_add_env_turns(&tr, fresh, err, sizeof err);
        if (rc) fprintf(stderr, "delta: %s\n", err);
        assert_int_equal(rc, 0);
    }
    if (!tr.done) assert_int_equal(traj_finish(&tr, NULL, err, sizeof err), 0);

    size_t first = 0;
    long drift = traj_drift(&tr, &first, err, sizeof err);
    assert_true(drift >= 0);
    if (drift) {
        if (st->drifted < 3) fprintf(stderr, "%s: drift %ld from token %zu of %zu\n", task_id(task), drift, first, tr.n);
        st->drifted++;
    }
    /* decoding the masked tokens gives exactly the agent's turns */
    for (size_t i = 0; i < tr.n; i++) {
        if (!tr.mask[i]) continue;
        size_t k;
        const char *b = tok_token_bytes(g_tok, tr.ids[i], &k);
        sbuf_put(&agent_text, b, k);
    }
    if (agent_text.len != want_text.len || memcmp(agent_text.data, want_text.data, want_text.len) != 0)
        st->mask_mismatch++;
    /* and the episode scores what the oracle scores */
    Evaluation ev;
    evaluate_episode(d, task, ep->messages, ep->term, NULL, &ev);
    if (ev.reward != want_reward) {
        if (st->reward_mismatch < 3) fprintf(stderr, "%s: reward %.1f, oracle %.1f\n", task_id(task), ev.reward, want_reward);
        st->reward_mismatch++;
    }
    st->episodes++;
    st->tokens += tr.n;
    evaluation_free(&ev);
    sbuf_free(&agent_text);
    sbuf_free(&want_text);
    traj_free(&tr);
    episode_free(ep);
}

static void check_domain(const char *template_path, const char *name, const char *split, int stride) {
    char err[2048];
    ChatTemplate *ct = chat_load(template_path, err, sizeof err);
    if (!ct) fprintf(stderr, "%s\n", err);
    assert_non_null(ct);
    Domain *d = test_load_domain(name);
    TaskSet *ts = test_load_tasks(d);
    const cJSON **tasks;
    int n = taskset_split(ts, split, &tasks, err, sizeof err);
    assert_true(n > 0);
    Stats st = {0};
    for (int i = 0; i < n; i += stride) {
        Episode *ref = test_run_oracle(d, tasks[i], EPISODE_DEFAULT_MAX_STEPS);
        Evaluation ev;
        evaluate_episode(d, tasks[i], ref->messages, ref->term, NULL, &ev);
        play(ct, d, tasks[i], ev.reward, &st);
        evaluation_free(&ev);
        episode_free(ref);
    }
    fprintf(stderr, "%s %s/%s: %d episodes, %d agent turns, %zu tokens; drift in %d, mask wrong in %d, reward differs in %d\n",
            strrchr(template_path, '/') + 1, name, split, st.episodes, st.agent_turns, st.tokens, st.drifted,
            st.mask_mismatch, st.reward_mismatch);
    assert_int_equal(st.drifted, 0);
    assert_int_equal(st.mask_mismatch, 0);
    assert_int_equal(st.reward_mismatch, 0);
    free(tasks);
    taskset_free(ts);
    domain_free(d);
    chat_free(ct);
}

static void test_episodes_hybrid_template(void **state) {
    (void)state;
    check_domain(QWEN_DIR, "mock", "base", 1);
    check_domain(QWEN_DIR, "airline", "base", 1);
    check_domain(QWEN_DIR, "retail", "base", 1);
    check_domain(QWEN_DIR, "telecom", "full", 15);
}

static void test_episodes_instruct_template(void **state) {
    (void)state;
    check_domain(INSTRUCT_TEMPLATE, "mock", "base", 1);
    check_domain(INSTRUCT_TEMPLATE, "airline", "base", 1);
    check_domain(INSTRUCT_TEMPLATE, "retail", "base", 1);
    check_domain(INSTRUCT_TEMPLATE, "telecom", "full", 15);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toolcall_plain_text),
        cmocka_unit_test(test_toolcall_blocks),
        cmocka_unit_test(test_toolcall_errors),
        cmocka_unit_test(test_assistant_turn_text),
        cmocka_unit_test(test_drift_detected),
        cmocka_unit_test(test_episodes_hybrid_template),
        cmocka_unit_test(test_episodes_instruct_template),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
