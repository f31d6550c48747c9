/* attention.cu — causal grouped-query attention over packed variable-length
 * sequences, flash-attention style, fp32.
 *
 * Tiles: a block takes 32 consecutive query rows of one head (forward, dq)
 * or 32 consecutive keys of one kv head (dk, dv), 4 warps of 8 rows each.
 * Tiles are cut from the packed token array without regard to sequence
 * boundaries; every score is masked by "same sequence and not in the
 * future" (key >= start of the query's sequence, key <= query), so a tile
 * that straddles two sequences is still right, and no host-side tile list is
 * needed. The key loop starts at the sequence start of the block's first
 * query and ends at its last query, so the work is that of the causal
 * triangle plus at most one tile of waste per straddling block.
 *
 * Inside a tile, lane j of a warp owns key j for the scores (a row of the
 * key tile, read from shared memory with an odd row stride, D + 1, so the 32
 * lanes hit 32 different banks; the query rows it meets are the same for all
 * lanes, broadcast, four columns per float4 load), and lane j owns output
 * columns j, j + 32, ...
 * for the products with V (consecutive lanes, consecutive addresses). Each
 * probability reaches the lanes that need it by a warp shuffle. Softmax is
 * online: a running max and sum per row, rescaled when the max grows; the
 * forward saves lse = max + log(sum) and the backward recomputes
 * P = exp(S - lse) instead of storing it (memory O(T), never O(T^2)).
 *
 * The backward is two kernels with no atomics: dq per query tile (over key
 * tiles), dk and dv per key tile (over the heads of its group, then query
 * tiles, in a fixed order). Results repeat bit for bit run to run.
 *
 * Per-lane accumulators cover DPL = 4 columns per lane (D <= 128) or 8
 * (D <= 256): two instantiations of each kernel.
 */
#include <string.h>

#include "attention_bf16.cuh"
#include "common.cuh"

#define ATT_B 32                      /* queries (or keys) per tile */
#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * WARP)
#define ATT_RPW (ATT_B / ATT_WARPS)   /* rows per warp */

/* Row stride of the tiles every lane reads at the same address (broadcast):
 * a multiple of 4 floats, so each row starts 16-byte aligned and is read as
 * float4, four columns per shared-memory load. */
__host__ __device__ __forceinline__ int att_bcast_ld(int D) { return (D + 3) & ~3; }

/* The first token of t's sequence. */
__device__ __forceinline__ int att_row_start(const int32_t *seq_of, const int32_t *seq_start, int t) {
    return seq_start[seq_of[t]];
}

/* rows x D floats of a (T, heads, D) tensor, head h, from token t0, into
 * shared memory with row stride ld; rows past T are zeros. Consecutive
 * threads take consecutive columns: coalesced. */
__device__ __forceinline__ void att_load_tile(float *dst, int ld, const float *src, int t0, int T, int heads, int h,
                                              int D) {
    for (int idx = threadIdx.x; idx < ATT_B * D; idx += blockDim.x) {
        int i = idx / D, d = idx % D, t = t0 + i;
        dst[i * ld + d] = t < T ? src[((size_t)t * heads + h) * D + d] : 0.0f;
    }
}

/* acc[r] += sum over the tile's rows j of w[r][j] * tile row j, for the
 * warp's ATT_RPW rows: lane j holds w[r][j] (one key per lane) and passes it
 * to every lane by shuffle; lane owns columns lane, lane + 32, ... (the
 * forward's P V, the backward's dS K). */
template <int DPL>
__device__ __forceinline__ void att_accumulate_tile(float (&acc)[ATT_RPW][DPL], const float (&w)[ATT_RPW],
                                                    const float *tile, int ld, int D, int lane) {
    for (int j = 0; j < ATT_B; j++) {
        const float *row = tile + j * ld;
        float td[DPL];
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + c * WARP;
            td[c] = d < D ? row[d] : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float wj = __shfl_sync(FULL_MASK, w[r], j);
#pragma unroll
            for (int c = 0; c < DPL; c++) acc[r][c] += wj * td[c];
        }
    }
}

/* s[r] = a_r . x and dp[r] = b_r . y for the warp's ATT_RPW rows a_r, b_r
 * (read by every lane at the same address: stride ld, float4 loads) against
 * this lane's rows x, y (stride D + 1): the backward's two dot products per
 * score, Q K and dO V, sharing their loop. The dq kernel passes Q and dO as
 * the warp's rows and this lane's key; the dk/dv kernel the other way round
 * (a product's factors commute, so the order of additions is the same). */
