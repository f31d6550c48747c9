/* test_io_h5.c — rollout buffers, checkpoints and the metrics log: exact
 * round trips, the reader's errors on damaged files, atomic replacement
 * (nothing left behind, the old file intact after a failed write), the
 * latest marker and keep-last-K. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "core/error.h"
#include "core/json.h"
#include "io/checkpoint.h"
#include "io/metrics.h"
#include "io/rollout_buffer.h"

/* ------------------------------------------------------------ helpers */

static char g_dir[256];

static int setup_dir(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/tau2_test_io_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    return 0;
}

static int teardown_dir(void **state) {
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
    return 0;
}

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* Files in the test directory whose name contains sub. */
static int count_files(const char *sub) {
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strstr(e->d_name, sub)) n++;
    closedir(d);
    return n;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void assert_err_has(const char *err, const char *a, const char *b) {
    if (!strstr(err, a) || (b && !strstr(err, b))) fail_msg("error '%s' should contain '%s' and '%s'", err, a, b ? b : "");
}

/* ------------------------------------------------------------ rollout buffer */

/* Three episodes (one without tokens), non-ASCII JSON, every field set. */
static RolloutBuffer *make_buffer(void) {
    RolloutBuffer *rb = rollout_buffer_new(42, 41, "xxh64:0123456789abcdef");
    for (int e = 0; e < 3; e++) {
        int n = e == 1 ? 0 : 50 + 37 * e;
        int32_t *tok = xmalloc((size_t)(n + 1) * sizeof *tok);
        uint8_t *mask = xmalloc((size_t)(n + 1));
        float *lp = xmalloc((size_t)(n + 1) * sizeof *lp);
        for (int t = 0; t < n; t++) {
            tok[t] = (int32_t)((t * 7919 + e * 104729) % 151643);
            mask[t] = (uint8_t)(t > 10 && (t / 7) % 2 == 0);
            lp[t] = mask[t] ? -(float)(t % 13) / 7.0f - 1e-7f * (float)t : 0.0f;
        }
        char ref[128], info[256];
        snprintf(ref, sizeof ref, "{\"domain\": \"airline\", \"task_split\": \"train\", \"task_id\": \"%d\"}", e);
        snprintf(info, sizeof info, "{\"reward\": %d.0, \"note\": \"caf\xc3\xa9 \xe2\x82\xac %d\"}", e % 2, e);
        RolloutEpisode ep = {n,          tok, mask, lp, (double)(e % 2), 0.1 * e + 1e-17, e % 2 + 0.25 * 0.1 * e,
                             e / 2,      3 + e,
                             e == 2 ? "max_steps" : "user_stop", ref, info,
                             /* a kept conversation on odd episodes only: the optional /messages dataset */
                             e % 2 ? "[{\"role\": \"assistant\", \"content\": \"caf\xc3\xa9\"}]" : NULL};
        rollout_buffer_add(rb, &ep);
        free(tok);
        free(mask);
        free(lp);
    }
    return rb;
}

static void assert_buffers_equal(const RolloutBuffer *a, const RolloutBuffer *b) {
    assert_int_equal(a->step, b->step);
    assert_int_equal(a->policy_version, b->policy_version);
    assert_string_equal(a->config_hash, b->config_hash);
    assert_int_equal(a->n_episodes, b->n_episodes);
    assert_int_equal(a->n_tokens, b->n_tokens);
    for (int i = 0; i < a->n_episodes; i++) {
        RolloutEpisode x = rollout_buffer_episode(a, i), y = rollout_buffer_episode(b, i);
        assert_int_equal(x.n_tokens, y.n_tokens);
        assert_memory_equal(x.tokens, y.tokens, (size_t)x.n_tokens * 4);
        assert_memory_equal(x.loss_mask, y.loss_mask, (size_t)x.n_tokens);
        assert_memory_equal(x.logprobs, y.logprobs, (size_t)x.n_tokens * 4);
        assert_memory_equal(&x.reward_raw, &y.reward_raw, 8);
        assert_memory_equal(&x.reward_partial, &y.reward_partial, 8);
        assert_memory_equal(&x.reward_shaped, &y.reward_shaped, 8);
        assert_int_equal(x.group_id, y.group_id);
        assert_int_equal(x.turns, y.turns);
        assert_string_equal(x.termination, y.termination);
        assert_string_equal(x.task_ref, y.task_ref);
        assert_string_equal(x.reward_info, y.reward_info);
        assert_string_equal(x.messages, y.messages);
    }
}

