/* test_tokenizer.c — the C tokenizer against Hugging Face `tokenizers`.
 *
 * The committed fixtures (tests/fixtures/tokenizer/, the .jsonl files, written by
 * tests/gen_tokenizer_fixtures.py) hold expected ids for the Qwen3 and the
 * tiny tokenizer; they always run. The large corpus test runs the generator
 * itself when python3 can import `tokenizers`, and skips otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/sbuf.h"
#include "text/tokenizer.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QWEN_JSON TAU2_TEST_DATA_DIR "/../qwen3-tokenizer/tokenizer.json"
#define TINY_JSON TAU2_SOURCE_DIR "/tests/fixtures/tokenizer/tiny/tokenizer.json"
#define FIXTURES TAU2_SOURCE_DIR "/tests/fixtures/tokenizer/"

static Tokenizer *load_or_fail(const char *path) {
    char err[512];
    Tokenizer *t = tok_load(path, err, sizeof err);
    if (!t) fail_msg("tok_load: %s", err);
    return t;
}

/* "text" as is, or "text_hex" decoded (texts holding NUL). */
static char *case_text(const cJSON *rec, size_t *len) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "text");
    if (cJSON_IsString(t)) {
        *len = strlen(t->valuestring);
        return xstrdup(t->valuestring);
    }
    const char *hex = cJSON_GetObjectItemCaseSensitive(rec, "text_hex")->valuestring;
    size_t n = strlen(hex) / 2;
    char *s = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    s[n] = 0;
    *len = n;
    return s;
}

static void case_ids(const cJSON *rec, const char *key, TokIds *ids) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(rec, key);
    ids->n = 0;
    for (const cJSON *e = arr->child; e; e = e->next) tok_ids_push(ids, (int32_t)e->valuedouble);
}

static void report_encode(const char *text, size_t len, const TokIds *want, const TokIds *got) {
    size_t i = 0;
    while (i < want->n && i < got->n && want->ids[i] == got->ids[i]) i++;
    fprintf(stderr, "encode mismatch (%zu bytes) \"%.*s\"%s\n  at id %zu: want", len, (int)(len < 120 ? len : 120),
            text, len > 120 ? "..." : "", i);
    for (size_t k = i; k < want->n && k < i + 8; k++) fprintf(stderr, " %d", want->ids[k]);
    fprintf(stderr, " (of %zu), got", want->n);
    for (size_t k = i; k < got->n && k < i + 8; k++) fprintf(stderr, " %d", got->ids[k]);
    fprintf(stderr, " (of %zu)\n", got->n);
}

static void push_len(const char *piece, size_t n, void *ctx) {
    tok_ids_push(ctx, (int32_t)n);
}

/* Check every record of a JSON-lines file; returns the number of mismatches
 * (the first few are printed). */
static size_t check_cases(Tokenizer *tok, const char *path, size_t *n_records) {
    char err[512];
    size_t len = 0;
    char *text = file_read_all(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    size_t bad = 0, nrec = 0;
    TokIds want = {0}, got = {0};
    for (char *line = text, *end; *line; line = end) {
        end = strchr(line, '\n');
        if (end) *end++ = 0;
        else end = line + strlen(line);
        if (!*line) continue;
        cJSON *rec = cJSON_Parse(line);
        if (!rec) fail_msg("%s: record %zu is not JSON", path, nrec);
        nrec++;
        const char *op = cJSON_GetObjectItemCaseSensitive(rec, "op")->valuestring;
        size_t tlen;
        char *t = case_text(rec, &tlen);
        case_ids(rec, strcmp(op, "pretok") == 0 ? "lens" : "ids", &want);
        if (strcmp(op, "pretok") == 0) {
            got.n = 0;
            tok_pretokenize(tok, t, tlen, push_len, &got);
            bool same = got.n == want.n && (want.n == 0 || memcmp(got.ids, want.ids, want.n * 4) == 0);
            if (!same && bad++ < 10) {
                fprintf(stderr, "pre-token lengths differ:\n");
                report_encode(t, tlen, &want, &got);
            }
        } else if (strcmp(op, "encode") == 0) {
            int flags = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "special")) ? TOK_ENCODE_SPECIAL : 0;
            got.n = 0;
            tok_encode_append(tok, t, tlen, flags, &got);
            bool same = got.n == want.n && (want.n == 0 || memcmp(got.ids, want.ids, want.n * 4) == 0);
            if (!same && bad++ < 10) report_encode(t, tlen, &want, &got);
        } else {
            int flags = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "skip_special"))
                            ? TOK_DECODE_SKIP_SPECIAL : 0;
            size_t dlen;
            char *d = tok_decode(tok, want.ids, want.n, flags, &dlen);
            if ((dlen != tlen || memcmp(d, t, tlen) != 0) && bad++ < 10)
                fprintf(stderr, "decode mismatch: want \"%.*s\" got \"%.*s\"\n", (int)tlen, t, (int)dlen, d);
            free(d);
        }
        free(t);
        cJSON_Delete(rec);
    }
    tok_ids_free(&want);
    tok_ids_free(&got);
    free(text);
    if (n_records) *n_records = nrec;
    return bad;
}

