/* bench_gpu.h — what the GPU benchmarks compare with: the device's dense
 * bf16 tensor-core peak (header only: each benchmark is one program). */
#ifndef TAU2_BENCH_GPU_H
#define TAU2_BENCH_GPU_H

#include <string.h>

/* Dense bf16 tensor-core peak of the device named `name`, TFLOP/s (0 when
 * unknown: the benchmarks then take --peak-tflops). */
static inline double bench_gpu_bf16_peak(const char *name) {
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "H800") || strstr(name, "GH200")) return 989.0;
    if (strstr(name, "A100") || strstr(name, "A800")) return 312.0;
    return 0.0;
}

#endif
