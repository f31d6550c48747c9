/* qk_norm_rope.cu — the training step's q/k path: each head's RMSNorm then
 * RoPE in one launch forward, RoPE's transpose then the norm's input
 * gradient in one launch backward (CPU twins: qk_norm_rope_forward and
 * qk_norm_rope_backward). The arithmetic is rmsnorm.cu's and rope.cu's,
 * expression for expression: the sums of squares and dot products in
 * double over each row's columns in the same order, so only the compiler's
 * FMA contraction of a rotation can tell the fused launch from the four it
 * replaces. One warp per (token, head), the NH query heads of a token then
 * its NKV key heads: one read of q and k where the separate kernels read
 * and wrote each twice. */
#include <cuda_bf16.h>

#include "common.cuh"

#define QKR_WARPS 8 /* (token, head) rows per block */

__device__ __forceinline__ void qkr_store(float *p, float x) { *p = x; }
__device__ __forceinline__ void qkr_store(__nv_bfloat16 *p, float x) { *p = __float2bfloat16_rn(x); }

/* A warp's row: q's head h of token t when h < NH, else k's head h - NH;
 * its input, its norm's weights and its position's cos/sin table rows. */
struct QkRow {
    bool is_k;
    size_t row; /* the row of (T, NH, ·) or (T, NKV, ·) */
    const float *x, *w, *cs, *sn;
};

__device__ __forceinline__ QkRow qkr_row(long row_head, const float *q, const float *k, const float *qw,
                                         const float *kw, const int32_t *pos, const float *cosb, const float *sinb,
                                         int NH, int NKV, int D) {
    int heads = NH + NKV, t = (int)(row_head / heads), h = (int)(row_head % heads);
    QkRow r;
    r.is_k = h >= NH;
    r.row = r.is_k ? (size_t)t * NKV + (h - NH) : (size_t)t * NH + h;
    r.x = (r.is_k ? k : q) + r.row * D;
    r.w = r.is_k ? kw : qw;
    r.cs = cosb + (size_t)pos[t] * (D / 2);
    r.sn = sinb + (size_t)pos[t] * (D / 2);
    return r;
}

/* qr/kr = rope(rmsnorm(q/k)), with each row's rstd. */
__global__ static void qk_norm_rope_forward_kernel(float *qr, float *kr, float *q_rstd, float *k_rstd, const float *q,
                                                   const float *k, const float *qw, const float *kw,
                                                   const int32_t *pos, const float *cosb, const float *sinb, int T,
                                                   int NH, int NKV, int D, float eps) {
    long row_head = blockIdx.x * (long)QKR_WARPS + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row_head >= (long)T * (NH + NKV)) return;
    QkRow r = qkr_row(row_head, q, k, qw, kw, pos, cosb, sinb, NH, NKV, D);
    const float *x = r.x, *w = r.w, *cs = r.cs, *sn = r.sn;
    float *o = (r.is_k ? kr : qr) + r.row * D;
    double ss = 0.0;
    for (int c = lane; c < D; c += WARP) ss += (double)x[c] * x[c];
    ss = warp_sum_d(ss);
    float rs = (float)(1.0 / sqrt(ss / D + (double)eps));
    int half = D / 2;
    for (int i = lane; i < half; i += WARP) {
        float x1 = x[i] * rs * w[i], x2 = x[i + half] * rs * w[i + half];
        float c = cs[i], s = sn[i];
        o[i] = x1 * c - x2 * s;
        o[i + half] = x2 * c + x1 * s;
    }
    if (lane == 0) (r.is_k ? k_rstd : q_rstd)[r.row] = rs;
}

/* dqr/dkr rotated back in place (what the weight gradients read next),
 * then dq/dk = the norm's input gradient, fp32 or bf16 (the operand of the
 * q/k products' backward). */