__device__ __forceinline__ void att_dot_pairs(float (&s)[ATT_RPW], float (&dp)[ATT_RPW], const float *a,
                                              const float *b, int ld, const float *x, const float *y, int D) {
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) s[r] = dp[r] = 0.0f;
    int d = 0;
    for (; d + 4 <= D; d += 4) {
        float x0 = x[d], x1 = x[d + 1], x2 = x[d + 2], x3 = x[d + 3];
        float y0 = y[d], y1 = y[d + 1], y2 = y[d + 2], y3 = y[d + 3];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            float4 av = *(const float4 *)(a + r * ld + d);
            float4 bv = *(const float4 *)(b + r * ld + d);
            s[r] += av.x * x0;
            s[r] += av.y * x1;
            s[r] += av.z * x2;
            s[r] += av.w * x3;
            dp[r] += bv.x * y0;
            dp[r] += bv.y * y1;
            dp[r] += bv.z * y2;
            dp[r] += bv.w * y3;
        }
    }
    for (; d < D; d++) {
        float xd = x[d], yd = y[d];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            s[r] += a[r * ld + d] * xd;
            dp[r] += b[r * ld + d] * yd;
        }
    }
}

/* ------------------------------------------------------------ forward */

template <int DPL>
__global__ __launch_bounds__(ATT_THREADS) static void attention_forward_kernel(
    float *out, float *lse, const float *q, const float *k, const float *v, const int32_t *seq_of,
    const int32_t *seq_start, int T, int NH, int NKV, int D, float scale) {
    extern __shared__ float smem[];
    int DB = att_bcast_ld(D);
    float *Qs = smem;                   /* (32, DB) */
    float *Ks = Qs + ATT_B * DB;        /* (32, D + 1) */
    float *Vs = Ks + ATT_B * (D + 1);   /* (32, D) */
    int q0 = blockIdx.x * ATT_B, h = blockIdx.y, g = h / (NH / NKV);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int q_last = min(q0 + ATT_B, T) - 1;
    int k_lo = att_row_start(seq_of, seq_start, q0);

    att_load_tile(Qs, DB, q, q0, T, NH, h, D);

    int tq[ATT_RPW], start[ATT_RPW];
    float m[ATT_RPW], l[ATT_RPW], acc[ATT_RPW][DPL];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        tq[r] = q0 + warp * ATT_RPW + r;
        start[r] = tq[r] < T ? att_row_start(seq_of, seq_start, tq[r]) : T; /* T: sees nothing */
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[r][c] = 0.0f;
    }

    for (int k0 = k_lo; k0 <= q_last; k0 += ATT_B) {
        __syncthreads(); /* the previous tile is consumed (and Q is loaded) */
        att_load_tile(Ks, D + 1, k, k0, T, NKV, g, D);
        att_load_tile(Vs, D, v, k0, T, NKV, g, D);
        __syncthreads();

        int tk = k0 + lane;
        float s[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) s[r] = 0.0f;
        const float *kr = Ks + lane * (D + 1);
        const float *qw = Qs + warp * ATT_RPW * DB;
        int d = 0;
        for (; d + 4 <= D; d += 4) {
            float kx = kr[d], ky = kr[d + 1], kz = kr[d + 2], kw = kr[d + 3];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) {
                float4 qv = *(const float4 *)(qw + r * DB + d);
                s[r] += qv.x * kx;
                s[r] += qv.y * ky;
                s[r] += qv.z * kz;
                s[r] += qv.w * kw;
            }
        }
        for (; d < D; d++) {
            float kd = kr[d];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) s[r] += qw[r * DB + d] * kd;
        }
        float p[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            bool vis = tk <= tq[r] && tk >= start[r];
            float sc = vis ? s[r] * scale : -INFINITY;
            float mx = fmaxf(m[r], warp_max(sc));
            /* mx is -inf only while the row has seen no key: keep it empty */
            float corr = mx == -INFINITY ? 1.0f : expf(m[r] - mx);
            p[r] = vis ? expf(sc - mx) : 0.0f;
            l[r] = l[r] * corr + warp_sum(p[r]);
            m[r] = mx;
#pragma unroll
            for (int c = 0; c < DPL; c++) acc[r][c] *= corr;
        }
        att_accumulate_tile<DPL>(acc, p, Vs, D, D, lane);
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        if (tq[r] >= T) continue;
        float inv = 1.0f / l[r]; /* l > 0: a row always sees itself */
        float *o = out + ((size_t)tq[r] * NH + h) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + c * WARP;
            if (d < D) o[d] = acc[r][c] * inv;
        }
        if (lane == 0) lse[(size_t)tq[r] * NH + h] = m[r] + logf(l[r]);
    }
}

/* ------------------------------------------------------------ backward */

