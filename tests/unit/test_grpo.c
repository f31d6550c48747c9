/* test_grpo.c — the GRPO loss and its gradients, group advantages, the
 * dynamic-sampling filter, learning-rate schedules and pass@k / pass^k.
 * Reference values come from tests/gen_grpo_fixtures.py (slime's formulas in
 * float64 torch with autograd; Megatron's get_lr). */
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
#include "rl/grpo.h"
#include "rl/passk.h"
#include "rl/schedule.h"

#define FIX TAU2_SOURCE_DIR "/tests/fixtures/grpo"

static cJSON *load_json(const char *path) {
    char err[512];
    cJSON *v = json_load_file(path, err, sizeof err);
    if (!v) fail_msg("%s", err);
    return v;
}

static int arr_len(const cJSON *a) {
    assert_true(cJSON_IsArray(a));
    return cJSON_GetArraySize(a);
}

static float *get_floats(const cJSON *obj, const char *key, int *n) {
    const cJSON *a = json_get(obj, key);
    *n = arr_len(a);
    float *v = xmalloc((size_t)*n * sizeof *v);
    for (int i = 0; i < *n; i++) v[i] = (float)cJSON_GetArrayItem(a, i)->valuedouble;
    return v;
}

static double *get_doubles(const cJSON *obj, const char *key, int *n) {
    const cJSON *a = json_get(obj, key);
    *n = arr_len(a);
    double *v = xmalloc((size_t)*n * sizeof *v);
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valuedouble;
    return v;
}

static double get_num(const cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    if (!cJSON_IsNumber(v) && !cJSON_IsBool(v)) fail_msg("fixture lacks number %s", key);
    return cJSON_IsBool(v) ? (double)cJSON_IsTrue(v) : v->valuedouble;
}

/* Relative error against a scale (for values that may be ~0). */
static double rel_err(double got, double want, double scale) {
    return fabs(got - want) / fmax(fabs(want), scale);
}

#define REL_TOL 1e-6

/* ------------------------------------------------------------ loss */