template <typename Out>
__global__ static void qk_norm_rope_backward_dx_kernel(Out *dq, Out *dk, float *dqr, float *dkr, const float *q,
                                                       const float *k, const float *qw, const float *kw,
                                                       const float *q_rstd, const float *k_rstd, const int32_t *pos,
                                                       const float *cosb, const float *sinb, int T, int NH, int NKV,
                                                       int D) {
    long row_head = blockIdx.x * (long)QKR_WARPS + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row_head >= (long)T * (NH + NKV)) return;
    QkRow r = qkr_row(row_head, q, k, qw, kw, pos, cosb, sinb, NH, NKV, D);
    const float *x = r.x, *w = r.w, *cs = r.cs, *sn = r.sn;
    float *dy = (r.is_k ? dkr : dqr) + r.row * D;
    Out *d = (r.is_k ? dk : dq) + r.row * D;
    int half = D / 2;
    for (int i = lane; i < half; i += WARP) { /* rope_kernel with sign -1 */
        float y1 = dy[i], y2 = dy[i + half];
        float c = cs[i], s = -1.0f * sn[i];
        dy[i] = y1 * c - y2 * s;
        dy[i + half] = y2 * c + y1 * s;
    }
    /* the columns in rmsnorm's order, some written by another lane when
     * half is not a multiple of the warp */
    __syncwarp();
    float rs = (r.is_k ? k_rstd : q_rstd)[r.row];
    double dot = 0.0;
    for (int c = lane; c < D; c += WARP) dot += (double)dy[c] * w[c] * x[c];
    dot = warp_sum_d(dot);
    float kk = (float)(dot * rs * rs * rs / D);
    for (int c = lane; c < D; c += WARP) qkr_store(d + c, rs * dy[c] * w[c] - x[c] * kk);
}

static unsigned qkr_blocks(int T, int NH, int NKV) {
    long rows = (long)T * (NH + NKV);
    return (unsigned)((rows + QKR_WARPS - 1) / QKR_WARPS);
}

static void qkr_check(int D, const char *what) {
    if (D < 2 || D % 2 != 0) {
        fprintf(stderr, "%s: head_dim %d is not even\n", what, D);
        exit(1);
    }
}

extern "C" void cuda_qk_norm_rope_forward(float *qr, float *q_rstd, const float *q, const float *q_w, int NH,
                                          float *kr, float *k_rstd, const float *k, const float *k_w, int NKV,
                                          const int32_t *pos, const float *cosb, const float *sinb, int T, int D,
                                          float eps, cudaStream_t stream) {
    qkr_check(D, "cuda_qk_norm_rope_forward");
    if (T <= 0) return;
    qk_norm_rope_forward_kernel<<<qkr_blocks(T, NH, NKV), QKR_WARPS * WARP, 0, stream>>>(
        qr, kr, q_rstd, k_rstd, q, k, q_w, k_w, pos, cosb, sinb, T, NH, NKV, D, eps);
    cuda_check_launch();
}

template <typename Out>
static void qk_norm_rope_backward(Out *dq, float *dq_w, float *dqr, const float *q, const float *q_w,
                                  const float *q_rstd, int NH, Out *dk, float *dk_w, float *dkr, const float *k,
                                  const float *k_w, const float *k_rstd, int NKV, const int32_t *pos,
                                  const float *cosb, const float *sinb, int T, int D, cudaStream_t stream) {
    qkr_check(D, "cuda_qk_norm_rope_backward");
    if (T <= 0) return;
    qk_norm_rope_backward_dx_kernel<Out><<<qkr_blocks(T, NH, NKV), QKR_WARPS * WARP, 0, stream>>>(
        dq, dk, dqr, dkr, q, k, q_w, k_w, q_rstd, k_rstd, pos, cosb, sinb, T, NH, NKV, D);
    cuda_check_launch();
    cuda_rmsnorm_backward_dw(dq_w, dqr, q, q_rstd, T * NH, D, stream);
    cuda_rmsnorm_backward_dw(dk_w, dkr, k, k_rstd, T * NKV, D, stream);
}

extern "C" void cuda_qk_norm_rope_backward(float *dq, float *dq_w, float *dqr, const float *q, const float *q_w,
                                           const float *q_rstd, int NH, float *dk, float *dk_w, float *dkr,
                                           const float *k, const float *k_w, const float *k_rstd, int NKV,
                                           const int32_t *pos, const float *cosb, const float *sinb, int T, int D,
                                           cudaStream_t stream) {
    qk_norm_rope_backward<float>(dq, dq_w, dqr, q, q_w, q_rstd, NH, dk, dk_w, dkr, k, k_w, k_rstd, NKV, pos, cosb,
                                 sinb, T, D, stream);
}

extern "C" void cuda_qk_norm_rope_backward_bf16(uint16_t *dq, float *dq_w, float *dqr, const float *q,
                                                const float *q_w, const float *q_rstd, int NH, uint16_t *dk,
                                                float *dk_w, float *dkr, const float *k, const float *k_w,
                                                const float *k_rstd, int NKV, const int32_t *pos, const float *cosb,
                                                const float *sinb, int T, int D, cudaStream_t stream) {
    qk_norm_rope_backward<__nv_bfloat16>((__nv_bfloat16 *)dq, dq_w, dqr, q, q_w, q_rstd, NH, (__nv_bfloat16 *)dk, dk_w,
                                         dkr, k, k_w, k_rstd, NKV, pos, cosb, sinb, T, D, stream);
}