static void test_rollout_round_trip(void **state) {
    (void)state;
    char path[512], err[512];
    path_in(path, sizeof path, "step_000042.h5");
    RolloutBuffer *rb = make_buffer();
    assert_int_equal(rollout_buffer_write(rb, path, err, sizeof err), 0);
    assert_int_equal(count_files(".tmp."), 0);
    RolloutBuffer *back = rollout_buffer_read(path, err, sizeof err);
    if (!back) fail_msg("%s", err);
    assert_buffers_equal(rb, back);
    rollout_buffer_free(back);
    rollout_buffer_free(rb);

    /* an empty step */
    RolloutBuffer *empty = rollout_buffer_new(0, 0, "");
    path_in(path, sizeof path, "empty.h5");
    assert_int_equal(rollout_buffer_write(empty, path, err, sizeof err), 0);
    back = rollout_buffer_read(path, err, sizeof err);
    if (!back) fail_msg("%s", err);
    assert_buffers_equal(empty, back);
    rollout_buffer_free(back);
    rollout_buffer_free(empty);
}

/* Write a good buffer, then damage it with the raw HDF5 API. */
typedef void (*Damage)(hid_t f);

static void replace_dataset(hid_t f, const char *name, hid_t type, hsize_t n, const void *data) {
    H5Ldelete(f, name, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(d);
    H5Sclose(sp);
}

static void dmg_missing_turns(hid_t f) { H5Ldelete(f, "turns", H5P_DEFAULT); }
static void dmg_tokens_f64(hid_t f) {
    double z[174] = {0};
    replace_dataset(f, "tokens", H5T_NATIVE_DOUBLE, 174, z);
}
static void dmg_reward_len(hid_t f) {
    double z[4] = {0};
    replace_dataset(f, "reward_raw", H5T_NATIVE_DOUBLE, 4, z);
}
static void dmg_offsets_order(hid_t f) {
    int64_t o[4] = {0, 100, 50, 174};
    replace_dataset(f, "offsets", H5T_NATIVE_INT64, 4, o);
}
static void dmg_offsets_end(hid_t f) {
    int64_t o[4] = {0, 50, 50, 173};
    replace_dataset(f, "offsets", H5T_NATIVE_INT64, 4, o);
}
static void dmg_mask_value(hid_t f) {
    uint8_t m[174] = {0};
    m[7] = 2;
    replace_dataset(f, "loss_mask", H5T_NATIVE_UINT8, 174, m);
}
static void dmg_no_step(hid_t f) { H5Adelete(f, "step"); }
static void dmg_version(hid_t f) {
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int64_t v = 99;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
}
static void dmg_termination_int(hid_t f) {
    int32_t z[3] = {0};
    replace_dataset(f, "termination", H5T_NATIVE_INT32, 3, z);
}

static void test_rollout_damaged(void **state) {
    (void)state;
    struct {
        Damage damage;
        const char *want1, *want2;
    } cases[] = {
        {dmg_missing_turns, "missing dataset 'turns'", NULL},
        {dmg_tokens_f64, "dataset 'tokens'", "expected int32, found float64"},
        {dmg_reward_len, "dataset 'reward_raw'", "expected 3 elements, found 4"},
        {dmg_offsets_order, "dataset 'offsets'", "not monotonic at episode 1"},
        {dmg_offsets_end, "dataset 'tokens'", "offsets end at 173"},
        {dmg_mask_value, "dataset 'loss_mask'", "value 2 at token 7"},
        {dmg_no_step, "missing attribute 'step'", NULL},
        {dmg_version, "format_version 99", NULL},
        {dmg_termination_int, "dataset 'termination'", "expected variable-length string, found int32"},
    };
    RolloutBuffer *rb = make_buffer();
    assert_int_equal(rb->n_tokens, 174);
    char path[512], err[512];
    path_in(path, sizeof path, "damaged.h5");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(rollout_buffer_write(rb, path, err, sizeof err), 0);
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        assert_true(f >= 0);
        cases[i].damage(f);
        H5Fclose(f);
        err[0] = '\0';
        assert_null(rollout_buffer_read(path, err, sizeof err));
        assert_err_has(err, path, NULL);
        assert_err_has(err, cases[i].want1, cases[i].want2);
    }
    rollout_buffer_free(rb);

    /* not HDF5, and no file at all */
    path_in(path, sizeof path, "not_h5.h5");
    FILE *fp = fopen(path, "w");
    fputs("hello\n", fp);
    fclose(fp);
    assert_null(rollout_buffer_read(path, err, sizeof err));
    assert_err_has(err, path, "not an HDF5 file");
    path_in(path, sizeof path, "nope.h5");
    assert_null(rollout_buffer_read(path, err, sizeof err));
    assert_err_has(err, path, "cannot open");
}

