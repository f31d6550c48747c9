/* test_tiny_model.c — inputs/tiny_model, the small Qwen3 the CPU tests and CI
 * train, loads and behaves as Hugging Face's libraries say it should.
 *
 * The fixture (tests/fixtures/tokenizer/tiny_model_cases.jsonl, written with
 * the model by tests/gen_tiny_model.py) holds ids from Hugging Face
 * `tokenizers` for τ²-bench text, tool calls, special tokens and Unicode;
 * chat renderings from transformers' apply_chat_template with their ids; and
 * next-token logprobs and entropies of one rendered conversation from a
 * float64 NumPy forward of the stored weights. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/error.h"
#include "model/qwen3.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_DIR TAU2_SOURCE_DIR "/inputs/tiny_model"
#define CASES TAU2_SOURCE_DIR "/tests/fixtures/tokenizer/tiny_model_cases.jsonl"

/* fp32 forward against the float64 reference: logprobs near -ln(4096) */
#define SCORE_TOL 1e-4

static Tokenizer *g_tok;
static cJSON *g_cases; /* array of the fixture's records */

static int setup(void **state) {
    (void)state;
    char err[1024];
    g_tok = tok_load(MODEL_DIR "/tokenizer.json", err, sizeof err);
    if (!g_tok) {
        fprintf(stderr, "tok_load: %s\n", err);
        return -1;
    }
    size_t len;
    char *text = file_read_all(CASES, &len, err, sizeof err);
    if (!text) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    g_cases = cJSON_CreateArray();
    for (char *line = text, *end; *line; line = end) {
        end = strchr(line, '\n');
        if (end) *end++ = 0;
        else end = line + strlen(line);
        if (!*line) continue;
        cJSON *rec = cJSON_Parse(line);
        if (!rec) {
            fprintf(stderr, "%s: record %d is not JSON\n", CASES, cJSON_GetArraySize(g_cases));
            free(text);
            return -1;
        }
        cJSON_AddItemToArray(g_cases, rec);
    }
    free(text);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tok_free(g_tok);
    cJSON_Delete(g_cases);
    return 0;
}

static const char *rec_op(const cJSON *rec) { return cJSON_GetObjectItemCaseSensitive(rec, "op")->valuestring; }
static const char *rec_text(const cJSON *rec) { return cJSON_GetObjectItemCaseSensitive(rec, "text")->valuestring; }
static bool rec_flag(const cJSON *rec, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, key));
}

static void rec_ids(const cJSON *rec, TokIds *ids) {
    ids->n = 0;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(rec, "ids");
    for (const cJSON *e = arr->child; e; e = e->next) tok_ids_push(ids, (int32_t)e->valuedouble);
}

/* Print where got first differs from want; true when they are equal. */
static bool same_ids(const char *text, const TokIds *want, const TokIds *got) {
    if (got->n == want->n && (want->n == 0 || memcmp(got->ids, want->ids, want->n * sizeof(int32_t)) == 0)) {
        return true;
    }
    size_t i = 0;
    while (i < want->n && i < got->n && want->ids[i] == got->ids[i]) i++;
    fprintf(stderr, "ids differ at %zu (want %zu ids, got %zu) for \"%.100s\"\n", i, want->n, got->n, text);
    return false;
}

/* ---------------------------------------------------------------- tests */

static void test_vocabulary(void **state) {
    (void)state;
    Qwen3Config cfg;
    char err[1024];
    assert_int_equal(qwen3_config_load(MODEL_DIR "/config.json", &cfg, err, sizeof err), 0);
    assert_int_equal(tok_vocab_size(g_tok), cfg.vocab_size);
    assert_int_equal(cfg.vocab_size % 64, 0);
    assert_int_equal(tok_id_of(g_tok, "<|im_end|>"), cfg.eos_token_id);
    assert_int_equal(cfg.bos_token_id, -1);
    /* every token the chat template writes is an added token */
    const char *names[] = {"<|endoftext|>", "<|im_start|>",    "<|im_end|>", "<tool_call>", "</tool_call>",
                           "<tool_response>", "</tool_response>", "<think>",   "</think>"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int32_t id = tok_id_of(g_tok, names[i]);
        assert_true(id >= cfg.vocab_size - 26 && id < cfg.vocab_size);
    }
    assert_true(tok_is_special(g_tok, tok_id_of(g_tok, "<|im_end|>")));
    assert_false(tok_is_special(g_tok, tok_id_of(g_tok, "<tool_call>")));
}

