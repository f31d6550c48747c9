/* output_head.cu — per-token logprob, entropy and log-sum-exp from a chunk
 * of logits, and the gradient with respect to those logits, whole vocabulary
 * or this rank's vocab slice. The caller produces the logits a chunk of
 * rows at a time (cuda_matmul_forward of the final hidden states with
 * lm_head), so a full (tokens x vocabulary) matrix never exists.
 *
 * One block per row for the reductions: a pass for the max, a pass for the
 * sums (exponentials in fp32, sums in double as on the CPU), each thread
 * striding over the row (coalesced), then a fixed-order block tree. */
#include "common.cuh"

#define HEAD_THREADS 512

/* Max of a row: every thread returns it. */
__device__ static float row_max(const float *z, int V, float *shared) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, z[j]);
    return block_max(m, shared);
}

/* sum = sum_j e_j, sdz = sum_j e_j (m - z_j), e_j = exp(z_j - m). */
__device__ static void row_sums(double *sum, double *sdz, const float *z, int V, float m, double *shared) {
    double s = 0.0, sd = 0.0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float diff = z[j] - m;
        float e = expf(diff);
        s += (double)e;
        sd += (double)e * (double)(-diff);
    }
    *sum = block_sum_d(s, shared);
    *sdz = block_sum_d(sd, shared);
}

__global__ __launch_bounds__(HEAD_THREADS) static void logprob_entropy_forward_kernel(
    float *logprob, float *entropy, float *lse, const float *logits, const int32_t *targets, int V) {
    __shared__ float fsh[WARP];
    __shared__ double dsh[WARP];
    int r = blockIdx.x;
    const float *z = logits + (size_t)r * V;
    float m = row_max(z, V, fsh);
    double sum, sdz;
    row_sums(&sum, &sdz, z, V, m, dsh);
    if (threadIdx.x == 0) {
        double ls = log(sum);
        /* entropy = log(sum) + sum e (m - z) / sum: no cancellation */
        lse[r] = (float)(m + ls);
        entropy[r] = (float)(ls + sdz / sum);
        int t = targets[r];
        logprob[r] = t >= 0 ? (float)((double)(z[t] - m) - ls) : 0.0f;
    }
}

__global__ __launch_bounds__(HEAD_THREADS) static void vocab_row_max_kernel(float *mx, const float *logits, int Vs) {
    __shared__ float fsh[WARP];
    float m = row_max(logits + (size_t)blockIdx.x * Vs, Vs, fsh);
    if (threadIdx.x == 0) mx[blockIdx.x] = m;
}

__global__ __launch_bounds__(HEAD_THREADS) static void logprob_entropy_partial_kernel(
    double *stats, const float *logits, const int32_t *targets, const float *mx, int Vs, int v0) {
    __shared__ double dsh[WARP];
    int r = blockIdx.x;
    const float *z = logits + (size_t)r * Vs;
    float m = mx[r];
    double sum, sdz;
    row_sums(&sum, &sdz, z, Vs, m, dsh);
    if (threadIdx.x == 0) {
        int tl = targets[r] - v0;
        stats[3 * r] = sum;
        stats[3 * r + 1] = sdz;
        stats[3 * r + 2] = targets[r] >= 0 && tl >= 0 && tl < Vs ? (double)(z[tl] - m) : 0.0;
    }
}

__global__ static void logprob_entropy_finish_kernel(float *logprob, float *entropy, float *lse, const double *stats,
                                                     const float *mx, const int32_t *targets, int R) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= R) return;
    double sum = stats[3 * r], sdz = stats[3 * r + 1];
    double ls = log(sum);
    lse[r] = (float)(mx[r] + ls);
    entropy[r] = (float)(ls + sdz / sum);
    logprob[r] = targets[r] >= 0 ? (float)(stats[3 * r + 2] - ls) : 0.0f;
}

/* Grid (R, column blocks), rows on x (a chunk may have more rows than y's
 * limit of 65535): elementwise over the row,
 *   dz_j = -dlogprob p_j - dentropy p_j (log p_j + entropy) (+ dlogprob at the target). */
__global__ static void logprob_entropy_backward_kernel(float *logits, const float *dlogprob, const float *dentropy,
                                                       const float *lse, const float *entropy,
                                                       const int32_t *targets, int V, int v0) {
    int r = blockIdx.x;
    float *z = logits + (size_t)r * V;
    float dlp = targets[r] >= 0 ? dlogprob[r] : 0.0f;
    float dent = dentropy ? dentropy[r] : 0.0f;
    float l = lse[r], ent = entropy[r];
    int tl = targets[r] >= 0 ? targets[r] - v0 : -1;
    bool none = dlp == 0.0f && dent == 0.0f; /* masked row: no gradient at all */
    for (int j = blockIdx.y * blockDim.x + threadIdx.x; j < V; j += gridDim.y * blockDim.x) {
        if (none) {
            z[j] = 0.0f;
            continue;
        }
        float lp = z[j] - l;
        float p = expf(lp);
        float g = -dlp * p - dent * p * (lp + ent);
        if (j == tl) g += dlp;
        z[j] = g;
    }
}

extern "C" void cuda_logprob_entropy_forward(float *logprob, float *entropy, float *lse, const float *logits,
                                             const int32_t *targets, int R, int V, cudaStream_t stream) {
    if (R <= 0) return;
    logprob_entropy_forward_kernel<<<R, HEAD_THREADS, 0, stream>>>(logprob, entropy, lse, logits, targets, V);
    cuda_check_launch();
}

extern "C" void cuda_vocab_row_max(float *mx, const float *logits, int R, int Vs, cudaStream_t stream) {
    if (R <= 0) return;
    vocab_row_max_kernel<<<R, HEAD_THREADS, 0, stream>>>(mx, logits, Vs);
    cuda_check_launch();
}

extern "C" void cuda_logprob_entropy_partial(double *stats, const float *logits, const int32_t *targets,
                                             const float *mx, int R, int Vs, int v0, cudaStream_t stream) {
    if (R <= 0) return;
    logprob_entropy_partial_kernel<<<R, HEAD_THREADS, 0, stream>>>(stats, logits, targets, mx, Vs, v0);
    cuda_check_launch();
}

extern "C" void cuda_logprob_entropy_finish(float *logprob, float *entropy, float *lse, const double *stats,
                                            const float *mx, const int32_t *targets, int R, cudaStream_t stream) {
    if (R <= 0) return;
    logprob_entropy_finish_kernel<<<(R + 127) / 128, 128, 0, stream>>>(logprob, entropy, lse, stats, mx, targets, R);
    cuda_check_launch();
}

extern "C" void cuda_logprob_entropy_backward_shard(float *logits, const float *dlogprob, const float *dentropy,
                                                    const float *lse, const float *entropy, const int32_t *targets,
                                                    int R, int Vs, int v0, cudaStream_t stream) {
    if (R <= 0 || Vs <= 0) return;
    int cols = (Vs + 255) / 256;
    dim3 grid(R, cols < 64 ? cols : 64);
    logprob_entropy_backward_kernel<<<grid, 256, 0, stream>>>(logits, dlogprob, dentropy, lse, entropy, targets, Vs,
                                                              v0);
    cuda_check_launch();
}

extern "C" void cuda_logprob_entropy_backward(float *logits, const float *dlogprob, const float *dentropy,
                                              const float *lse, const float *entropy, const int32_t *targets, int R,
                                              int V, cudaStream_t stream) {
    cuda_logprob_entropy_backward_shard(logits, dlogprob, dentropy, lse, entropy, targets, R, V, 0, stream);
}
