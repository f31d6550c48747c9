/* attention_bf16.cuh — the launchers the two tensor-core attentions share
 * (attention_tc.cu's WMMA kernels, attention_mma.cu's mma.sync ones; not
 * part of the C API). Both families take 64 queries (or keys) per block,
 * MMA_THREADS-style blocks of 128 threads and the same arguments, so one
 * launcher serves both: it makes the bf16 copies of the inputs, launches
 * the family's kernels, and sums each kv head's group for dk and dv. */
#ifndef TAU2_KERNELS_ATTENTION_BF16_CUH
#define TAU2_KERNELS_ATTENTION_BF16_CUH

#include <cuda_bf16.h>

#include "common.cuh"

#define ATT_BF16_ROWS 64     /* queries (or keys) per block */
#define ATT_BF16_THREADS 128 /* 4 warps of 16 rows */

/* bf16 copies of the (T, heads, D) fp32 inputs of the tensor-core
 * attentions (attention_tc.cu, attention_mma.cu), made once per call: the
 * kernels read each tile of K and V many times over (once per query tile)
 * and each Q and dO tile once per key tile, and converting as they load
 * cost more than the copies (the same rounding either way). Owned by the
 * caller, freed with bf16_inputs_free on the same stream. */
typedef struct {
    __nv_bfloat16 *base;
    const __nv_bfloat16 *x[4];
} Bf16Inputs;

/* The pool scratch the launchers below take for T rows: the bf16 copies
 * of q, k, v (and dout), and the backward's per-query-head dk and dv. */
static inline size_t attention_bf16_scratch_bytes(int T, int NH, int NKV, int D, bool backward) {
    size_t q = (size_t)T * NH * D, kv = (size_t)T * NKV * D;
    if (!backward) return (q + 2 * kv) * sizeof(__nv_bfloat16);
    return (2 * q + 2 * kv) * sizeof(__nv_bfloat16) + 2 * q * sizeof(float);
}

static inline Bf16Inputs bf16_inputs_new(const float *const *src, const size_t *n, int count, cudaStream_t stream) {
    Bf16Inputs b = {};
    size_t total = 0;
    for (int i = 0; i < count; i++) total += n[i];
    cuda_check(cudaMallocAsync((void **)&b.base, total * sizeof(__nv_bfloat16), stream));
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        cuda_f32_to_bf16((uint16_t *)(b.base + at), src[i], (long)n[i], stream);
        b.x[i] = b.base + at;
        at += n[i];
    }
    return b;
}

static inline void bf16_inputs_free(Bf16Inputs *b, cudaStream_t stream) { cuda_check(cudaFreeAsync(b->base, stream)); }

/* A family's kernels for one head_dim, with the dynamic shared memory each
 * takes. Grids: (T / 64 rounded up, NH) for all three. */
typedef void (*AttBf16Forward)(float *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                               const __nv_bfloat16 *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH,
                               int NKV, float scale);
typedef void (*AttBf16Dq)(float *dq, const __nv_bfloat16 *dout, const float *lse, const float *delta,
                          const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                          const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, float scale);
typedef void (*AttBf16Dkv)(float *dkh, float *dvh, const __nv_bfloat16 *dout, const float *lse, const float *delta,
                           const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                           const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, float scale);
typedef struct {
    AttBf16Forward forward;
    AttBf16Dq dq;
    AttBf16Dkv dkv; /* each query head's share into dkh, dvh (T, NH, D), unscaled */
    size_t forward_smem, dq_smem, dkv_smem;
} AttBf16Kernels;

static inline void attention_bf16_forward(const AttBf16Kernels *kern, float *out, float *lse, const float *q,
                                          const float *k, const float *v, const int32_t *seq_of,
                                          const int32_t *seq_start, int T, int NH, int NKV, int D,
                                          cudaStream_t stream) {
    const float *src[3] = {q, k, v};
    size_t n[3] = {(size_t)T * NH * D, (size_t)T * NKV * D, (size_t)T * NKV * D};
    Bf16Inputs b = bf16_inputs_new(src, n, 3, stream);
    AttBf16Forward forward = kern->forward;
    kernel_smem_allow(forward, kern->forward_smem);
    dim3 grid((T + ATT_BF16_ROWS - 1) / ATT_BF16_ROWS, NH);
    forward<<<grid, ATT_BF16_THREADS, kern->forward_smem, stream>>>(out, lse, b.x[0], b.x[1], b.x[2], seq_of,
                                                                   seq_start, T, NH, NKV, 1.0f / sqrtf((float)D));
    cuda_check_launch();
    bf16_inputs_free(&b, stream);
}

static inline void attention_bf16_backward(const AttBf16Kernels *kern, float *dq, float *dk, float *dv,
                                           const float *delta, const float *dout, const float *lse, const float *q,
                                           const float *k, const float *v, const int32_t *seq_of,
                                           const int32_t *seq_start, int T, int NH, int NKV, int D,
                                           cudaStream_t stream) {
    float scale = 1.0f / sqrtf((float)D);
    const float *src[4] = {q, k, v, dout};
    size_t n[4] = {(size_t)T * NH * D, (size_t)T * NKV * D, (size_t)T * NKV * D, (size_t)T * NH * D};
    Bf16Inputs b = bf16_inputs_new(src, n, 4, stream);
    const __nv_bfloat16 *qb = b.x[0], *kb = b.x[1], *vb = b.x[2], *dob = b.x[3];
    dim3 grid((T + ATT_BF16_ROWS - 1) / ATT_BF16_ROWS, NH);
    AttBf16Dq dq_kernel = kern->dq;
    kernel_smem_allow(dq_kernel, kern->dq_smem);
    dq_kernel<<<grid, ATT_BF16_THREADS, kern->dq_smem, stream>>>(dq, dob, lse, delta, qb, kb, vb, seq_of, seq_start,
                                                                 T, NH, NKV, scale);
    cuda_check_launch();
    /* each query head's share of dk and dv, then the group sums */
    float *dkh;
    size_t head_n = (size_t)T * NH * D;
    cuda_check(cudaMallocAsync((void **)&dkh, 2 * head_n * sizeof(float), stream));
    float *dvh = dkh + head_n;
    AttBf16Dkv dkv_kernel = kern->dkv;
    kernel_smem_allow(dkv_kernel, kern->dkv_smem);
    dkv_kernel<<<grid, ATT_BF16_THREADS, kern->dkv_smem, stream>>>(dkh, dvh, dob, lse, delta, qb, kb, vb, seq_of,
                                                                   seq_start, T, NH, NKV, scale);
    cuda_check_launch();
    cuda_attention_group_sum(dk, dv, dkh, dvh, T, NH, NKV, D, scale, stream);
    cuda_check(cudaFreeAsync(dkh, stream));
    bf16_inputs_free(&b, stream);
}

#endif
