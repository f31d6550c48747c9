/* attention_tc.cu — the packed causal GQA attention of attention.cu on
 * tensor cores: bf16 operands, fp32 accumulation (WMMA 16 x 16 x 16, sm_80
 * and later). The bf16 math of the training step and the prefill use it for
 * head_dim 32, 64 and 128; the fp32 kernels of attention.cu stay the parity
 * reference and take every other shape.
 *
 * Why: the fp32 kernels run their dot products on the CUDA cores. At a
 * sequence length of 4k, attention is ~15% of a Qwen3-4B training step's
 * FLOPs, and on the CUDA cores (~1/15 of the bf16 tensor-core rate) it would
 * take several times longer than all the matrix products together.
 *
 * Tiles: a block takes 64 consecutive queries of one head (forward, dq) or
 * 64 consecutive keys of a kv head for one of its query heads (dk, dv); 4
 * warps, each owning 16 of them. Queries and keys of a tile are masked as
 * in attention.cu (same sequence, not in the future), so tiles may straddle
 * sequences. The launchers (attention_bf16.cuh) copy the fp32 operands to
 * bf16 once (bf16_inputs_new); tiles are loaded from those copies into shared memory
 * (rows padded by 8 values: every 16 x 16 fragment starts 32-byte aligned,
 * and rows fall on different banks).
 *
 * Each product is a warp's (16 x K) by (K x 64 or D) through fragments;
 * where a result needs row-wise work (the online softmax, P and dS) the
 * warp stores it to its own shared-memory scratch, and two lanes share each
 * of the 16 rows (lane / 2 is the row, lane % 2 the half of the columns).
 * The forward's output accumulator lives in that scratch too, because it
 * is rescaled row by row when a row's running max grows (a fragment's
 * element-to-row mapping is not specified); the backward's accumulators
 * (dq; dk and dv) are never rescaled and stay in fragments.
 *
 * As in attention.cu: lse saved by the forward, P recomputed from it in the
 * backward, dq in one kernel and dk/dv in another, no atomics: results
 * repeat bit for bit. */
#include <mma.h>

#include "attention_bf16.cuh"

using namespace nvcuda;

#define TC_B ATT_BF16_ROWS            /* queries (or keys) per tile */
#define TC_WARPS 4
#define TC_THREADS (TC_WARPS * WARP)
static_assert(TC_THREADS == ATT_BF16_THREADS, "the shared launchers' block size");
#define TC_R 16                      /* rows per warp: one fragment high */
#define TC_SLD (TC_B + 4)            /* fp32 score rows */
#define TC_PLD (TC_B + 8)            /* bf16 probability rows */

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> FragBRow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> FragBCol;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

/* Row stride of a (64, D) bf16 operand tile. */
__host__ __device__ constexpr int tc_ld(int D) { return D + 8; }

/* 64 rows x D of a (T, heads, D) bf16 tensor, head h, from token t0, into
 * shared memory with row stride D + 8; rows past T are zeros. Consecutive
 * threads take consecutive 16-byte pieces (8 values): coalesced, and rows
 * of D (a multiple of 8) values start 16-byte aligned in the launchers'
 * bf16 copies and in the tiles. */
template <int D>
__device__ __forceinline__ void tc_load_tile(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int t0, int T, int heads,
                                             int h) {
    for (int idx = threadIdx.x; idx < TC_B * D / 8; idx += TC_THREADS) {
        int i = idx / (D / 8), d = idx % (D / 8) * 8, t = t0 + i;
        uint4 x = t < T ? *(const uint4 *)(src + ((size_t)t * heads + h) * D + d) : make_uint4(0, 0, 0, 0);
        *(uint4 *)(dst + i * tc_ld(D) + d) = x;
    }
}

/* S (16 x 64, fp32, row stride TC_SLD) = A (16 x D, row-major, stride
 * tc_ld(D)) times the transpose of B (64 x D, row-major, stride tc_ld(D)):
 * B read as a column-major (D x 64) operand. Q K^T, dO V^T, K Q^T, V dO^T. */
