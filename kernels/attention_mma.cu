/* attention_mma.cu — the packed causal GQA attention of attention_tc.cu,
 * FlashAttention-2 style: mma.sync m16n8k16 (bf16 operands, fp32
 * accumulation) with the scores, the probabilities and the accumulators in
 * registers, fragments read from shared memory by ldmatrix, and the next
 * tile of keys (or queries) copied in by cp.async while the current one is
 * used. Head_dim 32, 64 and 128; TAU2_CUDA_ATTENTION=mma selects it
 * (attention.cu's dispatch, doc/cuda.md); attention_bf16.cuh launches it.
 *
 * Why a second tensor-core attention: the WMMA kernels must pass every
 * score and probability through shared memory (a WMMA fragment's
 * element-to-row mapping is unspecified, and the online softmax is row-wise
 * work) and run at ~40 TFLOP/s on an H100, a tenth of FlashAttention-2.
 * With mma.sync the layout is the PTX ISA's (mma.cuh): each lane holds two
 * rows' scores, the row max and sum take two shuffles, and the accumulators
 * of S = Q K^T, rounded in pairs, are the A operand of P V as they stand.
 *
 * Work split, as attention_tc.cu (results repeat bit for bit, no atomics):
 *   forward  a block per 64 queries of one head; 4 warps of 16 queries; Q
 *            in registers; keys and values 64 at a time, double-buffered;
 *   dq       the same blocks; dq = scale * sum dS K;
 *   dk, dv   a block per 64 keys and one query head of its group; 4 warps
 *            of 16 keys; queries 64 at a time (double-buffered), used in
 *            two halves of 32 (S^T and dP^T of 16 x 32 per warp keep the
 *            two 16 x D accumulators within the register file); each
 *            head's share goes to dkh/dvh and cuda_attention_group_sum
 *            adds a group's heads in order.
 * The forward and dq blocks start with the last query tiles (the longest:
 * causal), the dk/dv blocks with the first key tiles (the same reason).
 *
 * Masks as in attention.cu: a query sees the keys of its own sequence up
 * to itself. A warp whose 16 rows see every key of a tile skips the mask
 * (most tiles of a long sequence), one that sees none skips the tile.
 * Tiles are (64, D) bf16 in shared memory with rows padded by 8 values:
 * the 8 row addresses of an ldmatrix fall on different banks. */
#include <stdint.h>

#include "attention_bf16.cuh"
#include "mma.cuh"

#define MMA_B ATT_BF16_ROWS           /* queries (or keys) per tile */
#define MMA_WARPS 4
#define MMA_THREADS (MMA_WARPS * WARP)
static_assert(MMA_THREADS == ATT_BF16_THREADS, "the shared launchers' block size");
#define MMA_R 16                      /* rows per warp */

/* Row stride of a (64, D) bf16 tile in shared memory. */
__host__ __device__ constexpr int mma_ld(int D) { return D + 8; }

/* Queues the copy of 64 rows x D of a (T, heads, D) bf16 tensor, head h,
 * from token t0, into a tile; rows past T become zeros. */
template <int D>
__device__ __forceinline__ void mma_load_tile(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int t0, int T, int heads,
                                              int h) {
    for (int idx = threadIdx.x; idx < MMA_B * D / 8; idx += MMA_THREADS) {
        int i = idx / (D / 8), d = idx % (D / 8) * 8, t = t0 + i;
        bool in = t < T;
        cp_async_16(dst + i * mma_ld(D) + d, src + ((size_t)(in ? t : 0) * heads + h) * D + d, in);
    }
}

/* ------------------------------------------------------------ fragments */

/* The A operand (16 x 16) at row r0, column c0 of a row-major tile. */
template <int D>
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const __nv_bfloat16 *tile, int r0, int c0, int lane) {
    ldmatrix_x4(a, tile + (r0 + lane % 8 + 8 * (lane / 8 % 2)) * mma_ld(D) + c0 + 8 * (lane / 16));
}