/* ------------------------------------------------------------ checkpoint */

enum { NT = 3 };
static const char *const tnames[NT] = {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                                       "lm_head.weight"};
static const int64_t tshapes[NT][2] = {{97, 32}, {32, 0}, {97, 32}};
static const int tndims[NT] = {2, 1, 2};

static int64_t numel_of(int i) {
    return tndims[i] == 2 ? tshapes[i][0] * tshapes[i][1] : tshapes[i][0];
}

/* Tensors with values that depend on (kind, tensor, element, salt). */
static void make_tensors(CkptTensor *t, int kind, float salt) {
    for (int i = 0; i < NT; i++) {
        t[i].name = tnames[i];
        t[i].ndim = tndims[i];
        t[i].shape[0] = tshapes[i][0];
        t[i].shape[1] = tshapes[i][1];
        int64_t n = numel_of(i);
        t[i].data = xmalloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++) t[i].data[j] = sinf((float)(j + 1000 * i + 7 * kind)) * salt + 1e-30f * (float)j;
    }
}

static void empty_tensors(CkptTensor *t) {
    for (int i = 0; i < NT; i++) {
        t[i].name = tnames[i];
        t[i].ndim = tndims[i];
        t[i].shape[0] = tshapes[i][0];
        t[i].shape[1] = tshapes[i][1];
        t[i].data = xcalloc((size_t)numel_of(i), sizeof(float));
    }
}

static void free_tensors(CkptTensor *t) {
    for (int i = 0; i < NT; i++) free(t[i].data);
}

static void assert_tensors_equal(const CkptTensor *a, const CkptTensor *b) {
    for (int i = 0; i < NT; i++) assert_memory_equal(a[i].data, b[i].data, (size_t)numel_of(i) * sizeof(float));
}

static uint64_t g_rng[3] = {0x123456789abcdef0ULL, 0xffffffffffffffffULL, 7};
static int64_t g_consumed[5] = {4, 17, 0, 99, 3};

static CkptState make_state(int64_t step) {
    CkptState st = {step, step * 2, 1000 + step, g_rng, 3, g_consumed, 5,
                    (char *)"{\"job\": \"grpo\", \"note\": \"\xc3\xa9t\xc3\xa9\"}"};
    return st;
}

