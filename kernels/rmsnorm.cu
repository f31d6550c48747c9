/* rmsnorm.cu — RMSNorm forward and backward (also the per-head q/k norm:
 * N = tokens * heads rows of C = head_dim). */
#include <cuda_bf16.h>

#include "common.cuh"

/* Rows per block of the row kernels: one warp per row. */
#define NORM_WARPS 8
/* Rows of at least NORM_ROW_MIN values take a block each, of this many threads. */
#define NORM_ROW_THREADS 256
#define NORM_ROW_MIN 512
/* Values per thread the row kernel keeps in registers: rows up to 4096 wide. */
#define NORM_ROW_KEEP 16
/* Rows summed by one block of the weight-gradient reduction. */
#define DW_ROWS 64

/* The output as the next product takes it: fp32, or bf16 (rounded to
 * nearest even). */
__device__ __forceinline__ void norm_store(float *p, float x) { *p = x; }
__device__ __forceinline__ void norm_store(__nv_bfloat16 *p, float x) { *p = __float2bfloat16_rn(x); }

/* One warp per row: lanes stride over the row (coalesced), the sum of
 * squares is a warp butterfly in double (the CPU twin sums in double).
 * rstd may be NULL (inference keeps no backward state). For short rows
 * (the per-head q/k norms). */
template <typename Out>
__global__ static void rmsnorm_forward_kernel(Out *out, float *rstd, const float *x, const float *w, int N, int C,
                                              float eps) {
    int n = blockIdx.x * NORM_WARPS + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (n >= N) return;
    const float *xr = x + (size_t)n * C;
    Out *o = out + (size_t)n * C;
    double ss = 0.0;
    for (int c = lane; c < C; c += WARP) ss += (double)xr[c] * xr[c];
    ss = warp_sum_d(ss);
    float r = (float)(1.0 / sqrt(ss / C + (double)eps));
    for (int c = lane; c < C; c += WARP) norm_store(o + c, xr[c] * r * w[c]);
    if (lane == 0 && rstd) rstd[n] = r;
}

/* One block per row, for rows of hidden_size. A warp alone walks a row of
 * 2560 values in 80 dependent steps, each a memory latency: ~35 us per
 * call on an H100 whether the step has 1 row or 4096 (measured). A block
 * of NORM_ROW_THREADS has each thread load its first NORM_ROW_KEEP values
 * at once, kept in registers for the output (the rest, past
 * NORM_ROW_THREADS * NORM_ROW_KEEP, is read twice); the weights are loaded
 * at once too: a row costs two memory round trips, not one per value (a
 * decode step's norm is all latency: 1 row). The sum of squares is the
 * fixed block tree, in double, each thread's values in column order. */
template <typename Out>
__global__ __launch_bounds__(NORM_ROW_THREADS) static void rmsnorm_forward_row_kernel(Out *out, float *rstd,
                                                                                      const float *x, const float *w,
                                                                                      int C, float eps) {
    __shared__ double dsh[WARP];
    int n = blockIdx.x;
    const float *xr = x + (size_t)n * C;
    Out *o = out + (size_t)n * C;
    const int kept = NORM_ROW_THREADS * NORM_ROW_KEEP;
    /* the weights first: as a programmatic dependent (the decode step) the
     * block loads them before the kernel that wrote x has ended */
    grid_dependents_launch();
    float wv[NORM_ROW_KEEP], xv[NORM_ROW_KEEP];
#pragma unroll
    for (int i = 0; i < NORM_ROW_KEEP; i++) {
        int c = threadIdx.x + i * NORM_ROW_THREADS;
        wv[i] = c < C ? w[c] : 0.0f;
    }
    grid_dependency_wait();
#pragma unroll
    for (int i = 0; i < NORM_ROW_KEEP; i++) {
        int c = threadIdx.x + i * NORM_ROW_THREADS;
        xv[i] = c < C ? xr[c] : 0.0f;
    }
    double ss = 0.0;
#pragma unroll
    for (int i = 0; i < NORM_ROW_KEEP; i++) ss += (double)xv[i] * xv[i]; /* zeros past C add nothing */
    for (int c = threadIdx.x + kept; c < C; c += NORM_ROW_THREADS) ss += (double)xr[c] * xr[c];
    ss = block_sum_d(ss, dsh);
    float r = (float)(1.0 / sqrt(ss / C + (double)eps));
#pragma unroll
    for (int i = 0; i < NORM_ROW_KEEP; i++) {
        int c = threadIdx.x + i * NORM_ROW_THREADS;
        if (c < C) norm_store(o + c, xv[i] * r * wv[i]);
    }
    for (int c = threadIdx.x + kept; c < C; c += NORM_ROW_THREADS) norm_store(o + c, xr[c] * r * w[c]);
    if (threadIdx.x == 0 && rstd) rstd[n] = r;
}

/* dx = r (dy w) - x r^3 / C * sum(dy w x), one warp per row. */
__global__ static void rmsnorm_backward_dx_kernel(float *dx, const float *dout, const float *x, const float *w,
                                                  const float *rstd, int N, int C, bool accumulate) {
    int n = blockIdx.x * NORM_WARPS + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (n >= N) return;
    const float *dy = dout + (size_t)n * C, *xr = x + (size_t)n * C;
    float *d = dx + (size_t)n * C;
    float r = rstd[n];
    double dot = 0.0;
    for (int c = lane; c < C; c += WARP) dot += (double)dy[c] * w[c] * xr[c];
    dot = warp_sum_d(dot);
    float k = (float)(dot * r * r * r / C);
    for (int c = lane; c < C; c += WARP) {
        float g = r * dy[c] * w[c] - xr[c] * k;
        d[c] = accumulate ? d[c] + g : g;
    }
}