/* B operands of two 8-column blocks (columns n0 .. n0 + 15, rows k0 .. k0 +
 * 15 of B) from a tile that holds B transposed (rows n, columns k: K for
 * Q K^T): b[0], b[1] for columns n0.., b[2], b[3] for n0 + 8... */
template <int D>
__device__ __forceinline__ void frag_b_nk(uint32_t (&b)[4], const __nv_bfloat16 *tile, int n0, int k0, int lane) {
    ldmatrix_x4(b, tile + (n0 + lane % 8 + 8 * (lane / 16)) * mma_ld(D) + k0 + 8 * (lane / 8 % 2));
}

/* The same from a tile that holds B itself (rows k, columns n: V for P V),
 * through the transposing ldmatrix. */
template <int D>
__device__ __forceinline__ void frag_b_kn(uint32_t (&b)[4], const __nv_bfloat16 *tile, int k0, int n0, int lane) {
    ldmatrix_x4_trans(b, tile + (k0 + lane % 8 + 8 * (lane / 8 % 2)) * mma_ld(D) + n0 + 8 * (lane / 16));
}

/* s (16 x N, N / 8 blocks of 16 x 8) = A (16 x D: rows a0 .. a0 + 15 of
 * tile A) times B^T (rows b0 .. b0 + N - 1 of tile B, D wide). */
template <int D, int N>
__device__ __forceinline__ void warp_dot_rows(float (&s)[N / 8][4], const __nv_bfloat16 *A, int a0,
                                              const __nv_bfloat16 *B, int b0, int lane) {
#pragma unroll
    for (int j = 0; j < N / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t a[4];
        frag_a<D>(a, A, a0, kk * 16, lane);
#pragma unroll
        for (int jn = 0; jn < N / 16; jn++) {
            uint32_t b[4];
            frag_b_nk<D>(b, B, b0 + jn * 16, kk * 16, lane);
            mma_bf16_16816(s[2 * jn], a, b[0], b[1]);
            mma_bf16_16816(s[2 * jn + 1], a, b[2], b[3]);
        }
    }
}

/* The same with A's fragments already in registers (the forward's Q). */
template <int D, int N>
__device__ __forceinline__ void warp_dot_rows_a(float (&s)[N / 8][4], const uint32_t (&a)[D / 16][4],
                                                const __nv_bfloat16 *B, int lane) {
#pragma unroll
    for (int j = 0; j < N / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
        for (int jn = 0; jn < N / 16; jn++) {
            uint32_t b[4];
            frag_b_nk<D>(b, B, jn * 16, kk * 16, lane);
            mma_bf16_16816(s[2 * jn], a[kk], b[0], b[1]);
            mma_bf16_16816(s[2 * jn + 1], a[kk], b[2], b[3]);
        }
    }
}

/* acc (16 x D) += W (16 x N, as A fragments) times B (rows b0 .. b0 + N - 1
 * of a row-major tile, D wide). */
template <int D, int N>
__device__ __forceinline__ void warp_accumulate(float (&acc)[D / 8][4], const uint32_t (&w)[N / 16][4],
                                                const __nv_bfloat16 *B, int b0, int lane) {
#pragma unroll
    for (int kk = 0; kk < N / 16; kk++) {
#pragma unroll
        for (int jd = 0; jd < D / 16; jd++) {
            uint32_t b[4];
            frag_b_kn<D>(b, B, b0 + kk * 16, jd * 16, lane);
            mma_bf16_16816(acc[2 * jd], w[kk], b[0], b[1]);
            mma_bf16_16816(acc[2 * jd + 1], w[kk], b[2], b[3]);
        }
    }
}

/* Accumulators (16 x N) rounded to bf16 as the A operand of the next
 * product over their N columns (mma.cuh: blocks 2kk and 2kk + 1). */