static void test_encode_decode(void **state) {
    (void)state;
    TokIds want = {0}, got = {0};
    int n_enc = 0, n_dec = 0, bad = 0;
    for (const cJSON *rec = g_cases->child; rec; rec = rec->next) {
        const char *op = rec_op(rec);
        if (strcmp(op, "encode") != 0 && strcmp(op, "decode") != 0) continue;
        const char *text = rec_text(rec);
        rec_ids(rec, &want);
        if (strcmp(op, "encode") == 0) {
            got.n = 0;
            tok_encode_append(g_tok, text, strlen(text), rec_flag(rec, "special") ? TOK_ENCODE_SPECIAL : 0, &got);
            if (!same_ids(text, &want, &got)) bad++;
            n_enc++;
        } else {
            int flags = rec_flag(rec, "skip_special") ? TOK_DECODE_SKIP_SPECIAL : 0;
            size_t len;
            char *d = tok_decode(g_tok, want.ids, want.n, flags, &len);
            if (len != strlen(text) || memcmp(d, text, len) != 0) {
                fprintf(stderr, "decode: want \"%.100s\" got \"%.100s\"\n", text, d);
                bad++;
            }
            free(d);
            n_dec++;
        }
    }
    tok_ids_free(&want);
    tok_ids_free(&got);
    assert_int_equal(bad, 0);
    assert_true(n_enc > 100 && n_dec >= 7);
}

static void test_chat_template(void **state) {
    (void)state;
    char err[1024];
    ChatTemplate *ct = chat_load(MODEL_DIR, err, sizeof err);
    if (!ct) fail_msg("chat_load: %s", err);
    assert_string_equal(chat_eos_token(ct), "<|im_end|>");
    TokIds want = {0}, got = {0};
    int n = 0;
    for (const cJSON *rec = g_cases->child; rec; rec = rec->next) {
        if (strcmp(rec_op(rec), "chat") != 0) continue;
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(rec, "tools");
        const cJSON *kwargs = cJSON_GetObjectItemCaseSensitive(rec, "kwargs");
        size_t len;
        char *text = chat_render(ct, cJSON_GetObjectItemCaseSensitive(rec, "messages"),
                                 cJSON_IsNull(tools) ? NULL : tools, rec_flag(rec, "add_generation_prompt"),
                                 cJSON_IsNull(kwargs) ? NULL : kwargs, &len, err, sizeof err);
        if (!text) fail_msg("chat_render (case %d): %s", n, err);
        assert_string_equal(text, rec_text(rec));
        rec_ids(rec, &want);
        got.n = 0;
        tok_encode_append(g_tok, text, len, TOK_ENCODE_SPECIAL, &got);
        assert_true(same_ids(text, &want, &got));
        free(text);
        n++;
    }
    tok_ids_free(&want);
    tok_ids_free(&got);
    chat_free(ct);
    assert_true(n >= 5);
}

static void test_model_scores(void **state) {
    (void)state;
    char err[1024];
    Qwen3 *m = qwen3_load_dir(MODEL_DIR, err, sizeof err);
    if (!m) fail_msg("qwen3_load_dir: %s", err);
    assert_int_equal(m->config.vocab_size, tok_vocab_size(g_tok));
    assert_true(m->config.tie_word_embeddings);
    assert_true(m->params.lm_head == m->params.embed);

    const cJSON *rec = g_cases->child;
    while (rec && strcmp(rec_op(rec), "score") != 0) rec = rec->next;
    assert_non_null(rec);
    TokIds ids = {0};
    rec_ids(rec, &ids);
    int T = (int)ids.n;
    int32_t seq_start[2] = {0, T};
    int32_t *targets = xmalloc((size_t)T * sizeof(int32_t));
    qwen3_next_token_targets(ids.ids, seq_start, 1, targets);
    float *logprob = xmalloc((size_t)T * sizeof(float)), *entropy = xmalloc((size_t)T * sizeof(float));
    Qwen3Batch b = {T, 1, ids.ids, targets, seq_start, NULL};
    qwen3_forward(m, &b, logprob, entropy);

    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(rec, "logprob")->child;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(rec, "entropy")->child;
    double max_lp = 0, max_en = 0;
    for (int t = 0; t < T; t++, lp = lp->next, en = en->next) {
        max_lp = fmax(max_lp, fabs(logprob[t] - lp->valuedouble));
        max_en = fmax(max_en, fabs(entropy[t] - en->valuedouble));
    }
    fprintf(stderr, "tiny model, %d tokens: max |logprob - ref| %.3g, max |entropy - ref| %.3g\n", T, max_lp, max_en);
    assert_true(max_lp < SCORE_TOL);
    assert_true(max_en < SCORE_TOL);

    free(logprob);
    free(entropy);
    free(targets);
    tok_ids_free(&ids);
    qwen3_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocabulary),
        cmocka_unit_test(test_encode_decode),
        cmocka_unit_test(test_chat_template),
        cmocka_unit_test(test_model_scores),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