static void test_loss_against_torch(void **state) {
    (void)state;
    cJSON *cases = load_json(FIX "/loss_cases.json");
    double worst_scalar = 0, worst_grad = 0;
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = json_get_str(c, "name");
        const cJSON *jc = json_get(c, "config");
        GrpoLossConfig cfg;
        grpo_loss_config_default(&cfg);
        cfg.eps_low = get_num(jc, "eps_low");
        cfg.eps_high = get_num(jc, "eps_high");
        cfg.kl_coef = get_num(jc, "kl_coef");
        cfg.entropy_coef = get_num(jc, "entropy_coef");
        cfg.per_token = get_num(jc, "per_token") != 0;
        assert_int_equal(grpo_kl_type_parse(json_get_str(jc, "kl_type"), &cfg.kl_type), 0);

        int T, n1, n2, n3, n4, n_seqs, ns;
        float *lp = get_floats(c, "logprob", &T);
        float *old = get_floats(c, "old_logprob", &n1);
        float *ref = get_floats(c, "ref_logprob", &n2);
        float *ent = get_floats(c, "entropy", &n3);
        float *mask = get_floats(c, "mask", &n4);
        double *adv = get_doubles(c, "advantage", &n_seqs);
        double *ss = get_doubles(c, "seq_start", &ns);
        assert_true(n1 == T && n2 == T && n3 == T && n4 == T && ns == n_seqs + 1);
        int32_t *seq_start = xmalloc((size_t)ns * sizeof *seq_start);
        for (int i = 0; i < ns; i++) seq_start[i] = (int32_t)ss[i];

        GrpoBatch b = {T, n_seqs, seq_start, lp, old, ref, ent, mask, adv};
        char err[256];
        assert_int_equal(grpo_check_batch(&cfg, &b, err, sizeof err), 0);
        double count = get_num(c, "count");
        /* count 0: this micro-batch is the step; else the step's N is given */
        assert_true((count > 0 ? count : grpo_loss_count(&cfg, &b)) == get_num(c, "step_count"));

        float *dlp = xmalloc((size_t)T * sizeof *dlp);
        float *dent = xmalloc((size_t)T * sizeof *dent);
        GrpoMetrics m;
        double loss = grpo_loss(&cfg, &b, count, dlp, dent, &m);

        const cJSON *ex = json_get(c, "expected");
        struct {
            const char *key;
            double got;
        } scalars[] = {{"loss", loss},         {"pg_loss", m.pg_loss}, {"pg_clipfrac", m.pg_clipfrac},
                       {"ppo_kl", m.ppo_kl},   {"kl_loss", m.kl_loss}, {"entropy", m.entropy},
                       {"logprob_abs_diff", m.logprob_abs_diff}};
        for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
            double e = rel_err(scalars[i].got, get_num(ex, scalars[i].key), 1e-3);
            if (e > REL_TOL)
                fail_msg("%s: %s = %.12g, torch %.12g (rel %.3g)", name, scalars[i].key, scalars[i].got,
                         get_num(ex, scalars[i].key), e);
            worst_scalar = fmax(worst_scalar, e);
        }
        assert_int_equal(m.n_tokens, (int64_t)get_num(ex, "n_tokens"));

        int nd, ne;
        double *want_dlp = get_doubles(ex, "dlogprob", &nd);
        double *want_dent = get_doubles(ex, "dentropy", &ne);
        assert_true(nd == T && ne == T);
        double scale_lp = 0, scale_ent = 0;
        for (int t = 0; t < T; t++) {
            scale_lp = fmax(scale_lp, fabs(want_dlp[t]));
            scale_ent = fmax(scale_ent, fabs(want_dent[t]));
        }
        for (int t = 0; t < T; t++) {
            if (mask[t] == 0.0f) {
                assert_true(dlp[t] == 0.0f && dent[t] == 0.0f);
                assert_true(want_dlp[t] == 0.0 && want_dent[t] == 0.0);
                continue;
            }
            double e1 = rel_err(dlp[t], want_dlp[t], scale_lp * 1e-3 + 1e-30);
            double e2 = scale_ent > 0 ? rel_err(dent[t], want_dent[t], scale_ent * 1e-3) : fabs(dent[t]);
            if (e1 > REL_TOL || e2 > REL_TOL)
                fail_msg("%s: token %d: dlogprob %.9g vs %.9g, dentropy %.9g vs %.9g", name, t, dlp[t],
                         want_dlp[t], dent[t], want_dent[t]);
            worst_grad = fmax(worst_grad, fmax(e1, e2));
        }
        /* grpo_loss_rows gives the same bits at every position, asked in
         * pieces of 3 rows from the end (as head chunks might ask) */
        GrpoRows *rows = grpo_rows_new(&cfg, &b, count);
        for (int t1 = T; t1 > 0; t1 -= 3) {
            int t0 = t1 - 3 > 0 ? t1 - 3 : 0, n = t1 - t0;
            int32_t at[3];
            float lp_at[3], g[3], h[3];
            for (int i = 0; i < n; i++) at[i] = t1 - 1 - i, lp_at[i] = lp[at[i]];
            grpo_loss_rows(rows, n, at, lp_at, g, h);
            for (int i = 0; i < n; i++) {
                assert_memory_equal(&g[i], &dlp[at[i]], sizeof(float));
                assert_memory_equal(&h[i], &dent[at[i]], sizeof(float));
            }
        }
        grpo_rows_free(rows);
        free(want_dlp);
        free(want_dent);
        free(dlp);
        free(dent);
        free(seq_start);
        free(ss);
        free(adv);
        free(mask);
        free(ent);
        free(ref);
        free(old);
        free(lp);
        n_cases++;
    }
    print_message("grpo loss: %d cases; max rel error scalars %.3g, gradients %.3g (tolerance %g)\n", n_cases,
                  worst_scalar, worst_grad, REL_TOL);
    assert_true(n_cases >= 19);
    cJSON_Delete(cases);
}

/* Two micro-batches of one step, each given the step's N, add up to the
 * loss of the whole step in one batch. */
