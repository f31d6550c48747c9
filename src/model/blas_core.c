/* blas_core.c — make OpenBLAS run the matrix kernel this CPU supports (see blas_core.h). */
#include "model/blas_core.h"

#include <cblas.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

const char *blas_core_name(void) {
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

/* The OpenBLAS kernel family for this CPU's vector units, or NULL when the
 * generic kernel is the right one. SkylakeX's kernels use AVX-512 F, BW, DQ
 * and VL; __builtin_cpu_supports also checks that the OS saves the AVX-512
 * registers. */
static const char *core_for_this_cpu(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void blas_select_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    if (strcasecmp(blas_core_name(), "Prescott") != 0) return;
    const char *core = core_for_this_cpu();
    if (!core) return;
    /* The variable stays set in the new image, so it does not come back here. */
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* the exec failed: carry on as loaded */
}
