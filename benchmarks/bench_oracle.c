/* bench_oracle.c — oracle episodes with evaluation per second per core, per
 * domain: episode setup (initial state), the gold agent and user playing the
 * task, then τ²-bench's full evaluation (two replays, DB comparison, env
 * assertions, action and communicate checks). One thread = one core.
 *
 * usage: bench_oracle [--data-dir DIR] [--seconds S] [--anchor tau2.json]
 * With --anchor (the JSON printed by bench_oracle_tau2.py, τ²-bench's own
 * Python measured on the same machine in the same run) it prints the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "tau2/evaluate.h"
#include "tau2/oracle.h"
#include "tau2/task.h"

#include "bench_util.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *data_dir = getenv("TAU2_DATA_DIR");
    const char *anchor_path = NULL;
    double seconds = 2.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--data-dir")) data_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--anchor")) anchor_path = argv[i + 1];
        else {
            fprintf(stderr, "bench_oracle: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!data_dir) data_dir = "../shared/tau2-data";
    cJSON *anchor = NULL;
    if (anchor_path) {
        char err[512];
        anchor = json_load_file(anchor_path, err, sizeof err);
        if (!anchor) fprintf(stderr, "bench_oracle: anchor ignored: %s\n", err);
    }
    const char *names[] = {"airline", "retail", "telecom", "mock"};
    const char *splits[] = {"base", "base", "full", "base"};
    printf("%-8s %6s %10s %12s %14s %8s\n", "domain", "tasks", "episodes", "episodes/s", "tau2-bench/s", "ratio");
    for (int k = 0; k < 4; k++) {
        char err[1024];
        Domain *d = domain_load(data_dir, names[k], err, sizeof err);
        if (!d) {
            fprintf(stderr, "bench_oracle: %s\n", err);
            return 2;
        }
        TaskSet *ts = taskset_load(d, err, sizeof err);
        const cJSON **tasks;
        int n = taskset_split(ts, splits[k], &tasks, err, sizeof err);
        EvalOptions opt;
        eval_options_default(names[k], &opt);
        long episodes = 0;
        double sum = 0;
        double t0 = now(), c0 = cpu_now();
        while (now() - t0 < seconds) {
            for (int i = 0; i < n; i++) {
                Episode *ep = episode_new(d, tasks[i], NULL, err, sizeof err);
                Oracle o;
                oracle_init(&o, tasks[i]);
                episode_run(ep, &o.agent, &o.user);
                Evaluation ev;
                evaluate_episode(d, tasks[i], ep->messages, ep->term, &opt, &ev);
                sum += ev.reward;
                evaluation_free(&ev);
                episode_free(ep);
                episodes++;
            }
        }
        double cpu = cpu_now() - c0;
        double rate = episodes / cpu;
        const cJSON *a = json_get(anchor, names[k]);
        double arate = a && cJSON_IsNumber(a) ? a->valuedouble : 0;
        char ratio[32] = "-", astr[32] = "-";
        if (arate > 0) {
            snprintf(ratio, sizeof ratio, "%.0fx", rate / arate);
            snprintf(astr, sizeof astr, "%.1f", arate);
        }
        printf("%-8s %6d %10ld %12.0f %14s %8s   (mean reward %.3f)\n", names[k], n, episodes, rate, astr, ratio,
               sum / episodes);
        free(tasks);
        taskset_free(ts);
        domain_free(d);
    }
    cJSON_Delete(anchor);
    return 0;
}