template <int N>
__device__ __forceinline__ void c_to_a(uint32_t (&w)[N / 16][4], const float (&s)[N / 8][4]) {
#pragma unroll
    for (int kk = 0; kk < N / 16; kk++) {
        w[kk][0] = bf16x2_pack(s[2 * kk][0], s[2 * kk][1]);
        w[kk][1] = bf16x2_pack(s[2 * kk][2], s[2 * kk][3]);
        w[kk][2] = bf16x2_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        w[kk][3] = bf16x2_pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

/* Writes a warp's 16 x D accumulator times mul to rows t0.. of a (T, heads,
 * D) fp32 tensor, head h: each lane its two rows' column pairs. */
template <int D>
__device__ __forceinline__ void warp_store_rows(float *dst, const float (&acc)[D / 8][4], float mul0, float mul1,
                                                int t0, int T, int heads, int h, int lane) {
    int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int row = t0 + g + 8 * half;
        if (row >= T) continue;
        float mul = half ? mul1 : mul0;
        float *o = dst + ((size_t)row * heads + h) * D + 2 * t;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            *(float2 *)(o + 8 * j) = make_float2(acc[j][2 * half] * mul, acc[j][2 * half + 1] * mul);
    }
}

/* The query rows of a warp in the forward and dq kernels: the block's tile
 * (64 queries from q0, the keys any of them sees from k_lo), the warp's 16
 * rows from w0, and the lane's two rows (w0 + g, w0 + g + 8) with the
 * starts of their sequences (T past the end). */
struct MmaRows {
    int q0, q_last, k_lo;
    int w0, w_last, w_lo, w_hi; /* w_lo / w_hi: sequence start of the warp's first / last row */
    int row[2], start[2];
};

__device__ __forceinline__ MmaRows mma_rows(const int32_t *seq_of, const int32_t *seq_start, int T, int warp,
                                            int lane) {
    MmaRows q;
    q.q0 = (gridDim.x - 1 - blockIdx.x) * MMA_B; /* the longest tiles first */
    q.q_last = min(q.q0 + MMA_B, T) - 1;
    q.k_lo = seq_start[seq_of[q.q0]];
    q.w0 = q.q0 + warp * MMA_R;
    q.w_last = min(q.w0 + MMA_R, T) - 1;
    q.w_lo = q.w0 < T ? seq_start[seq_of[q.w0]] : T;
    q.w_hi = q.w0 < T ? seq_start[seq_of[q.w_last]] : T;
    for (int i = 0; i < 2; i++) {
        q.row[i] = q.w0 + lane / 4 + 8 * i;
        q.start[i] = q.row[i] < T ? seq_start[seq_of[q.row[i]]] : T;
    }
    return q;
}

/* Whether the warp's rows see none of the keys [k0, k0 + 64), and whether
 * they see all of them (no mask needed: every key is at or before the
 * first row and in the last row's sequence, hence in every row's). */
__device__ __forceinline__ bool mma_rows_none(const MmaRows &q, int k0, int T) {
    return q.w0 >= T || k0 > q.w_last || k0 + MMA_B <= q.w_lo;
}
__device__ __forceinline__ bool mma_rows_all(const MmaRows &q, int k0) {
    return k0 + MMA_B - 1 <= q.w0 && k0 >= q.w_hi;
}

/* Sets the scores of keys a row does not see to -inf (k0: the tile's first
 * key; N / 8 blocks of 8 keys). */
template <int N>
__device__ __forceinline__ void mask_rows(float (&s)[N / 8][4], const MmaRows &q, int k0, int T, int lane) {
    int t = lane % 4;
#pragma unroll
    for (int j = 0; j < N / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int r = e / 2, key = k0 + 8 * j + 2 * t + e % 2;
            bool vis = q.row[r] < T && key <= q.row[r] && key >= q.start[r];
            if (!vis) s[j][e] = -INFINITY;
        }
}

/* Max over the 4 lanes that share a row (lanes 4g .. 4g + 3). */
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, 1));
    return fmaxf(x, __shfl_xor_sync(FULL_MASK, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(FULL_MASK, x, 1);
    return x + __shfl_xor_sync(FULL_MASK, x, 2);
}

/* Step it of a loop over n_tiles key tiles, double-buffered at kv (buffer
 * b: keys at kv + 2 b TILE, values TILE later): once every warp is done
 * with the other buffer, queues the next tile's keys and values (from
 * k_next) into it, then waits for tile it. Returns tile it's keys. */
template <int D>
__device__ __forceinline__ const __nv_bfloat16 *mma_kv_step(__nv_bfloat16 *kv, const __nv_bfloat16 *k,
                                                            const __nv_bfloat16 *v, int it, int n_tiles, int k_next,
                                                            int T, int NKV, int g) {
    const int TILE = MMA_B * mma_ld(D);
    __nv_bfloat16 *next = kv + (~it & 1) * 2 * TILE;
    __syncthreads(); /* the other buffer is consumed (tile it - 1, or what the prologue put there) */
    if (it + 1 < n_tiles) {
        mma_load_tile<D>(next, k, k_next, T, NKV, g);
        mma_load_tile<D>(next + TILE, v, k_next, T, NKV, g);
        cp_async_commit();
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads(); /* tile it is in, for every thread */
    return kv + (it & 1) * 2 * TILE;
}

/* ------------------------------------------------------------ forward */

template <int D>
__global__ __launch_bounds__(MMA_THREADS) static void attention_mma_forward_kernel(
    float *out, float *lse, const __nv_bfloat16 *qin, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
    const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, float scale) {
    extern __shared__ __align__(16) unsigned char mma_smem[];
    const int TILE = MMA_B * mma_ld(D);
    /* buffer b: keys at kv + 2 b TILE, values TILE later, (64, LD) each (an
     * index into arrays of pointers would put them in local memory) */
    __nv_bfloat16 *kv = (__nv_bfloat16 *)mma_smem;
    __nv_bfloat16 *Qs = kv + 2 * TILE; /* Q passes through the second key buffer before the loop */
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int h = blockIdx.y, g = h / (NH / NKV);
    MmaRows q = mma_rows(seq_of, seq_start, T, warp, lane);
    const float sl2 = scale * LOG2E_F; /* exp(x scale) = exp2(x sl2) */
    int n_tiles = (q.q_last - q.k_lo) / MMA_B + 1;

    mma_load_tile<D>(Qs, qin, q.q0, T, NH, h);
    mma_load_tile<D>(kv, k, q.k_lo, T, NKV, g);
    mma_load_tile<D>(kv + TILE, v, q.k_lo, T, NKV, g);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[D / 16][4]; /* the warp's 16 queries as A fragments */
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) frag_a<D>(qf[kk], Qs, warp * MMA_R, kk * 16, lane);

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; /* l: this lane's columns only */

    for (int it = 0; it < n_tiles; it++) {
        int k0 = q.k_lo + it * MMA_B;
        const __nv_bfloat16 *Ks = mma_kv_step<D>(kv, k, v, it, n_tiles, k0 + MMA_B, T, NKV, g), *Vs = Ks + TILE;
        if (mma_rows_none(q, k0, T)) continue;

        float s[MMA_B / 8][4];
        warp_dot_rows_a<D, MMA_B>(s, qf, Ks, lane);
        if (!mma_rows_all(q, k0)) mask_rows<MMA_B>(s, q, k0, T, lane);

        /* online softmax, two rows per lane; scores stay in raw units, m too */
        float corr[2], base[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = m[r];
#pragma unroll
            for (int j = 0; j < MMA_B / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            mx = quad_max(mx);
            /* mx is -inf only while the row has seen no key: keep it empty */
            corr[r] = mx == -INFINITY ? 1.0f : exp2f((m[r] - mx) * sl2);
            base[r] = mx == -INFINITY ? 0.0f : mx * sl2;
            m[r] = mx;
        }
        uint32_t p[MMA_B / 16][4];
        float sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < MMA_B / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = exp2f(fmaf(s[j][e], sl2, -base[e / 2]));
        c_to_a<MMA_B>(p, s);
#pragma unroll
        for (int kk = 0; kk < MMA_B / 16; kk++) /* the sum of the P that multiplies V: as rounded */
#pragma unroll
            for (int i = 0; i < 4; i++) sum[i % 2] += bf16x2_lo(p[kk][i]) + bf16x2_hi(p[kk][i]);
#pragma unroll
        for (int r = 0; r < 2; r++) l[r] = l[r] * corr[r] + sum[r];
#pragma unroll
        for (int j = 0; j < D / 8; j++) o[j][0] *= corr[0], o[j][1] *= corr[0], o[j][2] *= corr[1], o[j][3] *= corr[1];
        warp_accumulate<D, MMA_B>(o, p, Vs, 0, lane);
    }

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] = quad_sum(l[r]);
        inv[r] = 1.0f / l[r]; /* l > 0 for every row before T: a row always sees itself */
        if (lane % 4 == 0 && q.row[r] < T) lse[(size_t)q.row[r] * NH + h] = m[r] * scale + logf(l[r]);
    }
    warp_store_rows<D>(out, o, inv[0], inv[1], q.w0, T, NH, h, lane);
}