static void test_loss_microbatches_add_up(void **state) {
    (void)state;
    enum { T = 12 };
    float lp[T] = {-1, -0.5f, -2, -0.1f, -0.7f, -3, -0.2f, -0.9f, -1.5f, -0.05f, -0.6f, -1.1f};
    float old[T] = {-1.1f, -0.4f, -2.5f, -0.1f, -0.2f, -3.3f, -0.25f, -1.5f, -1.4f, -0.06f, -0.9f, -1};
    float ent[T] = {1, 2, 0.5f, 0.1f, 1.5f, 2.5f, 0.3f, 0.7f, 1.1f, 0.2f, 0.9f, 1.3f};
    float mask[T] = {0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1};
    double adv[4] = {0.8, -1.2, 0.3, -0.4};
    int32_t ss_all[5] = {0, 3, 6, 9, 12};
    int32_t ss_half[3] = {0, 3, 6};
    for (int per_token = 0; per_token <= 1; per_token++) {
        GrpoLossConfig cfg;
        grpo_loss_config_default(&cfg);
        cfg.per_token = per_token;
        cfg.entropy_coef = 0.01;
        GrpoBatch whole = {T, 4, ss_all, lp, old, NULL, ent, mask, adv};
        GrpoBatch b1 = {6, 2, ss_half, lp, old, NULL, ent, mask, adv};
        GrpoBatch b2 = {6, 2, ss_half, lp + 6, old + 6, NULL, ent + 6, mask + 6, adv + 2};
        double N = grpo_loss_count(&cfg, &b1) + grpo_loss_count(&cfg, &b2);
        assert_true(N == grpo_loss_count(&cfg, &whole));
        float g_all[T], g_parts[T], e_all[T], e_parts[T];
        GrpoMetrics m_all, m1, m2;
        double l_all = grpo_loss(&cfg, &whole, 0, g_all, e_all, &m_all);
        double l1 = grpo_loss(&cfg, &b1, N, g_parts, e_parts, &m1);
        double l2 = grpo_loss(&cfg, &b2, N, g_parts + 6, e_parts + 6, &m2);
        assert_true(fabs(l_all - (l1 + l2)) < 1e-12);
        assert_true(fabs(m_all.pg_clipfrac - (m1.pg_clipfrac + m2.pg_clipfrac)) < 1e-12);
        assert_true(m_all.pg_clipfrac > 0.0);
        for (int t = 0; t < T; t++) {
            assert_true(g_all[t] == g_parts[t]);
            assert_true(e_all[t] == e_parts[t]);
        }
    }
}

static void test_loss_checks(void **state) {
    (void)state;
    GrpoLossConfig cfg;
    grpo_loss_config_default(&cfg);
    float x[4] = {0}, mask[4] = {1, 1, 1, 1};
    double adv[2] = {1, -1};
    int32_t ss[3] = {0, 2, 4};
    char err[256];
    GrpoBatch b = {4, 2, ss, x, x, NULL, NULL, mask, adv};
    assert_int_equal(grpo_check_batch(&cfg, &b, err, sizeof err), 0);
    /* on-policy (ρ = 1): loss = −mean A per trajectory, gradient −A/n/N */
    float g[4];
    GrpoMetrics m;
    assert_true(grpo_loss(&cfg, &b, 0, g, NULL, &m) == 0.0);
    assert_true(g[0] == -0.25f && g[2] == 0.25f && m.pg_clipfrac == 0.0 && m.n_tokens == 4);
    cfg.kl_coef = 0.1;
    assert_int_equal(grpo_check_batch(&cfg, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "reference"));
    cfg.kl_coef = 0;
    cfg.entropy_coef = 0.1;
    assert_int_equal(grpo_check_batch(&cfg, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "entrop"));
    cfg.entropy_coef = 0;
    int32_t bad[3] = {0, 3, 2};
    b.seq_start = bad;
    assert_int_equal(grpo_check_batch(&cfg, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "seq_start"));
    GrpoKlType t;
    assert_int_equal(grpo_kl_type_parse("low_var_kl", &t), 0);
    assert_int_equal(t, GRPO_KL_LOW_VAR_KL);
    assert_string_equal(grpo_kl_type_name(GRPO_KL_K2), "k2");
    assert_int_equal(grpo_kl_type_parse("kl", &t), -1);
}

