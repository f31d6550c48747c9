/* embedding.cu — token embedding lookup and its gradient scatter, whole
 * table or this rank's vocab shard [v0, v0 + Vs). */
#include <limits.h>

#include <cuda_bf16.h>

#include "common.cuh"

/* One block per token, threads across the row: reads and writes of a row
 * are contiguous (coalesced). Tokens outside the shard give zeros, so the
 * all-reduce over TP ranks assembles the full embedding. */
__global__ static void embedding_forward_kernel(float *out, const int32_t *tokens, const float *table, int C, int v0,
                                                int Vs) {
    int t = blockIdx.x;
    int row = tokens[t] - v0;
    bool in = row >= 0 && row < Vs;
    float *o = out + (size_t)t * C;
    const float *src = table + (size_t)(in ? row : 0) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = in ? src[c] : 0.0f;
}

__global__ static void embedding_forward_bf16_kernel(float *out, const int32_t *tokens, const __nv_bfloat16 *table,
                                                     int C) {
    int t = blockIdx.x;
    float *o = out + (size_t)t * C;
    const __nv_bfloat16 *src = table + (size_t)tokens[t] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = __bfloat162float(src[c]);
}

/* One block per token. A deterministic scatter would need the tokens sorted
 * by id (the CPU walks them in order per column); atomicAdd is exact for a
 * token seen once and only reorders the additions of repeated tokens. */
__global__ static void embedding_backward_kernel(float *dtable, const float *dout, const int32_t *tokens, int C,
                                                 int v0, int Vs) {
    int t = blockIdx.x;
    int row = tokens[t] - v0;
    if (row < 0 || row >= Vs) return;
    const float *d = dout + (size_t)t * C;
    float *r = dtable + (size_t)row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(&r[c], d[c]);
}

static int row_threads(int C) { return C >= 512 ? 512 : (C + 31) / 32 * 32; }

extern "C" void cuda_embedding_forward_shard(float *out, const int32_t *tokens, const float *table, int T, int C,
                                             int v0, int Vs, cudaStream_t stream) {
    if (T <= 0 || C <= 0) return;
    embedding_forward_kernel<<<T, row_threads(C), 0, stream>>>(out, tokens, table, C, v0, Vs);
    cuda_check_launch();
}

extern "C" void cuda_embedding_backward_shard(float *dtable, const float *dout, const int32_t *tokens, int T, int C,
                                              int v0, int Vs, cudaStream_t stream) {
    if (T <= 0 || C <= 0) return;
    embedding_backward_kernel<<<T, row_threads(C), 0, stream>>>(dtable, dout, tokens, C, v0, Vs);
    cuda_check_launch();
}

extern "C" void cuda_embedding_forward(float *out, const int32_t *tokens, const float *table, int T, int C,
                                       cudaStream_t stream) {
    cuda_embedding_forward_shard(out, tokens, table, T, C, 0, INT_MAX, stream);
}

extern "C" void cuda_embedding_forward_bf16(float *out, const int32_t *tokens, const uint16_t *table, int T, int C,
                                            cudaStream_t stream) {
    if (T <= 0) return;
    embedding_forward_bf16_kernel<<<T, row_threads(C), 0, stream>>>(out, tokens, (const __nv_bfloat16 *)table,
                                                                   C);
    cuda_check_launch();
}

extern "C" void cuda_embedding_backward(float *dtable, const float *dout, const int32_t *tokens, int T, int C,
                                        cudaStream_t stream) {
    cuda_embedding_backward_shard(dtable, dout, tokens, T, C, 0, INT_MAX, stream);
}
