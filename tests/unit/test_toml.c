/* test_toml.c — the TOML reader: each feature, each error, and the telecom
 * databases against what Python's `toml` package gives for them
 * (tests/fixtures/toml, made by tests/gen_toml_fixtures.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "core/toml.h"

/* ---- helpers ---- */

static cJSON *parse_ok(const char *text) {
    char err[512];
    cJSON *v = toml_parse(text, strlen(text), "t.toml", err, sizeof err);
    if (!v) fail_msg("rejected valid TOML: %s\n--- text ---\n%s", err, text);
    return v;
}

/* The TOML must give exactly this JSON: same values, int/float kinds and
 * key order (compared through json_dumps, which keeps order). */
static void expect_json(const char *toml_text, const char *json_text) {
    cJSON *got = parse_ok(toml_text);
    char err[512];
    cJSON *want = json_parse(json_text, strlen(json_text), "want", err, sizeof err);
    if (!want) fail_msg("bad expected JSON in test: %s", err);
    char *g = json_dumps(got, 0);
    char *w = json_dumps(want, 0);
    if (!json_equal(got, want, true) || strcmp(g, w) != 0) {
        fail_msg("--- toml ---\n%s\n--- got ---\n%s\n--- want ---\n%s", toml_text, g, w);
    }
    free(g);
    free(w);
    cJSON_Delete(got);
    cJSON_Delete(want);
}

/* Parsing must fail with "t.toml:<where>: ..." containing `what`. */
static void expect_error_n(const char *text, size_t len, const char *where, const char *what) {
    char err[512] = "unset";
    cJSON *v = toml_parse(text, len, "t.toml", err, sizeof err);
    if (v) {
        cJSON_Delete(v);
        fail_msg("accepted invalid TOML:\n%s", text);
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.toml:%s: ", where);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what)) {
        fail_msg("--- toml ---\n%s\n--- got ---\n%s\n--- want ---\n%s...%s", text, err, prefix, what);
    }
}

static void expect_error(const char *text, const char *where, const char *what) {
    expect_error_n(text, strlen(text), where, what);
}

/* ---- tables and keys ---- */

static void test_empty_and_comments(void **state) {
    (void)state;
    expect_json("", "{}");
    expect_json("# only a comment\n\n   \t\n", "{}");
    expect_json("a = 1 # trailing comment\n# x = 2\n", "{\"a\": 1}");
    expect_json("a = 1\r\nb = 2\r\n", "{\"a\": 1, \"b\": 2}");
    expect_json("\xEF\xBB\xBF" "a = 1", "{\"a\": 1}");
    expect_json("a=1", "{\"a\": 1}");
}

static void test_tables_keep_order(void **state) {
    (void)state;
    expect_json("b = 1\na = 2\n[z]\nx = 1\n[c]\ny = 2\n",
                "{\"b\": 1, \"a\": 2, \"z\": {\"x\": 1}, \"c\": {\"y\": 2}}");
    /* A table implied by [x.y] keeps the position where it was first named. */
    expect_json("[x.y]\na = 1\n[w]\n[x]\nb = 2\n",
                "{\"x\": {\"y\": {\"a\": 1}, \"b\": 2}, \"w\": {}}");
    expect_json("[ a . b ]\nc = 1\n", "{\"a\": {\"b\": {\"c\": 1}}}");
}

static void test_dotted_and_quoted_keys(void **state) {
    (void)state;
    expect_json("a.b.c = 1\na.b.d = 2\na . e = 3\n",
                "{\"a\": {\"b\": {\"c\": 1, \"d\": 2}, \"e\": 3}}");
    expect_json("\"quoted key\" = 1\n'literal \\ key' = 2\n\"\" = 3\n\"a.b\".c = 4\n",
                "{\"quoted key\": 1, \"literal \\\\ key\": 2, \"\": 3, \"a.b\": {\"c\": 4}}");
    expect_json("1234 = 'x'\n-_- = 'y'\n3.14 = 'z'\n",
                "{\"1234\": \"x\", \"-_-\": \"y\", \"3\": {\"14\": \"z\"}}");
    expect_json("[fruit]\napple.color = 'red'\n[fruit.apple.texture]\nsmooth = true\n",
                "{\"fruit\": {\"apple\": {\"color\": \"red\", \"texture\": {\"smooth\": true}}}}");
    expect_json("[\"a b\".'c']\nd = 1\n", "{\"a b\": {\"c\": {\"d\": 1}}}");
}

