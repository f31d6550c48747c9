/* test_qwen3.c — the CPU Qwen3 engine against an independent float64 PyTorch
 * reference (tests/fixtures/qwen3, made by tests/gen_qwen3_fixtures.py), and
 * its invariants: recomputation and thread count do not change a bit, chunking
 * and micro-batching give the same numbers, config and tensor errors name
 * what is wrong, export reloads exactly.
 *
 * Tolerances (max |c - ref| / max |ref| over each tensor, fp32 engine against
 * the float64 reference rounded to fp32; measured errors are ~1e-7 to 2e-6):
 *   logits, logprob, entropy, losses  1e-5
 *   every parameter gradient          1e-5
 *   grad norm                         1e-5
 *   weights after 3 AdamW steps: the update w3 - w0 to within 5e-6 absolute
 *   (lr 1e-3: 0.5% of one step's size; compared as updates because the
 *   weights are O(1) and the updates O(lr)).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <omp.h>

#include "core/error.h"
#include "core/json.h"
#include "model/layers_cpu.h"
#include "model/qwen3.h"
#include "qwen3_fixture.h"
#include "model/safetensors.h"

#define FIX_DIR TAU2_SOURCE_DIR "/tests/fixtures/qwen3"

static const char *k_fixtures[] = {"untied_gqa", "tied_mha", "tied_mqa", "long_tiles"};

/* ---- fixture loading ---- */

typedef struct {
    Qwen3 *model;
    Qwen3FixtureBatch b;
} Fixture;

static Fixture fixture_load(const char *name) {
    Fixture f;
    char dir[1024], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", FIX_DIR, name);
    f.model = qwen3_load_dir(dir, err, sizeof err);
    if (!f.model) fail_msg("load %s: %s", dir, err);
    f.b = qfix_batch_load(dir);
    return f;
}

static void fixture_free(Fixture *f) {
    qwen3_free(f->model);
    qfix_batch_free(&f->b);
}

static Qwen3Batch fixture_batch(const Fixture *f) {
    Qwen3Batch b = {f->b.T, f->b.n_seqs, f->b.tokens, f->b.targets, f->b.seq_start, NULL};
    return b;
}

static float *expected(const Fixture *f, const char *name, size_t numel) { return qfix_expected(&f->b, name, numel); }

static double rel_err(const char *what, const float *got, const float *want, size_t n, bool print) {
    return qfix_rel_err(print ? what : NULL, got, want, n);
}

/* The fixture's loss: SFT plus 0.1 * mean entropy over the mask. */
static float fixture_loss_grads(const Fixture *f, const float *logprob, const float *entropy, float *dlogprob,
                                float *dentropy, float *sft_out) {
    float sft = qwen3_sft_loss(logprob, f->b.mask, f->b.T, dlogprob);
    int n = 0;
    double ent = 0;
    for (int t = 0; t < f->b.T; t++) n += f->b.mask[t] != 0;
    for (int t = 0; t < f->b.T; t++) {
        dentropy[t] = f->b.mask[t] != 0 ? 0.1f / (float)n : 0.0f;
        if (f->b.mask[t] != 0) ent += entropy[t];
    }
    if (sft_out) *sft_out = sft;
    return (float)(sft + 0.1 * ent / n);
}

/* One forward + backward of the fixture batch (grads zeroed first). */
static void run_step(Fixture *f, float *logprob, float *entropy, float *sft, float *loss) {
    Qwen3Batch b = fixture_batch(f);
    float *dlp = xmalloc((size_t)f->b.T * sizeof(float));
    float *dent = xmalloc((size_t)f->b.T * sizeof(float));
    qwen3_forward(f->model, &b, logprob, entropy);
    float l = fixture_loss_grads(f, logprob, entropy, dlp, dent, sft);
    if (loss) *loss = l;
    qwen3_zero_grad(f->model);
    qwen3_backward(f->model, dlp, dent);
    free(dlp);
    free(dent);
}

static const Qwen3AdamW k_adamw = {0.9f, 0.98f, 1e-8f, 0.1f, 1.0f, true};

/* ---- against the reference ---- */