static void test_ckpt_round_trip(void **state) {
    (void)state;
    char err[512], path[512], latest[512];
    CkptTensor w[NT], m[NT], v[NT];
    make_tensors(w, 0, 1.0f);
    make_tensors(m, 1, 0.01f);
    make_tensors(v, 2, 1e-6f);
    CkptState st = make_state(10);
    if (ckpt_save(g_dir, &st, w, m, v, NT, 3, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(count_files(".tmp."), 0);
    assert_int_equal(ckpt_latest(g_dir, latest, sizeof latest, err, sizeof err), 0);
    ckpt_path(g_dir, 10, path, sizeof path);
    assert_string_equal(latest, path);
    assert_string_equal(strrchr(path, '/'), "/step_000010.h5");

    CkptTensor w2[NT], m2[NT], v2[NT];
    empty_tensors(w2);
    empty_tensors(m2);
    empty_tensors(v2);
    CkptState got;
    if (ckpt_load(latest, &got, w2, m2, v2, NT, err, sizeof err) != 0) fail_msg("%s", err);
    assert_tensors_equal(w, w2);
    assert_tensors_equal(m, m2);
    assert_tensors_equal(v, v2);
    assert_int_equal(got.step, 10);
    assert_int_equal(got.adam_step, 20);
    assert_int_equal(got.data_cursor, 1010);
    assert_int_equal(got.n_rng, 3);
    assert_memory_equal(got.rng, g_rng, sizeof g_rng);
    assert_int_equal(got.n_consumed, 5);
    assert_memory_equal(got.consumed_prompts, g_consumed, sizeof g_consumed);
    assert_string_equal(got.config_json, st.config_json);
    ckpt_state_free(&got);

    /* weights only (moments not wanted) reads the same file */
    assert_int_equal(ckpt_load(latest, &got, w2, NULL, NULL, NT, err, sizeof err), 0);
    ckpt_state_free(&got);
    free_tensors(w2);
    free_tensors(m2);
    free_tensors(v2);
    free_tensors(w);
    free_tensors(m);
    free_tensors(v);
}

static void test_ckpt_validation(void **state) {
    (void)state;
    char err[512], path[512];
    CkptTensor w[NT], m[NT], v[NT];
    make_tensors(w, 0, 1.0f);
    make_tensors(m, 1, 1.0f);
    make_tensors(v, 2, 1.0f);
    CkptState st = make_state(3);
    assert_int_equal(ckpt_save(g_dir, &st, w, NULL, NULL, NT, 0, err, sizeof err), 0); /* no moments */
    ckpt_path(g_dir, 3, path, sizeof path);
    CkptState got;

    /* a moment group that is not there */
    assert_int_equal(ckpt_load(path, &got, w, m, v, NT, err, sizeof err), -1);
    assert_err_has(err, path, "missing group 'optim/m'");
    /* wrong shape */
    w[0].shape[0] = 96;
    assert_int_equal(ckpt_load(path, &got, w, NULL, NULL, NT, err, sizeof err), -1);
    assert_err_has(err, "dataset 'model/model.embed_tokens.weight'", "expected shape (96, 32), found (97, 32)");
    w[0].shape[0] = 97;
    /* wrong rank */
    w[1].ndim = 2;
    w[1].shape[1] = 1;
    assert_int_equal(ckpt_load(path, &got, w, NULL, NULL, NT, err, sizeof err), -1);
    assert_err_has(err, "model.layers.0.input_layernorm.weight", "expected 2 dimensions, found 1");
    w[1].ndim = 1;
    /* a tensor the file lacks */
    const char *saved = w[2].name;
    w[2].name = "model.norm.weight";
    assert_int_equal(ckpt_load(path, &got, w, NULL, NULL, NT, err, sizeof err), -1);
    assert_err_has(err, path, "missing dataset 'model/model.norm.weight'");
    w[2].name = saved;
    /* a tensor the caller does not expect */
    assert_int_equal(ckpt_load(path, &got, w, NULL, NULL, NT - 1, err, sizeof err), -1);
    assert_err_has(err, "unexpected dataset 'model/lm_head.weight'", NULL);
    /* wrong dtype and a damaged state */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "model/lm_head.weight", H5P_DEFAULT);
    hsize_t dims[2] = {97, 32};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "model/lm_head.weight", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    assert_int_equal(ckpt_load(path, &got, w, NULL, NULL, NT, err, sizeof err), -1);
    assert_err_has(err, "dataset 'model/lm_head.weight'", "expected float32, found float64");
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "state/rng", H5P_DEFAULT);
    H5Fclose(f);
    assert_int_equal(ckpt_load(path, &got, w, NULL, NULL, NT, err, sizeof err), -1);
    assert_err_has(err, path, "missing dataset 'state/rng'");
    /* bad names are refused before anything is written */
    w[0].name = "model/embed";
    assert_int_equal(ckpt_save(g_dir, &st, w, NULL, NULL, NT, 0, err, sizeof err), -1);
    assert_err_has(err, "invalid name 'model/embed'", NULL);
    w[0].name = tnames[0];
    assert_int_equal(ckpt_save(g_dir, &st, w, m, NULL, NT, 0, err, sizeof err), -1);
    free_tensors(w);
    free_tensors(m);
    free_tensors(v);
}