/* ------------------------------------------------------------ backward */

/* dq_i = scale * sum_j dS_ij k_j with dS = P (dP - delta), dP = dout V^T. */
template <int D>
__global__ __launch_bounds__(MMA_THREADS) static void attention_mma_dq_kernel(
    float *dq, const __nv_bfloat16 *dout, const float *lse, const float *delta, const __nv_bfloat16 *qin,
    const __nv_bfloat16 *k, const __nv_bfloat16 *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH,
    int NKV, float scale) {
    extern __shared__ __align__(16) unsigned char mma_smem[];
    const int TILE = MMA_B * mma_ld(D);
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)mma_smem, *dOs = Qs + TILE; /* (64, LD) each */
    __nv_bfloat16 *kv = dOs + TILE; /* buffer b: keys at kv + 2 b TILE, values TILE later */
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int h = blockIdx.y, g = h / (NH / NKV);
    MmaRows q = mma_rows(seq_of, seq_start, T, warp, lane);
    const float sl2 = scale * LOG2E_F;
    int n_tiles = (q.q_last - q.k_lo) / MMA_B + 1;
    float lse2[2], dl[2]; /* the rows' lse in log2 units, and delta */
    for (int r = 0; r < 2; r++) {
        bool in = q.row[r] < T;
        lse2[r] = in ? lse[(size_t)q.row[r] * NH + h] * LOG2E_F : 0.0f;
        dl[r] = in ? delta[(size_t)q.row[r] * NH + h] : 0.0f;
    }

    mma_load_tile<D>(Qs, qin, q.q0, T, NH, h);
    mma_load_tile<D>(dOs, dout, q.q0, T, NH, h);
    mma_load_tile<D>(kv, k, q.k_lo, T, NKV, g);
    mma_load_tile<D>(kv + TILE, v, q.k_lo, T, NKV, g);
    cp_async_commit();
    float acc[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    for (int it = 0; it < n_tiles; it++) {
        int k0 = q.k_lo + it * MMA_B;
        const __nv_bfloat16 *Ks = mma_kv_step<D>(kv, k, v, it, n_tiles, k0 + MMA_B, T, NKV, g), *Vs = Ks + TILE;
        if (mma_rows_none(q, k0, T)) continue;

        float s[MMA_B / 8][4], dp[MMA_B / 8][4];
        warp_dot_rows<D, MMA_B>(s, Qs, warp * MMA_R, Ks, 0, lane);
        warp_dot_rows<D, MMA_B>(dp, dOs, warp * MMA_R, Vs, 0, lane);
        if (!mma_rows_all(q, k0)) mask_rows<MMA_B>(s, q, k0, T, lane);
#pragma unroll
        for (int j = 0; j < MMA_B / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = exp2f(fmaf(s[j][e], sl2, -lse2[e / 2])); /* 0 where masked */
                s[j][e] = p * (dp[j][e] - dl[e / 2]);
            }
        uint32_t ds[MMA_B / 16][4];
        c_to_a<MMA_B>(ds, s);
        warp_accumulate<D, MMA_B>(acc, ds, Ks, 0, lane);
    }
    warp_store_rows<D>(dq, acc, scale, scale, q.w0, T, NH, h, lane);
}