static void check_fixture(const char *name) {
    printf("  %s\n", name);
    Fixture f = fixture_load(name);
    Qwen3 *m = f.model;
    int T = f.b.T, V = m->config.vocab_size;
    float *lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
    float sft, loss;
    run_step(&f, lp, ent, &sft, &loss);

    float *logits = xmalloc((size_t)T * V * sizeof(float));
    qwen3_logits(m, 0, T, logits);
    float *w = expected(&f, "logits", (size_t)T * V);
    assert_true(rel_err("logits", logits, w, (size_t)T * V, true) < 1e-5);
    free(w);
    w = expected(&f, "logprob", (size_t)T);
    assert_true(rel_err("logprob", lp, w, (size_t)T, true) < 1e-5);
    free(w);
    w = expected(&f, "entropy", (size_t)T);
    assert_true(rel_err("entropy", ent, w, (size_t)T, true) < 1e-5);
    free(w);
    w = expected(&f, "loss_sft", 1);
    assert_true(rel_err("loss_sft", &sft, w, 1, true) < 1e-5);
    free(w);
    w = expected(&f, "loss", 1);
    assert_true(rel_err("loss", &loss, w, 1, true) < 1e-5);
    free(w);

    /* every parameter gradient */
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        char key[128];
        snprintf(key, sizeof key, "grad.%s", t->name);
        w = expected(&f, key, t->numel);
        double r = rel_err(t->name, m->grads_memory + t->offset, w, t->numel, false);
        if (!(r <= worst)) {
            worst = r;
            worst_name = t->name;
        }
        if (!(r < 1e-5)) rel_err(t->name, m->grads_memory + t->offset, w, t->numel, true);
        assert_true(r < 1e-5);
        free(w);
    }
    printf("    %-28s worst rel %.3e (%s)\n", "gradients", worst, worst_name);

    /* three AdamW steps, each a fresh forward/backward */
    float *w0 = xmalloc(m->num_parameters * sizeof(float));
    memcpy(w0, m->params_memory, m->num_parameters * sizeof(float));
    float norms[3];
    for (int s = 0; s < 3; s++) {
        if (s > 0) run_step(&f, lp, ent, NULL, NULL);
        norms[s] = qwen3_adamw_step(m, &k_adamw, 1e-3f);
    }
    w = expected(&f, "grad_norm", 3);
    assert_true(rel_err("grad_norm (3 steps)", norms, w, 3, true) < 1e-5);
    free(w);
    double worst_delta = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        char key[128];
        snprintf(key, sizeof key, "step3.%s", t->name);
        w = expected(&f, key, t->numel);
        for (size_t k = 0; k < t->numel; k++) {
            /* compare updates, not weights: w is O(1), the update O(lr) */
            double dc = (double)m->params_memory[t->offset + k] - w0[t->offset + k];
            double dr = (double)w[k] - w0[t->offset + k];
            double e = fabs(dc - dr);
            if (e > worst_delta) worst_delta = e;
        }
        free(w);
    }
    printf("    %-28s max abs err %.3e (lr 1e-3)\n", "AdamW update after 3 steps", worst_delta);
    assert_true(worst_delta < 5e-6);

    free(w0);
    free(logits);
    free(lp);
    free(ent);
    fixture_free(&f);
}

static void test_matches_reference(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_fixtures / sizeof *k_fixtures; i++) check_fixture(k_fixtures[i]);
}

/* ---- invariants ---- */

typedef struct {
    float *lp, *ent, *grads;
} Snapshot;

static Snapshot snapshot_step(Fixture *f) {
    Snapshot s;
    s.lp = xmalloc((size_t)f->b.T * sizeof(float));
    s.ent = xmalloc((size_t)f->b.T * sizeof(float));
    run_step(f, s.lp, s.ent, NULL, NULL);
    s.grads = xmalloc(f->model->num_parameters * sizeof(float));
    memcpy(s.grads, f->model->grads_memory, f->model->num_parameters * sizeof(float));
    return s;
}

static void snapshot_free(Snapshot *s) {
    free(s->lp);
    free(s->ent);
    free(s->grads);
}

static void assert_same_bits(const Snapshot *a, const Snapshot *b, int T, size_t np) {
    assert_memory_equal(a->lp, b->lp, (size_t)T * sizeof(float));
    assert_memory_equal(a->ent, b->ent, (size_t)T * sizeof(float));
    assert_memory_equal(a->grads, b->grads, np * sizeof(float));
}

static void test_recompute_bit_identical(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_fixtures / sizeof *k_fixtures; i++) {
        Fixture f = fixture_load(k_fixtures[i]);
        f.model->recompute = false;
        Snapshot a = snapshot_step(&f);
        f.model->recompute = true;
        Snapshot b = snapshot_step(&f);
        assert_same_bits(&a, &b, f.b.T, f.model->num_parameters);
        snapshot_free(&a);
        snapshot_free(&b);
        fixture_free(&f);
    }
}

static void test_threads_bit_identical(void **state) {
    (void)state;
    int saved = omp_get_max_threads();
    for (size_t i = 0; i < sizeof k_fixtures / sizeof *k_fixtures; i++) {
        Fixture f = fixture_load(k_fixtures[i]);
        omp_set_num_threads(1);
        Snapshot a = snapshot_step(&f);
        float n1 = qwen3_grad_norm(f.model);
        omp_set_num_threads(2);
        Snapshot b = snapshot_step(&f);
        float n2 = qwen3_grad_norm(f.model);
        omp_set_num_threads(3);
        Snapshot c = snapshot_step(&f);
        assert_same_bits(&a, &b, f.b.T, f.model->num_parameters);
        assert_same_bits(&a, &c, f.b.T, f.model->num_parameters);
        assert_memory_equal(&n1, &n2, sizeof n1);
        snapshot_free(&a);
        snapshot_free(&b);
        snapshot_free(&c);
        fixture_free(&f);
    }
    omp_set_num_threads(saved);
}