static void test_ckpt_keep_last_and_latest(void **state) {
    (void)state;
    char err[512], path[512], latest[512];
    /* no marker yet */
    assert_int_equal(ckpt_latest(g_dir, latest, sizeof latest, err, sizeof err), -1);
    assert_err_has(err, "latest", "cannot open");
    /* a later step from an abandoned run is left alone */
    path_in(path, sizeof path, "step_000099.h5");
    FILE *fp = fopen(path, "w");
    fclose(fp);
    CkptTensor w[NT];
    make_tensors(w, 0, 1.0f);
    for (int s = 1; s <= 5; s++) {
        CkptState st = make_state(s);
        if (ckpt_save(g_dir, &st, w, NULL, NULL, NT, 2, err, sizeof err) != 0) fail_msg("%s", err);
        assert_int_equal(ckpt_latest(g_dir, latest, sizeof latest, err, sizeof err), 0);
        ckpt_path(g_dir, s, path, sizeof path);
        assert_string_equal(latest, path);
    }
    assert_int_equal(count_files("step_"), 3);
    for (int s = 1; s <= 5; s++) {
        ckpt_path(g_dir, s, path, sizeof path);
        assert_int_equal(file_exists(path), s >= 4);
    }
    path_in(path, sizeof path, "step_000099.h5");
    assert_true(file_exists(path));
    /* the marker's text */
    path_in(path, sizeof path, "latest");
    size_t len;
    char *text = file_read_all(path, &len, err, sizeof err);
    assert_string_equal(text, "step_000005.h5\n");
    free(text);
    /* a marker naming a missing file, and garbage */
    assert_int_equal(file_write_atomic(path, "step_000003.h5\n", 15, err, sizeof err), 0);
    assert_int_equal(ckpt_latest(g_dir, latest, sizeof latest, err, sizeof err), -1);
    assert_err_has(err, "step_000003.h5", "cannot be read");
    assert_int_equal(file_write_atomic(path, "../etc/passwd", 13, err, sizeof err), 0);
    assert_int_equal(ckpt_latest(g_dir, latest, sizeof latest, err, sizeof err), -1);
    assert_err_has(err, "expected a checkpoint file name", NULL);
    free_tensors(w);
}

/* A write that fails half-way (the file size limit stands in for a full
 * disk) leaves no temp file, the old checkpoint intact and the marker on it. */
static void test_failed_write_keeps_old(void **state) {
    (void)state;
    char err[512], path[512], latest[512];
    CkptTensor w[NT], w2[NT], big[NT];
    make_tensors(w, 0, 1.0f);
    make_tensors(big, 5, 3.0f);
    CkptState st = make_state(7);
    assert_int_equal(ckpt_save(g_dir, &st, w, NULL, NULL, NT, 1, err, sizeof err), 0);
    ckpt_path(g_dir, 7, path, sizeof path);
    struct stat before;
    assert_int_equal(stat(path, &before), 0);

    struct rlimit old_lim, lim;
    getrlimit(RLIMIT_FSIZE, &old_lim);
    lim = old_lim;
    lim.rlim_cur = 16 * 1024; /* smaller than one checkpoint (~25 KB of tensors) */
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    CkptState st8 = make_state(8);
    int rc = ckpt_save(g_dir, &st8, big, big, big, NT, 1, err, sizeof err);
    /* and the same for a rollout buffer replacing an older one */
    setrlimit(RLIMIT_FSIZE, &old_lim);
    char rpath[512];
    path_in(rpath, sizeof rpath, "rollout.h5");
    RolloutBuffer *small = rollout_buffer_new(1, 1, "a");
    assert_int_equal(rollout_buffer_write(small, rpath, err, sizeof err), 0);
    RolloutBuffer *rb = rollout_buffer_new(2, 2, "b");
    int32_t *tok = xcalloc(200000, sizeof *tok);
    uint8_t *mask = xcalloc(200000, 1);
    float *lp = xcalloc(200000, sizeof *lp);
    for (int i = 0; i < 200000; i++) lp[i] = sinf((float)i); /* does not compress below the limit */
    RolloutEpisode ep = {200000, tok, mask, lp, 1, 0, 1, 0, 1, "user_stop", "{}", "{}", NULL};
    rollout_buffer_add(rb, &ep);
    setrlimit(RLIMIT_FSIZE, &lim);
    char err2[512];
    int rc2 = rollout_buffer_write(rb, rpath, err2, sizeof err2);
    setrlimit(RLIMIT_FSIZE, &old_lim);
    signal(SIGXFSZ, old_sig);
    free(tok);
    free(mask);
    free(lp);

    assert_int_equal(rc, -1);
    assert_int_equal(rc2, -1);
    print_message("failed writes: '%s'; '%s'\n", err, err2);
    assert_int_equal(count_files(".tmp."), 0);
    char p8[512];
    ckpt_path(g_dir, 8, p8, sizeof p8);
    assert_false(file_exists(p8));
    assert_int_equal(ckpt_latest(g_dir, latest, sizeof latest, err, sizeof err), 0);
    assert_string_equal(latest, path);
    empty_tensors(w2);
    CkptState got;
    if (ckpt_load(path, &got, w2, NULL, NULL, NT, err, sizeof err) != 0) fail_msg("%s", err);
    assert_tensors_equal(w, w2);
    assert_int_equal(got.step, 7);
    ckpt_state_free(&got);
    RolloutBuffer *back = rollout_buffer_read(rpath, err, sizeof err);
    if (!back) fail_msg("%s", err);
    assert_buffers_equal(small, back);
    rollout_buffer_free(back);
    rollout_buffer_free(small);
    rollout_buffer_free(rb);
    free_tensors(w);
    free_tensors(w2);
    free_tensors(big);
}