/* The dk/dv kernel's per-query values of the 64 queries from q0, head h,
 * into rows (3 x 64): lse in log2 units, delta, and the start of each
 * query's sequence as int (T past the end). Plain stores, read after the
 * next barrier. */
__device__ __forceinline__ void mma_load_query_rows(float *rows, const float *lse, const float *delta,
                                                    const int32_t *seq_of, const int32_t *seq_start, int q0, int T,
                                                    int NH, int h) {
    if (threadIdx.x >= MMA_B) return;
    int t = q0 + threadIdx.x;
    bool in = t < T;
    rows[threadIdx.x] = in ? lse[(size_t)t * NH + h] * LOG2E_F : 0.0f;
    rows[MMA_B + threadIdx.x] = in ? delta[(size_t)t * NH + h] : 0.0f;
    ((int *)rows)[2 * MMA_B + threadIdx.x] = in ? seq_start[seq_of[t]] : T;
}

/* dk_j = scale * sum_{h in group, i} dS_ij q_i, dv_j = sum P_ij dout_i over
 * the queries i >= j of j's sequence: the warp computes S^T = K Q^T and
 * dP^T = V dO^T for its 16 keys, 32 queries at a time. A block takes one
 * query head h of the group; its sums go to row j, head h of dkh and dvh
 * ((T, NH, D), unscaled). */