template <int D>
__device__ __forceinline__ void tc_rows_dot_rows(float *S, const __nv_bfloat16 *A, const __nv_bfloat16 *B) {
    /* A's fragments are read again for each column block rather than kept:
     * D / 16 more fragments in registers push the dk/dv kernel, which holds
     * two D-wide accumulators, past 255 registers */
#pragma unroll
    for (int n = 0; n < TC_B / 16; n++) {
        FragC c;
        wmma::fill_fragment(c, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            FragA a;
            FragBCol b;
            wmma::load_matrix_sync(a, A + kk * 16, tc_ld(D));
            wmma::load_matrix_sync(b, B + n * 16 * tc_ld(D) + kk * 16, tc_ld(D));
            wmma::mma_sync(c, a, b, c);
        }
        wmma::store_matrix_sync(S + n * 16, c, TC_SLD, wmma::mem_row_major);
    }
}

/* acc[n] (16 x 16 column block n of a 16 x D result) += W (16 x 64 bf16,
 * stride TC_PLD) times B (64 x D, row-major, stride tc_ld(D)). P V, dS K,
 * P^T dO, dS^T Q. */
template <int D>
__device__ __forceinline__ void tc_accumulate(FragC (&acc)[D / 16], const __nv_bfloat16 *W, const __nv_bfloat16 *B) {
#pragma unroll
    for (int kk = 0; kk < TC_B / 16; kk++) {
        FragA a;
        wmma::load_matrix_sync(a, W + kk * 16, TC_PLD);
#pragma unroll
        for (int n = 0; n < D / 16; n++) {
            FragBRow b;
            wmma::load_matrix_sync(b, B + kk * 16 * tc_ld(D) + n * 16, tc_ld(D));
            wmma::mma_sync(acc[n], a, b, acc[n]);
        }
    }
}

/* The rows of a query tile as the forward and dq kernels see them: the
 * block's 64 queries from q0 and the keys any of them may see (from the
 * first query's sequence start to the last query); the warp's 16 rows; the
 * lane's row (lane / 2) and half of the columns (lane % 2). */
struct TcRows {
    int q0, q_last, k_lo;   /* block */
    int w0, w_last, w_lo;   /* warp: first and last row, first key any of them sees */
    int r, half, tq, start; /* lane: row, half, token, its sequence's start (T past the end) */
    bool in;                /* tq < T: rows past T see nothing */
};

__device__ __forceinline__ TcRows tc_rows(const int32_t *seq_of, const int32_t *seq_start, int T, int warp, int lane) {
    TcRows q;
    q.q0 = blockIdx.x * TC_B;
    q.q_last = min(q.q0 + TC_B, T) - 1;
    q.k_lo = seq_start[seq_of[q.q0]];
    q.w0 = q.q0 + warp * TC_R;
    q.w_last = min(q.w0 + TC_R, T) - 1;
    q.w_lo = q.w0 < T ? seq_start[seq_of[q.w0]] : T;
    q.r = lane / 2, q.half = lane % 2, q.tq = q.w0 + q.r;
    q.in = q.tq < T;
    q.start = q.in ? seq_start[seq_of[q.tq]] : T;
    return q;
}

/* Whether the warp's rows see none of the keys [k0, k0 + 64): the warp
 * skips the tile (the decision is the same for all its lanes). */
__device__ __forceinline__ bool tc_rows_skip(const TcRows &q, int k0, int T) {
    return q.w0 >= T || k0 > q.w_last || k0 + TC_B <= q.w_lo;
}

/* ------------------------------------------------------------ forward */

