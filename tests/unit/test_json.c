/* test_json.c — the Python-compatible JSON reader and writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"

static cJSON *parse(const char *s) {
    char err[256];
    cJSON *v = json_parse(s, strlen(s), "t.json", err, sizeof err);
    if (!v) fail_msg("parse failed: %s", err);
    return v;
}

static void expect_dump(const char *in, int flags, const char *want) {
    cJSON *v = parse(in);
    char *got = json_dumps(v, flags);
    assert_string_equal(got, want);
    free(got);
    cJSON_Delete(v);
}

static void test_python_separators_and_types(void **state) {
    (void)state;
    /* json.dumps: ", " and ": ", ints stay ints, floats print with repr. */
    expect_dump("{\"a\":1,\"b\":1.0,\"c\":[true,false,null],\"d\":0.1}", 0,
                "{\"a\": 1, \"b\": 1.0, \"c\": [true, false, null], \"d\": 0.1}");
    expect_dump("[1e-05, 1e16, 123456789012345.6, -0.0, 2.5e-7, 100.25]", 0,
                "[1e-05, 1e+16, 123456789012345.6, -0.0, 2.5e-07, 100.25]");
    /* ints beyond 1e300 print as the nearest double's digits and stay ints
     * (1e300 itself is not a double: it reads back as 1000000000000000052504...) */
    char big[400] = "[1";
    memset(big + 2, '0', 300);
    strcpy(big + 302, "]");
    cJSON *v = parse(big);
    char *s = json_dumps(v, 0);
    assert_int_equal(strlen(s), 303);
    assert_memory_equal(s, "[1000000000000000052504", 23);
    cJSON *w = parse(s);
    assert_true(json_equal(v, w, true));
    free(s);
    cJSON_Delete(v);
    cJSON_Delete(w);
    /* the largest double, -DBL_MAX, written with 309 digits */
    char max[400] = "[-17976931348623157";
    memset(max + 19, '0', 292);
    strcpy(max + 311, "]");
    expect_dump(max, 0,
                "[-179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878"
                "1715404589535143824642343213268894641827684675467035375169860499105765512820762454900903893289440758"
                "6850845513394230458323690322294816580855933212334827479782620414472316873817718091929988125040402618"
                "4124858368]");
    expect_dump("{\"b\": 1, \"a\": {\"d\": 2, \"c\": 3}}", JSON_DUMP_SORT_KEYS, "{\"a\": {\"c\": 3, \"d\": 2}, \"b\": 1}");
}

static void test_ensure_ascii(void **state) {
    (void)state;
    expect_dump("\"caf\\u00e9 \\ud83d\\ude00 \\n\\t\\\"\"", 0, "\"caf\\u00e9 \\ud83d\\ude00 \\n\\t\\\"\"");
    expect_dump("\"caf\\u00e9\"", JSON_DUMP_UTF8, "\"caf\xc3\xa9\"");
    expect_dump("\"\\u0001\"", 0, "\"\\u0001\"");
}

static void test_float_repr(void **state) {
    (void)state;
    char b[40];
    json_format_float(b, 0.1 + 0.2);
    assert_string_equal(b, "0.30000000000000004");
    json_format_float(b, 1e22);
    assert_string_equal(b, "1e+22");
    json_format_float(b, 123.0);
    assert_string_equal(b, "123.0");
    json_format_float(b, 0.0001);
    assert_string_equal(b, "0.0001");
    json_format_float(b, 0.00001);
    assert_string_equal(b, "1e-05");
    json_format_float(b, 9999999999999998.0);
    assert_string_equal(b, "9999999999999998.0");
}

static void test_errors_have_positions(void **state) {
    (void)state;
    char err[256];
    const char *bad[] = {"{\"a\": 1,}", "[1, 2", "{\"a\" 1}", "\"abc", "01", "{\"a\": tru}", "[1] x", "\"\\q\"",
                         "\"x\xb6\"", "[\"\xed\xa0\x80\"]"};
    const char *where[] = {"t.json:1:9", "t.json:1:6", "t.json:1:6", "t.json:1:5", "t.json:1:2",
                           "t.json:1:7", "t.json:1:5", "t.json:1:2", "t.json:1:3", "t.json:1:3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *v = json_parse(bad[i], strlen(bad[i]), "t.json", err, sizeof err);
        assert_null(v);
        if (strncmp(err, where[i], strlen(where[i])) != 0) fail_msg("input %s: got '%s', want prefix %s", bad[i], err, where[i]);
    }
    cJSON *v = json_parse("{\n  \"a\": [1,\n  ]\n}", 17, "x.json", err, sizeof err);
    assert_null(v);
    assert_non_null(strstr(err, "x.json:3:3"));
    /* an integer beyond a double's range: refused, pointing at it */
    char huge[400] = "[1, 2";
    memset(huge + 5, '9', 320);
    strcpy(huge + 325, "]");
    v = json_parse(huge, strlen(huge), "h.json", err, sizeof err);
    assert_null(v);
    if (!strstr(err, "h.json:1:5") || !strstr(err, "integer too large")) fail_msg("got '%s'", err);
    /* a NUL would end the C string early: refused, pointing at its escape */
    const char *nul = "{\"model\": \"dir\\u0000/junk\"}";
    v = json_parse(nul, strlen(nul), "c.json", err, sizeof err);
    assert_null(v);
    if (!strstr(err, "c.json:1:15") || !strstr(err, "NUL")) fail_msg("got '%s'", err);
}

static void test_equal_and_merge(void **state) {
    (void)state;
    cJSON *a = parse("{\"x\": 1, \"y\": {\"z\": [1, 2]}}");
    cJSON *b = parse("{\"y\": {\"z\": [1, 2]}, \"x\": 1.0}");
    assert_true(json_equal(a, b, false));
    assert_false(json_equal(a, b, true)); /* 1 vs 1.0 as json.dumps sees them */
    cJSON *upd = parse("{\"y\": {\"w\": true}, \"x\": 2}");
    json_merge(a, upd);
    char *s = json_dumps(a, 0);
    assert_string_equal(s, "{\"x\": 2, \"y\": {\"z\": [1, 2], \"w\": true}}");
    free(s);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(upd);
}

static void test_duplicate_keys_keep_last(void **state) {
    (void)state;
    expect_dump("{\"a\": 1, \"b\": 2, \"a\": 3}", 0, "{\"a\": 3, \"b\": 2}");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_separators_and_types),
        cmocka_unit_test(test_ensure_ascii),
        cmocka_unit_test(test_float_repr),
        cmocka_unit_test(test_errors_have_positions),
        cmocka_unit_test(test_equal_and_merge),
        cmocka_unit_test(test_duplicate_keys_keep_last),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
