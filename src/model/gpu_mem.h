/* gpu_mem.h — checked device and pinned-host allocation and the arena
 * carving shared by the GPU engines (qwen3_gpu.c, infer_gpu.c). CUDA build
 * only; header only (a few lines each). A failed allocation is fatal, as
 * every cuda_check. */
#ifndef TAU2_MODEL_GPU_MEM_H
#define TAU2_MODEL_GPU_MEM_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "kernels.h"

/* Device memory (never NULL: a zero-byte request takes one byte). */
static inline void *dev_alloc(size_t bytes) {
    void *p = NULL;
    cuda_check(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
}

static inline void dev_free(void *p) {
    if (p) cuda_check(cudaFree(p));
}

/* Page-locked host memory: copies from it run asynchronously. */
static inline void *pinned_alloc(size_t bytes) {
    void *p = NULL;
    cuda_check(cudaMallocHost(&p, bytes ? bytes : 1));
    return p;
}

static inline void pinned_free(void *p) {
    if (p) cuda_check(cudaFreeHost(p));
}

/* The next n floats of an arena at *it. */
static inline float *carve(float **it, size_t n) {
    float *p = *it;
    *it += n;
    return p;
}

static inline size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

#endif