template <int D>
__global__ __launch_bounds__(MMA_THREADS) static void attention_mma_dkv_kernel(
    float *dkh, float *dvh, const __nv_bfloat16 *dout, const float *lse, const float *delta, const __nv_bfloat16 *qin,
    const __nv_bfloat16 *k, const __nv_bfloat16 *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH,
    int NKV, float scale) {
    extern __shared__ __align__(16) unsigned char mma_smem[];
    const int TILE = MMA_B * mma_ld(D), HALF = MMA_B / 2;
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)mma_smem, *Vs = Ks + TILE; /* (64, LD) each */
    /* buffer b: queries at qd + 2 b TILE, their dout TILE later; and per query
     * (64 each) lse in log2 units at rows + 3 b 64, delta 64 later, and the
     * start of its sequence (as int) 64 after that */
    __nv_bfloat16 *qd = Vs + TILE;
    float *rows = (float *)(qd + 4 * TILE);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, t4 = lane % 4;
    int k0 = blockIdx.x * MMA_B, h = blockIdx.y, g = h / (NH / NKV);
    int k_last = min(k0 + MMA_B, T) - 1;
    int q_end = seq_start[seq_of[k_last] + 1]; /* queries past the last key's sequence see none of these keys */
    int w0 = k0 + warp * MMA_R, w_last = min(w0 + MMA_R, T) - 1;
    int w_end = w0 < T ? seq_start[seq_of[w_last] + 1] : 0;
    int key[2] = {w0 + lane / 4, w0 + lane / 4 + 8};
    const float sl2 = scale * LOG2E_F;
    int n_tiles = (q_end - k0 + MMA_B - 1) / MMA_B;

    mma_load_tile<D>(Ks, k, k0, T, NKV, g);
    mma_load_tile<D>(Vs, v, k0, T, NKV, g);
    mma_load_tile<D>(qd, qin, k0, T, NH, h);
    mma_load_tile<D>(qd + TILE, dout, k0, T, NH, h);
    cp_async_commit();
    mma_load_query_rows(rows, lse, delta, seq_of, seq_start, k0, T, NH, h);
    float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[j][e] = dva[j][e] = 0.0f;

    for (int it = 0; it < n_tiles; it++) {
        int q0 = k0 + it * MMA_B, cur = it & 1;
        __nv_bfloat16 *Qs = qd + cur * 2 * TILE, *dOs = Qs + TILE, *next = qd + (cur ^ 1) * 2 * TILE;
        const float *Ls = rows + cur * 3 * MMA_B, *Ds = Ls + MMA_B;
        const int *Ss = (const int *)(Ds + MMA_B);
        __syncthreads(); /* tile it - 1 is consumed */
        if (it + 1 < n_tiles) {
            mma_load_tile<D>(next, qin, q0 + MMA_B, T, NH, h);
            mma_load_tile<D>(next + TILE, dout, q0 + MMA_B, T, NH, h);
            cp_async_commit();
            mma_load_query_rows(rows + (cur ^ 1) * 3 * MMA_B, lse, delta, seq_of, seq_start, q0 + MMA_B, T, NH, h);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

#pragma unroll 1
        for (int c = 0; c < 2; c++) {
            int c0 = c * HALF, qc = q0 + c0; /* the half's first query */
            /* queries before the warp's first key, or past its keys' sequences, see none of them */
            if (w0 >= T || qc + HALF <= w0 || qc >= w_end) continue;
            float s[HALF / 8][4], dp[HALF / 8][4];
            warp_dot_rows<D, HALF>(s, Ks, warp * MMA_R, Qs, c0, lane);
            warp_dot_rows<D, HALF>(dp, Vs, warp * MMA_R, dOs, c0, lane);
            /* no mask where every query of the half is in T, at or after the warp's
             * last key, and in a sequence that starts at or before its first key */
            bool all = qc >= w0 + MMA_R - 1 && qc + HALF <= T && Ss[c0 + HALF - 1] <= w0;
#pragma unroll
            for (int j = 0; j < HALF / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int i = c0 + 8 * j + 2 * t4 + e % 2, tq = q0 + i, kj = key[e / 2];
                    bool vis = all || (tq < T && kj <= tq && kj >= Ss[i]);
                    float p = vis ? exp2f(fmaf(s[j][e], sl2, -Ls[i])) : 0.0f;
                    s[j][e] = p;
                    dp[j][e] = p * (dp[j][e] - Ds[i]);
                }
            uint32_t pa[HALF / 16][4], dsa[HALF / 16][4];
            c_to_a<HALF>(pa, s);
            c_to_a<HALF>(dsa, dp);
            warp_accumulate<D, HALF>(dva, pa, dOs, c0, lane);
            warp_accumulate<D, HALF>(dka, dsa, Qs, c0, lane);
        }
    }
    if (w0 >= T) return;
    warp_store_rows<D>(dkh, dka, 1.0f, 1.0f, w0, T, NH, h, lane);
    warp_store_rows<D>(dvh, dva, 1.0f, 1.0f, w0, T, NH, h, lane);
}

