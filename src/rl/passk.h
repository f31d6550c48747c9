/* passk.h — pass@k and pass^k from n samples per task with c successes.
 *
 *   pass@k = 1 − C(n−c, k) / C(n, k)   at least one of k draws succeeds
 *                                       (the unbiased estimator of Chen et
 *                                       al. 2021, "Evaluating LLMs trained
 *                                       on code")
 *   pass^k = C(c, k) / C(n, k)          all k draws succeed (τ²-bench's
 *                                       reliability metric, pass_hat_k)
 *
 * The binomial ratios are products of k factors, C(a, k)/C(n, k) =
 * Π_{i<k} (a − i)/(n − i), never factorials, so they stay exact to a few
 * ulps for any n. pass@1 = pass^1 = c/n.
 */
#ifndef TAU2_RL_PASSK_H
#define TAU2_RL_PASSK_H

#include <stddef.h>

/* One task. 1 <= k <= n and 0 <= c <= n, else -1 with err. */
int passk_at(int n, int c, int k, double *out, char *err, size_t errlen);
int passk_hat(int n, int c, int k, double *out, char *err, size_t errlen);

/* Means over tasks: task i has n[i] samples and c[i] successes. -1 with err
 * naming the task when k > n[i] (or n_tasks == 0). */
int passk_at_mean(const int *n, const int *c, int n_tasks, int k, double *out, char *err, size_t errlen);
int passk_hat_mean(const int *n, const int *c, int n_tasks, int k, double *out, char *err, size_t errlen);

#endif