template <int D>
__global__ __launch_bounds__(TC_THREADS) static void attention_tc_forward_kernel(
    float *out, float *lse, const __nv_bfloat16 *qin, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
    const int32_t *seq_of,
    const int32_t *seq_start, int T, int NH, int NKV, float scale) {
    extern __shared__ __align__(32) unsigned char tc_smem[];
    const int LD = tc_ld(D), OLD = D + 4;
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)tc_smem;  /* (64, LD) */
    __nv_bfloat16 *Ks = Qs + TC_B * LD;             /* (64, LD) */
    __nv_bfloat16 *Vs = Ks + TC_B * LD;             /* (64, LD) */
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    float *Sw = (float *)(Vs + TC_B * LD) + warp * TC_R * TC_SLD;                /* (16, SLD) scores */
    float *Ow = (float *)(Vs + TC_B * LD) + TC_WARPS * TC_R * TC_SLD + warp * TC_R * OLD; /* (16, OLD) output */
    __nv_bfloat16 *Pw = (__nv_bfloat16 *)((float *)(Vs + TC_B * LD) + TC_WARPS * TC_R * (TC_SLD + OLD)) +
                        warp * TC_R * TC_PLD;                                     /* (16, PLD) probabilities */
    int h = blockIdx.y, g = h / (NH / NKV);
    TcRows q = tc_rows(seq_of, seq_start, T, warp, lane);
    int r = q.r, half = q.half;
    float m = -INFINITY, l = 0.0f;

    tc_load_tile<D>(Qs, qin, q.q0, T, NH, h);
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) Ow[r * OLD + d] = 0.0f;

    for (int k0 = q.k_lo; k0 <= q.q_last; k0 += TC_B) {
        __syncthreads(); /* the previous tile is consumed (and Q is loaded) */
        tc_load_tile<D>(Ks, k, k0, T, NKV, g);
        tc_load_tile<D>(Vs, v, k0, T, NKV, g);
        __syncthreads();
        /* a warp whose rows see none of these keys skips the tile */
        if (tc_rows_skip(q, k0, T)) continue;

        tc_rows_dot_rows<D>(Sw, Qs + warp * TC_R * LD, Ks);
        __syncwarp();

        /* online softmax over the lane's 32 columns of its row */
        const float *srow = Sw + r * TC_SLD + half * 32;
        float sc[32], mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int tk = k0 + half * 32 + j;
            bool vis = q.in && tk <= q.tq && tk >= q.start;
            sc[j] = vis ? srow[j] * scale : -INFINITY;
            mx = fmaxf(mx, sc[j]);
        }
        mx = fmaxf(m, fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 1)));
        /* mx is -inf only while the row has seen no key: keep it empty */
        float corr = mx == -INFINITY ? 1.0f : expf(m - mx), sum = 0.0f;
        __nv_bfloat16 *prow = Pw + r * TC_PLD + half * 32;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            __nv_bfloat16 p = __float2bfloat16(sc[j] == -INFINITY ? 0.0f : expf(sc[j] - mx));
            prow[j] = p;
            sum += __bfloat162float(p); /* the sum of the P that multiplies V */
        }
        l = l * corr + sum + __shfl_xor_sync(FULL_MASK, sum, 1);
        m = mx;
        for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) Ow[r * OLD + d] *= corr;
        __syncwarp();

        FragC acc[D / 16];
#pragma unroll
        for (int n = 0; n < D / 16; n++) wmma::load_matrix_sync(acc[n], Ow + n * 16, OLD, wmma::mem_row_major);
        tc_accumulate<D>(acc, Pw, Vs);
#pragma unroll
        for (int n = 0; n < D / 16; n++) wmma::store_matrix_sync(Ow + n * 16, acc[n], OLD, wmma::mem_row_major);
        __syncwarp();
    }

    if (!q.in) return;
    float inv = 1.0f / l; /* l > 0: a row always sees itself */
    float *o = out + ((size_t)q.tq * NH + h) * D;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) o[d] = Ow[r * OLD + d] * inv;
    if (half == 0) lse[(size_t)q.tq * NH + h] = m + logf(l);
}

/* ------------------------------------------------------------ backward */

/* Stores a warp's 16 x D accumulator, times mul, to rows t0.. of a (T,
 * heads, D) tensor, head h, through the warp's scratch (16 x (D + 4) fp32). */
template <int D>
__device__ __forceinline__ void tc_store_rows(float *dst, FragC (&acc)[D / 16], float *scratch, float mul, int t0,
                                              int T, int heads, int h, int lane) {
    __syncwarp(); /* the scratch may still be read */
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::store_matrix_sync(scratch + n * 16, acc[n], D + 4, wmma::mem_row_major);
    __syncwarp();
    int r = lane / 2, half = lane % 2, t = t0 + r;
    if (t >= T) return;
    float *o = dst + ((size_t)t * heads + h) * D;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) o[d] = scratch[r * (D + 4) + d] * mul;
}

