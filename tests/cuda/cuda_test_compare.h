/* cuda_test_compare.h — the model-level comparisons of the CUDA parity
 * tests (header only: each test is one program): a tensor against its CPU
 * reference as a relative error, every tensor of a model's layout, and
 * weights after AdamW steps in units of the learning rate. Each prints one
 * line (ok/FAIL, the error, the tolerance) and counts failures in
 * g_failures, which main reports.
 *
 * Errors are relative to the reference's largest magnitude, per tensor:
 *   err = max_i |gpu_i - cpu_i| / max_i |cpu_i|
 * Weights after AdamW steps: max_i |gpu_i - cpu_i| / (lr x steps), since
 * AdamW moves every element by about lr per step whatever its gradient's
 * size (test_cuda_qwen3.c says why that is the right unit). */
#ifndef TAU2_CUDA_TEST_COMPARE_H
#define TAU2_CUDA_TEST_COMPARE_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "model/qwen3.h"

static int g_failures;

/* err of gpu against cpu (both host, n values), reported and counted. */
static void check(const char *model, const char *what, const float *gpu, const float *cpu, size_t n, double tol) {
    double maxref = 0.0, maxdiff = 0.0;
    size_t worst = 0;
    bool finite = true;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(gpu[i])) finite = false;
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (fabs(cpu[i]) > maxref) maxref = fabs(cpu[i]);
        if (d > maxdiff || d != d) maxdiff = d, worst = i;
    }
    double err = maxref > 0 ? maxdiff / maxref : maxdiff;
    bool ok = finite && err <= tol;
    printf("%-4s %-12s %-48s n=%-8zu err %.3e (tol %.0e)", ok ? "ok" : "FAIL", model, what, n, err, tol);
    if (!ok && n) printf("  worst [%zu] gpu %.9g cpu %.9g", worst, gpu[worst], cpu[worst]);
    printf("\n");
    if (!ok) g_failures++;
}

/* Weights: the largest difference in units of lr x steps (file comment). */
static void check_weights(const Qwen3 *m, const char *model, const char *kind, const float *gpu, const float *cpu,
                          float lr, int steps, double tol) {
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        const float *g = gpu + t->offset, *c = cpu + t->offset;
        double maxdiff = 0.0;
        size_t worst = 0;
        bool finite = true;
        for (size_t j = 0; j < t->numel; j++) {
            if (!isfinite(g[j])) finite = false;
            double d = fabs((double)g[j] - (double)c[j]);
            if (d > maxdiff || d != d) maxdiff = d, worst = j;
        }
        double err = maxdiff / ((double)lr * steps);
        bool ok = finite && err <= tol;
        char what[160];
        snprintf(what, sizeof what, "%s %s", kind, t->name);
        printf("%-4s %-12s %-48s n=%-8zu err %.3e lr (tol %.2g)", ok ? "ok" : "FAIL", model, what, t->numel, err, tol);
        if (!ok) printf("  worst [%zu] gpu %.9g cpu %.9g", worst, g[worst], c[worst]);
        printf("\n");
        if (!ok) g_failures++;
    }
}

/* Every tensor of the model: gpu against cpu (memories in the model's
 * layout). The norm weights (the only 1-D tensors) get twice tol: each of
 * their few gradients is one sum over every token (and, for the q/k norms,
 * every head) of terms of both signs, so its rounding relative to the
 * tensor's largest value is about twice a product's (bf16: up to 5.0e-2
 * measured where the products' gradients stay under 2.6e-2; which CPU
 * kernels make the reference moves it by a few per cent). */
static void check_tensors(const Qwen3 *m, const char *model, const char *kind, const float *gpu, const float *cpu,
                          double tol) {
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        char what[160];
        snprintf(what, sizeof what, "%s %s", kind, t->name);
        check(model, what, gpu + t->offset, cpu + t->offset, t->numel, t->ndim == 1 ? 2 * tol : tol);
    }
}

#endif