/* ------------------------------------------------------------ metrics */

static void test_metrics_jsonl(void **state) {
    (void)state;
    char path[512], err[512];
    path_in(path, sizeof path, "metrics.jsonl");
    MetricsLog *log = metrics_open(path, 1, err, sizeof err);
    assert_non_null(log);
    for (int i = 0; i < 3; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "step", json_int(i));
        cJSON_AddItemToObject(o, "loss", json_float(0.5 / (i + 1)));
        cJSON_AddItemToObject(o, "name", cJSON_CreateString("caf\xc3\xa9"));
        assert_int_equal(metrics_write(log, o, err, sizeof err), 0);
        cJSON_Delete(o);
    }
    cJSON *arr = cJSON_CreateArray();
    assert_int_equal(metrics_write(log, arr, err, sizeof err), -1);
    cJSON_Delete(arr);
    metrics_close(log);

    /* a torn last line (a kill inside a write) is cut off on the next open */
    FILE *fp = fopen(path, "a");
    fputs("{\"step\": 3, \"lo", fp);
    fclose(fp);
    log = metrics_open(path, 0, err, sizeof err);
    assert_non_null(log);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "step", json_int(4));
    assert_int_equal(metrics_write(log, o, err, sizeof err), 0);
    cJSON_Delete(o);
    metrics_close(log);

    size_t len;
    char *text = file_read_all(path, &len, err, sizeof err);
    assert_non_null(text);
    assert_string_equal(text, "{\"step\":0,\"loss\":0.5,\"name\":\"caf\xc3\xa9\"}\n"
                              "{\"step\":1,\"loss\":0.25,\"name\":\"caf\xc3\xa9\"}\n"
                              "{\"step\":2,\"loss\":0.16666666666666666,\"name\":\"caf\xc3\xa9\"}\n"
                              "{\"step\":4}\n");
    free(text);
    /* a file that is one partial line */
    fp = fopen(path, "w");
    fputs("{\"par", fp);
    fclose(fp);
    log = metrics_open(path, 0, err, sizeof err);
    metrics_close(log);
    text = file_read_all(path, &len, err, sizeof err);
    assert_int_equal(len, 0);
    free(text);
    assert_null(metrics_open("/nonexistent_dir/m.jsonl", 0, err, sizeof err));
    assert_err_has(err, "/nonexistent_dir/m.jsonl", "cannot open");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollout_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_rollout_damaged, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_ckpt_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_ckpt_validation, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_ckpt_keep_last_and_latest, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_old, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_metrics_jsonl, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
