/* test_tb_events.c — TensorBoard event files: CRC32C against published
 * vectors, the protobuf bytes of hand-built Events, and files read back by
 * an independent decoder (tests/read_tb_events.py, python3-protobuf). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "io/tb_events.h"

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

static void rm_tree(const char *dir) {
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_tmpdir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/tau2_test_tb_XXXXXX");
    assert_non_null(mkdtemp(buf));
}

static void assert_bytes(const SBuf *got, const unsigned char *want, size_t n) {
    if (got->len != n) fail_msg("encoded %zu bytes, expected %zu", got->len, n);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)got->data[i] != want[i])
            fail_msg("byte %zu: got 0x%02x, expected 0x%02x", i, (unsigned char)got->data[i], want[i]);
    }
}

/* Debian's python3 has python3-protobuf; a pyenv python3 first on PATH
 * may not. A missing interpreter or module fails the test (CI installs
 * python3-protobuf), it is never a skip. */
static const char *python(void) {
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Run the independent reader on path; returns its stdout (caller frees),
 * failing the test when it exits non-zero. */
static char *read_events(const char *path) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/tests/read_tb_events.py '%s'", python(), TAU2_SOURCE_DIR, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    SBuf out;
    sbuf_init(&out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) sbuf_put(&out, buf, n);
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("'%s' failed (status %d); is python3-protobuf installed?", cmd, status);
    sbuf_putc(&out, '\0');
    return sbuf_take(&out);
}

/* Split the reader's output into parsed JSON lines; returns the count. */
static int parse_lines(char *text, cJSON **lines, int max) {
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        assert_true(n < max);
        char err[256];
        lines[n] = json_parse(line, strlen(line), "reader output", err, sizeof err);
        if (!lines[n]) fail_msg("%s", err);
        n++;
    }
    return n;
}

/* ---- CRC32C ---- */