/* Output-head chunks of 5 tokens (several chunks, a short last one) give
 * the same values as one chunk. */
static void test_vocab_chunks(void **state) {
    (void)state;
    Fixture f = fixture_load("untied_gqa");
    Snapshot a = snapshot_step(&f);
    f.model->vocab_chunk = 5;
    Snapshot b = snapshot_step(&f);
    assert_true(rel_err("logprob chunk 5", b.lp, a.lp, (size_t)f.b.T, true) < 1e-6);
    assert_true(rel_err("entropy chunk 5", b.ent, a.ent, (size_t)f.b.T, true) < 1e-6);
    assert_true(rel_err("grads chunk 5", b.grads, a.grads, f.model->num_parameters, true) < 1e-5);
    snapshot_free(&a);
    snapshot_free(&b);
    fixture_free(&f);
}

/* The backward reuses the forward's logits of the head's last chunk (here
 * the only one) and turns them into dlogits; a second backward after the
 * same forward must compute them again, so it adds the same gradient once
 * more. */
static void test_backward_twice(void **state) {
    (void)state;
    Fixture f = fixture_load("untied_gqa");
    Qwen3 *m = f.model;
    int T = f.b.T;
    Qwen3Batch b = fixture_batch(&f);
    float *lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
    float *dlp = xmalloc((size_t)T * sizeof(float)), *dent = xmalloc((size_t)T * sizeof(float));
    float *once = xmalloc(m->num_parameters * sizeof(float)), *twice = xmalloc(m->num_parameters * sizeof(float));
    qwen3_forward(m, &b, lp, ent);
    fixture_loss_grads(&f, lp, ent, dlp, dent, NULL);
    qwen3_zero_grad(m);
    qwen3_backward(m, dlp, dent);
    for (size_t i = 0; i < m->num_parameters; i++) once[i] = 2.0f * m->grads_memory[i];
    qwen3_backward(m, dlp, dent);
    memcpy(twice, m->grads_memory, m->num_parameters * sizeof(float));
    assert_true(rel_err("grads after two backward passes", twice, once, m->num_parameters, true) < 1e-6);
    free(lp), free(ent), free(dlp), free(dent), free(once), free(twice);
    fixture_free(&f);
}

/* Two micro-batches (sequence 0, then the rest) accumulate to the gradient
 * of the whole batch when each uses the whole batch's normalization. */
static void test_grad_accumulation(void **state) {
    (void)state;
    Fixture f = fixture_load("untied_gqa");
    Snapshot full = snapshot_step(&f);
    Qwen3 *m = f.model;
    int n = 0;
    for (int t = 0; t < f.b.T; t++) n += f.b.mask[t] != 0;
    float *dlp = xmalloc((size_t)f.b.T * sizeof(float)), *dent = xmalloc((size_t)f.b.T * sizeof(float));
    float *lp = xmalloc((size_t)f.b.T * sizeof(float)), *ent = xmalloc((size_t)f.b.T * sizeof(float));
    for (int t = 0; t < f.b.T; t++) {
        dlp[t] = f.b.mask[t] != 0 ? -1.0f / n : 0.0f;
        dent[t] = f.b.mask[t] != 0 ? 0.1f / n : 0.0f;
    }
    qwen3_zero_grad(m);
    int cut = f.b.seq_start[1];
    int32_t s1[2] = {0, cut};
    Qwen3Batch b1 = {cut, 1, f.b.tokens, f.b.targets, s1, NULL};
    qwen3_forward(m, &b1, lp, ent);
    qwen3_backward(m, dlp, dent);
    int32_t s2[8];
    for (int s = 1; s <= f.b.n_seqs; s++) s2[s - 1] = f.b.seq_start[s] - cut;
    Qwen3Batch b2 = {f.b.T - cut, f.b.n_seqs - 1, f.b.tokens + cut, f.b.targets + cut, s2, NULL};
    qwen3_forward(m, &b2, lp + cut, ent + cut);
    qwen3_backward(m, dlp + cut, dent + cut);
    assert_true(rel_err("micro-batch logprob", lp, full.lp, (size_t)f.b.T, true) < 1e-6);
    assert_true(rel_err("micro-batch grads", m->grads_memory, full.grads, m->num_parameters, true) < 1e-5);
    free(dlp);
    free(dent);
    free(lp);
    free(ent);
    snapshot_free(&full);
    fixture_free(&f);
}

/* A head mask equal to the loss mask: the masked rows' logprob and
 * entropy are those without it, the other rows report 0, and the gradients
 * equal those of the full head (whose unmasked rows carry no loss). Equal
 * to rounding, not bit for bit: the head's product then has fewer rows,
 * and OpenBLAS's AVX2 kernels (Haswell, Zen) sum a row's dot products in
 * another order for another row count. */
