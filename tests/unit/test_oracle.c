/* test_oracle.c — gold episodes on every task of every domain score what
 * τ²-bench scores for them: reward 1.0, except where τ²-bench's own
 * evaluation of the gold trajectory (tests/fixtures/tau2/reward_*.jsonl,
 * generated from its source) says the gold data cannot reach it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tau2_test_util.h"

static void check_domain(const char *name, const char *split) {
    Domain *d = test_load_domain(name);
    TaskSet *ts = test_load_tasks(d);
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/tau2/reward_%s.jsonl", TAU2_SOURCE_DIR, name);
    cJSON *ref = test_load_jsonl(path);
    const cJSON **tasks;
    char err[512];
    int n = taskset_split(ts, split, &tasks, err, sizeof err);
    assert_true(n > 0);
    int wrong = 0, db_wrong = 0, nl_skipped = 0, ref_below_one = 0;
    for (int i = 0; i < n; i++) {
        Episode *ep = test_run_oracle(d, tasks[i], EPISODE_DEFAULT_MAX_STEPS);
        Evaluation ev;
        evaluate_episode(d, tasks[i], ep->messages, ep->term, NULL, &ev);
        double want = 1.0;
        const cJSON *want_db = NULL;
        for (const cJSON *r = ref ? ref->child : NULL; r; r = r->next) {
            if (strcmp(json_get_str(r, "task_id"), task_id(tasks[i])) == 0) {
                want = json_get(r, "reward")->valuedouble;
                want_db = json_get(r, "db_match");
                break;
            }
        }
        /* τ²-bench's DB verdict too (it differs from the reward where the
         * basis ignores DB: telecom's gold replay never syncs the phone). */
        const cJSON *got_db = json_get(json_get(ev.info, "db_check"), "db_match");
        if (cJSON_IsBool(want_db) && cJSON_IsBool(got_db) && cJSON_IsTrue(want_db) != cJSON_IsTrue(got_db)) {
            if (db_wrong < 5)
                fprintf(stderr, "%s %s: db_match %d, τ²-bench %d\n", name, task_id(tasks[i]), cJSON_IsTrue(got_db),
                        cJSON_IsTrue(want_db));
            db_wrong++;
        }
        if (want < 1.0) ref_below_one++;
        if (ev.nl_not_judged) nl_skipped++;
        if (ev.reward != want) {
            if (wrong < 5) {
                char *s = json_dumps(ev.info, 0);
                fprintf(stderr, "%s %s: reward %.1f, τ²-bench %.1f (%s)\n  %.600s\n", name, task_id(tasks[i]), ev.reward,
                        want, termination_name(ep->term), s);
                free(s);
            }
            wrong++;
        }
        evaluation_free(&ev);
        episode_free(ep);
    }
    fprintf(stderr, "%s/%s: %d tasks, %d rewards and %d DB verdicts differ from τ²-bench, %d where τ²-bench's gold scores < 1, NL_ASSERTION not "
                    "judged on %d\n",
            name, split, n, wrong, db_wrong, ref_below_one, nl_skipped);
    assert_int_equal(wrong, 0);
    assert_int_equal(db_wrong, 0);
    free(tasks);
    cJSON_Delete(ref);
    taskset_free(ts);
    domain_free(d);
}

static void test_mock(void **s) { (void)s; check_domain("mock", "base"); }
static void test_airline(void **s) { (void)s; check_domain("airline", "base"); }
static void test_retail(void **s) { (void)s; check_domain("retail", "base"); }
static void test_telecom_full(void **s) { (void)s; check_domain("telecom", "full"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mock),
        cmocka_unit_test(test_airline),
        cmocka_unit_test(test_retail),
        cmocka_unit_test(test_telecom_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