/* delta = rowsum(dout * out), one warp per (token, head) row. */
__global__ static void attention_delta_kernel(float *delta, const float *dout, const float *out, long rows, int D) {
    long r = blockIdx.x * (long)(blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (r >= rows) return;
    const float *a = dout + (size_t)r * D, *b = out + (size_t)r * D;
    float s = 0.0f;
    for (int d = lane; d < D; d += WARP) s += a[d] * b[d];
    s = warp_sum(s);
    if (lane == 0) delta[r] = s;
}

/* dq_i = scale * sum_j dS_ij k_j with dS = P (dP - delta), dP = dout V^T. */
template <int DPL>
__global__ __launch_bounds__(ATT_THREADS) static void attention_dq_kernel(
    float *dq, const float *dout, const float *lse, const float *delta, const float *q, const float *k,
    const float *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D, float scale) {
    extern __shared__ float smem[];
    int DB = att_bcast_ld(D);
    float *Qs = smem;                   /* (32, DB) */
    float *dOs = Qs + ATT_B * DB;       /* (32, DB) */
    float *Ks = dOs + ATT_B * DB;       /* (32, D + 1) */
    float *Vs = Ks + ATT_B * (D + 1);   /* (32, D + 1) */
    int q0 = blockIdx.x * ATT_B, h = blockIdx.y, g = h / (NH / NKV);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int q_last = min(q0 + ATT_B, T) - 1;
    int k_lo = att_row_start(seq_of, seq_start, q0);

    att_load_tile(Qs, DB, q, q0, T, NH, h, D);
    att_load_tile(dOs, DB, dout, q0, T, NH, h, D);

    int tq[ATT_RPW], start[ATT_RPW];
    float lr[ATT_RPW], dr[ATT_RPW], acc[ATT_RPW][DPL];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        tq[r] = q0 + warp * ATT_RPW + r;
        bool in = tq[r] < T;
        start[r] = in ? att_row_start(seq_of, seq_start, tq[r]) : T;
        lr[r] = in ? lse[(size_t)tq[r] * NH + h] : 0.0f;
        dr[r] = in ? delta[(size_t)tq[r] * NH + h] : 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[r][c] = 0.0f;
    }

    for (int k0 = k_lo; k0 <= q_last; k0 += ATT_B) {
        __syncthreads();
        att_load_tile(Ks, D + 1, k, k0, T, NKV, g, D);
        att_load_tile(Vs, D + 1, v, k0, T, NKV, g, D);
        __syncthreads();

        int tk = k0 + lane;
        float s[ATT_RPW], dp[ATT_RPW];
        att_dot_pairs(s, dp, Qs + warp * ATT_RPW * DB, dOs + warp * ATT_RPW * DB, DB, Ks + lane * (D + 1),
                      Vs + lane * (D + 1), D);
        float ds[ATT_RPW];
#pragma unroll
        for (int r = 0; r < ATT_RPW; r++) {
            bool vis = tk <= tq[r] && tk >= start[r];
            float p = vis ? expf(s[r] * scale - lr[r]) : 0.0f;
            ds[r] = p * (dp[r] - dr[r]);
        }
        att_accumulate_tile<DPL>(acc, ds, Ks, D + 1, D, lane);
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        if (tq[r] >= T) continue;
        float *o = dq + ((size_t)tq[r] * NH + h) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + c * WARP;
            if (d < D) o[d] = acc[r][c] * scale;
        }
    }
}

/* dk_j = scale * sum_{h in group, i} dS_ij q_i, dv_j = sum P_ij dout_i over
 * the queries i >= j of j's sequence. Lane i owns query i of the query tile
 * for the scores; lane j owns output columns for the sums. */
