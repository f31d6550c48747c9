/* test_linear_rows.c — the decode matrix products: every kernel this CPU
 * runs is close to a double-precision reference, and its results do not
 * depend on the batch (which rows share the call), on where a row falls in
 * the tiles, or on the thread count: bit for bit. Shapes include columns
 * that are not a multiple of 8 or 16 and output counts that leave short
 * tiles and groups. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "model/linear_rows.h"

typedef struct {
    int R, IC, OC;
} Shape;

static const Shape SHAPES[] = {
    {1, 512, 64},  /* one row: the decode of a single sequence */
    {11, 100, 37}, /* IC with a tail of 4 (AVX2) and 4 (AVX-512); OC leaves a short group */
    {32, 256, 40}, /* a full batch of 32 in tiles of 3 and 4 */
    {7, 19, 9},    /* IC below one vector */
};

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1ULL << 24)) * 2.0f - 1.0f;
}

static float *random_floats(size_t n, uint64_t seed) {
    float *a = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = frand(&seed);
    return a;
}

static void test_matches_reference(void **state) {
    (void)state;
    for (int k = 0; k < LINEAR_ROWS_N_KERNELS; k++) {
        if (!linear_rows_supported((LinearRowsKernel)k)) {
            printf("    %-8s not supported on this CPU\n", linear_rows_kernel_name((LinearRowsKernel)k));
            continue;
        }
        double worst = 0.0;
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
            Shape s = SHAPES[si];
            float *x = random_floats((size_t)s.R * s.IC, 1 + si), *w = random_floats((size_t)s.OC * s.IC, 100 + si);
            float *y = malloc((size_t)s.R * s.OC * sizeof(float));
            linear_rows_with((LinearRowsKernel)k, y, x, w, s.R, s.IC, s.OC);
            for (int r = 0; r < s.R; r++) {
                for (int o = 0; o < s.OC; o++) {
                    double ref = 0.0, mag = 0.0;
                    for (int c = 0; c < s.IC; c++) {
                        ref += (double)x[(size_t)r * s.IC + c] * w[(size_t)o * s.IC + c];
                        mag += fabs((double)x[(size_t)r * s.IC + c] * w[(size_t)o * s.IC + c]);
                    }
                    /* error relative to the sum of magnitudes: fp32 dot products */
                    double e = fabs((double)y[(size_t)r * s.OC + o] - ref) / mag;
                    if (e > worst) worst = e;
                }
            }
            free(x), free(w), free(y);
        }
        printf("    %-8s max error / sum |x w| = %.2e\n", linear_rows_kernel_name((LinearRowsKernel)k), worst);
        assert_true(worst < 1e-6);
    }
}

/* Each row alone, and a window of rows starting at an odd offset, give the
 * same bits as the whole batch; so do 1 and 2 threads. */
static void test_batch_and_thread_invariant(void **state) {
    (void)state;
    int saved = omp_get_max_threads();
    for (int k = 0; k < LINEAR_ROWS_N_KERNELS; k++) {
        if (!linear_rows_supported((LinearRowsKernel)k)) continue;
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
            Shape s = SHAPES[si];
            float *x = random_floats((size_t)s.R * s.IC, 7 + si), *w = random_floats((size_t)s.OC * s.IC, 70 + si);
            size_t ny = (size_t)s.R * s.OC;
            float *all = malloc(ny * sizeof(float)), *part = malloc(ny * sizeof(float));
            omp_set_num_threads(2);
            linear_rows_with((LinearRowsKernel)k, all, x, w, s.R, s.IC, s.OC);
            for (int r = 0; r < s.R; r++) {
                linear_rows_with((LinearRowsKernel)k, part, x + (size_t)r * s.IC, w, 1, s.IC, s.OC);
                assert_memory_equal(part, all + (size_t)r * s.OC, (size_t)s.OC * sizeof(float));
            }
            if (s.R > 2) {
                int r0 = 1, n = s.R - 2;
                linear_rows_with((LinearRowsKernel)k, part, x + (size_t)r0 * s.IC, w, n, s.IC, s.OC);
                assert_memory_equal(part, all + (size_t)r0 * s.OC, (size_t)n * s.OC * sizeof(float));
            }
            omp_set_num_threads(1);
            linear_rows_with((LinearRowsKernel)k, part, x, w, s.R, s.IC, s.OC);
            assert_memory_equal(part, all, ny * sizeof(float));
            free(x), free(w), free(all), free(part);
        }
    }
    omp_set_num_threads(saved);
}

static void test_best_is_supported(void **state) {
    (void)state;
    LinearRowsKernel best = linear_rows_best();
    printf("    best kernel on this CPU: %s\n", linear_rows_kernel_name(best));
    assert_true(linear_rows_supported(best));
    for (int k = best + 1; k < LINEAR_ROWS_N_KERNELS; k++) assert_false(linear_rows_supported((LinearRowsKernel)k));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_batch_and_thread_invariant),
        cmocka_unit_test(test_best_is_supported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