static void test_array_of_tables(void **state) {
    (void)state;
    expect_json("[[p]]\nx = 1\n[p.sub]\ny = 2\n[[p]]\nx = 3\n[[p.list]]\nz = 4\n[[p.list]]\n",
                "{\"p\": [{\"x\": 1, \"sub\": {\"y\": 2}}, {\"x\": 3, \"list\": [{\"z\": 4}, {}]}]}");
    expect_json("[a]\n[[a.b]]\nc = 1\n[[a.b]]\nc = 2\n",
                "{\"a\": {\"b\": [{\"c\": 1}, {\"c\": 2}]}}");
    expect_json("[[ a ]]\n", "{\"a\": [{}]}");
}

static void test_inline_tables_and_arrays(void **state) {
    (void)state;
    expect_json("t = { x = 1, y.z = 'a', w = { } }\n",
                "{\"t\": {\"x\": 1, \"y\": {\"z\": \"a\"}, \"w\": {}}}");
    expect_json("e = {}\na = []\n", "{\"e\": {}, \"a\": []}");
    expect_json("a = [\n  1, # one\n  2,\n\n  # comment line\n  3,\n]\n", "{\"a\": [1, 2, 3]}");
    expect_json("a = [[1, 2], ['x'], [{ k = true }], 1.5, \"s\"]\n",
                "{\"a\": [[1, 2], [\"x\"], [{\"k\": true}], 1.5, \"s\"]}");
    expect_json("t = { a = [\n 1,\n 2 ] }\n", "{\"t\": {\"a\": [1, 2]}}");
}

/* ---- strings ---- */

static void test_basic_strings(void **state) {
    (void)state;
    expect_json("s = \"b\\b t\\t n\\n f\\f r\\r q\\\" bs\\\\ u\\u00e9 U\\U0001F600\"\n",
                "{\"s\": \"b\\b t\\t n\\n f\\f r\\r q\\\" bs\\\\ u\\u00e9 U\\ud83d\\ude00\"}");
    expect_json("s = \"tab\there, caf\xC3\xA9 # not a comment\"\n",
                "{\"s\": \"tab\\there, caf\\u00e9 # not a comment\"}");
    expect_json("s = \"\"\n", "{\"s\": \"\"}");
}

static void test_literal_strings(void **state) {
    (void)state;
    expect_json("s = 'C:\\Users\\nodejs'\ne = ''\n", "{\"s\": \"C:\\\\Users\\\\nodejs\", \"e\": \"\"}");
    expect_json("s = '<\\i\\c*\\s*>'\n", "{\"s\": \"<\\\\i\\\\c*\\\\s*>\"}");
}

static void test_multiline_strings(void **state) {
    (void)state;
    /* The newline after the opening quotes is dropped; CRLF becomes LF. */
    expect_json("s = \"\"\"\nRoses\r\nViolets\"\"\"\n", "{\"s\": \"Roses\\nViolets\"}");
    /* Line-ending backslash eats the newline and following blank space. */
    expect_json("s = \"\"\"\nThe quick \\\n\n    brown \\   \n  fox.\"\"\"\n",
                "{\"s\": \"The quick brown fox.\"}");
    /* Up to two quotes may sit just before the closing ones. */
    expect_json("s = \"\"\"a \"\"quoted\"\" b\"\"\"\"\"\n", "{\"s\": \"a \\\"\\\"quoted\\\"\\\" b\\\"\\\"\"}");
    expect_json("s = '''\nraw \\n '' text\n'''\n", "{\"s\": \"raw \\\\n '' text\\n\"}");
    expect_json("s = ''''x'''''\n", "{\"s\": \"'x''\"}");
    expect_json("s = \"\"\"esc \\t \\u0041\"\"\"\n", "{\"s\": \"esc \\t A\"}");
}