/* dq_i = scale * sum_j dS_ij k_j with dS = P (dP - delta), dP = dout V^T. */
template <int D>
__global__ __launch_bounds__(TC_THREADS) static void attention_tc_dq_kernel(
    float *dq, const __nv_bfloat16 *dout, const float *lse, const float *delta, const __nv_bfloat16 *qin,
    const __nv_bfloat16 *k, const __nv_bfloat16 *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH,
    int NKV, float scale) {
    extern __shared__ __align__(32) unsigned char tc_smem[];
    const int LD = tc_ld(D);
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)tc_smem;  /* (64, LD) */
    __nv_bfloat16 *dOs = Qs + TC_B * LD;            /* (64, LD) */
    __nv_bfloat16 *Ks = dOs + TC_B * LD;            /* (64, LD) */
    __nv_bfloat16 *Vs = Ks + TC_B * LD;             /* (64, LD) */
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    float *Sw = (float *)(Vs + TC_B * LD) + warp * 2 * TC_R * TC_SLD; /* (16, SLD) S, then dQ's staging */
    float *dPw = Sw + TC_R * TC_SLD;                                   /* (16, SLD) dP */
    __nv_bfloat16 *dSw = (__nv_bfloat16 *)((float *)(Vs + TC_B * LD) + TC_WARPS * 2 * TC_R * TC_SLD) +
                         warp * TC_R * TC_PLD;                         /* (16, PLD) dS */
    int h = blockIdx.y, g = h / (NH / NKV);
    TcRows q = tc_rows(seq_of, seq_start, T, warp, lane);
    int r = q.r, half = q.half;
    float lr = q.in ? lse[(size_t)q.tq * NH + h] : 0.0f, dr = q.in ? delta[(size_t)q.tq * NH + h] : 0.0f;

    tc_load_tile<D>(Qs, qin, q.q0, T, NH, h);
    tc_load_tile<D>(dOs, dout, q.q0, T, NH, h);
    FragC acc[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::fill_fragment(acc[n], 0.0f);

    for (int k0 = q.k_lo; k0 <= q.q_last; k0 += TC_B) {
        __syncthreads();
        tc_load_tile<D>(Ks, k, k0, T, NKV, g);
        tc_load_tile<D>(Vs, v, k0, T, NKV, g);
        __syncthreads();
        if (tc_rows_skip(q, k0, T)) continue;

        tc_rows_dot_rows<D>(Sw, Qs + warp * TC_R * LD, Ks);
        tc_rows_dot_rows<D>(dPw, dOs + warp * TC_R * LD, Vs);
        __syncwarp();
        const float *srow = Sw + r * TC_SLD + half * 32, *dprow = dPw + r * TC_SLD + half * 32;
        __nv_bfloat16 *dsrow = dSw + r * TC_PLD + half * 32;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int tk = k0 + half * 32 + j;
            bool vis = q.in && tk <= q.tq && tk >= q.start;
            float p = vis ? expf(srow[j] * scale - lr) : 0.0f;
            dsrow[j] = __float2bfloat16(p * (dprow[j] - dr));
        }
        __syncwarp();
        tc_accumulate<D>(acc, dSw, Ks);
    }
    if (q.w0 < T) tc_store_rows<D>(dq, acc, Sw, scale, q.w0, T, NH, h, lane);
}

/* dk_j = scale * sum_{h in group, i} dS_ij q_i, dv_j = sum P_ij dout_i over
 * the queries i >= j of j's sequence: the warp computes the transposed
 * tiles S^T = K Q^T and dP^T = V dO^T for its 16 keys. A block takes one
 * query head h of the group: its sums over i go to row j, head h of dkh
 * and dvh ((T, NH, D), unscaled), and attention_tc_group_sum_kernel adds
 * the group's heads in order. One block per kv head walking its heads in
 * turn had a quarter as many blocks, and the causal triangle left most SMs
 * idle while the last key tiles' blocks ran (an H100: 12.9 ms per layer of
 * Qwen3-4B at 4k, against 5.5 for the forward). */