/* ------------------------------------------------------------ launchers */

static size_t mma_forward_smem(int D) { return (size_t)4 * MMA_B * mma_ld(D) * 2; }
static size_t mma_dq_smem(int D) { return (size_t)6 * MMA_B * mma_ld(D) * 2; }
static size_t mma_dkv_smem(int D) { return (size_t)6 * MMA_B * mma_ld(D) * 2 + (size_t)6 * MMA_B * 4; }

/* The family's kernels for head_dim D (attention_bf16.cuh launches them). */
template <int D> static AttBf16Kernels mma_kernels() {
    AttBf16Kernels k = {attention_mma_forward_kernel<D>, attention_mma_dq_kernel<D>, attention_mma_dkv_kernel<D>,
                        mma_forward_smem(D), mma_dq_smem(D), mma_dkv_smem(D)};
    return k;
}

static AttBf16Kernels mma_kernels_for(int D, const char *who) {
    switch (D) {
    case 32: return mma_kernels<32>();
    case 64: return mma_kernels<64>();
    case 128: return mma_kernels<128>();
    }
    fprintf(stderr, "%s: head_dim %d (32, 64 or 128)\n", who, D);
    exit(1);
}

/* ------------------------------------------------------------ probe */

/* One warp runs each wrapper of mma.cuh once on m (16 x 16 bf16, row-major)
 * and writes what each lane got, for a test against the PTX ISA's layouts
 * (and so of the emulation against the hardware): out (32 lanes x 16 words)
 * holds per lane the 4 registers of ldmatrix_x4 and the 4 of
 * ldmatrix_x4_trans, both with frag_a's row addresses, then the 4 fp32 of
 * mma_bf16_16816 with A = the plain registers, B = the first two
 * transposed ones (m times its first 8 columns), then 4 words of the row
 * that cp_async_16 zero-filled. */
