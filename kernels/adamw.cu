/* adamw.cu — global gradient norm, clipping factor and the AdamW update on
 * fp32 master weights and moments (the formula of qwen3_adamw_step). */
#include <cuda_bf16.h>

#include "common.cuh"

/* Elements per block of the first reduction stage: fixed, so the order of
 * additions depends on the size only. */
#define SS_CHUNK 65536
#define SS_THREADS 256
#define SS_FINAL_THREADS 1024

__global__ __launch_bounds__(SS_THREADS) static void sum_squares_partial_kernel(double *part, const float *g,
                                                                                 size_t n) {
    __shared__ double sh[WARP];
    size_t i0 = (size_t)blockIdx.x * SS_CHUNK, i1 = i0 + SS_CHUNK < n ? i0 + SS_CHUNK : n;
    double s = 0.0;
    for (size_t i = i0 + threadIdx.x; i < i1; i += SS_THREADS) s += (double)g[i] * g[i];
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
 * the host rounds the scalars once, as the CPU twin does. The bf16 copy
 * the products read is written here when asked: a separate conversion
 * would read all the weights again (16 GB of fp32 for Qwen3-4B). */
__global__ static void adamw_kernel(float *p, __nv_bfloat16 *pb, const float *g, float *m, float *v, size_t n,
                                    const float *gscale, float b1, float b2, float eps, float decay, float step_size,
                                    float bc2_sqrt) {
    float sc = gscale ? *gscale : 1.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] * sc;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i] * decay - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
        p[i] = pi;
        if (pb) pb[i] = __float2bfloat16_rn(pi);
    }
}

extern "C" void cuda_sum_squares(double *sumsq, const float *g, size_t n, bool accumulate, cudaStream_t stream) {
    long nb = (long)((n + SS_CHUNK - 1) / SS_CHUNK);
    if (nb == 0) {
        if (!accumulate) cuda_check(cudaMemsetAsync(sumsq, 0, sizeof(double), stream));
        return;
    }
    double *part;
    cuda_check(cudaMallocAsync((void **)&part, (size_t)nb * sizeof(double), stream));
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
    float decay = (float)(1.0 - (double)lr * weight_decay);
    float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    adamw_kernel<<<grid_for((long)n, 256), 256, 0, stream>>>(p, (__nv_bfloat16 *)p_bf16, g, m, v, n, gscale, beta1,
                                                             beta2, eps, decay, step_size, bc2_sqrt);
    cuda_check_launch();
}
