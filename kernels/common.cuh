/* common.cuh — helpers shared by the kernel files (not part of the C API). */
#ifndef TAU2_KERNELS_COMMON_CUH
#define TAU2_KERNELS_COMMON_CUH

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels.h"

/* A launch reports bad configurations (too many threads, too much shared
 * memory) only through cudaGetLastError: check right after each launch. */
#define cuda_check_launch() cuda_check_at(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#define WARP 32
#define FULL_MASK 0xffffffffu
/* log2(e) and ln(2) in fp32: softmax in exp2 (one instruction), maxima
 * back in natural units */
#define LOG2E_F 1.4426950408889634f
#define LN2_F 0.6931471805599453f

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

/* Whether p suits 16-byte (8-byte) vector loads and stores. */
__host__ __device__ static inline bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }
__host__ __device__ static inline bool aligned8(const void *p) { return (uintptr_t)p % 8 == 0; }

/* Four fp32 values rounded to bf16 (nearest even), packed in memory order
 * for one 8-byte store. */
__device__ __forceinline__ uint2 bf16x4_pack(float4 v) {
    __nv_bfloat16 b4[4] = {__float2bfloat16_rn(v.x), __float2bfloat16_rn(v.y), __float2bfloat16_rn(v.z),
                           __float2bfloat16_rn(v.w)};
    uint2 packed;
    memcpy(&packed, b4, sizeof packed);
    return packed;
}

/* Kernels past 48 KiB of dynamic shared memory must say so before launch. */
template <typename K> static inline void kernel_smem_allow(K kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

/* ---- programmatic dependent launch (sm_90 and up) ----
 * A decode step at batch 1 is ~255 short kernels; between two of them the
 * GPU drains the first and ramps the second up to the bandwidth. A kernel
 * launched with launch_dependent may start while the stream's previous
 * kernel still runs: its blocks take SMs as that kernel's blocks leave,
 * load what no kernel of the step writes (weights) and then wait in
 * grid_dependency_wait until the previous kernel has completed and its
 * writes are visible. The contract for such a kernel: every thread calls
 * grid_dependency_wait before it touches memory another kernel of the
 * step reads or writes, and before it exits (the emulation checks the
 * latter). grid_dependents_launch lets the stream's next kernel start its
 * blocks early in turn. Where the launch was a plain one, both are no-ops;
 * so is the whole when cuda_dependent_launch_set has not turned it on. */
#ifdef TAU2_CUDA_EMU_DEVICE_H
__device__ __forceinline__ void grid_dependency_wait(void) { emu_grid_dependency_wait(); }
__device__ __forceinline__ void grid_dependents_launch(void) {}
#else
__device__ __forceinline__ void grid_dependency_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependents_launch(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
#endif

/* kernel<<<grid, block, smem, stream>>>(args), as a programmatic dependent
 * of the stream's previous kernel when cuda_dependent_launch_on() (this
 * host thread's setting); name is for error messages. */
template <typename... P, typename... A>
static inline void launch_dependent(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                                    cudaStream_t stream, A... args) {
#ifdef TAU2_CUDA_EMU_DEVICE_H
    emu_launch_as(name, grid, block, smem, stream, cuda_dependent_launch_on(), kernel, args...);
#else
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = cuda_dependent_launch_on() ? 1 : 0;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cuda_check_at(cudaLaunchKernelEx(&cfg, kernel, args...), name, __FILE__, __LINE__);
#endif
}

#endif