template <int D>
__global__ __launch_bounds__(TC_THREADS) static void attention_tc_dkv_kernel(
    float *dkh, float *dvh, const __nv_bfloat16 *dout, const float *lse, const float *delta, const __nv_bfloat16 *q,
    const __nv_bfloat16 *k, const __nv_bfloat16 *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH,
    int NKV, float scale) {
    extern __shared__ __align__(32) unsigned char tc_smem[];
    const int LD = tc_ld(D);
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)tc_smem;  /* (64, LD) */
    __nv_bfloat16 *Vs = Ks + TC_B * LD;             /* (64, LD) */
    __nv_bfloat16 *Qs = Vs + TC_B * LD;             /* (64, LD) */
    __nv_bfloat16 *dOs = Qs + TC_B * LD;            /* (64, LD) */
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    float *base = (float *)(dOs + TC_B * LD);
    float *Ls = base, *Ds = base + TC_B;            /* (64) lse and delta of the query tile */
    int *Ss = (int *)(base + 2 * TC_B);             /* (64) sequence start of each query */
    float *Sw = base + 3 * TC_B + warp * 2 * TC_R * TC_SLD; /* (16, SLD) S^T, then staging */
    float *dPw = Sw + TC_R * TC_SLD;                         /* (16, SLD) dP^T */
    __nv_bfloat16 *Pw = (__nv_bfloat16 *)(base + 3 * TC_B + TC_WARPS * 2 * TC_R * TC_SLD) +
                        warp * 2 * TC_R * TC_PLD;             /* (16, PLD) P^T */
    __nv_bfloat16 *dSw = Pw + TC_R * TC_PLD;                  /* (16, PLD) dS^T */
    int k0 = blockIdx.x * TC_B, h = blockIdx.y, g = h / (NH / NKV);
    int k_last = min(k0 + TC_B, T) - 1;
    int q_end = seq_start[seq_of[k_last] + 1]; /* queries past the last key's sequence see none of these keys */
    int w0 = k0 + warp * TC_R, w_last = min(w0 + TC_R, T) - 1;
    int w_end = w0 < T ? seq_start[seq_of[w_last] + 1] : 0;
    int r = lane / 2, half = lane % 2, tk = w0 + r;

    tc_load_tile<D>(Ks, k, k0, T, NKV, g);
    tc_load_tile<D>(Vs, v, k0, T, NKV, g);
    FragC dka[D / 16], dva[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) wmma::fill_fragment(dka[n], 0.0f), wmma::fill_fragment(dva[n], 0.0f);

    for (int q0 = k0; q0 < q_end; q0 += TC_B) {
        __syncthreads();
        tc_load_tile<D>(Qs, q, q0, T, NH, h);
        tc_load_tile<D>(dOs, dout, q0, T, NH, h);
        if (threadIdx.x < TC_B) {
            int t = q0 + threadIdx.x;
            bool in = t < T;
            Ls[threadIdx.x] = in ? lse[(size_t)t * NH + h] : 0.0f;
            Ds[threadIdx.x] = in ? delta[(size_t)t * NH + h] : 0.0f;
            Ss[threadIdx.x] = in ? seq_start[seq_of[t]] : T;
        }
        __syncthreads();
        /* queries before the warp's first key, or past its keys' sequences, see none of them */
        if (w0 >= T || q0 + TC_B <= w0 || q0 >= w_end) continue;

        tc_rows_dot_rows<D>(Sw, Ks + warp * TC_R * LD, Qs);
        tc_rows_dot_rows<D>(dPw, Vs + warp * TC_R * LD, dOs);
        __syncwarp();
        const float *srow = Sw + r * TC_SLD + half * 32, *dprow = dPw + r * TC_SLD + half * 32;
        __nv_bfloat16 *prow = Pw + r * TC_PLD + half * 32, *dsrow = dSw + r * TC_PLD + half * 32;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            int i = half * 32 + j, tq = q0 + i;
            bool vis = tq < T && tk <= tq && tk >= Ss[i];
            float p = vis ? expf(srow[j] * scale - Ls[i]) : 0.0f;
            prow[j] = __float2bfloat16(p);
            dsrow[j] = __float2bfloat16(p * (dprow[j] - Ds[i]));
        }
        __syncwarp();
        tc_accumulate<D>(dva, Pw, dOs);
        tc_accumulate<D>(dka, dSw, Qs);
    }
    if (w0 >= T) return;
    /* the staging takes 16 x (D + 4) floats: S^T and dP^T together hold 16 x 2 x (64 + 4) */
    tc_store_rows<D>(dkh, dka, Sw, 1.0f, w0, T, NH, h, lane);
    tc_store_rows<D>(dvh, dva, Sw, 1.0f, w0, T, NH, h, lane);
}

