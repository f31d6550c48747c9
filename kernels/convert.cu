/* convert.cu — fp32 <-> bf16 conversions (the bf16 copies of weights and
 * activations that the matrix products read). */
#include <cuda_bf16.h>

#include "common.cuh"

__global__ static void f32_to_bf16_kernel(__nv_bfloat16 *out, const float *x, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(x[i]);
}

/* Four values a thread per step, a 16-byte load and an 8-byte store: one
 * float per thread keeps ~8 KB in flight per SM, about half of what
 * streaming at the memory's rate takes, and these conversions (the
 * products' operands, the attention's inputs, the head's dlogits) move
 * tens of GB a training step. n4 groups of four; x 16-byte aligned, out
 * 8-byte. */
__global__ static void f32_to_bf16_x4_kernel(uint2 *out, const float4 *x, long n4) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n4; i += (long)gridDim.x * blockDim.x)
        out[i] = bf16x4_pack(x[i]);
}

__global__ static void bf16_to_f32_kernel(float *out, const __nv_bfloat16 *x, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = __bfloat162float(x[i]);
}

extern "C" void cuda_f32_to_bf16(uint16_t *out, const float *x, long N, cudaStream_t stream) {
    if (N <= 0) return;
    long done = 0;
    if (aligned16(x) && aligned8(out) && N >= 4) {
        long n4 = N / 4;
        f32_to_bf16_x4_kernel<<<grid_for(n4, 256), 256, 0, stream>>>((uint2 *)out, (const float4 *)x, n4);
        cuda_check_launch();
        done = 4 * n4;
    }
    if (done < N) {
        f32_to_bf16_kernel<<<grid_for(N - done, 256), 256, 0, stream>>>((__nv_bfloat16 *)out + done, x + done,
                                                                        N - done);
        cuda_check_launch();
    }
}

extern "C" void cuda_bf16_to_f32(float *out, const uint16_t *x, long N, cudaStream_t stream) {
    if (N <= 0) return;
    bf16_to_f32_kernel<<<grid_for(N, 256), 256, 0, stream>>>(out, (const __nv_bfloat16 *)x, N);
    cuda_check_launch();
}