static void test_crc32c_vectors(void **state) {
    /* the standard check value and the iSCSI vectors of RFC 3720, B.4 */
    assert_int_equal(tb_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(tb_crc32c("", 0), 0u);
    assert_int_equal(tb_crc32c("a", 1), 0xC1D04330u);
    unsigned char b[32];
    memset(b, 0, sizeof b);
    assert_int_equal(tb_crc32c(b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    assert_int_equal(tb_crc32c(b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)i;
    assert_int_equal(tb_crc32c(b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (unsigned char)(31 - i);
    assert_int_equal(tb_crc32c(b, 32), 0x113FDB5Cu);
    /* the mask: rotate right by 15, add the constant */
    uint32_t c = 0xE3069283u;
    assert_int_equal(tb_masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

/* ---- protobuf bytes ---- */

static void test_encode_scalar_event(void **state) {
    SBuf b;
    sbuf_init(&b);
    /* Event{wall_time 1.5, step 300, summary{value{tag "a/b", simple_value 1.0}}} */
    tb_encode_scalar_event(&b, 1.5, 300, "a/b", 1.0f);
    static const unsigned char ev1[] = {
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f, /* 1: fixed64 1.5 */
        0x10, 0xac, 0x02,                                     /* 2: varint 300 */
        0x2a, 0x0c,                                           /* 5: Summary, 12 bytes */
        0x0a, 0x0a,                                           /*   1: Value, 10 bytes */
        0x0a, 0x03, 0x61, 0x2f, 0x62,                         /*     1: "a/b" */
        0x15, 0x00, 0x00, 0x80, 0x3f,                         /*     2: fixed32 1.0f */
    };
    assert_bytes(&b, ev1, sizeof ev1);

    /* a negative int64 step is a ten-byte varint (no zigzag) */
    b.len = 0;
    tb_encode_scalar_event(&b, 1.5, -1, "x", -2.5f);
    static const unsigned char ev2[] = {
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f,
        0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 0x78, 0x15, 0x00, 0x00, 0x20, 0xc0,
    };
    assert_bytes(&b, ev2, sizeof ev2);

    /* wall_time 0 and step 0 are left out; simple_value 0 (in a oneof) is not */
    b.len = 0;
    tb_encode_scalar_event(&b, 0.0, 0, "z", 0.0f);
    static const unsigned char ev3[] = {0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 0x7a, 0x15, 0x00, 0x00, 0x00, 0x00};
    assert_bytes(&b, ev3, sizeof ev3);
    sbuf_free(&b);
}

static void test_encode_version_record(void **state) {
    SBuf ev, rec;
    sbuf_init(&ev);
    sbuf_init(&rec);
    tb_encode_version_event(&ev, 1.5, "brain.Event:2");
    tb_append_record(&rec, ev.data, ev.len);
    /* expected bytes from python3-protobuf and a bitwise CRC32C */
    static const unsigned char want[] = {
        0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* length 24, uint64 LE */
        0xa3, 0x7f, 0x4b, 0x22,                         /* masked CRC of the length */
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f, 0x1a, 0x0d, 0x62, 0x72, 0x61, 0x69, 0x6e,
        0x2e, 0x45, 0x76, 0x65, 0x6e, 0x74, 0x3a, 0x32, /* Event{1.5, file_version "brain.Event:2"} */
        0x2a, 0x28, 0x64, 0x6c,                         /* masked CRC of the data */
    };
    assert_bytes(&rec, want, sizeof want);
    sbuf_free(&ev);
    sbuf_free(&rec);
}

/* ---- files read back by the independent reader ---- */

typedef struct {
    int64_t step;
    const char *tag;
    double value; /* as a float */
} Expect;

static void test_roundtrip_python(void **state) {
    char dir[64], sub[128], err[512];
    make_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/run/tb", dir); /* created with its parents */
    TbWriter *w = tb_open(sub, err, sizeof err);
    if (!w) fail_msg("%s", err);
    assert_non_null(strstr(tb_path(w), "/events.out.tfevents."));

    static const char *rows[] = {
        "{\"step\": 0, \"loss\": 1.0, \"phase\": \"sft\"}",
        "{\"step\": 1, \"loss\": 0.5, \"eval/mock-pass@2\": 0.75, \"eval/mock-pass^2\": 0.25, \"phase\": \"grpo\","
        " \"ok\": true, \"nested\": {\"a\": 1}, \"list\": [1, 2], \"none\": null}",
        "{\"step\": 2, \"loss\": -3.25, \"zero\": 0, \"big\": 1e30, \"huge\": 1e300, \"tiny\": -1e-8,"
        " \"count\": 123456789}",
        "{\"step\": 5000000000, \"reward/mean\": 0.1}",
    };
    const double wall = 1700000000.25;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cJSON *row = json_parse(rows[i], strlen(rows[i]), "row", err, sizeof err);
        assert_non_null(row);
        if (tb_write_row(w, row, wall + (double)i, err, sizeof err) != 0) fail_msg("%s", err);
        cJSON_Delete(row);
    }
    if (tb_add_scalar(w, 7, wall + 10, "caf\xc3\xa9/\xe2\x82\xac", -0.0f, err, sizeof err) != 0) fail_msg("%s", err);
    char *path = xstrdup(tb_path(w));
    tb_close(w);

    const Expect want[] = {
        {0, "loss", 1.0},
        {1, "loss", 0.5},
        {1, "eval/mock-pass@2", 0.75},
        {1, "eval/mock-pass^2", 0.25},
        {2, "loss", -3.25},
        {2, "zero", 0.0},
        {2, "big", (double)1e30f},
        {2, "huge", INFINITY},
        {2, "tiny", (double)-1e-8f},
        {2, "count", (double)123456789.0f},
        {5000000000LL, "reward/mean", (double)0.1f},
        {7, "caf\xc3\xa9/\xe2\x82\xac", -0.0},
    };
    const double want_wall[] = {wall, wall + 1, wall + 1, wall + 1, wall + 2, wall + 2, wall + 2,
                                wall + 2, wall + 2, wall + 2, wall + 3, wall + 10};
    const int n_want = (int)(sizeof want / sizeof want[0]);

    char *text = read_events(path);
    cJSON *lines[64];
    int n = parse_lines(text, lines, 64);
    assert_int_equal(n, 1 + n_want);
    assert_string_equal(json_get_str(lines[0], "file_version"), "brain.Event:2");
    assert_int_equal((int64_t)json_get(lines[0], "step")->valuedouble, 0);
    assert_true(json_get(lines[0], "wall_time")->valuedouble > 1.5e9); /* the time of tb_open */
    for (int i = 0; i < n_want; i++) {
        const cJSON *l = lines[i + 1];
        assert_int_equal((int64_t)json_get(l, "step")->valuedouble, want[i].step);
        assert_string_equal(json_get_str(l, "tag"), want[i].tag);
        double v = json_get(l, "value")->valuedouble;
        if (v != want[i].value) fail_msg("%s at step %lld: read %.9g, wrote %.9g", want[i].tag,
                                         (long long)want[i].step, v, want[i].value);
        assert_true(json_get(l, "wall_time")->valuedouble == want_wall[i]);
    }
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
    free(text);
    free(path);
    rm_tree(dir);
}

/* The reader must notice a damaged record: flip one data byte. */
static void test_reader_checks_crc(void **state) {
    char dir[64], err[512];
    make_tmpdir(dir, sizeof dir);
    TbWriter *w = tb_open(dir, err, sizeof err);
    assert_non_null(w);
    assert_int_equal(tb_add_scalar(w, 3, 1.0, "loss", 2.0f, err, sizeof err), 0);
    char *path = xstrdup(tb_path(w));
    tb_close(w);
    size_t len;
    char *data = file_read_all(path, &len, err, sizeof err);
    assert_non_null(data);
    data[len - 6] ^= 0x01; /* inside the last record's Event */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/tests/read_tb_events.py '%s' >/dev/null 2>&1", python(), TAU2_SOURCE_DIR, path);
    int status = system(cmd);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    free(data);
    free(path);
    rm_tree(dir);
}

/* Two writers opened in one directory in the same second get two files. */
static void test_unique_names(void **state) {
    char dir[64], err[512];
    make_tmpdir(dir, sizeof dir);
    TbWriter *a = tb_open(dir, err, sizeof err);
    TbWriter *b = tb_open(dir, err, sizeof err);
    TbWriter *c = tb_open(dir, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_string_not_equal(tb_path(a), tb_path(b));
    assert_string_not_equal(tb_path(b), tb_path(c));
    assert_string_not_equal(tb_path(a), tb_path(c));
    struct stat sb;
    assert_int_equal(stat(tb_path(c), &sb), 0);
    assert_int_equal(sb.st_size, 12 + 4 + 24); /* just the version record */
    tb_close(a);
    tb_close(b);
    tb_close(c);
    rm_tree(dir);
}

static void test_errors(void **state) {
    char dir[64], path[128], err[512];
    make_tmpdir(dir, sizeof dir);
    /* a directory under a regular file cannot be made; the error names it */
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/tb", dir);
    assert_null(tb_open(path, err, sizeof err));
    assert_non_null(strstr(err, path));

    TbWriter *w = tb_open(dir, err, sizeof err);
    assert_non_null(w);
    static const char *bad[] = {
        "{\"loss\": 1.0}",                  /* no step */
        "{\"step\": \"3\", \"loss\": 1.0}", /* not a number */
        "{\"step\": 1.5, \"loss\": 1.0}",   /* not integral */
        "[1, 2]",                           /* not an object */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *row = json_parse(bad[i], strlen(bad[i]), "row", err, sizeof err);
        assert_non_null(row);
        err[0] = '\0';
        assert_int_equal(tb_write_row(w, row, 1.0, err, sizeof err), -1);
        assert_non_null(strstr(err, tb_path(w)));
        cJSON_Delete(row);
    }
    assert_int_equal(tb_add_scalar(w, 1, 1.0, "", 1.0f, err, sizeof err), -1);
    assert_int_equal(tb_add_scalar(w, 1, 1.0, "bad\xff", 1.0f, err, sizeof err), -1);
    assert_non_null(strstr(err, "UTF-8"));
    assert_int_equal(tb_add_scalar(w, 1, 1.0, "surrogate\xed\xa0\x80", 1.0f, err, sizeof err), -1);
    assert_int_equal(tb_add_scalar(w, 1, 1.0, "overlong\xc0\xaf", 1.0f, err, sizeof err), -1);
    /* nothing but the version record was written */
    struct stat sb;
    assert_int_equal(stat(tb_path(w), &sb), 0);
    assert_int_equal(sb.st_size, 12 + 4 + 24);
    tb_close(w);
    rm_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_encode_scalar_event),
        cmocka_unit_test(test_encode_version_record),
        cmocka_unit_test(test_roundtrip_python),
        cmocka_unit_test(test_reader_checks_crc),
        cmocka_unit_test(test_unique_names),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
