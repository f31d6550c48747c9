/* test_safetensors.c — the safetensors reader, writer and fp16/bf16
 * conversions, against files and tables made by the Python `safetensors`
 * package and numpy (tests/fixtures/safetensors, made by
 * tests/gen_safetensors_fixtures.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "model/safetensors.h"
#include "tau2_test_sha256.h"

/* Not in the header yet: parse from memory (also used by the fuzzer). */

#define FIX TAU2_SOURCE_DIR "/tests/fixtures/safetensors"

/* ---- helpers ---- */

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static cJSON *load_json(const char *path) {
    char err[512];
    cJSON *v = json_load_file(path, err, sizeof err);
    if (!v) fail_msg("%s", err);
    return v;
}

static unsigned char *unhex(const char *s, size_t *n) {
    *n = strlen(s) / 2;
    unsigned char *b = xmalloc(*n + 1);
    for (size_t i = 0; i < *n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        b[i] = (unsigned char)v;
    }
    return b;
}

static StFile *open_ok(const char *path) {
    char err[1024];
    StFile *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("st_open(%s): %s", path, err);
    return f;
}

/* One tensor against its expected entry: dtype, shape, raw bytes, and the
 * exact fp32 bits st_to_f32 must give (or its refusal for non-floats). */
static void check_tensor(const StTensor *t, const cJSON *want, const char *where) {
    if (!t) fail_msg("%s: tensor missing", where);
    assert_string_equal(st_dtype_name(t->dtype), json_get_str(want, "dtype"));
    const cJSON *shape = json_get(want, "shape");
    assert_int_equal(t->ndim, cJSON_GetArraySize(shape));
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        assert_int_equal(t->shape[i], (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble);
        numel *= t->shape[i];
    }
    assert_int_equal(t->numel, numel);
    size_t n;
    unsigned char *raw = unhex(json_get_str(want, "hex"), &n);
    assert_int_equal(t->nbytes, n);
    assert_int_equal(t->nbytes, (size_t)numel * st_dtype_size(t->dtype));
    if (n) assert_memory_equal(t->data, raw, n);
    free(raw);
    float *out = xmalloc(((size_t)numel + 1) * sizeof *out);
    char err[256];
    const cJSON *fb = json_get(want, "f32_bits");
    if (fb) {
        if (st_to_f32(t, out, err, sizeof err) != 0) fail_msg("%s: %s", where, err);
        assert_int_equal(cJSON_GetArraySize(fb), numel);
        int i = 0;
        for (const cJSON *b = fb->child; b; b = b->next, i++)
            if (bits_of(out[i]) != (uint32_t)b->valuedouble)
                fail_msg("%s: element %d: got 0x%08x want 0x%08x", where, i, bits_of(out[i]),
                         (uint32_t)b->valuedouble);
    } else {
        assert_int_equal(st_to_f32(t, out, err, sizeof err), -1);
        assert_non_null(strstr(err, "is not a float type"));
        assert_non_null(strstr(err, t->name));
    }
    free(out);
}

/* ---- dtypes ---- */

static void test_dtypes(void **state) {
    (void)state;
    const char *names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL"};
    size_t sizes[] = {4, 2, 2, 8, 8, 4, 1, 1, 1};
    for (int i = 0; i < 9; i++) {
        assert_int_equal(st_dtype_parse(names[i]), i);
        assert_string_equal(st_dtype_name((StDtype)i), names[i]);
        assert_int_equal(st_dtype_size((StDtype)i), sizes[i]);
    }
    assert_int_equal(st_dtype_parse("bf16"), -1);
    assert_int_equal(st_dtype_parse("F8_E4M3"), -1);
    assert_int_equal(st_dtype_parse(""), -1);
}

/* ---- valid files ---- */

static void test_valid_files(void **state) {
    (void)state;
    cJSON *exp = load_json(FIX "/expected.json");
    int files = 0;
    for (const cJSON *e = exp->child; e; e = e->next) {
        if (strncmp(e->string, "valid/", 6) != 0) continue;
        char path[512];
        snprintf(path, sizeof path, FIX "/%s", e->string);
        StFile *f = open_ok(path);
        const cJSON *tensors = json_get(e, "tensors");
        assert_int_equal(st_count(f), cJSON_GetArraySize(tensors));
        for (const cJSON *t = tensors->child; t; t = t->next) {
            char where[256];
            snprintf(where, sizeof where, "%s: %s", e->string, t->string);
            check_tensor(st_find(f, t->string), t, where);
        }
        for (int i = 0; i < st_count(f); i++) {
            const StTensor *t = st_tensor_at(f, i);
            assert_ptr_equal(st_find(f, t->name), t);
        }
        assert_null(st_tensor_at(f, st_count(f)));
        assert_null(st_tensor_at(f, -1));
        assert_null(st_find(f, "no.such.tensor"));
        for (const cJSON *m = json_get(e, "metadata")->child; m; m = m->next)
            assert_string_equal(st_metadata(f, m->string), m->valuestring);
        assert_null(st_metadata(f, "no_such_key"));
        st_close(f);
        files++;
    }
    assert_int_equal(files, 5);
    cJSON_Delete(exp);
}

