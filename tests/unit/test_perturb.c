/* test_perturb.c — edited gold trajectories score as τ²-bench scores them:
 * removing a state-changing call or changing one of its arguments fails the
 * DB check, dropping a communicate string fails COMMUNICATE, a telecom run
 * missing one fix fails its env assertion, and a run cut by max_steps
 * scores 0. Real tasks of every domain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tau2_test_util.h"

/* Index of the n-th message whose tool calls include a state-changing tool
 * of the given requestor; -1 if none. */
static int find_mutating_call(const Domain *d, const cJSON *messages, const char *requestor) {
    Env *env = env_new(d);
    int i = 0, found = -1;
    for (const cJSON *m = messages->child; m && found < 0; m = m->next, i++) {
        const cJSON *calls = json_get(m, "tool_calls");
        for (const cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc; tc = tc->next) {
            const char *req = json_get_str(tc, "requestor");
            const ToolDef *t = env_find_tool(env, requestor, json_get_str(tc, "name"));
            if (t && t->mutates && req && !strcmp(req, requestor)) {
                found = i;
                break;
            }
        }
    }
    env_free(env);
    return found;
}

static Evaluation evaluate_copy(const Domain *d, const cJSON *task, const cJSON *messages, Termination term) {
    EvalOptions opt;
    eval_options_default(d->spec->name, &opt);
    opt.strict_replay = false;
    Evaluation ev;
    evaluate_episode(d, task, messages, term, &opt, &ev);
    return ev;
}

static bool db_matched(const Evaluation *ev) {
    return cJSON_IsTrue(json_get(json_get(ev->info, "db_check"), "db_match"));
}

/* Remove message i and the tool messages answering it. */
static void remove_call_message(cJSON *messages, int i) {
    cJSON *m = cJSON_DetachItemFromArray(messages, i);
    int ncalls = cJSON_GetArraySize(json_get(m, "tool_calls"));
    for (int k = 0; k < ncalls; k++) cJSON_DeleteItemFromArray(messages, i);
    cJSON_Delete(m);
}

/* Change the first string argument of the first mutating call in message i. */
static bool change_argument(cJSON *messages, int i) {
    cJSON *calls = json_get(cJSON_GetArrayItem(messages, i), "tool_calls");
    for (cJSON *tc = calls->child; tc; tc = tc->next)
        for (cJSON *a = json_get(tc, "arguments")->child; a; a = a->next)
            if (cJSON_IsString(a)) {
                char buf[512];
                snprintf(buf, sizeof buf, "%s_changed", a->valuestring);
                cJSON_SetValuestring(a, buf);
                return true;
            }
    return false;
}

static void check_db_perturbations(const char *name, int max_tasks) {
    Domain *d = test_load_domain(name);
    TaskSet *ts = test_load_tasks(d);
    int checked = 0;
    for (int t = 0; t < ts->n && checked < max_tasks; t++) {
        const cJSON *task = ts->tasks[t];
        if (!(task_reward_basis(task) & BASIS_DB)) continue;
        Episode *ep = test_run_oracle(d, task, EPISODE_DEFAULT_MAX_STEPS);
        int i = find_mutating_call(d, ep->messages, "assistant");
        Evaluation base = evaluate_copy(d, task, ep->messages, ep->term);
        if (i < 0 || base.reward != 1.0) {
            evaluation_free(&base);
            episode_free(ep);
            continue;
        }
        evaluation_free(&base);
        cJSON *removed = cJSON_Duplicate(ep->messages, 1);
        remove_call_message(removed, i);
        Evaluation ev = evaluate_copy(d, task, removed, ep->term);
        if (db_matched(&ev) || ev.reward != 0.0) fail_msg("%s %s: removing a write call still passes DB", name, task_id(task));
        evaluation_free(&ev);
        cJSON *changed = cJSON_Duplicate(ep->messages, 1);
        if (change_argument(changed, i)) {
            ev = evaluate_copy(d, task, changed, ep->term);
            if (db_matched(&ev) || ev.reward != 0.0)
                fail_msg("%s %s: changing an argument still passes DB", name, task_id(task));
            evaluation_free(&ev);
        }
        cJSON_Delete(removed);
        cJSON_Delete(changed);
        episode_free(ep);
        checked++;
    }
    fprintf(stderr, "%s: DB perturbations checked on %d tasks\n", name, checked);
    assert_true(checked > 0);
    taskset_free(ts);
    domain_free(d);
}

static void test_db_airline(void **s) { (void)s; check_db_perturbations("airline", 10); }
static void test_db_retail(void **s) { (void)s; check_db_perturbations("retail", 10); }
static void test_db_mock(void **s) { (void)s; check_db_perturbations("mock", 10); }

