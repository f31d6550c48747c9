/* test_jinja.c — the C Jinja interpreter against Python jinja2 in transformers' chat-template environment.
 *
 * tests/fixtures/jinja/cases.jsonl (written by tests/gen_jinja_fixtures.py) holds hundreds of small
 * per-feature cases plus real chat templates (Qwen3, a Qwen3 instruct-2507 variant, Qwen2.5, Llama 3.1,
 * Mistral) rendered on τ²-bench-like conversations; every output must match byte for byte and every
 * error case must fail cleanly. Also: error positions, runaway-template limits, and render speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/json.h"
#include "text/jinja.h"

#define CASES TAU2_SOURCE_DIR "/tests/fixtures/jinja/cases.jsonl"

typedef struct {
    cJSON *header; /* {"contexts": {...}, "templates": {...}} */
    cJSON **rows;
    int nrows;
    char *text;
} Fixture;

static Fixture load_fixture(void) {
    Fixture fx = {0};
    size_t len;
    char err[512];
    fx.text = file_read_all(CASES, &len, err, sizeof err);
    if (!fx.text) fail_msg("%s", err);
    int cap = 1024;
    fx.rows = xmalloc((size_t)cap * sizeof *fx.rows);
    char *line = fx.text;
    int lineno = 0;
    while (*line) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        lineno++;
        if (n) {
            cJSON *v = json_parse(line, n, CASES, err, sizeof err);
            if (!v) fail_msg("line %d: %s", lineno, err);
            if (!fx.header) fx.header = v;
            else {
                if (fx.nrows == cap) fx.rows = xrealloc(fx.rows, (size_t)(cap *= 2) * sizeof *fx.rows);
                fx.rows[fx.nrows++] = v;
            }
        }
        line += n + (nl ? 1 : 0);
    }
    return fx;
}

static void free_fixture(Fixture *fx) {
    for (int i = 0; i < fx->nrows; i++) cJSON_Delete(fx->rows[i]);
    free(fx->rows);
    cJSON_Delete(fx->header);
    free(fx->text);
}

static const char *row_template(const Fixture *fx, const cJSON *row) {
    const cJSON *t = json_get(row, "template");
    if (cJSON_IsString(t)) return t->valuestring;
    return json_get_str(json_get(fx->header, "templates"), json_get_str(t, "ref"));
}
static const cJSON *row_context(const Fixture *fx, const cJSON *row) {
    return json_get(json_get(fx->header, "contexts"), json_get_str(row, "context"));
}

static void show(const char *label, const char *s, size_t n) {
    fprintf(stderr, "  %s (%zu bytes): ", label, n);
    for (size_t i = 0; i < n && i < 600; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c < 0x20) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fputc('\n', stderr);
}

static void test_fixture_cases(void **state) {
    (void)state;
    Fixture fx = load_fixture();
    int pass = 0, fail = 0, nerr = 0;
    for (int i = 0; i < fx.nrows; i++) {
        const cJSON *row = fx.rows[i];
        const char *name = json_get_str(row, "name"), *src = row_template(&fx, row);
        const cJSON *ctx = row_context(&fx, row);
        assert_non_null(src);
        assert_non_null(ctx);
        bool want_error = cJSON_IsTrue(json_get(row, "error"));
        const char *want = json_get_str(row, "output");
        char err[512] = "";
        size_t len = 0;
        char *out = NULL;
        JinjaTemplate *t = jinja_parse(src, strlen(src), name, err, sizeof err);
        if (t) out = jinja_render(t, ctx, &len, err, sizeof err);
        bool ok;
        if (want_error) {
            ok = out == NULL && err[0] != '\0';
            nerr += ok;
        } else {
            ok = out && want && len == strlen(want) && memcmp(out, want, len) == 0;
        }
        if (ok) {
            pass++;
        } else {
            fail++;
            fprintf(stderr, "MISMATCH %s\n", name);
            show("template", src, strlen(src));
            if (want) show("want", want, strlen(want));
            else fprintf(stderr, "  want: an error\n");
            if (out) show("got", out, len);
            else fprintf(stderr, "  got error: %s\n", err);
        }
        free(out);
        jinja_free(t);
    }
    printf("jinja fixtures: %d/%d cases match Python (%d of them expected errors)\n", pass, fx.nrows, nerr);
    free_fixture(&fx);
    assert_int_equal(fail, 0);
}

static char *render_src(const char *src, const char *ctx_json, char *err, size_t errlen) {
    cJSON *ctx = json_parse(ctx_json, strlen(ctx_json), "ctx", err, errlen);
    assert_non_null(ctx);
    char *out = NULL;
    JinjaTemplate *t = jinja_parse(src, strlen(src), "t.jinja", err, errlen);
    if (t) out = jinja_render(t, ctx, NULL, err, errlen);
    jinja_free(t);
    cJSON_Delete(ctx);
    return out;
}