static void test_head_mask(void **state) {
    (void)state;
    Fixture f = fixture_load("tied_mha");
    Snapshot full = snapshot_step(&f);
    Qwen3 *m = f.model;
    int T = f.b.T;
    uint8_t *hm = xmalloc((size_t)T);
    int skipped = 0;
    for (int t = 0; t < T; t++) {
        hm[t] = f.b.mask[t] != 0;
        skipped += !hm[t];
    }
    assert_true(skipped > 0);
    float *dlp = xmalloc((size_t)T * sizeof(float)), *dent = xmalloc((size_t)T * sizeof(float));
    float *lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
    Qwen3Batch b = fixture_batch(&f);
    b.head_mask = hm;
    qwen3_forward(m, &b, lp, ent);
    for (int t = 0; t < T; t++) {
        if (hm[t]) {
            assert_true(fabs((double)lp[t] - full.lp[t]) <= 1e-6 * (1.0 + fabs((double)full.lp[t])));
            assert_true(fabs((double)ent[t] - full.ent[t]) <= 1e-6 * (1.0 + fabs((double)full.ent[t])));
        } else {
            assert_true(lp[t] == 0.0f && ent[t] == 0.0f);
        }
    }
    fixture_loss_grads(&f, lp, ent, dlp, dent, NULL);
    qwen3_zero_grad(m);
    qwen3_backward(m, dlp, dent);
    assert_true(rel_err("head-mask grads", m->grads_memory, full.grads, m->num_parameters, true) < 1e-5);
    free(hm);
    free(dlp);
    free(dent);
    free(lp);
    free(ent);
    snapshot_free(&full);
    fixture_free(&f);
}

/* qwen3_forward_head_grad: the head's backward inside the forward, from a
 * per-row gradient function, gives the two-call step's values. Here the
 * function hands out the gradients the two-call step computed (the
 * forward's values are the same, which it checks bit for bit). One chunk:
 * the same bits; chunks of 5 rows with a head mask and an entropy term: the
 * chunks add into the head's weight gradient in another order. */
typedef struct {
    const float *lp, *ent, *dlp, *dent; /* (T) of the two-call step */
    int calls, rows_seen;
} RowGrads;

static void row_grads(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy,
                      float *dlogprob, float *dentropy) {
    RowGrads *g = ctx;
    for (int i = 0; i < n; i++) {
        int t = rows[i];
        assert_memory_equal(&logprob[i], &g->lp[t], sizeof(float));
        assert_memory_equal(&entropy[i], &g->ent[t], sizeof(float));
        dlogprob[i] = g->dlp[t];
        if (dentropy) dentropy[i] = g->dent[t];
    }
    g->calls++;
    g->rows_seen += n;
}

static void check_head_grad(const char *fixture, int vocab_chunk, bool mask_head, bool exact) {
    Fixture f = fixture_load(fixture);
    Qwen3 *m = f.model;
    int T = f.b.T;
    if (vocab_chunk > 0) m->vocab_chunk = vocab_chunk;
    uint8_t *hm = xmalloc((size_t)T);
    int n_head = 0;
    for (int t = 0; t < T; t++) {
        hm[t] = !mask_head || f.b.mask[t] != 0;
        n_head += hm[t];
    }
    Qwen3Batch b = fixture_batch(&f);
    if (mask_head) b.head_mask = hm;
    float *lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
    float *dlp = xmalloc((size_t)T * sizeof(float)), *dent = xmalloc((size_t)T * sizeof(float));
    float *lp2 = xmalloc((size_t)T * sizeof(float)), *ent2 = xmalloc((size_t)T * sizeof(float));
    float *two_call = xmalloc(m->num_parameters * sizeof(float));
    qwen3_zero_grad(m);
    qwen3_forward(m, &b, lp, ent);
    fixture_loss_grads(&f, lp, ent, dlp, dent, NULL);
    qwen3_backward(m, dlp, dent);
    memcpy(two_call, m->grads_memory, m->num_parameters * sizeof(float));

    RowGrads g = {lp, ent, dlp, dent, 0, 0};
    qwen3_zero_grad(m);
    qwen3_forward_head_grad(m, &b, lp2, ent2, row_grads, &g, true);
    qwen3_backward(m, NULL, NULL);
    int chunk = m->vocab_chunk < T ? m->vocab_chunk : T;
    assert_int_equal(g.rows_seen, n_head);
    assert_int_equal(g.calls, (n_head + chunk - 1) / chunk);
    assert_memory_equal(lp2, lp, (size_t)T * sizeof(float));
    assert_memory_equal(ent2, ent, (size_t)T * sizeof(float));
    if (exact) {
        assert_memory_equal(m->grads_memory, two_call, m->num_parameters * sizeof(float));
    } else {
        assert_true(rel_err("fused head grads", m->grads_memory, two_call, m->num_parameters, true) < 1e-6);
    }
    free(hm), free(lp), free(ent), free(dlp), free(dent), free(lp2), free(ent2), free(two_call);
    fixture_free(&f);
}

static void test_forward_head_grad(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_fixtures / sizeof *k_fixtures; i++) check_head_grad(k_fixtures[i], 0, false, true);
    check_head_grad("untied_gqa", 5, false, false);
    check_head_grad("tied_mha", 5, true, false);
    check_head_grad("tied_mha", 0, true, true);
}

