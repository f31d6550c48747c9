/* common.cuh — helpers shared by the kernel files (not part of the C API). */
#ifndef TAU2_KERNELS_COMMON_CUH
#define TAU2_KERNELS_COMMON_CUH

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "kernels.h"

/* A launch reports bad configurations (too many threads, too much shared
 * memory) only through cudaGetLastError: check right after each launch. */
#define cuda_check_launch() cuda_check_at(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#define WARP 32
#define FULL_MASK 0xffffffffu

/* Blocks for n elements at `threads` per block, capped: the elementwise
 * kernels stride over the rest (grid-stride loops), so a huge n never
 * exceeds the grid limit and each thread does a few elements. */
static inline unsigned grid_for(long n, int threads) {
    long b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535L * 8) b = 65535L * 8;
    return (unsigned)b;
}

/* Butterfly reductions: every lane ends with the result (no broadcast needed). */
__device__ __forceinline__ float warp_sum(float x) {
    for (int o = WARP / 2; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

__device__ __forceinline__ double warp_sum_d(double x) {
    for (int o = WARP / 2; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int o = WARP / 2; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, o));
    return x;
}

/* Block-wide sum / max for blocks of up to 1024 threads (a multiple of 32):
 * each warp reduces, warp 0 reduces the warps' results. `shared` holds 32
 * values; every thread returns the result. The fixed tree keeps the order
 * of additions the same on every run. */
__device__ __forceinline__ double block_sum_d(double x, double *shared) {
    int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
    x = warp_sum_d(x);
    __syncthreads(); /* shared may still be read from a previous call */
    if (lane == 0) shared[w] = x;
    __syncthreads();
    x = lane < nw ? shared[lane] : 0.0;
    return warp_sum_d(x);
}

__device__ __forceinline__ float block_max(float x, float *shared) {
    int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) shared[w] = x;
    __syncthreads();
    x = lane < nw ? shared[lane] : -INFINITY;
    return warp_max(x);
}

/* 8 bf16 as loaded in one 16-byte piece, as fp32 (a bf16 is the high half
 * of the fp32 with the same value). */
__device__ __forceinline__ void bf16x8_unpack(float (&out)[8], uint4 u) {
    const unsigned v[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        out[2 * i] = __uint_as_float(v[i] << 16);
        out[2 * i + 1] = __uint_as_float(v[i] & 0xffff0000u);
    }
}

/* Kernels past 48 KiB of dynamic shared memory must say so before launch. */
template <typename K> static inline void kernel_smem_allow(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

#endif
