/* convert.cu — fp32 <-> bf16 conversions (the bf16 copies of weights and
 * activations that the matrix products read). */
#include <cuda_bf16.h>

#include "common.cuh"

__global__ static void f32_to_bf16_kernel(__nv_bfloat16 *out, const float *x, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(x[i]);
}

__global__ static void bf16_to_f32_kernel(float *out, const __nv_bfloat16 *x, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        out[i] = __bfloat162float(x[i]);
}

extern "C" void cuda_f32_to_bf16(uint16_t *out, const float *x, long N, cudaStream_t stream) {
    if (N <= 0) return;
    f32_to_bf16_kernel<<<grid_for(N, 256), 256, 0, stream>>>((__nv_bfloat16 *)out, x, N);
    cuda_check_launch();
}

extern "C" void cuda_bf16_to_f32(float *out, const uint16_t *x, long N, cudaStream_t stream) {
    if (N <= 0) return;
    bf16_to_f32_kernel<<<grid_for(N, 256), 256, 0, stream>>>(out, (const __nv_bfloat16 *)x, N);
    cuda_check_launch();
}