/* ---- errors ---- */

static const char *k_good_config =
    "{\"model_type\": \"qwen3\", \"vocab_size\": 97, \"hidden_size\": 32, \"intermediate_size\": 48,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false,"
    " \"max_position_embeddings\": 128, \"torch_dtype\": \"bfloat16\", \"bos_token_id\": 1,"
    " \"eos_token_id\": 2, \"rope_scaling\": null, \"use_sliding_window\": false}";

/* The good config with one key replaced ("key": value) or deleted (value NULL). */
static void expect_config_error(const char *key, const char *value, const char *want) {
    char err[512];
    cJSON *j = json_parse(k_good_config, strlen(k_good_config), "t", err, sizeof err);
    assert_non_null(j);
    if (value) {
        cJSON *v = json_parse(value, strlen(value), "v", err, sizeof err);
        assert_non_null(v);
        json_set(j, key, v);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(j, key);
    }
    Qwen3Config c;
    strcpy(err, "unset");
    int rc = qwen3_config_from_json(j, "m/config.json", &c, err, sizeof err);
    cJSON_Delete(j);
    if (rc == 0) fail_msg("config with %s = %s was accepted", key, value ? value : "(missing)");
    if (!strstr(err, "m/config.json") || !strstr(err, want)) {
        fail_msg("error for %s = %s: \"%s\" lacks \"%s\"", key, value ? value : "(missing)", err, want);
    }
}

