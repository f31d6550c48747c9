/* passk.c — pass@k and pass^k (see passk.h). */
#include "rl/passk.h"

#include <stdio.h>

/* C(a, k) / C(n, k) for 0 <= a <= n, 1 <= k <= n: 0 when a < k. */
static double binom_ratio(int a, int n, int k) {
    if (a < k) return 0.0;
    double r = 1.0;
    for (int i = 0; i < k; i++) r *= (double)(a - i) / (double)(n - i);
    return r;
}

static int check(int n, int c, int k, char *err, size_t errlen) {
    if (n < 1 || c < 0 || c > n) {
        snprintf(err, errlen, "pass@k: need n >= 1 and 0 <= c <= n (n %d, c %d)", n, c);
        return -1;
    }
    if (k < 1 || k > n) {
        snprintf(err, errlen, "pass@k: k = %d needs 1 <= k <= n = %d samples", k, n);
        return -1;
    }
    return 0;
}

int passk_at(int n, int c, int k, double *out, char *err, size_t errlen) {
    if (check(n, c, k, err, errlen) != 0) return -1;
    *out = 1.0 - binom_ratio(n - c, n, k);
    return 0;
}

int passk_hat(int n, int c, int k, double *out, char *err, size_t errlen) {
    if (check(n, c, k, err, errlen) != 0) return -1;
    *out = binom_ratio(c, n, k);
    return 0;
}

static int mean_over(int (*one)(int, int, int, double *, char *, size_t), const int *n, const int *c,
                     int n_tasks, int k, double *out, char *err, size_t errlen) {
    if (n_tasks < 1) {
        snprintf(err, errlen, "pass@k: no tasks");
        return -1;
    }
    double sum = 0.0;
    for (int i = 0; i < n_tasks; i++) {
        double v;
        char e[160];
        if (one(n[i], c[i], k, &v, e, sizeof e) != 0) {
            snprintf(err, errlen, "task %d: %s", i, e);
            return -1;
        }
        sum += v;
    }
    *out = sum / n_tasks;
    return 0;
}

int passk_at_mean(const int *n, const int *c, int n_tasks, int k, double *out, char *err, size_t errlen) {
    return mean_over(passk_at, n, c, n_tasks, k, out, err, errlen);
}

int passk_hat_mean(const int *n, const int *c, int n_tasks, int k, double *out, char *err, size_t errlen) {
    return mean_over(passk_hat, n, c, n_tasks, k, out, err, errlen);
}