/* ---- numbers, booleans, dates ---- */

static void test_integers(void **state) {
    (void)state;
    expect_json("a = 42\nb = +17\nc = -17\nd = 0\ne = -0\nf = +0\ng = 1_000_000\n",
                "{\"a\": 42, \"b\": 17, \"c\": -17, \"d\": 0, \"e\": 0, \"f\": 0, \"g\": 1000000}");
    expect_json("h = 0xDEAD_beef\no = 0o755\nb = 0b1101_0110\nz = 0x00\n",
                "{\"h\": 3735928559, \"o\": 493, \"b\": 214, \"z\": 0}");
    cJSON *v = parse_ok("big = 9007199254740992\nneg = -9223372036854775808\n");
    assert_true(json_is_int(json_get(v, "big")));
    assert_true(json_get(v, "big")->valuedouble == 9007199254740992.0);
    assert_true(json_is_int(json_get(v, "neg")));
    assert_true(json_get(v, "neg")->valuedouble == -9223372036854775808.0);
    cJSON_Delete(v);
}

static void test_floats(void **state) {
    (void)state;
    expect_json("a = 1.0\nb = -0.5\nc = 5e+22\nd = 1e06\ne = -2E-2\nf = 6.626e-34\ng = 224_617.445_991\nh = 0.0\n",
                "{\"a\": 1.0, \"b\": -0.5, \"c\": 5e+22, \"d\": 1000000.0, \"e\": -0.02, \"f\": 6.626e-34, "
                "\"g\": 224617.445991, \"h\": 0.0}");
    cJSON *v = parse_ok("i = inf\nj = +inf\nk = -inf\nn = nan\nm = -nan\np = +nan\nz = -0.0\ne = 1e400\n");
    assert_true(json_is_float(json_get(v, "i")) && json_get(v, "i")->valuedouble == INFINITY);
    assert_true(json_get(v, "j")->valuedouble == INFINITY);
    assert_true(json_get(v, "k")->valuedouble == -INFINITY);
    assert_true(json_is_float(json_get(v, "n")) && isnan(json_get(v, "n")->valuedouble));
    assert_true(isnan(json_get(v, "m")->valuedouble) && isnan(json_get(v, "p")->valuedouble));
    assert_true(json_is_float(json_get(v, "z")) && signbit(json_get(v, "z")->valuedouble));
    assert_true(json_get(v, "e")->valuedouble == INFINITY);
    cJSON_Delete(v);
    /* 5.0 stays a Python float, 5 an int: db.toml depends on it. */
    v = parse_ok("f = 5.0\ni = 5\n");
    assert_true(json_is_float(json_get(v, "f")));
    assert_true(json_is_int(json_get(v, "i")));
    cJSON_Delete(v);
}

static void test_booleans(void **state) {
    (void)state;
    expect_json("t = true\nf = false\na = [true,false]\n", "{\"t\": true, \"f\": false, \"a\": [true, false]}");
}

static void test_datetimes_kept_as_text(void **state) {
    (void)state;
    expect_json("odt1 = 1979-05-27T07:32:00Z\n"
                "odt2 = 1979-05-27T00:32:00-07:00\n"
                "odt3 = 1979-05-27T00:32:00.999999+05:30\n"
                "odt4 = 1979-05-27 07:32:00z\n"
                "ldt = 1979-05-27t07:32:00.5\n"
                "ld = 2024-02-29\n"
                "lt = 00:32:00.999999\n"
                "leap = 23:59:60\n"
                "arr = [2000-01-01, 12:00:00]\n",
                "{\"odt1\": \"1979-05-27T07:32:00Z\", \"odt2\": \"1979-05-27T00:32:00-07:00\", "
                "\"odt3\": \"1979-05-27T00:32:00.999999+05:30\", \"odt4\": \"1979-05-27 07:32:00z\", "
                "\"ldt\": \"1979-05-27t07:32:00.5\", \"ld\": \"2024-02-29\", \"lt\": \"00:32:00.999999\", "
                "\"leap\": \"23:59:60\", \"arr\": [\"2000-01-01\", \"12:00:00\"]}");
    /* A date followed by a comment, not a time. */
    expect_json("d = 2000-01-01 # note\n", "{\"d\": \"2000-01-01\"}");
}

