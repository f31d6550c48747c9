/* gpu_check.c — can a GPU part run here (see gpu_check.h). */
#include "model/gpu_check.h"

#include <stdio.h>

#ifdef TAU2_HAVE_CUDA
#include "kernels.h"
#endif

int gpu_check(int tp, const char *tp_key, const char *what, char *err, size_t errlen) {
#ifndef TAU2_HAVE_CUDA
    (void)tp, (void)tp_key, (void)what;
    snprintf(err, errlen, "this build has no CUDA backend (configure with -DTAU2_CUDA=ON on a machine with nvcc)");
    return -1;
#else
    if (tp > 1) {
        snprintf(err, errlen, "%s %d: %s runs at %s 1 only so far", tp_key, tp, what, tp_key);
        return -1;
    }
    if (cuda_device_count() < 1) {
        snprintf(err, errlen, "no CUDA device is visible to this process");
        return -1;
    }
    return 0;
#endif
}