static void test_fixtures_tiny(void **state) {
    Tokenizer *tok = load_or_fail(TINY_JSON);
    size_t n = 0;
    assert_int_equal(check_cases(tok, FIXTURES "tiny_cases.jsonl", &n), 0);
    assert_true(n > 500);
    tok_free(tok);
}

static void test_fixtures_qwen3(void **state) {
    if (access(QWEN_JSON, R_OK) != 0) {
        fprintf(stderr, "skip: %s not found\n", QWEN_JSON);
        skip();
    }
    Tokenizer *tok = load_or_fail(QWEN_JSON);
    size_t n = 0;
    assert_int_equal(check_cases(tok, FIXTURES "qwen3_cases.jsonl", &n), 0);
    assert_true(n > 500);
    tok_free(tok);
}

/* Run the generator on the tau2-bench corpus and compare. TAU2_TOK_CORPUS
 * names a corpus file made beforehand (e.g. the full one, with every code
 * point: gen_tokenizer_fixtures.py corpus --sweep 1 --out FILE) to check
 * instead. */
static void test_hf_corpus(void **state) {
    if (access(QWEN_JSON, R_OK) != 0) {
        fprintf(stderr, "skip: %s not found\n", QWEN_JSON);
        skip();
    }
    const char *given = getenv("TAU2_TOK_CORPUS");
    char out[] = "/tmp/tau2_tok_corpus_XXXXXX";
    if (!given) {
        if (system("python3 -c 'import tokenizers' 2>/dev/null") != 0) {
            fprintf(stderr, "skip: python3 with the 'tokenizers' package is not available; "
                            "the large Hugging Face comparison did not run (pip install tokenizers)\n");
            skip();
        }
        int fd = mkstemp(out);
        assert_true(fd >= 0);
        close(fd);
        SBuf cmd;
        sbuf_init(&cmd);
        sbuf_printf(&cmd,
                    "python3 '%s/tests/gen_tokenizer_fixtures.py' corpus --max-records 400 --sweep 31 "
                    "--out '%s' --tokenizer '%s'",
                    TAU2_SOURCE_DIR, out, QWEN_JSON);
        int rc = system(cmd.data);
        sbuf_free(&cmd);
        if (rc != 0) {
            unlink(out);
            fail_msg("corpus generator failed (status %d)", rc);
        }
    }
    Tokenizer *tok = load_or_fail(QWEN_JSON);
    size_t n = 0, bad = check_cases(tok, given ? given : out, &n);
    fprintf(stderr, "hf corpus: %zu records, %zu mismatches\n", n, bad);
    if (!given) unlink(out);
    tok_free(tok);
    assert_int_equal(bad, 0);
    assert_true(n > 10000);
}

static void test_lookups(void **state) {
    Tokenizer *tok = load_or_fail(TINY_JSON);
    assert_int_equal(tok_vocab_size(tok), 512 + 26);
    int32_t im_end = tok_id_of(tok, "<|im_end|>");
    assert_int_equal(im_end, 512 + 2);
    assert_true(tok_is_special(tok, im_end));
    int32_t tc = tok_id_of(tok, "<tool_call>");
    assert_true(tc > 0);
    assert_false(tok_is_special(tok, tc));
    assert_int_equal(tok_id_of(tok, "<|no_such|>"), -1);
    assert_int_equal(tok_id_of(tok, ""), -1);
    int32_t g = tok_id_of(tok, "\xc4\xa0"); /* "Ġ", the byte-level space */
    assert_true(g >= 0);
    size_t len;
    const char *b = tok_token_bytes(tok, g, &len);
    assert_int_equal(len, 1);
    assert_int_equal(b[0], ' ');
    assert_null(tok_token_bytes(tok, -1, &len));
    assert_null(tok_token_bytes(tok, 1 << 30, &len));
    assert_false(tok_is_special(tok, -5));
    tok_free(tok);
}