static void test_config_errors(void **state) {
    (void)state;
    char err[512];
    Qwen3Config c;
    cJSON *j = json_parse(k_good_config, strlen(k_good_config), "t", err, sizeof err);
    assert_int_equal(qwen3_config_from_json(j, "m/config.json", &c, err, sizeof err), 0);
    cJSON_Delete(j);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.num_kv_heads, 2);
    assert_int_equal(c.bos_token_id, 1);
    assert_string_equal(c.torch_dtype, "bfloat16");

    const char *keys[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
                          "rope_theta", "max_position_embeddings", "model_type"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        expect_config_error(keys[i], NULL, keys[i]);
        expect_config_error(keys[i], "\"12\"", keys[i]);
    }
    expect_config_error("hidden_size", "32.0", "hidden_size");
    expect_config_error("hidden_size", "0", "hidden_size");
    expect_config_error("rope_theta", "-1", "rope_theta");
    expect_config_error("model_type", "\"qwen3_moe\"", "model_type");
    expect_config_error("num_key_value_heads", "3", "num_key_value_heads");
    expect_config_error("head_dim", "15", "head_dim");
    expect_config_error("rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling");
    expect_config_error("use_sliding_window", "true", "use_sliding_window");
    expect_config_error("tie_word_embeddings", "1", "tie_word_embeddings");
    expect_config_error("attention_bias", "true", "attention_bias");
    expect_config_error("hidden_act", "\"gelu\"", "hidden_act");
    expect_config_error("eos_token_id", "\"2\"", "eos_token_id");

    /* a file that does not exist names the path */
    assert_int_equal(qwen3_config_load("/nonexistent/config.json", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/config.json"));
}

/* A temporary model directory. */
static void tmp_dir(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/test_qwen3_XXXXXX");
    if (!mkdtemp(buf)) fail_msg("mkdtemp failed");
}

static void rm_dir(const char *dir) {
    char p[1100];
    const char *files[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Write the model's tensors to dir, with one changed: skip (`drop`), a
 * different shape (`reshape`), or an extra tensor (`extra`). */
static void write_variant(const Qwen3 *m, const char *dir, const char *drop, const char *reshape, const char *extra) {
    char err[512], p[1100];
    cJSON *j = qwen3_config_to_json(&m->config);
    char *text = json_dumps(j, JSON_DUMP_INDENT);
    snprintf(p, sizeof p, "%s/config.json", dir);
    assert_int_equal(file_write_atomic(p, text, strlen(text), err, sizeof err), 0);
    free(text);
    cJSON_Delete(j);
    StWriter *w = st_writer_new(ST_F32);
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        if (reshape && strcmp(t->name, reshape) == 0 && t->ndim == 2) {
            shape[0] = t->shape[1];
            shape[1] = t->shape[0];
        }
        st_writer_add(w, t->name, shape, t->ndim, m->params_memory + t->offset);
    }
    if (extra) {
        int64_t s1[1] = {4};
        float z[4] = {0};
        st_writer_add(w, extra, s1, 1, z);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (st_writer_save(w, p, err, sizeof err) != 0) fail_msg("%s", err);
    st_writer_free(w);
}

static void expect_load_error(const char *dir, const char *want1, const char *want2) {
    char err[1024] = "unset";
    Qwen3 *m = qwen3_load_dir(dir, err, sizeof err);
    if (m) {
        qwen3_free(m);
        fail_msg("bad model directory was accepted (want error with \"%s\")", want1);
    }
    if (!strstr(err, want1) || (want2 && !strstr(err, want2))) {
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, want1, want2 ? want2 : "");
    }
    printf("    %s\n", err);
}

static void test_tensor_errors(void **state) {
    (void)state;
    Fixture f = fixture_load("untied_gqa");
    char dir[64];
    tmp_dir(dir, sizeof dir);

    write_variant(f.model, dir, "model.layers.1.mlp.up_proj.weight", NULL, NULL);
    expect_load_error(dir, "model.layers.1.mlp.up_proj.weight", "missing");

    write_variant(f.model, dir, NULL, "model.layers.0.self_attn.q_proj.weight", NULL);
    expect_load_error(dir, "model.layers.0.self_attn.q_proj.weight", "expected shape [64, 32], found [32, 64]");

    write_variant(f.model, dir, NULL, NULL, "model.layers.0.self_attn.q_proj.bias");
    expect_load_error(dir, "unexpected tensor model.layers.0.self_attn.q_proj.bias", NULL);

    write_variant(f.model, dir, NULL, NULL, "model.layers.2.input_layernorm.weight");
    expect_load_error(dir, "unexpected tensor model.layers.2.input_layernorm.weight", NULL);

    rm_dir(dir);
    fixture_free(&f);

    /* tied: lm_head.weight must be absent */
    f = fixture_load("tied_mha");
    tmp_dir(dir, sizeof dir);
    write_variant(f.model, dir, NULL, NULL, "lm_head.weight");
    expect_load_error(dir, "unexpected tensor lm_head.weight", "tie_word_embeddings");
    rm_dir(dir);
    fixture_free(&f);
}

static void test_export_round_trip(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_fixtures / sizeof *k_fixtures; i++) {
        Fixture f = fixture_load(k_fixtures[i]);
        char dir[64], err[1024];
        tmp_dir(dir, sizeof dir);
        assert_int_equal(qwen3_export_dir(f.model, dir, ST_F32, err, sizeof err), 0);
        Qwen3 *r = qwen3_load_dir(dir, err, sizeof err);
        if (!r) fail_msg("reload: %s", err);
        assert_int_equal(r->num_parameters, f.model->num_parameters);
        assert_memory_equal(r->params_memory, f.model->params_memory, r->num_parameters * sizeof(float));
        const Qwen3Config *a = &r->config, *b = &f.model->config;
        assert_int_equal(a->vocab_size, b->vocab_size);
        assert_int_equal(a->head_dim, b->head_dim);
        assert_int_equal(a->num_kv_heads, b->num_kv_heads);
        assert_int_equal(a->tie_word_embeddings, b->tie_word_embeddings);
        assert_true(a->rms_norm_eps == b->rms_norm_eps);
        assert_true(a->rope_theta == b->rope_theta);
        assert_int_equal(a->eos_token_id, b->eos_token_id);
        assert_string_equal(a->torch_dtype, "float32");
        qwen3_free(r);

        /* BF16: each weight rounded to nearest even */
        assert_int_equal(qwen3_export_dir(f.model, dir, ST_BF16, err, sizeof err), 0);
        r = qwen3_load_dir(dir, err, sizeof err);
        if (!r) fail_msg("reload bf16: %s", err);
        assert_string_equal(r->config.torch_dtype, "bfloat16");
        for (size_t k = 0; k < r->num_parameters; k++) {
            float want = st_bf16_to_f32(st_f32_to_bf16(f.model->params_memory[k]));
            if (r->params_memory[k] != want) fail_msg("bf16 element %zu: %g != %g", k, r->params_memory[k], want);
        }
        qwen3_free(r);
        rm_dir(dir);
        fixture_free(&f);
    }
}

/* The optimizer's array passes: sum_squares_array against exact integer sums
 * (every length around the 16 lanes, and a long one), and adamw_update_array
 * against the per-element formula written out here. */
static void test_optimizer_arrays(void **state) {
    (void)state;
    size_t big = 100003;
    float *x = xmalloc(big * sizeof(float));
    for (size_t i = 0; i < big; i++) x[i] = (float)((int)(i % 7) - 3);
    for (size_t n = 0; n <= 41; n++) {
        size_t len = n <= 40 ? n : big; /* 0..40, then the long one */
        long long want = 0;
        for (size_t i = 0; i < len; i++) want += (long long)(x[i] * x[i]);
        assert_true(sum_squares_array(x, len) == (double)want);
    }
    enum { N = 37 };
    float p[N], g[N], m[N], v[N], p2[N], m2[N], v2[N];
    for (int i = 0; i < N; i++) {
        p[i] = p2[i] = 0.1f * (float)(i - 18);
        g[i] = 0.01f * (float)((i * 7) % 13 - 6);
        m[i] = m2[i] = 0.001f * (float)(i % 5);
        v[i] = v2[i] = 0.0001f * (float)(i % 3);
    }
    float gscale = 0.5f, b1 = 0.9f, b2 = 0.98f, eps = 1e-8f, decay = 0.99999f, step = 1e-3f, bc2s = 0.3f;
    adamw_update_array(p, g, m, v, N, gscale, b1, b2, eps, decay, step, bc2s);
    for (int i = 0; i < N; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m2[i] + (1.0f - b1) * gi;
        float vi = b2 * v2[i] + (1.0f - b2) * gi * gi;
        float pi = p2[i] * decay - step * (mi / (sqrtf(vi) / bc2s + eps));
        assert_memory_equal(&m[i], &mi, sizeof mi);
        assert_memory_equal(&v[i], &vi, sizeof vi);
        assert_memory_equal(&p[i], &pi, sizeof pi);
    }
    free(x);
}

/* Values in [-1, 1) from a fixed LCG. */
static float *random_floats(size_t n, uint32_t seed) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* The grouped and fused layers give the bits of the layers they stand for,
 * run one by one: matmul_*_multi against one matmul_* per layer (odd shapes,
 * several tiles), qk_norm_rope_* against rmsnorm + rope on q and k, and
 * residual_rmsnorm_forward against residual_add + rmsnorm_forward; at 1 and
 * 3 threads. */
static void test_fused_layers_bit_identical(void **state) {
    (void)state;
    int saved_threads = omp_get_max_threads();
    enum { N = 301, IC = 200, NP = 3 };
    int OCs[NP] = {1100, 96, 40};
    for (int threads = 1; threads <= 3; threads += 2) {
        omp_set_num_threads(threads);
        /* linear layers on one input */
        float *inp = random_floats((size_t)N * IC, 1);
        float *w[NP], *out[NP], *want[NP], *dout[NP], *dw[NP], *dw_want[NP];
        for (int i = 0; i < NP; i++) {
            w[i] = random_floats((size_t)OCs[i] * IC, 10 + i);
            out[i] = random_floats((size_t)N * OCs[i], 20 + i);
            want[i] = random_floats((size_t)N * OCs[i], 30 + i);
            dout[i] = random_floats((size_t)N * OCs[i], 40 + i);
            dw[i] = random_floats((size_t)OCs[i] * IC, 50 + i);
            dw_want[i] = copy_floats(dw[i], (size_t)OCs[i] * IC);
            matmul_forward(want[i], inp, w[i], N, IC, OCs[i]);
        }
        matmul_forward_multi(NP, out, inp, (const float *const *)w, OCs, N, IC);
        for (int i = 0; i < NP; i++) assert_memory_equal(out[i], want[i], (size_t)N * OCs[i] * sizeof(float));
        for (int accumulate = 0; accumulate <= 1; accumulate++) {
            float *dinp = random_floats((size_t)N * IC, 60), *dinp_want = copy_floats(dinp, (size_t)N * IC);
            for (int i = 0; i < NP; i++) {
                matmul_backward(dinp_want, dw_want[i], dout[i], inp, w[i], N, IC, OCs[i], accumulate || i > 0);
            }
            matmul_backward_multi(NP, dinp, dw, (const float *const *)dout, inp, (const float *const *)w, OCs, N, IC,
                                  accumulate);
            assert_memory_equal(dinp, dinp_want, (size_t)N * IC * sizeof(float));
            for (int i = 0; i < NP; i++) assert_memory_equal(dw[i], dw_want[i], (size_t)OCs[i] * IC * sizeof(float));
            free(dinp), free(dinp_want);
        }
        for (int i = 0; i < NP; i++) free(w[i]), free(out[i]), free(want[i]), free(dout[i]), free(dw[i]), free(dw_want[i]);
        free(inp);

        /* q/k norm + RoPE, forward and backward */
        enum { T = 37, NH = 4, NKV = 2, D = 16 };
        size_t nq = (size_t)T * NH * D, nk = (size_t)T * NKV * D;
        float cosb[T * D / 2], sinb[T * D / 2];
        rope_tables(cosb, sinb, T, D, 10000.0);
        int32_t pos[T];
        for (int t = 0; t < T; t++) pos[t] = (t * 5) % T;
        float *q = random_floats(nq, 70), *k = random_floats(nk, 71), *qw = random_floats(D, 72),
              *kw = random_floats(D, 73);
        float *qr = xmalloc(nq * sizeof(float)), *kr = xmalloc(nk * sizeof(float));
        float *qr_want = xmalloc(nq * sizeof(float)), *kr_want = xmalloc(nk * sizeof(float));
        float q_rstd[T * NH], k_rstd[T * NKV], q_rstd_want[T * NH], k_rstd_want[T * NKV];
        qk_norm_rope_forward(qr, q_rstd, q, qw, NH, kr, k_rstd, k, kw, NKV, pos, cosb, sinb, T, D, 1e-6f);
        rmsnorm_forward(qr_want, q_rstd_want, q, qw, T * NH, D, 1e-6f);
        rmsnorm_forward(kr_want, k_rstd_want, k, kw, T * NKV, D, 1e-6f);
        rope_forward(qr_want, pos, cosb, sinb, T, NH, D);
        rope_forward(kr_want, pos, cosb, sinb, T, NKV, D);
        assert_memory_equal(qr, qr_want, nq * sizeof(float));
        assert_memory_equal(kr, kr_want, nk * sizeof(float));
        assert_memory_equal(q_rstd, q_rstd_want, sizeof q_rstd);
        assert_memory_equal(k_rstd, k_rstd_want, sizeof k_rstd);

        float *dqr = random_floats(nq, 80), *dkr = random_floats(nk, 81);
        float *dqr_want = copy_floats(dqr, nq), *dkr_want = copy_floats(dkr, nk);
        float *dq = xmalloc(nq * sizeof(float)), *dk = xmalloc(nk * sizeof(float));
        float *dq_want = xmalloc(nq * sizeof(float)), *dk_want = xmalloc(nk * sizeof(float));
        float *dqw = random_floats(D, 82), *dkw = random_floats(D, 83);
        float *dqw_want = copy_floats(dqw, D), *dkw_want = copy_floats(dkw, D);
        qk_norm_rope_backward(dq, dqw, dqr, q, qw, q_rstd, NH, dk, dkw, dkr, k, kw, k_rstd, NKV, pos, cosb, sinb, T,
                              D);
        rope_backward(dqr_want, pos, cosb, sinb, T, NH, D);
        rope_backward(dkr_want, pos, cosb, sinb, T, NKV, D);
        rmsnorm_backward(dq_want, dqw_want, dqr_want, q, qw, q_rstd, T * NH, D, false);
        rmsnorm_backward(dk_want, dkw_want, dkr_want, k, kw, k_rstd, T * NKV, D, false);
        assert_memory_equal(dqr, dqr_want, nq * sizeof(float));
        assert_memory_equal(dkr, dkr_want, nk * sizeof(float));
        assert_memory_equal(dq, dq_want, nq * sizeof(float));
        assert_memory_equal(dk, dk_want, nk * sizeof(float));
        assert_memory_equal(dqw, dqw_want, D * sizeof(float));
        assert_memory_equal(dkw, dkw_want, D * sizeof(float));
        free(q), free(k), free(qw), free(kw), free(qr), free(kr), free(qr_want), free(kr_want);
        free(dqr), free(dkr), free(dqr_want), free(dkr_want), free(dq), free(dk), free(dq_want), free(dk_want);
        free(dqw), free(dkw), free(dqw_want), free(dkw_want);

        /* residual add + RMSNorm */
        enum { R = 53, C = 72 };
        float *x = random_floats((size_t)R * C, 90), *y = random_floats((size_t)R * C, 91);
        float *nw = random_floats(C, 92), *x_want = copy_floats(x, (size_t)R * C);
        float *o = xmalloc((size_t)R * C * sizeof(float)), *o_want = xmalloc((size_t)R * C * sizeof(float));
        float rstd[R], rstd_want[R];
        residual_rmsnorm_forward(x, y, o, rstd, nw, R, C, 1e-6f);
        residual_add(x_want, y, (long)R * C);
        rmsnorm_forward(o_want, rstd_want, x_want, nw, R, C, 1e-6f);
        assert_memory_equal(x, x_want, (size_t)R * C * sizeof(float));
        assert_memory_equal(o, o_want, (size_t)R * C * sizeof(float));
        assert_memory_equal(rstd, rstd_want, sizeof rstd);
        free(x), free(y), free(nw), free(x_want), free(o), free(o_want);
    }
    omp_set_num_threads(saved_threads);
}

static void test_bad_batch(void **state) {
    (void)state;
    Fixture f = fixture_load("tied_mha");
    char err[256];
    Qwen3Batch b = fixture_batch(&f);
    assert_int_equal(qwen3_check_batch(f.model, &b, err, sizeof err), 0);
    int32_t saved = f.b.tokens[3];
    f.b.tokens[3] = f.model->config.vocab_size;
    assert_int_equal(qwen3_check_batch(f.model, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "position 3"));
    f.b.tokens[3] = saved;
    int32_t bad_starts[4] = {0, 9, 9, f.b.T};
    b.seq_start = bad_starts;
    assert_int_equal(qwen3_check_batch(f.model, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty"));

    /* next-token targets match the fixture's */
    int32_t *tg = xmalloc((size_t)f.b.T * sizeof(int32_t));
    qwen3_next_token_targets(f.b.tokens, f.b.seq_start, f.b.n_seqs, tg);
    assert_memory_equal(tg, f.b.targets, (size_t)f.b.T * sizeof(int32_t));
    free(tg);
    fixture_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_recompute_bit_identical),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_vocab_chunks),
        cmocka_unit_test(test_backward_twice),
        cmocka_unit_test(test_grad_accumulation),
        cmocka_unit_test(test_head_mask),
        cmocka_unit_test(test_forward_head_grad),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_tensor_errors),
        cmocka_unit_test(test_export_round_trip),
        cmocka_unit_test(test_bad_batch),
        cmocka_unit_test(test_optimizer_arrays),
        cmocka_unit_test(test_fused_layers_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