static void check_dir(const char *dir, const cJSON *want, const cJSON *order) {
    char err[1024];
    StDir *d = st_open_dir(dir, err, sizeof err);
    if (!d) fail_msg("st_open_dir(%s): %s", dir, err);
    const cJSON *tensors = json_get(want, "tensors");
    assert_int_equal(st_dir_count(d), cJSON_GetArraySize(tensors));
    for (const cJSON *t = tensors->child; t; t = t->next) check_tensor(st_dir_find(d, t->string), t, t->string);
    if (order) {
        int i = 0;
        for (const cJSON *o = order->child; o; o = o->next, i++)
            assert_string_equal(st_dir_tensor_at(d, i)->name, o->valuestring);
    }
    for (int i = 0; i < st_dir_count(d); i++)
        assert_ptr_equal(st_dir_find(d, st_dir_tensor_at(d, i)->name), st_dir_tensor_at(d, i));
    assert_null(st_dir_tensor_at(d, st_dir_count(d)));
    assert_null(st_dir_find(d, "missing"));
    st_close_dir(d);
}

static void test_model_dirs(void **state) {
    (void)state;
    cJSON *exp = load_json(FIX "/expected.json");
    check_dir(FIX "/single_dir", json_get(exp, "single_dir"), NULL);
    check_dir(FIX "/sharded", json_get(exp, "sharded"), json_get(json_get(exp, "sharded"), "order"));
    cJSON_Delete(exp);
}

/* ---- broken files and directories ---- */

static void expect_substrings(const char *err, const cJSON *want, const char *what) {
    for (const cJSON *s = want->child; s; s = s->next)
        if (!strstr(err, s->valuestring)) fail_msg("%s: error\n  %s\nlacks\n  %s", what, err, s->valuestring);
}

static void test_broken_files(void **state) {
    (void)state;
    cJSON *cases = load_json(FIX "/broken/cases.json");
    int n = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n++) {
        char path[512], err[1024] = "";
        snprintf(path, sizeof path, FIX "/broken/%s", c->string);
        StFile *f = st_open(path, err, sizeof err);
        if (f) fail_msg("%s: accepted", c->string);
        /* Every message starts with the file's path. */
        if (strncmp(err, path, strlen(path)) != 0) fail_msg("%s: error does not name the file: %s", c->string, err);
        expect_substrings(err, c, c->string);
    }
    assert_true(n >= 25);
    cJSON_Delete(cases);

    char err[512];
    assert_null(st_open(FIX "/no_such_file.safetensors", err, sizeof err));
    assert_non_null(strstr(err, "no_such_file.safetensors: cannot open"));
    assert_null(st_open(FIX "/broken", err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
}

static void test_broken_dirs(void **state) {
    (void)state;
    cJSON *cases = load_json(FIX "/broken_dirs/cases.json");
    int n = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n++) {
        char path[512], err[2048] = "";
        snprintf(path, sizeof path, FIX "/broken_dirs/%s", c->string);
        StDir *d = st_open_dir(path, err, sizeof err);
        if (d) fail_msg("%s: accepted", c->string);
        expect_substrings(err, c, c->string);
    }
    assert_int_equal(n, 7);
    cJSON_Delete(cases);

    char tmpl[] = "/tmp/st_empty_XXXXXX", err[512];
    assert_non_null(mkdtemp(tmpl));
    assert_null(st_open_dir(tmpl, err, sizeof err));
    assert_non_null(strstr(err, "no model.safetensors or model.safetensors.index.json"));
    rmdir(tmpl);
}

/* ---- in-memory headers: edge cases that are valid ---- */