/* ---- errors: structure ---- */

static void test_error_duplicates(void **state) {
    (void)state;
    expect_error("a = 1\na = 2\n", "2:1", "duplicate key 'a'");
    expect_error("a.b = 1\na.b = 2\n", "2:3", "duplicate key 'a.b'");
    expect_error("[t]\nx = 1\n[t]\n", "3:2", "table 't' is already defined");
    expect_error("[a.b]\n[a]\n[a.b]\n", "3:4", "table 'a.b' is already defined");
    expect_error("a = 1\n[a]\n", "2:2", "table 'a' is already defined");
    expect_error("a = {b = 1}\n[a]\n", "2:2", "table 'a' is already defined");
    expect_error("t = {a = 1, a = 2}\n", "1:13", "duplicate key 'a'");
}

static void test_error_redefinitions(void **state) {
    (void)state;
    /* A table made by dotted keys cannot be reopened with a header. */
    expect_error("[fruit]\napple.color = 'red'\n[fruit.apple]\n", "3:8", "already defined");
    /* ... and a table opened by a header cannot be extended by dotted keys. */
    expect_error("[a.b]\nx = 1\n[a]\nb.y = 2\n", "4:1", "a dotted key cannot add to it");
    /* Inline tables are closed. */
    expect_error("a = {b = 1}\na.c = 2\n", "2:1", "a dotted key cannot add to it");
    expect_error("a = {b = {c = 1}, b.d = 2}\n", "1:19", "a dotted key cannot add to it");
    expect_error("a = {b = 1}\n[a.c]\n", "2:2", "not a table");
    /* Static arrays cannot be appended to with [[...]]. */
    expect_error("a = []\n[[a]]\n", "2:3", "not an array of tables");
    expect_error("a = [{b = 1}]\n[a.c]\n", "2:2", "not a table");
    expect_error("[[a]]\n[a]\n", "2:2", "table 'a' is already defined");
    expect_error("[a]\n[[a]]\n", "2:3", "not an array of tables");
    expect_error("a.b = 1\n[a.b.c]\n", "2:4", "not a table");
}

static void test_error_syntax(void **state) {
    (void)state;
    expect_error("a 1\n", "1:3", "expected '='");
    expect_error("a =\n", "1:4", "expected a value");
    expect_error("a = 1 2\n", "1:7", "expected a newline or a comment");
    expect_error("= 1\n", "1:1", "expected a key");
    expect_error("a. = 1\n", "1:4", "expected a key");
    expect_error("[a\n", "1:3", "expected ']'");
    expect_error("[]\n", "1:2", "expected a key");
    expect_error("[[a]\n", "1:4", "expected ']]'");
    expect_error("[a] x = 1\n", "1:5", "expected a newline");
    expect_error("a = [1 2]\n", "1:8", "expected ',' or ']'");
    expect_error("a = [1,,2]\n", "1:8", "expected a value");
    expect_error("a = [1,\n2\n", "1:5", "unterminated array");
    expect_error("a = {b = 1,\nc = 2}\n", "1:12", "expected a key");
    expect_error("a = {b = 1,}\n", "1:12", "expected a key");
    expect_error("a = {b = 1\n}\n", "1:11", "expected ',' or '}'");
    expect_error("a = truth\n", "1:5", "expected a value");
    expect_error("a = truex\n", "1:9", "expected a newline");
    expect_error("a = TRUE\n", "1:5", "expected a value");
}