__global__ static void mma_probe_kernel(uint32_t *out, const __nv_bfloat16 *m) {
    __shared__ __align__(16) __nv_bfloat16 tile[17 * 16]; /* 16 rows of m, then one to zero-fill */
    int lane = threadIdx.x;
    cp_async_16(tile + lane * 8, m + lane * 8, true);
    if (lane < 2) cp_async_16(tile + 256 + lane * 8, m, false);
    cp_async_commit();
    cp_async_wait<0>();
    __syncwarp();
    uint32_t a[4], b[4];
    ldmatrix_x4(a, tile + (lane % 8 + 8 * (lane / 8 % 2)) * 16 + 8 * (lane / 16));
    ldmatrix_x4_trans(b, tile + (lane % 8 + 8 * (lane / 8 % 2)) * 16 + 8 * (lane / 16));
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma_bf16_16816(d, a, b[0], b[1]);
    uint32_t *o = out + lane * 16;
    for (int i = 0; i < 4; i++) o[i] = a[i], o[4 + i] = b[i], o[8 + i] = __float_as_uint(d[i]);
    for (int i = 0; i < 4; i++) o[12 + i] = ((const uint32_t *)(tile + 256))[(lane * 4 + i) % 8];
}

extern "C" void cuda_mma_probe(uint32_t *out, const uint16_t *m, cudaStream_t stream) {
    mma_probe_kernel<<<1, WARP, 0, stream>>>(out, (const __nv_bfloat16 *)m);
    cuda_check_launch();
}

extern "C" bool cuda_attention_mma_supported(int D) { return D == 32 || D == 64 || D == 128; }

/* warp_store_rows writes each lane's column pairs as float2: the output
 * tensor (out, dq) must start 8-byte aligned. A misaligned one would stop
 * the kernel with a misaligned-address fault far from its cause; say so
 * here instead. */
static void mma_require_pairs(const float *p, const char *who, const char *name) {
    if ((uintptr_t)p % 8 != 0) {
        fprintf(stderr, "%s: %s at %p is not 8-byte aligned (its rows are written as float pairs)\n", who, name,
                (const void *)p);
        exit(1);
    }
}

extern "C" void cuda_attention_mma_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                           const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV,
                                           int D, cudaStream_t stream) {
    AttBf16Kernels kern = mma_kernels_for(D, "cuda_attention_mma_forward");
    mma_require_pairs(out, "cuda_attention_mma_forward", "out");
    if (T > 0) attention_bf16_forward(&kern, out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
}

extern "C" void cuda_attention_mma_backward(float *dq, float *dk, float *dv, const float *delta, const float *dout,
                                            const float *lse, const float *q, const float *k, const float *v,
                                            const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV,
                                            int D, cudaStream_t stream) {
    AttBf16Kernels kern = mma_kernels_for(D, "cuda_attention_mma_backward");
    mma_require_pairs(dq, "cuda_attention_mma_backward", "dq");
    if (T > 0)
        attention_bf16_backward(&kern, dq, dk, dv, delta, dout, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
}