static StFile *parse_mem(const char *header, size_t hlen, const unsigned char *data, size_t dlen, char *err,
                         size_t errlen, unsigned char **buf_out) {
    size_t n = 8 + hlen + dlen;
    unsigned char *buf = xmalloc(n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (dlen) memcpy(buf + 8 + hlen, data, dlen);
    *buf_out = buf;
    return st_open_buffer(buf, n, "mem.safetensors", err, errlen);
}

static void test_edge_cases(void **state) {
    (void)state;
    char err[512];
    unsigned char *buf;
    float vals[3] = {1.5f, -2.25f, 1e-40f};
    unsigned char data[13] = {0}; /* data[0]: the 1-byte gap */
    memcpy(data + 1, vals, 12);

    /* An unaligned data pointer (odd header length and a 1-byte gap), a gap,
     * empty tensors at any offset, null metadata and unknown fields. */
    const char *h = "{\"__metadata__\":null,\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13],"
                    "\"extra\":1},\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"e2\":{\"dtype\":\"F16\",\"shape\":[2,0,3],\"data_offsets\":[13,13]}} ";
    StFile *f = parse_mem(h, strlen(h), data, sizeof data, err, sizeof err, &buf);
    if (!f) fail_msg("edge: %s", err);
    assert_int_equal(st_count(f), 3);
    assert_string_equal(st_tensor_at(f, 0)->name, "x");
    assert_string_equal(st_tensor_at(f, 2)->name, "e2");
    const StTensor *t = st_find(f, "x");
    float out[3];
    assert_int_equal(st_to_f32(t, out, err, sizeof err), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(bits_of(out[i]), bits_of(vals[i]));
    assert_int_equal(st_find(f, "e2")->numel, 0);
    assert_int_equal(st_to_f32(st_find(f, "e2"), out, err, sizeof err), 0);
    assert_null(st_metadata(f, "format"));
    st_close(f);
    free(buf);

    /* A name with an embedded NUL cannot be a C string. */
    h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
        "\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
    f = parse_mem(h, strlen(h), data, 2, err, sizeof err, &buf);
    assert_null(f);
    assert_non_null(strstr(err, "mem.safetensors: header holds a \\u0000 (NUL) escape"));
    free(buf);
    /* ... but an escaped backslash followed by "u0000" is plain text. */
    h = "{\"a\\\\u0000\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    f = parse_mem(h, strlen(h), data, 1, err, sizeof err, &buf);
    if (!f) fail_msg("escaped backslash: %s", err);
    assert_non_null(st_find(f, "a\\u0000"));
    st_close(f);
    free(buf);

    /* Byte-order mark, empty object and an offset of exactly the data end. */
    h = "\xEF\xBB\xBF{\"z\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[12,13]}}";
    f = parse_mem(h, strlen(h), data, sizeof data, err, sizeof err, &buf);
    if (!f) fail_msg("%s", err);
    assert_int_equal(st_find(f, "z")->numel, 1);
    assert_int_equal(st_find(f, "z")->ndim, 0);
    st_close(f);
    free(buf);

    /* 1.0 is a Python float, not an int: rejected in data_offsets. */
    h = "{\"z\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}";
    assert_null(parse_mem(h, strlen(h), data, 1, err, sizeof err, &buf));
    assert_non_null(strstr(err, "mem.safetensors: tensor 'z': \"data_offsets\" must be two non-negative ints"));
    free(buf);

    /* A huge integer literal is not silently rounded. */
    h = "{\"z\":{\"dtype\":\"I8\",\"shape\":[18446744073709551617],\"data_offsets\":[0,1]}}";
    assert_null(parse_mem(h, strlen(h), data, 1, err, sizeof err, &buf));
    assert_non_null(strstr(err, "not an integer in 0..2^53"));
    free(buf);
}

/* ---- writer ---- */

static char g_tmpdir[64];

static char *tmp_path(const char *name) {
    if (!g_tmpdir[0]) {
        strcpy(g_tmpdir, "/tmp/st_test_XXXXXX");
        if (!mkdtemp(g_tmpdir)) fail_msg("mkdtemp failed");
    }
    size_t n = strlen(g_tmpdir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", g_tmpdir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *n) {
    char err[512];
    char *b = file_read_all(path, n, err, sizeof err);
    if (!b) fail_msg("%s", err);
    return (unsigned char *)b;
}

/* The reference writer's files, rebuilt from their F32 version (added in
 * reverse order, so the writer must sort), must come out byte-identical. */
static void test_writer_matches_reference(void **state) {
    (void)state;
    StFile *ref = open_ok(FIX "/writer/ref_f32.safetensors");
    const StDtype dts[] = {ST_F32, ST_BF16, ST_F16};
    const char *refs[] = {FIX "/writer/ref_f32.safetensors", FIX "/writer/ref_bf16.safetensors",
                          FIX "/writer/ref_f16.safetensors"};
    for (int k = 0; k < 3; k++) {
        StWriter *w = st_writer_new(dts[k]);
        for (int i = st_count(ref) - 1; i >= 0; i--) {
            const StTensor *t = st_tensor_at(ref, i);
            float *v = xmalloc(((size_t)t->numel + 1) * sizeof *v);
            char err[256];
            assert_int_equal(st_to_f32(t, v, err, sizeof err), 0);
            st_writer_add(w, t->name, t->shape, t->ndim, v);
            free(v);
        }
        st_writer_metadata(w, "format", "np");
        st_writer_metadata(w, "format", "pt"); /* replaces */
        char *out = tmp_path("w.safetensors"), err[512];
        if (st_writer_save(w, out, err, sizeof err) != 0) fail_msg("%s", err);
        st_writer_free(w);
        size_t n1, n2;
        unsigned char *a = read_all(out, &n1), *b = read_all(refs[k], &n2);
        if (n1 != n2 || memcmp(a, b, n1) != 0) {
            fail_msg("%s: %zu bytes vs %zu; header\n%.*s\nvs\n%.*s", refs[k], n1, n2, (int)(n1 > 400 ? 400 : n1),
                     (const char *)a + 8, (int)(n2 > 400 ? 400 : n2), (const char *)b + 8);
        }
        free(a);
        free(b);
        unlink(out);
        free(out);
    }
    st_close(ref);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rng_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

static void test_writer_roundtrip(void **state) {
    (void)state;
    enum { N = 4099 };
    float *v = xmalloc(N * sizeof *v), *back = xmalloc(N * sizeof *back);
    for (int i = 0; i < N; i++) v[i] = float_of(rng_u32()); /* every kind of value, NaNs included */
    v[0] = 0.0f, v[1] = -0.0f, v[2] = INFINITY, v[3] = -INFINITY;
    const StDtype dts[] = {ST_F32, ST_BF16, ST_F16};
    for (int k = 0; k < 3; k++) {
        StWriter *w = st_writer_new(dts[k]);
        int64_t s1[] = {N}, s2[] = {2, 3, 0}, s0[1] = {0};
        st_writer_add(w, "values", s1, 1, v);
        st_writer_add(w, "empty", s2, 3, v);
        st_writer_add(w, "scalar", s0, 0, v + 5);
        st_writer_add(w, "\"quoted\\name\"\n\x01 caf\xc3\xa9", s1, 1, v);
        st_writer_metadata(w, "z", "last");
        st_writer_metadata(w, "a\tkey", "line\nbreak \"q\" \\ \x1f");
        char *out = tmp_path("rt.safetensors"), err[512];
        if (st_writer_save(w, out, err, sizeof err) != 0) fail_msg("%s", err);
        st_writer_free(w);
        StFile *f = open_ok(out);
        assert_int_equal(st_count(f), 4);
        /* Header order is name order. */
        for (int i = 1; i < st_count(f); i++)
            assert_true(strcmp(st_tensor_at(f, i - 1)->name, st_tensor_at(f, i)->name) < 0);
        assert_string_equal(st_metadata(f, "z"), "last");
        assert_string_equal(st_metadata(f, "a\tkey"), "line\nbreak \"q\" \\ \x1f");
        const StTensor *t = st_find(f, "values");
        assert_int_equal(t->dtype, dts[k]);
        assert_int_equal(st_to_f32(t, back, err, sizeof err), 0);
        for (int i = 0; i < N; i++) {
            float want = dts[k] == ST_F32    ? v[i]
                         : dts[k] == ST_BF16 ? st_bf16_to_f32(st_f32_to_bf16(v[i]))
                                             : st_f16_to_f32(st_f32_to_f16(v[i]));
            if (bits_of(back[i]) != bits_of(want))
                fail_msg("%s element %d: 0x%08x -> 0x%08x, want 0x%08x", st_dtype_name(dts[k]), i, bits_of(v[i]),
                         bits_of(back[i]), bits_of(want));
        }
        t = st_find(f, "\"quoted\\name\"\n\x01 caf\xc3\xa9");
        assert_non_null(t);
        assert_int_equal(st_find(f, "scalar")->numel, 1);
        assert_int_equal(st_find(f, "empty")->ndim, 3);
        st_close(f);

        /* Header padded to a multiple of 8 with spaces. */
        size_t n;
        unsigned char *raw = read_all(out, &n);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
        assert_int_equal(hlen % 8, 0);
        assert_true(raw[8] == '{');
        size_t end = 8 + (size_t)hlen;
        while (raw[end - 1] == ' ') end--;
        assert_true(raw[end - 1] == '}');
        assert_true(8 + hlen - end < 8);
        free(raw);
        unlink(out);
        free(out);
    }
    free(v);
    free(back);
}

static void test_writer_atomic(void **state) {
    (void)state;
    char *out = tmp_path("atomic.safetensors"), err[512];
    float x = 1.0f;
    int64_t s[] = {1};
    for (int round = 0; round < 2; round++) { /* the second save replaces the first */
        StWriter *w = st_writer_new(ST_F32);
        st_writer_add(w, round ? "second" : "first", s, 1, &x);
        assert_int_equal(st_writer_save(w, out, err, sizeof err), 0);
        st_writer_free(w);
    }
    StFile *f = open_ok(out);
    assert_int_equal(st_count(f), 1);
    assert_non_null(st_find(f, "second"));
    st_close(f);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    struct stat st;
    assert_int_equal(stat(tmp, &st), -1); /* no temporary left behind */
    unlink(out);
    free(out);

    StWriter *w = st_writer_new(ST_BF16);
    assert_int_equal(st_writer_save(w, "/nonexistent_dir_st/x.safetensors", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent_dir_st/x.safetensors"));
    st_writer_free(w);

    /* A writer with nothing in it makes a valid empty file. */
    w = st_writer_new(ST_F16);
    out = tmp_path("empty.safetensors");
    assert_int_equal(st_writer_save(w, out, err, sizeof err), 0);
    st_writer_free(w);
    f = open_ok(out);
    assert_int_equal(st_count(f), 0);
    st_close(f);
    size_t n;
    unsigned char *raw = read_all(out, &n);
    assert_int_equal(n, 16);
    assert_memory_equal(raw + 8, "{}      ", 8);
    free(raw);
    unlink(out);
    free(out);
}

/* ---- conversions ---- */

static bool is_nan32(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }
static bool is_nan16(uint16_t h) { return (h & 0x7fffu) > 0x7c00u; }

/* numpy's fp32 -> fp16 and torch's fp32 -> bf16 over inputs that hit every
 * rounding case (ties, near-ties, subnormals, overflow edges). */
static void test_conversion_tables(void **state) {
    (void)state;
    StFile *f = open_ok(FIX "/conversions.safetensors");
    const StTensor *in = st_find(f, "f32_in"), *h = st_find(f, "f16_out"), *b = st_find(f, "bf16_out");
    assert_non_null(in);
    size_t n = (size_t)in->numel;
    assert_true(n > 10000);
    int nan_cases = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        uint16_t want_h, want_b;
        memcpy(&u, (const char *)in->data + 4 * i, 4);
        memcpy(&want_h, (const char *)h->data + 2 * i, 2);
        memcpy(&want_b, (const char *)b->data + 2 * i, 2);
        float x = float_of(u);
        uint16_t got_h = st_f32_to_f16(x), got_b = st_f32_to_bf16(x);
        if (got_b != want_b) fail_msg("bf16(0x%08x) = 0x%04x, torch 0x%04x", u, got_b, want_b);
        if (is_nan32(u)) {
            /* numpy keeps a signalling payload; we quiet it (as F16C does). */
            nan_cases++;
            if (!is_nan16(want_h) || (got_h & 0x8000) != (want_h & 0x8000) ||
                got_h != (((u >> 16) & 0x8000u) | 0x7e00u | ((u >> 13) & 0x3ffu)))
                fail_msg("f16(0x%08x) = 0x%04x, numpy 0x%04x", u, got_h, want_h);
        } else if (got_h != want_h) {
            fail_msg("f16(0x%08x) = 0x%04x, numpy 0x%04x", u, got_h, want_h);
        }
    }
    assert_true(nan_cases > 0);
    st_close(f);
}

/* Every fp16 pattern: fp32 value against an ldexp oracle and numpy's table
 * hash; and fp16 -> fp32 -> fp16 gives the pattern back (NaNs made quiet). */
static void test_f16_all_patterns(void **state) {
    (void)state;
    float *all = xmalloc(65536 * sizeof *all);
    for (uint32_t p = 0; p < 65536; p++) {
        uint16_t hp = (uint16_t)p;
        float x = st_f16_to_f32(hp);
        all[p] = x;
        int e = (p >> 10) & 0x1f, m = p & 0x3ff;
        float sign = (p & 0x8000) ? -1.0f : 1.0f;
        if (e == 0x1f) {
            uint32_t want = ((p & 0x8000u) << 16) | 0x7f800000u | ((uint32_t)m << 13);
            assert_int_equal(bits_of(x), want);
            uint16_t back = st_f32_to_f16(x);
            assert_int_equal(back, m ? (hp | 0x200) : hp);
        } else {
            double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
            if (bits_of(x) != bits_of(sign * (float)v)) fail_msg("f16 0x%04x -> 0x%08x", hp, bits_of(x));
            if (st_f32_to_f16(x) != hp) fail_msg("f16 0x%04x round trip gives 0x%04x", hp, st_f32_to_f16(x));
        }
    }
    char hex[65];
    sha256_hex((const char *)all, 65536 * sizeof *all, hex);
    StFile *f = open_ok(FIX "/conversions.safetensors");
    assert_string_equal(hex, st_metadata(f, "f16_to_f32_sha256"));
    st_close(f);
    free(all);
}

static void test_bf16_all_patterns(void **state) {
    (void)state;
    for (uint32_t p = 0; p < 65536; p++) {
        uint16_t hp = (uint16_t)p;
        float x = st_bf16_to_f32(hp);
        assert_int_equal(bits_of(x), p << 16);
        uint16_t back = st_f32_to_bf16(x);
        if ((p & 0x7f80) == 0x7f80 && (p & 0x7f)) assert_int_equal(back, 0x7fc0); /* NaN */
        else assert_int_equal(back, hp);
    }
}

/* fp32 -> fp16 against a double-precision oracle: scale to units of the
 * target ulp and let nearbyint (round half to even) round, over a stride of
 * all fp32 patterns. */
static void test_f16_rounding_oracle(void **state) {
    (void)state;
    int checked = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 4093) {
        float x = float_of((uint32_t)u);
        if (isnan(x)) continue;
        double a = fabs((double)x), want;
        if (a >= 65520.0) {
            want = INFINITY;
        } else if (a == 0) {
            want = 0;
        } else {
            int e;
            frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
            int q = e - 11 < -24 ? -24 : e - 11; /* ulp exponent: 10 mantissa bits, subnormals below 2^-14 */
            want = ldexp(nearbyint(ldexp(a, -q)), q);
        }
        if (signbit(x)) want = -want;
        float got = st_f16_to_f32(st_f32_to_f16(x));
        if (bits_of(got) != bits_of((float)want)) fail_msg("f16(0x%08x): got %a want %a", (uint32_t)u, got, want);
        checked++;
    }
    assert_true(checked > 1000000);
}

static void test_to_f32_f64(void **state) {
    (void)state;
    double d[] = {1.0 / 3, 1e300, -1e300, 3.4028235677973366e38, 3.4028235677973362e38, 1e-50, NAN, -0.0};
    StTensor t = {.name = "d", .dtype = ST_F64, .ndim = 1, .shape = {8}, .numel = 8, .data = d, .nbytes = sizeof d};
    float out[8];
    char err[128];
    assert_int_equal(st_to_f32(&t, out, err, sizeof err), 0);
    assert_true(out[0] == (float)(1.0 / 3));
    assert_true(isinf(out[1]) && out[1] > 0);
    assert_true(isinf(out[2]) && out[2] < 0);
    assert_true(isinf(out[3]));         /* at or above FLT_MAX + half an ulp: inf */
    assert_true(out[4] == 3.4028235e38f); /* just below: FLT_MAX */
    assert_true(out[5] == 0.0f);
    assert_true(isnan(out[6]));
    assert_true(signbit(out[7]));
}

static int teardown_tmp(void **state) {
    (void)state;
    if (g_tmpdir[0]) rmdir(g_tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_valid_files),
        cmocka_unit_test(test_model_dirs),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_broken_dirs),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_writer_matches_reference),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_writer_atomic),
        cmocka_unit_test(test_conversion_tables),
        cmocka_unit_test(test_f16_all_patterns),
        cmocka_unit_test(test_bf16_all_patterns),
        cmocka_unit_test(test_f16_rounding_oracle),
        cmocka_unit_test(test_to_f32_f64),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_tmp);
}