/* The same, one block per row (see rmsnorm_forward_row_kernel). */
__global__ __launch_bounds__(NORM_ROW_THREADS) static void rmsnorm_backward_dx_row_kernel(
    float *dx, const float *dout, const float *x, const float *w, const float *rstd, int C, bool accumulate) {
    __shared__ double dsh[WARP];
    int n = blockIdx.x;
    const float *dy = dout + (size_t)n * C, *xr = x + (size_t)n * C;
    float *d = dx + (size_t)n * C;
    float r = rstd[n];
    double dot = 0.0;
    for (int c = threadIdx.x; c < C; c += NORM_ROW_THREADS) dot += (double)dy[c] * w[c] * xr[c];
    dot = block_sum_d(dot, dsh);
    float k = (float)(dot * r * r * r / C);
    for (int c = threadIdx.x; c < C; c += NORM_ROW_THREADS) {
        float g = r * dy[c] * w[c] - xr[c] * k;
        d[c] = accumulate ? d[c] + g : g;
    }
}

/* dw stage 1: block (row chunk, column block) sums DW_ROWS rows of
 * dout * x * rstd per column; threads run across columns, so each row is
 * read coalesced. Partial sums go to part (chunks, C). The row chunks are
 * the grid's x (up to 2^31 - 1 blocks): the q/k norms' N = T * heads
 * passes y's limit of 65535 chunks at a few million rows. */
__global__ static void rmsnorm_dw_partial_kernel(double *part, const float *dout, const float *x, const float *rstd,
                                                 int N, int C) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int n0 = blockIdx.x * DW_ROWS, n1 = n0 + DW_ROWS < N ? n0 + DW_ROWS : N;
    double acc = 0.0;
    for (int n = n0; n < n1; n++) acc += (double)(dout[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd[n]);
    part[(size_t)blockIdx.x * C + c] = acc;
}

/* dw stage 2: the chunks of each column in order: the same sum every run. */
__global__ static void rmsnorm_dw_finish_kernel(float *dw, const double *part, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double acc = 0.0;
    for (int b = 0; b < chunks; b++) acc += part[(size_t)b * C + c];
    dw[c] += (float)acc;
}

extern "C" void cuda_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps,
                                     cudaStream_t stream) {
    if (N <= 0) return;
    if (C >= NORM_ROW_MIN) {
        launch_dependent("rmsnorm_forward_row_kernel", rmsnorm_forward_row_kernel<float>, N, NORM_ROW_THREADS, 0,
                         stream, out, rstd, x, w, C, eps);
        return;
    }
    rmsnorm_forward_kernel<float><<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_WARPS * WARP, 0, stream>>>(out, rstd, x, w,
                                                                                                         N, C, eps);
    cuda_check_launch();
}

extern "C" void cuda_rmsnorm_forward_bf16(uint16_t *out, float *rstd, const float *x, const float *w, int N, int C,
                                          float eps, cudaStream_t stream) {
    if (N <= 0) return;
    if (C >= NORM_ROW_MIN) {
        launch_dependent("rmsnorm_forward_row_kernel", rmsnorm_forward_row_kernel<__nv_bfloat16>, N,
                         NORM_ROW_THREADS, 0, stream, (__nv_bfloat16 *)out, rstd, x, w, C, eps);
        return;
    }
    rmsnorm_forward_kernel<__nv_bfloat16><<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_WARPS * WARP, 0, stream>>>(
        (__nv_bfloat16 *)out, rstd, x, w, N, C, eps);
    cuda_check_launch();
}

extern "C" size_t cuda_rmsnorm_backward_dw_scratch_bytes(int N, int C) {
    if (N <= 0 || C <= 0) return 0;
    return (size_t)((N + DW_ROWS - 1) / DW_ROWS) * C * sizeof(double);
}

extern "C" void cuda_rmsnorm_backward_dw(float *dw, const float *dout, const float *x, const float *rstd, int N, int C,
                                         cudaStream_t stream) {
    if (N <= 0) return;
    int chunks = (N + DW_ROWS - 1) / DW_ROWS;
    double *part;
    cuda_check(cudaMallocAsync((void **)&part, cuda_rmsnorm_backward_dw_scratch_bytes(N, C), stream));
    dim3 grid(chunks, (C + 127) / 128);
    rmsnorm_dw_partial_kernel<<<grid, 128, 0, stream>>>(part, dout, x, rstd, N, C);
    cuda_check_launch();
    rmsnorm_dw_finish_kernel<<<(C + 127) / 128, 128, 0, stream>>>(dw, part, chunks, C);
    cuda_check_launch();
    cuda_check(cudaFreeAsync(part, stream));
}

extern "C" void cuda_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                      const float *rstd, int N, int C, bool accumulate_dx, cudaStream_t stream) {
    if (N <= 0) return;
    if (C >= NORM_ROW_MIN)
        rmsnorm_backward_dx_row_kernel<<<N, NORM_ROW_THREADS, 0, stream>>>(dx, dout, x, w, rstd, C, accumulate_dx);
    else
        rmsnorm_backward_dx_kernel<<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_WARPS * WARP, 0, stream>>>(
            dx, dout, x, w, rstd, N, C, accumulate_dx);
    cuda_check_launch();
    cuda_rmsnorm_backward_dw(dw, dout, x, rstd, N, C, stream);
}