/* ------------------------------------------------------------ advantages */

static void test_advantages(void **state) {
    (void)state;
    cJSON *groups = load_json(FIX "/advantages.json");
    int n_groups = cJSON_GetArraySize(groups);
    int32_t *gs = xmalloc((size_t)(n_groups + 1) * sizeof *gs);
    double *r = NULL, *want = NULL, *want_c = NULL;
    int n = 0;
    gs[0] = 0;
    for (int g = 0; g < n_groups; g++) {
        const cJSON *jg = cJSON_GetArrayItem(groups, g);
        int k, k2, k3;
        double *rg = get_doubles(jg, "rewards", &k);
        double *ag = get_doubles(jg, "advantage", &k2);
        double *cg = get_doubles(jg, "centered", &k3);
        assert_true(k == k2 && k == k3);
        assert_int_equal(grpo_group_keep(rg, k), get_num(jg, "keep") != 0);
        r = xrealloc(r, (size_t)(n + k) * sizeof *r);
        want = xrealloc(want, (size_t)(n + k) * sizeof *want);
        want_c = xrealloc(want_c, (size_t)(n + k) * sizeof *want_c);
        memcpy(r + n, rg, (size_t)k * sizeof *r);
        memcpy(want + n, ag, (size_t)k * sizeof *r);
        memcpy(want_c + n, cg, (size_t)k * sizeof *r);
        n += k;
        gs[g + 1] = n;
        free(rg);
        free(ag);
        free(cg);
    }
    double *a = xmalloc((size_t)n * sizeof *a);
    grpo_group_advantages(r, gs, n_groups, true, a);
    for (int i = 0; i < n; i++) {
        if (fabs(a[i] - want[i]) > 1e-12 * fmax(1.0, fabs(want[i])))
            fail_msg("advantage %d: %.17g, torch %.17g", i, a[i], want[i]);
    }
    grpo_group_advantages(r, gs, n_groups, false, a);
    for (int i = 0; i < n; i++) assert_true(fabs(a[i] - want_c[i]) < 1e-15);
    free(a);
    free(r);
    free(want);
    free(want_c);
    free(gs);
    cJSON_Delete(groups);
}

/* ------------------------------------------------------------ schedule */

static void test_schedule_against_megatron(void **state) {
    (void)state;
    cJSON *cases = load_json(FIX "/schedule.json");
    double worst = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        LrDecayStyle style;
        assert_int_equal(lr_decay_style_parse(json_get_str(c, "style"), &style), 0);
        LrSchedule s;
        char err[256];
        int rc = lr_schedule_init(&s, style, get_num(c, "lr"), get_num(c, "min_lr"), get_num(c, "init_lr"),
                                  get_num(c, "warmup_fraction"), (int64_t)get_num(c, "warmup_iters"),
                                  (int64_t)get_num(c, "decay_steps"), err, sizeof err);
        if (rc != 0) fail_msg("%s", err);
        int n;
        double *lrs = get_doubles(c, "lrs", &n);
        for (int k = 0; k < n; k++) {
            double got = lr_schedule_at(&s, k);
            double e = rel_err(got, lrs[k], 1e-12);
            if (e > 1e-12) fail_msg("%s step %d: lr %.17g, Megatron %.17g", json_get_str(c, "style"), k, got, lrs[k]);
            worst = fmax(worst, e);
        }
        free(lrs);
    }
    print_message("lr schedules: max rel error %.3g\n", worst);
    cJSON_Delete(cases);

    LrSchedule s;
    char err[256];
    assert_int_equal(lr_schedule_init(&s, LR_COSINE, 1e-6, 1e-7, 0, 0.5, 0, 10, err, sizeof err), 0);
    assert_true(lr_schedule_at(&s, 0) == 0.0);    /* Megatron's first update runs at lr_warmup_init */
    assert_true(lr_schedule_at(&s, 5) == 1e-6);   /* end of warmup */
    assert_true(lr_schedule_at(&s, 11) == 1e-7);  /* past decay */
    assert_int_equal(lr_schedule_init(&s, LR_COSINE, 1e-6, 1e-7, 0, 1.0, 0, 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "warmup"));
    assert_int_equal(lr_schedule_init(&s, LR_COSINE, 1e-6, 1e-5, 0, 0.1, 0, 10, err, sizeof err), -1);
    assert_non_null(strstr(err, "min_lr"));
    assert_int_equal(lr_schedule_init(&s, LR_LINEAR, 1e-6, 0, 0, -1, 0, 0, err, sizeof err), -1);
    LrDecayStyle st;
    assert_int_equal(lr_decay_style_parse("WSD", &st), -1);
}

