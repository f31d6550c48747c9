/* adamw.cu — global gradient norm, clipping factor and the AdamW update on
 * fp32 master weights and moments (the formula of qwen3_adamw_step). */
#include <cuda_bf16.h>

#include "common.cuh"

/* Elements per block of the first reduction stage: fixed, so the order of
 * additions depends on the size only. */
#define SS_CHUNK 65536
#define SS_THREADS 256
#define SS_FINAL_THREADS 1024

/* One chunk per block. Where g is 16-byte aligned each thread reads four
 * values at a time, and four such loads are issued before their squares
 * are summed: a thread reading one float per round trip keeps ~8 KB in
 * flight per SM, far from what the memory needs to stream (these passes
 * read every gradient once a step: 16 GB for Qwen3-4B). */
__global__ __launch_bounds__(SS_THREADS) static void sum_squares_partial_kernel(double *part, const float *g,
                                                                                 size_t n) {
    __shared__ double sh[WARP];
    size_t i0 = (size_t)blockIdx.x * SS_CHUNK, i1 = i0 + SS_CHUNK < n ? i0 + SS_CHUNK : n;
    double s = 0.0;
    if (aligned16(g) && i1 - i0 == SS_CHUNK) { /* a whole aligned chunk (SS_CHUNK % 4 == 0) */
        const float4 *g4 = (const float4 *)(g + i0);
        const int per_round = 4 * SS_THREADS;
        for (int j = threadIdx.x; j < SS_CHUNK / 4; j += per_round) {
            float4 x[4];
#pragma unroll
            for (int u = 0; u < 4; u++) x[u] = g4[j + u * SS_THREADS];
#pragma unroll
            for (int u = 0; u < 4; u++)
                s += (double)x[u].x * x[u].x + (double)x[u].y * x[u].y + (double)x[u].z * x[u].z +
                     (double)x[u].w * x[u].w;
        }
    } else {
        for (size_t i = i0 + threadIdx.x; i < i1; i += SS_THREADS) s += (double)g[i] * g[i];
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ __launch_bounds__(SS_FINAL_THREADS) static void sum_squares_final_kernel(double *out, const double *part,
                                                                                     long nb, bool accumulate) {
    __shared__ double sh[WARP];
    double s = 0.0;
    for (long b = threadIdx.x; b < nb; b += SS_FINAL_THREADS) s += part[b];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

__global__ static void clip_scale_kernel(float *norm, float *gscale, const double *sumsq, float max_norm) {
    float nrm = (float)sqrt(*sumsq);
    float sc = 1.0f;
    if (max_norm > 0) {
        double coef = (double)max_norm / ((double)nrm + 1e-6);
        if (coef < 1.0) sc = (float)coef;
    }
    *norm = nrm;
    *gscale = sc;
}

/* qwen3_adamw_step's per-element formula (PyTorch's order of operations);
 * the host rounds the scalars once, as the CPU twin does. */
struct AdamwScalars {
    float b1, b2, eps, decay, step_size, bc2_sqrt;
};

__device__ __forceinline__ float adamw_one(float p, float g, float *m, float *v, float sc, const AdamwScalars &a) {
    float gi = g * sc;
    float mi = a.b1 * *m + (1.0f - a.b1) * gi;
    float vi = a.b2 * *v + (1.0f - a.b2) * gi * gi;
    *m = mi;
    *v = vi;
    return p * a.decay - a.step_size * (mi / (sqrtf(vi) / a.bc2_sqrt + a.eps));
}

/* The bf16 copy the products read is written here when asked: a separate
 * conversion would read all the weights again (16 GB of fp32 for
 * Qwen3-4B). One value per thread per step: the tensors that are not
 * 16-byte aligned, and the tails of those that are. */
__global__ static void adamw_kernel(float *p, __nv_bfloat16 *pb, const float *g, float *m, float *v, size_t n,
                                    const float *gscale, AdamwScalars a) {
    float sc = gscale ? *gscale : 1.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float pi = adamw_one(p[i], g[i], m + i, v + i, sc, a);
        p[i] = pi;
        if (pb) pb[i] = __float2bfloat16_rn(pi);
    }
}

/* The same on four values per thread per step, loaded and stored 16 bytes
 * at a time (8 for the bf16 copy): the update streams 30 bytes a weight,
 * and four 16-byte loads in flight per thread are what keeps the memory
 * busy. n4 groups of four; p, g, m, v 16-byte aligned, pb 8-byte. */
__global__ static void adamw4_kernel(float4 *p, uint2 *pb, const float4 *g, float4 *m, float4 *v, size_t n4,
                                     const float *gscale, AdamwScalars a) {
    float sc = gscale ? *gscale : 1.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        float4 pi = p[i], gi = g[i], mi = m[i], vi = v[i];
        pi.x = adamw_one(pi.x, gi.x, &mi.x, &vi.x, sc, a);
        pi.y = adamw_one(pi.y, gi.y, &mi.y, &vi.y, sc, a);
        pi.z = adamw_one(pi.z, gi.z, &mi.z, &vi.z, sc, a);
        pi.w = adamw_one(pi.w, gi.w, &mi.w, &vi.w, sc, a);
        p[i] = pi, m[i] = mi, v[i] = vi;
        if (pb) pb[i] = bf16x4_pack(pi);
    }
}

extern "C" size_t cuda_sum_squares_scratch_bytes(size_t n) { return (n + SS_CHUNK - 1) / SS_CHUNK * sizeof(double); }

extern "C" void cuda_sum_squares(double *sumsq, const float *g, size_t n, bool accumulate, cudaStream_t stream) {
    long nb = (long)((n + SS_CHUNK - 1) / SS_CHUNK);
    if (nb == 0) {
        if (!accumulate) cuda_check(cudaMemsetAsync(sumsq, 0, sizeof(double), stream));
        return;
    }
    double *part;
    cuda_check(cudaMallocAsync((void **)&part, cuda_sum_squares_scratch_bytes(n), stream));
    sum_squares_partial_kernel<<<(unsigned)nb, SS_THREADS, 0, stream>>>(part, g, n);
    cuda_check_launch();
    sum_squares_final_kernel<<<1, SS_FINAL_THREADS, 0, stream>>>(sumsq, part, nb, accumulate);
    cuda_check_launch();
    cuda_check(cudaFreeAsync(part, stream));
}

extern "C" void cuda_clip_scale(float *norm, float *gscale, const double *sumsq, float max_norm,
                                cudaStream_t stream) {
    clip_scale_kernel<<<1, 1, 0, stream>>>(norm, gscale, sumsq, max_norm);
    cuda_check_launch();
}

extern "C" void cuda_adamw_update(float *p, uint16_t *p_bf16, const float *g, float *m, float *v, size_t n,
                                  const float *gscale, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, double bc1, double bc2, cudaStream_t stream) {
    if (n == 0) return;
    AdamwScalars a;
    a.b1 = beta1, a.b2 = beta2, a.eps = eps;
    a.decay = (float)(1.0 - (double)lr * weight_decay);
    a.step_size = (float)((double)lr / bc1), a.bc2_sqrt = (float)sqrt(bc2);
    size_t n4 = 0;
    if (aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v) && aligned8(p_bf16)) {
        n4 = n / 4;
        if (n4 > 0) {
            adamw4_kernel<<<grid_for((long)n4, 256), 256, 0, stream>>>(
                (float4 *)p, (uint2 *)p_bf16, (const float4 *)g, (float4 *)m, (float4 *)v, n4, gscale, a);
            cuda_check_launch();
        }
    }
    size_t done = 4 * n4;
    if (done < n) {
        adamw_kernel<<<grid_for((long)(n - done), 256), 256, 0, stream>>>(
            p + done, p_bf16 ? (__nv_bfloat16 *)p_bf16 + done : NULL, g + done, m + done, v + done, n - done, gscale,
            a);
        cuda_check_launch();
    }
}