/* dk (T, NKV, D) = scale * the sum of dkh over each group's heads, dv the
 * same sum of dvh unscaled; heads added in order (the same sums every run). */
__global__ static void attention_tc_group_sum_kernel(float *dk, float *dv, const float *dkh, const float *dvh, int T,
                                                     int NH, int NKV, int D, float scale) {
    int rep = NH / NKV;
    long n = (long)T * NKV * D;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        long t = i / ((long)NKV * D);
        int g = (int)(i / D % NKV), d = (int)(i % D);
        size_t at = ((size_t)t * NH + (size_t)g * rep) * D + d;
        const float *a = dkh + at, *b = dvh + at;
        float sk = 0.0f, sv = 0.0f;
        for (int j = 0; j < rep; j++) sk += a[(size_t)j * D], sv += b[(size_t)j * D];
        dk[i] = sk * scale;
        dv[i] = sv;
    }
}

/* ------------------------------------------------------------ launchers */

static size_t tc_forward_smem(int D) {
    return (size_t)3 * TC_B * tc_ld(D) * 2 + (size_t)TC_WARPS * TC_R * (TC_SLD + D + 4) * 4 +
           (size_t)TC_WARPS * TC_R * TC_PLD * 2;
}
static size_t tc_dq_smem(int D) {
    return (size_t)4 * TC_B * tc_ld(D) * 2 + (size_t)TC_WARPS * 2 * TC_R * TC_SLD * 4 +
           (size_t)TC_WARPS * TC_R * TC_PLD * 2;
}
static size_t tc_dkv_smem(int D) {
    return (size_t)4 * TC_B * tc_ld(D) * 2 + (size_t)3 * TC_B * 4 + (size_t)TC_WARPS * 2 * TC_R * TC_SLD * 4 +
           (size_t)TC_WARPS * 2 * TC_R * TC_PLD * 2;
}

/* The family's kernels for head_dim D (attention_bf16.cuh launches them). */
template <int D> static AttBf16Kernels tc_kernels() {
    AttBf16Kernels k = {attention_tc_forward_kernel<D>, attention_tc_dq_kernel<D>, attention_tc_dkv_kernel<D>,
                        tc_forward_smem(D), tc_dq_smem(D), tc_dkv_smem(D)};
    return k;
}

static AttBf16Kernels tc_kernels_for(int D, const char *who) {
    switch (D) {
    case 32: return tc_kernels<32>();
    case 64: return tc_kernels<64>();
    case 128: return tc_kernels<128>();
    }
    fprintf(stderr, "%s: head_dim %d (32, 64 or 128)\n", who, D);
    exit(1);
}

extern "C" void cuda_attention_group_sum(float *dk, float *dv, const float *dkh, const float *dvh, int T, int NH,
                                         int NKV, int D, float scale, cudaStream_t stream) {
    attention_tc_group_sum_kernel<<<grid_for((long)T * NKV * D, 256), 256, 0, stream>>>(dk, dv, dkh, dvh, T, NH, NKV, D,
                                                                                       scale);
    cuda_check_launch();
}

extern "C" bool cuda_attention_tc_supported(int D) { return D == 32 || D == 64 || D == 128; }

extern "C" void cuda_attention_tc_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                          const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV,
                                          int D, cudaStream_t stream) {
    AttBf16Kernels kern = tc_kernels_for(D, "cuda_attention_tc_forward");
    attention_bf16_forward(&kern, out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
}

extern "C" void cuda_attention_tc_backward(float *dq, float *dk, float *dv, const float *delta, const float *dout,
                                           const float *lse, const float *q, const float *k, const float *v,
                                           const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV,
                                           int D, cudaStream_t stream) {
    AttBf16Kernels kern = tc_kernels_for(D, "cuda_attention_tc_backward");
    attention_bf16_backward(&kern, dq, dk, dv, delta, dout, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
}
