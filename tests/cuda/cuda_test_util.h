/* cuda_test_util.h — what the CUDA parity tests share besides their random
 * numbers (header only: each test is one program): checked device buffers
 * filled from and read back to the host, and a Qwen3 model with random
 * weights. */
#ifndef TAU2_CUDA_TEST_UTIL_H
#define TAU2_CUDA_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#include "core/error.h"
#include "kernels.h"
#include "model/qwen3.h"

#include "cuda_test_rng.h"

/* Device 0 selected and named, or false after printing the skip message
 * (main then exits 77, which ctest reports as skipped). */
static inline bool cuda_test_device(void) {
    if (cuda_device_count() == 0) {
        printf("no CUDA device: skipped\n");
        return false;
    }
    cuda_device_init(0);
    struct cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    return true;
}

static inline void *dev_alloc(size_t bytes) {
    void *p = NULL;
    cuda_check(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
}

/* A new device copy of a host buffer. */
static inline void *dev_upload(const void *host, size_t bytes) {
    void *p = dev_alloc(bytes);
    if (bytes) cuda_check(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    return p;
}

/* A new host copy of a device buffer (synchronizes with the device). */
static inline void *dev_download(const void *dev, size_t bytes) {
    void *h = xmalloc(bytes ? bytes : 1);
    cuda_check(cudaDeviceSynchronize());
    if (bytes) cuda_check(cudaMemcpy(h, dev, bytes, cudaMemcpyDeviceToHost));
    return h;
}

static inline void dev_free(void *p) { cuda_check(cudaFree(p)); }

/* n token ids drawn uniformly from [0, V) (a new buffer, the caller frees). */
static inline int32_t *random_ids(int n, int V) {
    int32_t *ids = xmalloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(rnd_u32() % (uint32_t)V);
    return ids;
}

/* The small model of the engine tests: tied head, a vocabulary that is a
 * multiple of nothing, 2 layers, 4 query heads over 2 kv heads of 64. */
static inline Qwen3Config small_tied_config(void) {
    return (Qwen3Config){.vocab_size = 1003,
                         .hidden_size = 128,
                         .intermediate_size = 352,
                         .num_layers = 2,
                         .num_heads = 4,
                         .num_kv_heads = 2,
                         .head_dim = 64,
                         .rms_norm_eps = 1e-6f,
                         .rope_theta = 1e6,
                         .tie_word_embeddings = true,
                         .max_position_embeddings = 4096,
                         .bos_token_id = -1,
                         .eos_token_id = -1};
}

/* A model with random weights: matrices uniform in +-0.1, norm weights near 1. */
static inline Qwen3 *random_model(const Qwen3Config *cfg) {
    Qwen3 *m = qwen3_new(cfg);
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        float *p = m->params_memory + t->offset;
        for (size_t j = 0; j < t->numel; j++) p[j] = t->ndim == 1 ? 1.0f + rnd_f(0.2f) : rnd_f(0.1f);
    }
    return m;
}

#endif
