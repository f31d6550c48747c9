/* elementwise.cu — SwiGLU and the residual add: memory-bound loops, one
 * element per thread per step of a grid-stride loop (coalesced). expf, not
 * __expf, so the sigmoid matches the CPU twin to a few ulp. */
#include <cuda_bf16.h>

#include "common.cuh"

__device__ __forceinline__ void swiglu_store(float *p, float x) { *p = x; }
__device__ __forceinline__ void swiglu_store(__nv_bfloat16 *p, float x) { *p = __float2bfloat16_rn(x); }

/* h in fp32, or in bf16 for the down projection of inference */
template <typename Out>
__global__ static void swiglu_forward_kernel(Out *h, const float *gate, const float *up, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float g = gate[i];
        float s = 1.0f / (1.0f + expf(-g));
        swiglu_store(h + i, g * s * up[i]);
    }
}

/* dgate and dup in fp32, or in bf16 as the gate/up products' backward takes
 * them (the same bits as fp32 then cuda_f32_to_bf16) */
template <typename Out>
__global__ static void swiglu_backward_kernel(Out *dgate, Out *dup, const float *dh, const float *gate,
                                              const float *up, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float g = gate[i];
        float s = 1.0f / (1.0f + expf(-g));
        float d = dh[i];
        swiglu_store(dup + i, d * g * s);
        swiglu_store(dgate + i, d * up[i] * s * (1.0f + g * (1.0f - s)));
    }
}

__global__ static void residual_add_kernel(float *x, const float *y, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) x[i] += y[i];
}

extern "C" void cuda_swiglu_forward(float *h, const float *gate, const float *up, long N, cudaStream_t stream) {
    if (N <= 0) return;
    swiglu_forward_kernel<float><<<grid_for(N, 256), 256, 0, stream>>>(h, gate, up, N);
    cuda_check_launch();
}

extern "C" void cuda_swiglu_forward_bf16(uint16_t *h, const float *gate, const float *up, long N, cudaStream_t stream) {
    if (N <= 0) return;
    swiglu_forward_kernel<__nv_bfloat16><<<grid_for(N, 256), 256, 0, stream>>>((__nv_bfloat16 *)h, gate, up, N);
    cuda_check_launch();
}

extern "C" void cuda_swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                                     long N, cudaStream_t stream) {
    if (N <= 0) return;
    swiglu_backward_kernel<float><<<grid_for(N, 256), 256, 0, stream>>>(dgate, dup, dh, gate, up, N);
    cuda_check_launch();
}

extern "C" void cuda_swiglu_backward_bf16(uint16_t *dgate, uint16_t *dup, const float *dh, const float *gate,
                                          const float *up, long N, cudaStream_t stream) {
    if (N <= 0) return;
    swiglu_backward_kernel<__nv_bfloat16><<<grid_for(N, 256), 256, 0, stream>>>(
        (__nv_bfloat16 *)dgate, (__nv_bfloat16 *)dup, dh, gate, up, N);
    cuda_check_launch();
}

extern "C" void cuda_residual_add(float *x, const float *y, long N, cudaStream_t stream) {
    if (N <= 0) return;
    residual_add_kernel<<<grid_for(N, 256), 256, 0, stream>>>(x, y, N);
    cuda_check_launch();
}