/* Strip every communicate_info string from the agent's messages. */
static void test_communicate_airline(void **s) {
    (void)s;
    Domain *d = test_load_domain("airline");
    TaskSet *ts = test_load_tasks(d);
    int checked = 0;
    for (int t = 0; t < ts->n; t++) {
        const cJSON *task = ts->tasks[t];
        const cJSON *infos = json_get(json_get(task, "evaluation_criteria"), "communicate_info");
        if (!cJSON_GetArraySize(infos) || !(task_reward_basis(task) & BASIS_COMMUNICATE)) continue;
        Episode *ep = test_run_oracle(d, task, EPISODE_DEFAULT_MAX_STEPS);
        Evaluation ev = evaluate_copy(d, task, ep->messages, ep->term);
        assert_true(ev.reward == 1.0);
        evaluation_free(&ev);
        cJSON *msgs = cJSON_Duplicate(ep->messages, 1);
        for (cJSON *m = msgs->child; m; m = m->next) {
            const char *role = json_get_str(m, "role");
            if (role && !strcmp(role, "assistant") && json_get_str(m, "content") &&
                strstr(json_get_str(m, "content"), "handled"))
                cJSON_SetValuestring(json_get(m, "content"), "Your request has been handled.");
        }
        ev = evaluate_copy(d, task, msgs, ep->term);
        if (ev.reward != 0.0) fail_msg("airline %s: missing communicate info still scores", task_id(task));
        assert_false(cJSON_IsTrue(json_get(json_get(ev.info, "reward_breakdown"), "COMMUNICATE")));
        evaluation_free(&ev);
        cJSON_Delete(msgs);
        episode_free(ep);
        checked++;
    }
    fprintf(stderr, "airline: COMMUNICATE perturbations checked on %d tasks\n", checked);
    assert_true(checked > 0);
    taskset_free(ts);
    domain_free(d);
}

/* Telecom: drop one of the user's fixes; its env assertion must fail. */
static void test_env_assertion_telecom(void **s) {
    (void)s;
    Domain *d = test_load_domain("telecom");
    TaskSet *ts = test_load_tasks(d);
    const cJSON **tasks;
    char err[256];
    int n = taskset_split(ts, "base", &tasks, err, sizeof err);
    int checked = 0;
    for (int t = 0; t < n && checked < 20; t++) {
        const cJSON *task = tasks[t];
        Episode *ep = test_run_oracle(d, task, EPISODE_DEFAULT_MAX_STEPS);
        Evaluation ev = evaluate_copy(d, task, ep->messages, ep->term);
        int i = find_mutating_call(d, ep->messages, "user");
        if (ev.reward != 1.0 || i < 0) {
            evaluation_free(&ev);
            episode_free(ep);
            continue;
        }
        evaluation_free(&ev);
        cJSON *msgs = cJSON_Duplicate(ep->messages, 1);
        remove_call_message(msgs, i);
        ev = evaluate_copy(d, task, msgs, ep->term);
        if (ev.reward != 0.0) fail_msg("telecom %s: a run missing a fix still passes", task_id(task));
        evaluation_free(&ev);
        cJSON_Delete(msgs);
        episode_free(ep);
        checked++;
    }
    fprintf(stderr, "telecom: env-assertion perturbations checked on %d tasks\n", checked);
    assert_true(checked > 0);
    free(tasks);
    taskset_free(ts);
    domain_free(d);
}

/* A run cut by max_steps scores 0, in every domain. */
static void test_max_steps(void **s) {
    (void)s;
    const char *names[] = {"airline", "retail", "telecom", "mock"};
    for (int k = 0; k < 4; k++) {
        Domain *d = test_load_domain(names[k]);
        TaskSet *ts = test_load_tasks(d);
        for (int t = 0; t < 5 && t < ts->n; t++) {
            Episode *ep = test_run_oracle(d, ts->tasks[t], 2);
            assert_int_equal(ep->term, TERM_MAX_STEPS);
            Evaluation ev = evaluate_copy(d, ts->tasks[t], ep->messages, ep->term);
            assert_true(ev.reward == 0.0);
            evaluation_free(&ev);
            episode_free(ep);
        }
        taskset_free(ts);
        domain_free(d);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_db_airline),          cmocka_unit_test(test_db_retail),
        cmocka_unit_test(test_db_mock),             cmocka_unit_test(test_communicate_airline),
        cmocka_unit_test(test_env_assertion_telecom), cmocka_unit_test(test_max_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