template <int DPL>
__global__ __launch_bounds__(ATT_THREADS) static void attention_dkv_kernel(
    float *dk, float *dv, const float *dout, const float *lse, const float *delta, const float *q, const float *k,
    const float *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D, float scale) {
    extern __shared__ float smem[];
    int DB = att_bcast_ld(D);
    float *Ks = smem;                    /* (32, DB) */
    float *Vs = Ks + ATT_B * DB;         /* (32, DB) */
    float *Qs = Vs + ATT_B * DB;         /* (32, D + 1) */
    float *dOs = Qs + ATT_B * (D + 1);   /* (32, D + 1) */
    float *Ls = dOs + ATT_B * (D + 1);   /* (32) lse of the query tile */
    float *Ds = Ls + ATT_B;              /* (32) delta */
    int *Ss = (int *)(Ds + ATT_B);       /* (32) sequence start of each query */
    int k0 = blockIdx.x * ATT_B, g = blockIdx.y, rep = NH / NKV;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int k_last = min(k0 + ATT_B, T) - 1;
    int q_end = seq_start[seq_of[k_last] + 1]; /* queries past the last key's sequence see none of these keys */

    att_load_tile(Ks, DB, k, k0, T, NKV, g, D);
    att_load_tile(Vs, DB, v, k0, T, NKV, g, D);

    int tk[ATT_RPW];
    float dka[ATT_RPW][DPL], dva[ATT_RPW][DPL];
#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        tk[r] = k0 + warp * ATT_RPW + r;
#pragma unroll
        for (int c = 0; c < DPL; c++) dka[r][c] = dva[r][c] = 0.0f;
    }

    for (int h = g * rep; h < (g + 1) * rep; h++) {
        for (int q0 = k0; q0 < q_end; q0 += ATT_B) {
            __syncthreads();
            att_load_tile(Qs, D + 1, q, q0, T, NH, h, D);
            att_load_tile(dOs, D + 1, dout, q0, T, NH, h, D);
            if (threadIdx.x < ATT_B) {
                int t = q0 + threadIdx.x;
                bool in = t < T;
                Ls[threadIdx.x] = in ? lse[(size_t)t * NH + h] : 0.0f;
                Ds[threadIdx.x] = in ? delta[(size_t)t * NH + h] : 0.0f;
                Ss[threadIdx.x] = in ? att_row_start(seq_of, seq_start, t) : T;
            }
            __syncthreads();

            int tq = q0 + lane, st = Ss[lane];
            float li = Ls[lane], di = Ds[lane];
            float s[ATT_RPW], dp[ATT_RPW];
            att_dot_pairs(s, dp, Ks + warp * ATT_RPW * DB, Vs + warp * ATT_RPW * DB, DB, Qs + lane * (D + 1),
                          dOs + lane * (D + 1), D);
            float p[ATT_RPW], ds[ATT_RPW];
#pragma unroll
            for (int r = 0; r < ATT_RPW; r++) {
                bool vis = tq < T && tk[r] <= tq && tk[r] >= st;
                p[r] = vis ? expf(s[r] * scale - li) : 0.0f;
                ds[r] = p[r] * (dp[r] - di);
            }
            for (int i = 0; i < ATT_B; i++) {
                const float *qr = Qs + i * (D + 1), *orow = dOs + i * (D + 1);
                float qd[DPL], od[DPL];
#pragma unroll
                for (int c = 0; c < DPL; c++) {
                    int d = lane + c * WARP;
                    qd[c] = d < D ? qr[d] : 0.0f;
                    od[c] = d < D ? orow[d] : 0.0f;
                }
#pragma unroll
                for (int r = 0; r < ATT_RPW; r++) {
                    float pi = __shfl_sync(FULL_MASK, p[r], i);
                    float dsi = __shfl_sync(FULL_MASK, ds[r], i);
#pragma unroll
                    for (int c = 0; c < DPL; c++) {
                        dva[r][c] += pi * od[c];
                        dka[r][c] += dsi * qd[c];
                    }
                }
            }
        }
    }

#pragma unroll
    for (int r = 0; r < ATT_RPW; r++) {
        if (tk[r] >= T) continue;
        size_t off = ((size_t)tk[r] * NKV + g) * D;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            int d = lane + c * WARP;
            if (d < D) {
                dk[off + d] = dka[r][c] * scale;
                dv[off + d] = dva[r][c];
            }
        }
    }
}

/* ------------------------------------------------------------ launchers */

static void att_check(int T, int NH, int NKV, int D, const char *what) {
    if (D < 1 || D > CUDA_ATT_MAX_D || NKV < 1 || NH % NKV != 0) {
        fprintf(stderr, "%s: unsupported shape (NH %d, NKV %d, D %d; D <= %d, NH %% NKV == 0)\n", what, NH, NKV, D,
                CUDA_ATT_MAX_D);
        exit(1);
    }
}

template <int DPL>
static void att_forward(float *out, float *lse, const float *q, const float *k, const float *v, const int32_t *seq_of,
                        const int32_t *seq_start, int T, int NH, int NKV, int D, cudaStream_t stream) {
    size_t smem = (size_t)ATT_B * (att_bcast_ld(D) + 2 * D + 1) * sizeof(float);
    kernel_smem_allow(attention_forward_kernel<DPL>, smem);
    dim3 grid((T + ATT_B - 1) / ATT_B, NH);
    attention_forward_kernel<DPL><<<grid, ATT_THREADS, smem, stream>>>(out, lse, q, k, v, seq_of, seq_start, T, NH,
                                                                       NKV, D, 1.0f / sqrtf((float)D));
    cuda_check_launch();
}