static void test_encode_special_modes(void **state) {
    Tokenizer *tok = load_or_fail(TINY_JSON);
    const char *s = "a<|im_end|>b<tool_call>";
    int32_t *ids;
    size_t n;
    tok_encode(tok, s, strlen(s), &ids, &n);
    int32_t im_end = tok_id_of(tok, "<|im_end|>"), tc = tok_id_of(tok, "<tool_call>");
    assert_int_equal(n, 4);
    assert_int_equal(ids[1], im_end);
    assert_int_equal(ids[3], tc);
    free(ids);
    /* Specials off: <|im_end|> is text, <tool_call> (not special) still matches. */
    TokIds out = {0};
    tok_encode_append(tok, s, strlen(s), 0, &out);
    assert_true(out.n > 4);
    assert_int_equal(out.ids[out.n - 1], tc);
    for (size_t i = 0; i < out.n; i++) assert_int_not_equal(out.ids[i], im_end);
    char *d = tok_decode(tok, out.ids, out.n, 0, NULL);
    assert_string_equal(d, s);
    free(d);
    tok_ids_free(&out);
    tok_encode(tok, "", 0, &ids, &n);
    assert_int_equal(n, 0);
    free(ids);
    tok_free(tok);
}

static void test_decode_skip_and_repair(void **state) {
    Tokenizer *tok = load_or_fail(TINY_JSON);
    int32_t ids[4];
    ids[0] = tok_id_of(tok, "<|im_start|>");
    ids[1] = tok_id_of(tok, "h");
    ids[2] = tok_id_of(tok, "<|im_end|>");
    ids[3] = tok_id_of(tok, "\xc4\x8a"); /* "Ċ", the byte-level newline */
    char *d = tok_decode(tok, ids, 4, 0, NULL);
    assert_string_equal(d, "<|im_start|>h<|im_end|>\n");
    free(d);
    d = tok_decode(tok, ids, 4, TOK_DECODE_SKIP_SPECIAL, NULL);
    assert_string_equal(d, "h\n");
    free(d);
    tok_free(tok);

    struct {
        const char *in, *out;
    } cases[] = {
        {"abc", "abc"},
        {"\xff", "\xef\xbf\xbd"},
        {"\xe2\x82", "\xef\xbf\xbd"},              /* truncated 3-byte: one U+FFFD */
        {"\xe2\x82x", "\xef\xbf\xbdx"},
        {"\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong: each byte */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        char *r = tok_utf8_repair(cases[i].in, strlen(cases[i].in), &n);
        assert_string_equal(r, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
        free(r);
    }
}

/* Any bytes encode, and the token bytes give the input back (ASCII and
 * invalid UTF-8 pass through normalization unchanged). */
static void test_roundtrip_bytes(void **state) {
    Tokenizer *tok = load_or_fail(TINY_JSON);
    Tokenizer *fork = tok_fork(tok);
    uint32_t seed = 12345;
    SBuf back;
    sbuf_init(&back);
    for (int iter = 0; iter < 2000; iter++) {
        char buf[300];
        size_t n = (size_t)(iter % 300);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned v = (seed >> 16) & 0xff;
            /* ASCII, or high bytes that are never >= 0xCC */
            buf[i] = (char)(iter % 2 ? (v & 0x7f) : (v < 0xcc ? v : v - 0x80));
        }
        TokIds out = {0};
        tok_encode_append(iter % 3 ? tok : fork, buf, n, iter % 5 ? TOK_ENCODE_SPECIAL : 0, &out);
        back.len = 0;
        for (size_t i = 0; i < out.n; i++) {
            size_t len;
            const char *b = tok_token_bytes(tok, out.ids[i], &len);
            assert_non_null(b);
            sbuf_put(&back, b, len);
        }
        assert_int_equal(back.len, n);
        assert_memory_equal(n ? back.data : "", buf, n);
        tok_ids_free(&out);
    }
    sbuf_free(&back);
    tok_free(tok);
    tok_free(fork);
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_load_errors(void **state) {
    char err[512];
    assert_null(tok_load("/nonexistent/tokenizer.json", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/tokenizer.json"));
    char path[] = "/tmp/tau2_tok_bad_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "{not json");
    assert_null(tok_load(path, err, sizeof err));
    assert_non_null(strstr(err, "not valid JSON"));
    write_file(path, "{\"model\": {\"type\": \"WordPiece\"}}");
    assert_null(tok_load(path, err, sizeof err));
    assert_non_null(strstr(err, "model.type"));
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]},"
                     "\"decoder\": {\"type\": \"ByteLevel\"}}");
    assert_null(tok_load(path, err, sizeof err));
    assert_non_null(strstr(err, "merges[0]"));
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": true},"
                     "\"decoder\": {\"type\": \"ByteLevel\"}}");
    assert_null(tok_load(path, err, sizeof err));
    assert_non_null(strstr(err, "byte_fallback"));
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     "\"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
                     "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                     "\"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}}");
    assert_null(tok_load(path, err, sizeof err));
    assert_non_null(strstr(err, "regex"));
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_encode_special_modes),
        cmocka_unit_test(test_decode_skip_and_repair),
        cmocka_unit_test(test_roundtrip_bytes),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_fixtures_tiny),
        cmocka_unit_test(test_fixtures_qwen3),
        cmocka_unit_test(test_hf_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