static void test_error_strings(void **state) {
    (void)state;
    expect_error("a = \"abc\n", "1:5", "unterminated string");
    expect_error("a = \"abc", "1:5", "unterminated string");
    expect_error("a = 'abc\n", "1:5", "unterminated literal string");
    expect_error("a = \"\"\"abc\n\n", "1:5", "unterminated multi-line string");
    expect_error("a = '''abc''", "1:5", "unterminated multi-line string");
    expect_error("a = \"x\\qy\"\n", "1:7", "invalid escape sequence '\\q'");
    expect_error("a = \"\\u12\"\n", "1:6", "expected 4 hexadecimal digits");
    expect_error("a = \"\\UFFFFFFFF\"\n", "1:6", "not a Unicode scalar value");
    expect_error("a = \"\\uD800\"\n", "1:6", "not a Unicode scalar value");
    expect_error("a = \"\\u0000\"\n", "1:6", "NUL");
    expect_error("a = \"\"\"x \\ y\"\"\"\n", "1:10", "line-ending backslash");
    expect_error("a = \"\"\"x\"\"\"\"\"\"\n", "1:9", "too many quotes");
    expect_error("\"\"\"a\"\"\" = 1\n", "1:3", "expected '='");
}

static void test_error_characters(void **state) {
    (void)state;
    expect_error("a = 1\x01\n", "1:6", "control character U+0001");
    expect_error("a = \"x\x7Fy\"\n", "1:7", "control character U+007F");
    expect_error("# comment \x0C\n", "1:11", "control character U+000C");
    expect_error_n("a = \"x\0\"\n", 9, "1:7", "control character U+0000");
    expect_error("a = \"\xFF\"\n", "1:6", "invalid UTF-8");
    expect_error("a = \"\xC3\"\n", "1:6", "invalid UTF-8");
    expect_error("a = \"\xED\xA0\x80\"\n", "1:6", "invalid UTF-8"); /* encoded surrogate */
    expect_error("a = \"\xC0\xAF\"\n", "1:6", "invalid UTF-8");     /* overlong */
    expect_error("a = 1\rb = 2\n", "1:6", "carriage return");
    /* Columns count characters, not bytes. */
    expect_error("\"\xC3\xA9\xC3\xA9\" = 0x\n", "1:8", "invalid base-16 integer");
}

static void test_error_numbers(void **state) {
    (void)state;
    expect_error("a = 01\n", "1:5", "leading zeros");
    expect_error("a = -01.5\n", "1:5", "leading zeros");
    expect_error("a = 1__0\n", "1:5", "underscore");
    expect_error("a = 1_\n", "1:5", "underscore");
    expect_error("a = 1_.5\n", "1:5", "underscore");
    expect_error("a = 1.\n", "1:5", "invalid number '1.'");
    expect_error("a = .5\n", "1:5", "expected a value");
    expect_error("a = 1e\n", "1:5", "invalid number");
    expect_error("a = 1.2.3\n", "1:5", "invalid number");
    expect_error("a = 9223372036854775808\n", "1:5", "does not fit in 64 bits");
    expect_error("a = -9223372036854775809\n", "1:5", "does not fit in 64 bits");
    expect_error("a = 0x8000000000000000\n", "1:5", "does not fit in 64 bits");
    expect_error("a = +0x10\n", "1:5", "take no sign");
    expect_error("a = 0xg\n", "1:5", "invalid base-16 integer");
    expect_error("a = 0b102\n", "1:5", "invalid base-2 integer");
    expect_error("a = 0X10\n", "1:5", "invalid number");
    expect_error("a = infinity\n", "1:5", "invalid number");
    expect_error("a = Inf\n", "1:5", "expected a value");
}