template <int DPL>
static void att_backward(float *dq, float *dk, float *dv, const float *delta, const float *dout, const float *lse,
                         const float *q, const float *k, const float *v, const int32_t *seq_of,
                         const int32_t *seq_start, int T, int NH, int NKV, int D, cudaStream_t stream) {
    float scale = 1.0f / sqrtf((float)D);
    size_t smem_q = (size_t)ATT_B * (2 * att_bcast_ld(D) + 2 * D + 2) * sizeof(float);
    kernel_smem_allow(attention_dq_kernel<DPL>, smem_q);
    attention_dq_kernel<DPL><<<dim3((T + ATT_B - 1) / ATT_B, NH), ATT_THREADS, smem_q, stream>>>(
        dq, dout, lse, delta, q, k, v, seq_of, seq_start, T, NH, NKV, D, scale);
    cuda_check_launch();
    size_t smem_kv = (size_t)ATT_B * (2 * att_bcast_ld(D) + 2 * D + 2 + 3) * sizeof(float);
    kernel_smem_allow(attention_dkv_kernel<DPL>, smem_kv);
    attention_dkv_kernel<DPL><<<dim3((T + ATT_B - 1) / ATT_B, NKV), ATT_THREADS, smem_kv, stream>>>(
        dk, dv, dout, lse, delta, q, k, v, seq_of, seq_start, T, NH, NKV, D, scale);
    cuda_check_launch();
}

/* Which tensor-core kernels dt CUDA_BF16 runs: unset or
 * TAU2_CUDA_ATTENTION=mma attention_mma.cu's (mma.sync, registers; about
 * 3x the forward and the backward of the WMMA kernels on an H100,
 * doc/perf.md), wmma attention_tc.cu's. Read at each call (a getenv per
 * layer), so a test can switch it. */
extern "C" bool cuda_attention_mma_chosen(void) {
    const char *e = getenv("TAU2_CUDA_ATTENTION");
    if (!e || !*e || !strcmp(e, "mma")) return true;
    if (!strcmp(e, "wmma")) return false;
    fprintf(stderr, "environment variable TAU2_CUDA_ATTENTION: \"%s\" is not a kernel family (expected \"wmma\" "
            "or \"mma\")\n", e);
    exit(2);
}

extern "C" size_t cuda_attention_scratch_bytes(int T, int NH, int NKV, int D, CudaDtype dt, bool backward) {
    if (T <= 0 || dt != CUDA_BF16) return 0;
    bool bf16 = (cuda_attention_mma_chosen() && cuda_attention_mma_supported(D)) || cuda_attention_tc_supported(D);
    return bf16 ? attention_bf16_scratch_bytes(T, NH, NKV, D, backward) : 0;
}

extern "C" void cuda_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                       const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D,
                                       CudaDtype dt, cudaStream_t stream) {
    att_check(T, NH, NKV, D, "cuda_attention_forward");
    if (T <= 0) return;
    if (dt == CUDA_BF16 && cuda_attention_mma_chosen() && cuda_attention_mma_supported(D)) {
        cuda_attention_mma_forward(out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
        return;
    }
    if (dt == CUDA_BF16 && cuda_attention_tc_supported(D)) {
        cuda_attention_tc_forward(out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
        return;
    }
    if (D <= 4 * WARP) att_forward<4>(out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
    else att_forward<8>(out, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
}

extern "C" void cuda_attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout,
                                        const float *out, const float *lse, const float *q, const float *k,
                                        const float *v, const int32_t *seq_of, const int32_t *seq_start, int T, int NH,
                                        int NKV, int D, CudaDtype dt, cudaStream_t stream) {
    att_check(T, NH, NKV, D, "cuda_attention_backward");
    if (T <= 0) return;
    long rows = (long)T * NH;
    attention_delta_kernel<<<(unsigned)((rows + 7) / 8), 8 * WARP, 0, stream>>>(delta, dout, out, rows, D);
    cuda_check_launch();
    if (dt == CUDA_BF16 && cuda_attention_mma_chosen() && cuda_attention_mma_supported(D))
        cuda_attention_mma_backward(dq, dk, dv, delta, dout, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
    else if (dt == CUDA_BF16 && cuda_attention_tc_supported(D))
        cuda_attention_tc_backward(dq, dk, dv, delta, dout, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
    else if (D <= 4 * WARP) att_backward<4>(dq, dk, dv, delta, dout, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
    else att_backward<8>(dq, dk, dv, delta, dout, lse, q, k, v, seq_of, seq_start, T, NH, NKV, D, stream);
}