/* ------------------------------------------------------------ pass@k */

static void test_passk(void **state) {
    (void)state;
    char err[256];
    double v;
    assert_int_equal(passk_at(10, 3, 1, &v, err, sizeof err), 0);
    assert_true(fabs(v - 0.3) < 1e-15);
    assert_int_equal(passk_hat(10, 3, 1, &v, err, sizeof err), 0);
    assert_true(fabs(v - 0.3) < 1e-15);
    assert_int_equal(passk_at(10, 3, 2, &v, err, sizeof err), 0);
    assert_true(fabs(v - (1.0 - 21.0 / 45.0)) < 1e-15); /* 1 − C(7,2)/C(10,2) */
    assert_int_equal(passk_hat(10, 3, 2, &v, err, sizeof err), 0);
    assert_true(fabs(v - 3.0 / 45.0) < 1e-15); /* C(3,2)/C(10,2) */
    assert_int_equal(passk_at(4, 1, 4, &v, err, sizeof err), 0);
    assert_true(v == 1.0);
    assert_int_equal(passk_hat(4, 3, 4, &v, err, sizeof err), 0);
    assert_true(v == 0.0);
    assert_int_equal(passk_hat(4, 4, 4, &v, err, sizeof err), 0);
    assert_true(v == 1.0);
    assert_int_equal(passk_at(5, 0, 3, &v, err, sizeof err), 0);
    assert_true(v == 0.0);
    /* large n, where factorials would overflow: C(999,500)/C(1000,500) = 1/2 */
    assert_int_equal(passk_at(1000, 1, 500, &v, err, sizeof err), 0);
    assert_true(fabs(v - 0.5) < 1e-13);
    assert_int_equal(passk_hat(1000, 999, 500, &v, err, sizeof err), 0);
    assert_true(fabs(v - 0.5) < 1e-13);
    /* τ²-bench example shape: 4 trials, successes 4, 2, 0 */
    int n[3] = {4, 4, 4}, c[3] = {4, 2, 0};
    assert_int_equal(passk_hat_mean(n, c, 3, 2, &v, err, sizeof err), 0);
    assert_true(fabs(v - (1.0 + 1.0 / 6.0 + 0.0) / 3.0) < 1e-15);
    assert_int_equal(passk_at_mean(n, c, 3, 2, &v, err, sizeof err), 0);
    assert_true(fabs(v - (1.0 + 5.0 / 6.0 + 0.0) / 3.0) < 1e-15);
    assert_int_equal(passk_at_mean(n, c, 3, 1, &v, err, sizeof err), 0);
    assert_true(fabs(v - 0.5) < 1e-15);
    /* errors */
    assert_int_equal(passk_at(3, 1, 4, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "k = 4"));
    assert_int_equal(passk_hat(3, 4, 1, &v, err, sizeof err), -1);
    assert_int_equal(passk_at(3, 1, 0, &v, err, sizeof err), -1);
    int n2[2] = {4, 2}, c2[2] = {1, 1};
    assert_int_equal(passk_hat_mean(n2, c2, 2, 3, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "task 1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_against_torch),
        cmocka_unit_test(test_loss_microbatches_add_up),
        cmocka_unit_test(test_loss_checks),
        cmocka_unit_test(test_advantages),
        cmocka_unit_test(test_schedule_against_megatron),
        cmocka_unit_test(test_passk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