static void test_error_dates(void **state) {
    (void)state;
    expect_error("a = 2021-02-29\n", "1:5", "date out of range");
    expect_error("a = 2021-13-01\n", "1:5", "date out of range");
    expect_error("a = 2021-1-01\n", "1:5", "invalid date");
    expect_error("a = 2021-01-01T25:00:00\n", "1:5", "time out of range");
    expect_error("a = 2021-01-01T10:00\n", "1:5", "invalid time");
    expect_error("a = 10:00:00.\n", "1:5", "expected digits after the decimal point");
    expect_error("a = 2021-01-01T10:00:00+25:00\n", "1:5", "time offset out of range");
    expect_error("a = 2021-01-01T10:00:00+05\n", "1:5", "invalid time offset");
    expect_error("a = 10:00:00Z\n", "1:13", "expected a newline");
}

static void test_error_limits(void **state) {
    (void)state;
    char deep[256];
    memset(deep, '[', 100);
    strcpy(deep + 100, "\n");
    char text[300];
    snprintf(text, sizeof text, "a = %s", deep);
    expect_error(text, "1:69", "nest more than 64 deep");
    char key[400] = "";
    for (int i = 0; i < 70; i++) strcat(key, "k.");
    strcat(key, "k = 1\n");
    expect_error(key, "1:129", "at most 64 dotted parts");
}

/* No message buffer, or a tiny one, must still be safe. */
static void test_error_buffers(void **state) {
    (void)state;
    assert_null(toml_parse("a = ", 4, "t.toml", NULL, 0));
    char tiny[8];
    assert_null(toml_parse("a = ", 4, "t.toml", tiny, sizeof tiny));
    assert_string_equal(tiny, "t.toml:");
    cJSON *v = toml_parse(NULL, 0, NULL, NULL, 0); /* nothing at all: an empty table */
    assert_non_null(v);
    cJSON_Delete(v);
}

/* ---- files ---- */

static void test_load_file_errors_name_path(void **state) {
    (void)state;
    char err[512];
    assert_null(toml_load_file("/nonexistent/dir/x.toml", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/dir/x.toml"));
}

/* The telecom databases must parse to exactly what Python's toml.load gives. */
static void check_telecom_file(const char *name) {
    char path[1024], fixture[1024], err[512];
    snprintf(path, sizeof path, "%s/domains/telecom/%s.toml", TAU2_TEST_DATA_DIR, name);
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/toml/%s.json", TAU2_SOURCE_DIR, name);
    cJSON *got = toml_load_file(path, err, sizeof err);
    if (!got) fail_msg("%s", err);
    cJSON *want = json_load_file(fixture, err, sizeof err);
    if (!want) fail_msg("%s", err);
    assert_true(json_equal(got, want, true));
    /* Same key order and number kinds as Python's dict: compare the dump. */
    size_t len;
    char *text = file_read_all(fixture, &len, err, sizeof err);
    assert_non_null(text);
    while (len > 0 && text[len - 1] == '\n') text[--len] = '\0';
    char *dumped = json_dumps(got, 0);
    assert_string_equal(dumped, text);
    free(dumped);
    free(text);
    cJSON_Delete(got);
    cJSON_Delete(want);
}

static void test_telecom_db(void **state) {
    (void)state;
    check_telecom_file("db");
}

static void test_telecom_user_db(void **state) {
    (void)state;
    check_telecom_file("user_db");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_comments),
        cmocka_unit_test(test_tables_keep_order),
        cmocka_unit_test(test_dotted_and_quoted_keys),
        cmocka_unit_test(test_array_of_tables),
        cmocka_unit_test(test_inline_tables_and_arrays),
        cmocka_unit_test(test_basic_strings),
        cmocka_unit_test(test_literal_strings),
        cmocka_unit_test(test_multiline_strings),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_datetimes_kept_as_text),
        cmocka_unit_test(test_error_duplicates),
        cmocka_unit_test(test_error_redefinitions),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_error_characters),
        cmocka_unit_test(test_error_numbers),
        cmocka_unit_test(test_error_dates),
        cmocka_unit_test(test_error_limits),
        cmocka_unit_test(test_error_buffers),
        cmocka_unit_test(test_load_file_errors_name_path),
        cmocka_unit_test(test_telecom_db),
        cmocka_unit_test(test_telecom_user_db),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