static void expect_error(const char *src, const char *prefix, const char *part) {
    char err[512] = "";
    char *out = render_src(src, "{}", err, sizeof err);
    if (out) fail_msg("no error for %s: got '%s'", src, out);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, part))
        fail_msg("error for %s is '%s', want prefix '%s' and '%s'", src, err, prefix, part);
}

static void test_error_positions(void **state) {
    (void)state;
    expect_error("ok\n{% if x %}abc", "t.jinja:2:", "endif");
    expect_error("{% for x in y %}\n", "t.jinja:1:", "endfor");
    expect_error("line\n  {{ 1 + }}", "t.jinja:2:10:", "unexpected");
    expect_error("{{ (1 }}", "t.jinja:1:", "')'");
    expect_error("{{ 'a'[:1, 2] }}", "t.jinja:1:", "a slice inside a subscript of several parts");
    expect_error("{{ 'a'[0, 1:] }}", "t.jinja:1:", "a slice inside a subscript of several parts");
    expect_error("a {# no end", "t.jinja:1:3:", "comment");
    expect_error("{{ x | nosuch }}", "t.jinja:1:", "nosuch");
    expect_error("{% frob %}", "t.jinja:1:4:", "frob");
    expect_error("\n\n{{ 'abc }}", "t.jinja:3:4:", "string");
    expect_error("{{ x.y.z }}", "t.jinja:1:", "'x' is undefined");
    expect_error("x\n{{ raise_exception('Only user and assistant roles') }}", "t.jinja:2:", "Only user and assistant roles");
}

static void test_limits(void **state) {
    (void)state;
    expect_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "t.jinja:", "output larger");
    expect_error("{% macro r(k) %}{{ r(k + 1) }}{% endmacro %}{{ r(0) }}", "t.jinja:", "recursion");
    expect_error("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "t.jinja:", "steps");
    expect_error("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                 "t.jinja:", "large");
    expect_error("{{ 9223372036854775807 + 1 }}", "t.jinja:", "overflow");
    char buf[4096], err[256];
    size_t k = 0;
    buf[k++] = '{', buf[k++] = '{';
    for (int i = 0; i < 1000; i++) buf[k++] = '(';
    buf[k++] = '1';
    for (int i = 0; i < 1000; i++) buf[k++] = ')';
    buf[k++] = '}', buf[k++] = '}';
    buf[k] = 0;
    JinjaTemplate *t = jinja_parse(buf, k, "deep", err, sizeof err);
    assert_null(t); /* nesting limit, not a stack overflow */
    assert_non_null(strstr(err, "deep:1:"));
}

/* A 50-message τ²-bench-like conversation with 15 tools through the Qwen3
 * template, rendered repeatedly from one parse: every render is the same.
 * (The time per render is printed for information; tests never assert on it.) */
static void test_render_repeated(void **state) {
    (void)state;
    Fixture fx = load_fixture();
    const cJSON *row = NULL;
    for (int i = 0; i < fx.nrows && !row; i++)
        if (strcmp(json_get_str(fx.rows[i], "name"), "real_qwen3_multi_tools_gen") == 0) row = fx.rows[i];
    assert_non_null(row);
    const char *src = row_template(&fx, row);
    cJSON *ctx = cJSON_Duplicate(row_context(&fx, row), true);
    cJSON *msgs = json_get(ctx, "messages"), *tools = json_get(ctx, "tools");
    int nm = cJSON_GetArraySize(msgs), nt = cJSON_GetArraySize(tools);
    for (int i = 1; cJSON_GetArraySize(msgs) < 50; i++)
        cJSON_AddItemToArray(msgs, cJSON_Duplicate(cJSON_GetArrayItem(msgs, 1 + i % (nm - 1)), true));
    for (int i = 0; cJSON_GetArraySize(tools) < 15; i++)
        cJSON_AddItemToArray(tools, cJSON_Duplicate(cJSON_GetArrayItem(tools, i % nt), true));
    char err[512];
    JinjaTemplate *t = jinja_parse(src, strlen(src), "qwen3", err, sizeof err);
    assert_non_null(t);
    int reps = 50;
    size_t len = 0;
    char *first = jinja_render(t, ctx, &len, err, sizeof err);
    if (!first) fail_msg("%s", err);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < reps; i++) {
        size_t n = 0;
        char *out = jinja_render(t, ctx, &n, err, sizeof err);
        if (!out) fail_msg("%s", err);
        assert_int_equal(n, len);
        assert_memory_equal(out, first, len);
        free(out);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double us = ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / reps;
    printf("jinja render: 50 messages, 15 tools -> %zu bytes in %.1f us per render\n", len, us);
    free(first);
    jinja_free(t);
    cJSON_Delete(ctx);
    free_fixture(&fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_cases),
        cmocka_unit_test(test_error_positions),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_render_repeated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
