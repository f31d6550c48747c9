/* decode.cu — attention of one new token per sequence over its paged KV
 * cache (the decode step of the inference engine), flash-decoding style.
 *
 * Decode reads every cached key and value once per step and does little
 * arithmetic with them: it is bound by memory bandwidth. So:
 *   - a block serves one kv head of one row and all the query heads that
 *     share it (GQA), so each key/value row is read from memory once;
 *   - long contexts are split into pieces of keys over separate blocks (a
 *     batch of 1 with 8 kv heads would otherwise fill 8 SMs), each writing a
 *     partial (max, sum, unnormalized output); a second kernel merges the
 *     pieces of each (row, head) in order. Pieces are DEC_SPLIT keys, halved
 *     (down to one tile) while the grid has fewer than DEC_MIN_BLOCKS
 *     blocks: a block walks its tiles one after the other, each a memory
 *     round trip, so at batch 1 short pieces over many SMs finish sooner
 *     (an H100 took 55 us per layer at 2048 keys in pieces of 256); and
 *     doubled while the partials would pass DEC_WORK_MAX bytes (thousands
 *     of rows of an appended turn, each a query of its own);
 *   - the bf16 cache at head_dim 32/64/128/256 (the GPU engine's) goes
 *     through a ring of cp.async copies in shared memory, each lane
 *     reading back its own pieces (decode_partial_fast_kernel); otherwise
 *     keys and values are staged through shared memory in tiles of 32 rows,
 *     each row (D contiguous values) read by consecutive threads: coalesced,
 *     16 bytes per thread and load (8 bf16 or 4 fp32 values) where the
 *     cache's layout allows it (vec: D, the offsets and the block stride
 *     multiples of that many values, the cache 16-byte aligned), one value
 *     per load otherwise. A 2-byte load per thread would use an eighth of
 *     what each memory transaction could bring;
 *   - in a decode step the q/k stage (norms, RoPE, the cache write) can go
 *     into the fast kernel's launch (cuda_decode_attention_folded_bf16): at
 *     batch 1 a launch costs about as much as the work it does.
 */
#include <cuda_bf16.h>

#include "common.cuh"
#include "mma.cuh"

#define DEC_TILE 32          /* keys per shared-memory tile */
#define DEC_SPLIT 256        /* keys per block (one piece of the context), at most */
#define DEC_MIN_BLOCKS 528   /* blocks the split aims for: 4 per SM of an H100 */
#define DEC_THREADS 128
#define DEC_MAX_REP 16       /* query heads per kv head */
#define DEC_ACC 16           /* accumulators per thread: rep * D <= DEC_THREADS * DEC_ACC */

/* A cached value as fp32: the cache holds fp32 (the CPU engine's layout)
 * or bf16 (the GPU engine's). */
__device__ __forceinline__ float kv_load(const float *p) { return *p; }
__device__ __forceinline__ float kv_load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

/* 16 bytes of cached values from p (16-byte aligned) as fp32: 4 floats, or 8 bf16. */
__device__ __forceinline__ void kv_load16(float (&out)[4], const float *p) {
    float4 v = *(const float4 *)p;
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}
__device__ __forceinline__ void kv_load16(float (&out)[8], const __nv_bfloat16 *p) {
    bf16x8_unpack(out, *(const uint4 *)p);
}

/* Cached values per 16-byte load. */
template <typename KV> __host__ __device__ constexpr int kv_vec_width() { return 16 / (int)sizeof(KV); }

/* Keys and values of cache rows [t0, t0 + nt) of kv head g into Ks (row
 * stride D + 1) and Vs (row stride D), as fp32. */
template <typename KV>
__device__ __forceinline__ void dec_load_tile(float *Ks, float *Vs, const KV *kv, const int32_t *table, int t0, int nt,
                                              int g, int NKV, int D, int block_size, size_t block_stride,
                                              size_t k_off, size_t v_off, bool vec) {
    if (vec) {
        const int W = kv_vec_width<KV>();
        int per_row = D / W;
        for (int idx = threadIdx.x; idx < nt * per_row; idx += DEC_THREADS) {
            int i = idx / per_row, d = idx % per_row * W, j = t0 + i;
            const KV *blk = kv + (size_t)table[j / block_size] * block_stride;
            size_t slot = ((size_t)(j % block_size) * NKV + g) * D + d;
            float kx[kv_vec_width<KV>()], vx[kv_vec_width<KV>()];
            kv_load16(kx, blk + k_off + slot);
            kv_load16(vx, blk + v_off + slot);
#pragma unroll
            for (int w = 0; w < kv_vec_width<KV>(); w++) {
                Ks[i * (D + 1) + d + w] = kx[w];
                Vs[i * D + d + w] = vx[w];
            }
        }
        return;
    }
    for (int idx = threadIdx.x; idx < nt * D; idx += DEC_THREADS) {
        int i = idx / D, d = idx % D, j = t0 + i;
        const KV *blk = kv + (size_t)table[j / block_size] * block_stride;
        size_t slot = ((size_t)(j % block_size) * NKV + g) * D + d;
        Ks[i * (D + 1) + d] = kv_load(blk + k_off + slot);
        Vs[i * D + d] = kv_load(blk + v_off + slot);
    }
}

/* Grid (n_splits, NKV, R). Partial results per (row, head, split):
 * pm, pl (max and sum of exp(score - max)) and pacc (D, unnormalized). */
template <typename KV>
__global__ __launch_bounds__(DEC_THREADS) static void decode_partial_kernel(
    float *pm, float *pl, float *pacc, const float *q, const KV *kv, const int32_t *block_tables, int max_blocks,
    const int32_t *pos, int NH, int NKV, int D, int block_size, size_t block_stride, size_t k_off, size_t v_off,
    int split_len, int n_splits, float scale, bool vec) {
    extern __shared__ float smem[];
    int rep = NH / NKV;
    float *Qs = smem;                        /* (rep, D) */
    float *Ks = Qs + rep * D;                /* (DEC_TILE, D + 1) */
    float *Vs = Ks + DEC_TILE * (D + 1);     /* (DEC_TILE, D) */
    float *Ps = Vs + DEC_TILE * D;           /* (rep, DEC_TILE) scores, then probabilities */
    float *Ms = Ps + rep * DEC_TILE;         /* (rep) running max */
    float *Ls = Ms + rep;                    /* (rep) running sum */
    float *Cs = Ls + rep;                    /* (rep) rescale factor of this tile */
    int split = blockIdx.x, g = blockIdx.y, r = blockIdx.z;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, nwarps = DEC_THREADS / WARP;
    grid_dependents_launch();
    grid_dependency_wait(); /* q and the step's keys are the previous kernel's */
    int n = pos[r] + 1;
    int j0 = split * split_len, j1 = min(j0 + split_len, n);
    const int32_t *table = block_tables + (size_t)r * max_blocks;

    for (int i = threadIdx.x; i < rep * D; i += DEC_THREADS)
        Qs[i] = q[((size_t)r * NH + g * rep) * D + i]; /* heads g*rep .. are contiguous */
    if (threadIdx.x < rep) {
        Ms[threadIdx.x] = -INFINITY;
        Ls[threadIdx.x] = 0.0f;
    }
    /* thread t accumulates the (head, column) pairs t, t + 128, ... */
    float acc[DEC_ACC];
#pragma unroll
    for (int c = 0; c < DEC_ACC; c++) acc[c] = 0.0f;

    for (int t0 = j0; t0 < j1; t0 += DEC_TILE) {
        int nt = min(DEC_TILE, j1 - t0);
        __syncthreads();
        dec_load_tile(Ks, Vs, kv, table, t0, nt, g, NKV, D, block_size, block_stride, k_off, v_off, vec);
        __syncthreads();
        /* scores: one thread per (head, key); the key row is read with an odd
         * stride (conflict-free), the query row is a broadcast */
        for (int idx = threadIdx.x; idx < rep * DEC_TILE; idx += DEC_THREADS) {
            int h = idx / DEC_TILE, i = idx % DEC_TILE;
            float s = -INFINITY;
            if (i < nt) {
                const float *qh = Qs + h * D, *ki = Ks + i * (D + 1);
                float a = 0.0f;
                for (int d = 0; d < D; d++) a += qh[d] * ki[d];
                s = a * scale;
            }
            Ps[idx] = s;
        }
        __syncthreads();
        /* online softmax: one warp per head, lane i holds key i */
        for (int h = warp; h < rep; h += nwarps) {
            float s = Ps[h * DEC_TILE + lane];
            float mold = Ms[h];
            float mx = fmaxf(mold, warp_max(s)); /* the tile has >= 1 key: finite */
            float p = lane < nt ? expf(s - mx) : 0.0f;
            float sum = warp_sum(p);
            Ps[h * DEC_TILE + lane] = p;
            /* every lane read Ms[h] above: lane 0 overwrites it after a
             * barrier, not merely after the shuffles (which order the lanes'
             * steps but are no memory fence; compute-sanitizer's racecheck
             * reports the write racing the reads without it) */
            __syncwarp();
            if (lane == 0) {
                float corr = expf(mold - mx); /* 0 on the first tile */
                Cs[h] = corr;
                Ls[h] = Ls[h] * corr + sum;
                Ms[h] = mx;
            }
        }
        __syncthreads();
        /* acc(h, d) = acc * corr + sum_i p(h, i) V(i, d): consecutive threads,
         * consecutive d, so V rows are read conflict-free */
#pragma unroll
        for (int c = 0; c < DEC_ACC; c++) {
            int idx = threadIdx.x + c * DEC_THREADS;
            if (idx < rep * D) {
                int h = idx / D, d = idx % D;
                float a = acc[c] * Cs[h];
                const float *ph = Ps + h * DEC_TILE;
                for (int i = 0; i < nt; i++) a += ph[i] * Vs[i * D + d];
                acc[c] = a;
            }
        }
    }
    __syncthreads();
    size_t base = ((size_t)r * NH + g * rep) * n_splits + split; /* (row, head, split) of head g*rep */
#pragma unroll
    for (int c = 0; c < DEC_ACC; c++) {
        int idx = threadIdx.x + c * DEC_THREADS;
        if (idx < rep * D) {
            int h = idx / D, d = idx % D;
            pacc[(base + (size_t)h * n_splits) * D + d] = acc[c];
        }
    }
    if (threadIdx.x < rep) {
        /* an empty piece (past this row's length) reports nothing */
        bool empty = j0 >= j1;
        pm[base + (size_t)threadIdx.x * n_splits] = empty ? -INFINITY : Ms[threadIdx.x];
        pl[base + (size_t)threadIdx.x * n_splits] = empty ? 0.0f : Ls[threadIdx.x];
    }
}

/* ---- the q/k stage's arithmetic: its own kernel (qk_norm_rope_cache_kernel)
 * and the decode kernel that folds it in call these, so both give the same
 * bits ---- */

/* 1 / rms of one head's D values, the sum of squares in double as
 * rmsnorm_forward_kernel: lane sums c = lane, lane + 32, ..., then a
 * butterfly; every lane of the warp gets the result. */
__device__ __forceinline__ float qk_head_rstd(const float *x, int D, float eps, int lane) {
    double ss = 0.0;
    for (int c = lane; c < D; c += WARP) ss += (double)x[c] * x[c];
    ss = warp_sum_d(ss);
    return (float)(1.0 / sqrt(ss / D + (double)eps));
}

/* RoPE of the normalized pair (x1, x2) = values (i, i + D/2): y1 = x1 c - x2 s,
 * y2 = x2 c + x1 s, the FMAs placed by hand so that no kernel contracts
 * them differently. */
__device__ __forceinline__ void qk_rope_pair(float x1, float x2, float c, float s, float &y1, float &y2) {
    y1 = fmaf(x1, c, -(x2 * s));
    y2 = fmaf(x2, c, x1 * s);
}

/* The q/k stage folded into the decode kernel (cuda_decode_attention_folded_bf16):
 * q is the raw product, k and v the row's new key and value, written into the
 * cache (kv, the same bytes the kernel reads) by the block whose piece holds
 * the row's last position. */
struct DecFold {
    __nv_bfloat16 *kv;
    const float *k, *v, *qw, *kw, *cosb, *sinb; /* (R, NKV, D) twice, (D) twice, (P, D/2) twice */
    float eps;
};

/* 8 fp32 values from p (16-byte aligned) in two vector loads. */
__device__ __forceinline__ void dec_load8(float (&out)[8], const float *p) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

/* The bf16 cache's fast path (D of 32, 64, 128 or 256, 16-byte aligned
 * rows, a power-of-two block size, up to MAXREP query heads per kv head),
 * same grid and partial results as decode_partial_kernel. The staged
 * kernel above is bound by shared memory: every key and value goes through
 * it as fp32 and is read back once per head (an H100 ran it at ~1 TB/s at
 * batch 32 and 128). Here D / 8 lanes hold a key's 8-value pieces (one
 * 16-byte copy each for the key and the value), so a warp takes
 * 32 / (D / 8) keys a step; the scores are sums over those lanes
 * (butterflies), and each lane keeps its own online softmax and output
 * pieces for every head of the group.
 *
 * What bounds it is how many bytes each SM has in flight, and how many
 * instructions each key costs (the first version, three steps ahead in
 * registers and one softmax update per key: 1.7 TB/s at batch 32 on an
 * H100, issue slots 67% busy, 128 registers, 4 blocks an SM; this one
 * reads the cache at ~2.2 TB/s there, doc/perf.md). So:
 *   - each lane copies its pieces DEC_STAGES steps ahead into a ring in
 *     shared memory with cp.async, which holds no registers while in
 *     flight: DEC_STAGES - 2 steps (6 KB a warp) are on their way while a
 *     pair is used; a lane reads back only what it copied itself, so the
 *     ring needs no barrier, only the lane's own cp.async wait;
 *   - keys are taken two steps at a time: one max and two exponentials
 *     for each pair, and the running sum and output are rescaled only when
 *     the pair raises the max (after the first keys, seldom), not once per
 *     key;
 *   - scores are in log2 units (q scaled by scale * log2 e once), so each
 *     exponential is one exp2f; the partials' maxima go out in natural
 *     units (the merge's and the staged kernel's);
 *   - a cache block's row is a shift and a mask (block_size is a power of
 *     two), not an integer division per key.
 * At the end the warp's key slots and then the block's warps are merged in
 * a fixed order (the same result every run). */
#define DEC_FAST_WARPS 4
#define DEC_STAGES 8 /* steps of keys in each warp's ring: 6 in flight while a pair is used */

template <int D, int MAXREP, bool FOLD>
__global__ __launch_bounds__(DEC_FAST_WARPS *WARP) static void decode_partial_fast_kernel(
    float *pm, float *pl, float *pacc, const float *q, const __nv_bfloat16 *kv, const int32_t *block_tables,
    int max_blocks, const int32_t *pos, int NH, int NKV, int bs_shift, size_t block_stride, size_t k_off,
    size_t v_off, int split_len, int n_splits, float scale, DecFold fold) {
    constexpr int LPK = D / 8;      /* lanes per key */
    constexpr int KPW = WARP / LPK; /* keys per warp and step */
    constexpr int STEP = DEC_FAST_WARPS * KPW;
    /* the warps' rings (stage, key or value, lane) of 16-byte pieces; after
     * the last step, the warps' partial outputs (MAXREP, D) in the same bytes */
    constexpr int RING_BYTES = DEC_FAST_WARPS * DEC_STAGES * 2 * WARP * 16;
    constexpr int ACC_BYTES = DEC_FAST_WARPS * MAXREP * D * (int)sizeof(float);
    __shared__ __align__(16) unsigned char sm[RING_BYTES > ACC_BYTES ? RING_BYTES : ACC_BYTES];
    __shared__ float Ms[DEC_FAST_WARPS][MAXREP], Lsh[DEC_FAST_WARPS][MAXREP];
    int split = blockIdx.x, g = blockIdx.y, r = blockIdx.z;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int sub = lane % LPK, slot = lane / LPK; /* the lane's 8 values of its key; which of the warp's keys */
    int rep = NH / NKV, bs_mask = (1 << bs_shift) - 1;
    uint4 (*ring)[2][WARP] = (uint4 (*)[2][WARP])sm + warp * DEC_STAGES;
    /* q and the step's keys (a chunk's rows all of theirs) are the previous
     * kernel's: nothing to load before the wait but pos */
    grid_dependents_launch();
    grid_dependency_wait();
    int n = pos[r] + 1;
    int j0 = split * split_len, j1 = min(j0 + split_len, n);
    const int32_t *table = block_tables + (size_t)r * max_blocks;

    float qr[MAXREP][8], acc[MAXREP][8], m[MAXREP], l[MAXREP];
    const float ql2 = scale * LOG2E_F;
#pragma unroll
    for (int h = 0; h < MAXREP; h++) {
        m[h] = -INFINITY, l[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            acc[h][e] = 0.0f;
            qr[h][e] = !FOLD && h < rep ? q[((size_t)r * NH + g * rep + h) * D + sub * 8 + e] * ql2 : 0.0f;
        }
    }
    if (FOLD) {
        /* q is the raw product: each warp normalizes the group's heads
         * itself (qk_head_rstd) and each lane rotates its 8 values, which
         * lie in one half of the head (D / 2 is a multiple of 8), with
         * their partners in the other half */
        const int half = D / 2, c0 = sub * 8, i0 = c0 < half ? c0 : c0 - half, p = n - 1;
        float cs[8], sn[8], w1[8], w2[8];
        dec_load8(cs, fold.cosb + (size_t)p * half + i0);
        dec_load8(sn, fold.sinb + (size_t)p * half + i0);
        dec_load8(w1, fold.qw + i0);
        dec_load8(w2, fold.qw + i0 + half);
#pragma unroll
        for (int h = 0; h < MAXREP; h++) {
            if (h >= rep) break;
            const float *x = q + ((size_t)r * NH + g * rep + h) * D;
            float rs = qk_head_rstd(x, D, fold.eps, lane), x1[8], x2[8];
            dec_load8(x1, x + i0);
            dec_load8(x2, x + i0 + half);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float y1, y2;
                qk_rope_pair(x1[e] * rs * w1[e], x2[e] * rs * w2[e], cs[e], sn[e], y1, y2);
                qr[h][e] = (c0 < half ? y1 : y2) * ql2;
            }
        }
        /* the piece that holds the row's last position writes its key and
         * value into the cache before any lane copies them */
        if (j0 <= p && p < j1) {
            if (warp == 0) {
                const float *xk = fold.k + ((size_t)r * NKV + g) * D, *xv = fold.v + ((size_t)r * NKV + g) * D;
                const float *cp = fold.cosb + (size_t)p * half, *sp = fold.sinb + (size_t)p * half;
                float rs = qk_head_rstd(xk, D, fold.eps, lane);
                __nv_bfloat16 *blk = fold.kv + (size_t)table[p >> bs_shift] * block_stride;
                size_t at = ((size_t)(p & bs_mask) * NKV + g) * D;
                __nv_bfloat16 *ks = blk + k_off + at, *vs = blk + v_off + at;
                for (int i = lane; i < half; i += WARP) {
                    float y1, y2;
                    qk_rope_pair(xk[i] * rs * fold.kw[i], xk[i + half] * rs * fold.kw[i + half], cp[i], sp[i], y1,
                                 y2);
                    ks[i] = __float2bfloat16_rn(y1);
                    ks[i + half] = __float2bfloat16_rn(y2);
                }
                for (int c = lane; c < D; c += WARP) vs[c] = __float2bfloat16_rn(xv[c]);
            }
            __syncthreads();
        }
    }
    /* key j's 8 values of this lane, key and value, into ring stage st;
     * zeros past the piece (nothing read) */
    auto fetch = [&](int j, int st) {
        bool in = j < j1;
        const __nv_bfloat16 *kp = kv, *vp = kv;
        if (in) {
            const __nv_bfloat16 *blk = kv + (size_t)table[j >> bs_shift] * block_stride;
            size_t at = ((size_t)(j & bs_mask) * NKV + g) * D + sub * 8;
            kp = blk + k_off + at, vp = blk + v_off + at;
        }
        cp_async_16(&ring[st][0][lane], kp, in);
        cp_async_16(&ring[st][1][lane], vp, in);
    };
    /* keys t + slot and t + STEP + slot (the lane's, of the warp's steps at
     * t and t + STEP): scores and one online-softmax update for the pair
     * (lanes past the piece still take part in the sums) */
    auto attend2 = [&](int t, uint4 k0r, uint4 v0r, uint4 k1r, uint4 v1r) {
        float k0x[8], v0x[8], k1x[8], v1x[8];
        bf16x8_unpack(k0x, k0r);
        bf16x8_unpack(v0x, v0r);
        bf16x8_unpack(k1x, k1r);
        bf16x8_unpack(v1x, v1r);
        bool ok0 = t + slot < j1, ok1 = t + STEP + slot < j1;
#pragma unroll
        for (int h = 0; h < MAXREP; h++) {
            if (h >= rep) break;
            float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++) d0 = fmaf(qr[h][e], k0x[e], d0), d1 = fmaf(qr[h][e], k1x[e], d1);
#pragma unroll
            for (int o = LPK / 2; o > 0; o >>= 1) {
                d0 += __shfl_xor_sync(FULL_MASK, d0, o);
                d1 += __shfl_xor_sync(FULL_MASK, d1, o);
            }
            float s0 = ok0 ? d0 : -INFINITY, s1 = ok1 ? d1 : -INFINITY;
            float mn = fmaxf(m[h], fmaxf(s0, s1));
            if (mn != -INFINITY) { /* some key seen */
                if (mn > m[h]) { /* a new max: rescale (corr is 0 on the first key); rare after the first keys */
                    float corr = exp2f(m[h] - mn);
                    l[h] *= corr;
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[h][e] *= corr;
                    m[h] = mn;
                }
                float p0 = exp2f(s0 - mn), p1 = exp2f(s1 - mn);
                l[h] += p0 + p1;
#pragma unroll
                for (int e = 0; e < 8; e++) acc[h][e] = fmaf(p1, v1x[e], fmaf(p0, v0x[e], acc[h][e]));
            }
        }
    };
    int t = j0 + warp * KPW; /* the warp's first key; its steps are t, t + STEP, ... */
    int n_steps = t < j1 ? (j1 - t + STEP - 1) / STEP : 0;
#pragma unroll
    for (int a = 0; a < DEC_STAGES - 2; a++) {
        fetch(t + a * STEP + slot, a);
        cp_async_commit();
    }
    for (int i = 0; i < n_steps; i += 2) {
        /* the pair i - 2, i - 1 is used: its stages take steps i + 6, i + 7 */
        fetch(t + (i + DEC_STAGES - 2) * STEP + slot, (i + DEC_STAGES - 2) % DEC_STAGES);
        cp_async_commit();
        fetch(t + (i + DEC_STAGES - 1) * STEP + slot, (i + DEC_STAGES - 1) % DEC_STAGES);
        cp_async_commit();
        cp_async_wait<DEC_STAGES - 2>(); /* steps i and i + 1 are in */
        int s0 = i % DEC_STAGES, s1 = (i + 1) % DEC_STAGES;
        attend2(t + i * STEP, ring[s0][0][lane], ring[s0][1][lane], ring[s1][0][lane], ring[s1][1][lane]);
    }
    cp_async_wait<0>(); /* the copies past the piece (zeros) too: the ring's bytes are reused below */

    /* the warp's key slots, merged pairwise (slot s with s ^ 1, ...) */
#pragma unroll
    for (int o = LPK; o < WARP; o <<= 1) {
#pragma unroll
        for (int h = 0; h < MAXREP; h++) {
            if (h >= rep) break;
            float m2 = __shfl_xor_sync(FULL_MASK, m[h], o), l2 = __shfl_xor_sync(FULL_MASK, l[h], o);
            float mn = fmaxf(m[h], m2);
            float c1 = mn == -INFINITY ? 0.0f : exp2f(m[h] - mn), c2 = mn == -INFINITY ? 0.0f : exp2f(m2 - mn);
            l[h] = l[h] * c1 + l2 * c2;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float a2 = __shfl_xor_sync(FULL_MASK, acc[h][e], o);
                acc[h][e] = acc[h][e] * c1 + a2 * c2;
            }
            m[h] = mn;
        }
    }
    __syncthreads(); /* every warp is done with its ring */
    float (*As)[MAXREP][D] = (float (*)[MAXREP][D])sm;
    if (slot == 0) {
#pragma unroll
        for (int h = 0; h < MAXREP; h++) {
            if (h >= rep) break;
#pragma unroll
            for (int e = 0; e < 8; e++) As[warp][h][sub * 8 + e] = acc[h][e];
            if (sub == 0) Ms[warp][h] = m[h], Lsh[warp][h] = l[h];
        }
    }
    __syncthreads();
    /* the block's warps, in order; the max goes out in natural units */
    size_t base = ((size_t)r * NH + g * rep) * n_splits + split; /* (row, head, split) of head g*rep */
    for (int idx = threadIdx.x; idx < rep * D; idx += DEC_FAST_WARPS * WARP) {
        int h = idx / D, d = idx % D;
        float M = -INFINITY;
        for (int w = 0; w < DEC_FAST_WARPS; w++) M = fmaxf(M, Ms[w][h]);
        float L = 0.0f, a = 0.0f;
        if (M != -INFINITY)
            for (int w = 0; w < DEC_FAST_WARPS; w++) {
                float c = exp2f(Ms[w][h] - M);
                L += Lsh[w][h] * c;
                a += As[w][h][d] * c;
            }
        pacc[(base + (size_t)h * n_splits) * D + d] = a;
        if (d == 0) {
            pm[base + (size_t)h * n_splits] = M * LN2_F;
            pl[base + (size_t)h * n_splits] = L;
        }
    }
}

/* Launches the fast kernel when the shape has one: true if it did. */
static bool decode_partial_fast(dim3 grid, float *pm, float *pl, float *pacc, const float *q, const float *kv,
                                const int32_t *block_tables, int max_blocks, const int32_t *pos, int NH, int NKV,
                                int D, int block_size, size_t block_stride, size_t k_off, size_t v_off, int split_len,
                                int n_splits, float scale, bool vec, const DecFold *fold, cudaStream_t stream) {
    return false; /* the fp32 cache keeps the staged kernel */
}

template <int D>
static bool decode_fast_rep(dim3 grid, float *pm, float *pl, float *pacc, const float *q, const __nv_bfloat16 *kv,
                            const int32_t *block_tables, int max_blocks, const int32_t *pos, int NH, int NKV,
                            int block_size, size_t block_stride, size_t k_off, size_t v_off, int split_len,
                            int n_splits, float scale, const DecFold *fold, cudaStream_t stream) {
    int rep = NH / NKV, bs_shift = 0;
    if (rep > 8 || block_size < 1 || (block_size & (block_size - 1))) return false;
    while ((1 << bs_shift) < block_size) bs_shift++;
    void (*kernel)(float *, float *, float *, const float *, const __nv_bfloat16 *, const int32_t *, int,
                   const int32_t *, int, int, int, size_t, size_t, size_t, int, int, float, DecFold) =
        fold ? (rep <= 4 ? decode_partial_fast_kernel<D, 4, true> : decode_partial_fast_kernel<D, 8, true>)
             : (rep <= 4 ? decode_partial_fast_kernel<D, 4, false> : decode_partial_fast_kernel<D, 8, false>);
    launch_dependent("decode_partial_fast_kernel", kernel, grid, DEC_FAST_WARPS * WARP, 0, stream, pm, pl, pacc, q, kv,
                     block_tables, max_blocks, pos, NH, NKV, bs_shift, block_stride, k_off, v_off, split_len, n_splits,
                     scale, fold ? *fold : DecFold{});
    return true;
}

static bool decode_partial_fast(dim3 grid, float *pm, float *pl, float *pacc, const float *q,
                                const __nv_bfloat16 *kv, const int32_t *block_tables, int max_blocks,
                                const int32_t *pos, int NH, int NKV, int D, int block_size, size_t block_stride,
                                size_t k_off, size_t v_off, int split_len, int n_splits, float scale, bool vec,
                                const DecFold *fold, cudaStream_t stream) {
    if (!vec) return false;
    switch (D) {
    case 32: return decode_fast_rep<32>(grid, pm, pl, pacc, q, kv, block_tables, max_blocks, pos, NH, NKV, block_size,
                                        block_stride, k_off, v_off, split_len, n_splits, scale, fold, stream);
    case 64: return decode_fast_rep<64>(grid, pm, pl, pacc, q, kv, block_tables, max_blocks, pos, NH, NKV, block_size,
                                        block_stride, k_off, v_off, split_len, n_splits, scale, fold, stream);
    case 128: return decode_fast_rep<128>(grid, pm, pl, pacc, q, kv, block_tables, max_blocks, pos, NH, NKV,
                                          block_size, block_stride, k_off, v_off, split_len, n_splits, scale, fold,
                                          stream);
    case 256: return decode_fast_rep<256>(grid, pm, pl, pacc, q, kv, block_tables, max_blocks, pos, NH, NKV,
                                          block_size, block_stride, k_off, v_off, split_len, n_splits, scale, fold,
                                          stream);
    default: return false;
    }
}

/* Grid (NH, R), G * D threads (whole warps, 1024 at most): out = sum_s
 * e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s over the n_splits pieces. The
 * pieces' weights e^(m_s - M) are computed once each, by the block's
 * threads together, into shared memory; then thread (g, d) sums column d
 * over the pieces g, g + G, ... (loads independent of each other, several
 * in flight), and the G partial sums are added in order. At batch 1 the
 * grid is only NH blocks and a 2k context is 64 pieces: one thread per
 * column walking all of them took ~19 us a call on an H100 (Nsight
 * Compute, caches flushed). Fixed order throughout:
 * the same result every run. Dynamic shared memory: n_splits + G * D floats. */
__global__ static void decode_merge_kernel(float *out, const float *pm, const float *pl, const float *pacc, int NH,
                                           int D, int n_splits, int G) {
    extern __shared__ float msh[];
    float *wsh = msh, *part = msh + n_splits; /* (n_splits), (G, D) */
    __shared__ float red[WARP];
    __shared__ float inv_l;
    int h = blockIdx.x, r = blockIdx.y, lane = threadIdx.x % WARP;
    size_t base = ((size_t)r * NH + h) * n_splits;
    grid_dependents_launch();
    grid_dependency_wait();
    float M = -INFINITY;
    for (int s = threadIdx.x; s < n_splits; s += blockDim.x) M = fmaxf(M, pm[base + s]);
    M = block_max(M, red);
    for (int s = threadIdx.x; s < n_splits; s += blockDim.x) {
        float m = pm[base + s];
        wsh[s] = m == -INFINITY ? 0.0f : expf(m - M); /* an empty piece: nothing */
    }
    __syncthreads();
    if (threadIdx.x < WARP) { /* warp 0: the sum, lane-strided then a butterfly */
        float L = 0.0f;
        for (int s = lane; s < n_splits; s += WARP) L += pl[base + s] * wsh[s];
        L = warp_sum(L);
        if (lane == 0) inv_l = 1.0f / L;
    }
    for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
        int g = i / D, d = i % D;
        const float *a_d = pacc + base * D + d;
        float a = 0.0f;
#pragma unroll 8
        for (int s = g; s < n_splits; s += G) a += a_d[(size_t)s * D] * wsh[s];
        part[i] = a;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float a = 0.0f;
        for (int k = 0; k < G; k++) a += part[k * D + c];
        out[((size_t)r * NH + h) * D + c] = a * inv_l;
    }
}

/* Groups of pieces for the merge: G * D up to 1024 threads, each group at
 * least 8 pieces. */
static int dec_merge_groups(int D, int n_splits) {
    int G = 1;
    while (2 * G * D <= 1024 && 8 * G <= n_splits) G *= 2;
    return G;
}

/* The most bytes the pieces' partials may take (TAU2_CUDA_DECODE_WORK_MAX
 * overrides, read at each call so a test can switch it). Rows of an
 * appended turn go through this kernel too, one query each: a step of 8192
 * such rows at a 40k-token context would need 22 GB of partials in pieces
 * of 256 keys, while so many rows fill the GPU without splitting at all. */
#define DEC_WORK_MAX (256ul << 20)

static size_t dec_work_max(void) {
    const char *e = getenv("TAU2_CUDA_DECODE_WORK_MAX");
    long long v = e ? atoll(e) : 0;
    return v > 0 ? (size_t)v : DEC_WORK_MAX;
}

static size_t dec_work_bytes(int R, int NH, int D, int max_len, int split_len) {
    return (size_t)R * NH * ((max_len + split_len - 1) / split_len) * ((size_t)D + 2) * sizeof(float);
}

/* Keys per piece for R rows of NKV kv heads (NH query heads of D values)
 * over max_len keys: DEC_SPLIT, halved (down to one tile) while the grid
 * would have fewer than DEC_MIN_BLOCKS blocks, doubled while the partials
 * would pass dec_work_max() (until one piece holds the context). Powers of
 * two from DEC_SPLIT either way, so fewer kv heads never give longer
 * pieces: cuda_decode_attention_work_bytes, which sizes for NKV = 1, is an
 * upper bound for every NKV. */
static int dec_split_len(int R, int NKV, int NH, int D, int max_len) {
    int len = DEC_SPLIT;
    while (len > DEC_TILE && (long)R * NKV * ((max_len + len - 1) / len) < DEC_MIN_BLOCKS) len /= 2;
    size_t cap = dec_work_max();
    while (len < max_len && dec_work_bytes(R, NH, D, max_len, len) > cap) len *= 2;
    return len;
}

/* fold: NULL, or the q/k stage to do in the pieces' kernel (the bf16
 * cache's fast kernel only: a shape without one is refused). */
template <typename KV>
static void decode_attention(float *out, const float *q, const KV *kv, const int32_t *block_tables, int max_blocks,
                             const int32_t *pos, int R, int NH, int NKV, int D, int block_size, size_t block_stride,
                             size_t k_off, size_t v_off, int max_len, float *work, size_t work_bytes,
                             const DecFold *fold, cudaStream_t stream) {
    if (R <= 0) return;
    int rep = NKV > 0 ? NH / NKV : 0;
    if (NKV < 1 || NH % NKV != 0 || rep > DEC_MAX_REP || rep * D > DEC_THREADS * DEC_ACC || max_len < 1) {
        fprintf(stderr, "cuda_decode_attention: unsupported shape (NH %d, NKV %d, D %d, max_len %d)\n", NH, NKV, D,
                max_len);
        exit(1);
    }
    int split_len = dec_split_len(R, NKV, NH, D, max_len), n_splits = (max_len + split_len - 1) / split_len;
    size_t parts = (size_t)R * NH * n_splits;
    size_t need = cuda_decode_attention_work_bytes(R, NH, D, max_len);
    if (work == NULL || work_bytes < need) {
        fprintf(stderr, "cuda_decode_attention: workspace of %zu bytes, %zu needed (R %d, NH %d, D %d, max_len %d)\n",
                work == NULL ? (size_t)0 : work_bytes, need, R, NH, D, max_len);
        exit(1);
    }
    float *pm = work, *pl = pm + parts, *pacc = pl + parts;
    size_t smem = ((size_t)rep * D + DEC_TILE * (D + 1) + DEC_TILE * D + rep * DEC_TILE + 3 * rep) * sizeof(float);
    if (smem > 48 * 1024)
        cuda_check(cudaFuncSetAttribute(decode_partial_kernel<KV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
    const size_t W = kv_vec_width<KV>();
    bool vec = D % W == 0 && k_off % W == 0 && v_off % W == 0 && block_stride % W == 0 && (uintptr_t)kv % 16 == 0;
    dim3 grid(n_splits, NKV, R);
    float scale = 1.0f / sqrtf((float)D);
    bool fast = decode_partial_fast(grid, pm, pl, pacc, q, kv, block_tables, max_blocks, pos, NH, NKV, D, block_size,
                                    block_stride, k_off, v_off, split_len, n_splits, scale, vec, fold, stream);
    if (!fast && fold) {
        fprintf(stderr,
                "cuda_decode_attention_folded_bf16: no fast kernel for this shape (NH %d, NKV %d, D %d, block size %d, "
                "16-byte aligned cache rows): check cuda_decode_fold_fit first\n",
                NH, NKV, D, block_size);
        exit(1);
    }
    if (!fast) {
        launch_dependent("decode_partial_kernel", decode_partial_kernel<KV>, grid, DEC_THREADS, smem, stream, pm, pl,
                         pacc, q, kv, block_tables, max_blocks, pos, NH, NKV, D, block_size, block_stride, k_off,
                         v_off, split_len, n_splits, scale, vec);
    }
    int G = dec_merge_groups(D, n_splits), threads = G * D < 1024 ? (G * D + WARP - 1) / WARP * WARP : 1024;
    size_t merge_smem = ((size_t)n_splits + (size_t)G * D) * sizeof(float);
    if (merge_smem > 48 * 1024)
        cuda_check(cudaFuncSetAttribute(decode_merge_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)merge_smem));
    launch_dependent("decode_merge_kernel", decode_merge_kernel, dim3(NH, R), threads, merge_smem, stream, out, pm,
                     pl, pacc, NH, D, n_splits, G);
}

/* The pieces' partial results: max and sum (parts each) and the
 * unnormalized output (parts, D), parts = R * NH * pieces of the context;
 * as many pieces as one kv head would take (more kv heads take fewer). */
extern "C" size_t cuda_decode_attention_work_bytes(int R, int NH, int D, int max_len) {
    if (R <= 0 || NH <= 0 || D <= 0 || max_len <= 0) return 0;
    return dec_work_bytes(R, NH, D, max_len, dec_split_len(R, 1, NH, D, max_len));
}

/* dec_split_len's doubling ends with the partials under the cap, or with
 * one piece per row and head (R * NH * (D + 2) floats): the larger of the
 * two bounds every split it can choose, at any context. */
extern "C" size_t cuda_decode_attention_work_bound(int R, int NH, int D) {
    if (R <= 0 || NH <= 0 || D <= 0) return 0;
    size_t whole = dec_work_bytes(R, NH, D, 1, 1), cap = dec_work_max();
    return whole > cap ? whole : cap;
}

extern "C" void cuda_decode_attention(float *out, const float *q, const float *kv, const int32_t *block_tables,
                                      int max_blocks, const int32_t *pos, int R, int NH, int NKV, int D,
                                      int block_size, size_t block_stride, size_t k_off, size_t v_off, int max_len,
                                      float *work, size_t work_bytes, cudaStream_t stream) {
    decode_attention(out, q, kv, block_tables, max_blocks, pos, R, NH, NKV, D, block_size, block_stride, k_off, v_off,
                     max_len, work, work_bytes, (const DecFold *)NULL, stream);
}

extern "C" void cuda_decode_attention_bf16(float *out, const float *q, const uint16_t *kv,
                                           const int32_t *block_tables, int max_blocks, const int32_t *pos, int R,
                                           int NH, int NKV, int D, int block_size, size_t block_stride, size_t k_off,
                                           size_t v_off, int max_len, float *work, size_t work_bytes,
                                           cudaStream_t stream) {
    decode_attention(out, q, (const __nv_bfloat16 *)kv, block_tables, max_blocks, pos, R, NH, NKV, D, block_size,
                     block_stride, k_off, v_off, max_len, work, work_bytes, (const DecFold *)NULL, stream);
}

extern "C" bool cuda_decode_fold_fit(int NH, int NKV, int D, int block_size) {
    bool head = D == 32 || D == 64 || D == 128 || D == 256;
    return head && NKV >= 1 && NH % NKV == 0 && NH / NKV <= 8 && block_size >= 1 &&
           (block_size & (block_size - 1)) == 0;
}

extern "C" void cuda_decode_attention_folded_bf16(float *out, uint16_t *kv, const float *q, const float *k,
                                                  const float *v, const float *q_norm_w, const float *k_norm_w,
                                                  const float *cosb, const float *sinb, float eps,
                                                  const int32_t *block_tables, int max_blocks, const int32_t *pos,
                                                  int R, int NH, int NKV, int D, int block_size, size_t block_stride,
                                                  size_t k_off, size_t v_off, int max_len, float *work,
                                                  size_t work_bytes, cudaStream_t stream) {
    if (!cuda_decode_fold_fit(NH, NKV, D, block_size) || !aligned16(q) || !aligned16(q_norm_w) || !aligned16(cosb) ||
        !aligned16(sinb)) {
        fprintf(stderr,
                "cuda_decode_attention_folded_bf16: unsupported (NH %d, NKV %d, D %d, block size %d; q, q_norm_w and "
                "the RoPE tables must be 16-byte aligned)\n",
                NH, NKV, D, block_size);
        exit(1);
    }
    DecFold fold = {(__nv_bfloat16 *)kv, k, v, q_norm_w, k_norm_w, cosb, sinb, eps};
    decode_attention(out, q, (const __nv_bfloat16 *)kv, block_tables, max_blocks, pos, R, NH, NKV, D, block_size,
                     block_stride, k_off, v_off, max_len, work, work_bytes, &fold, stream);
}

/* The inference step's q/k stage in one launch, one warp per (row, head)
 * over the NH query heads and then the NKV kv heads of each row: the
 * head's RMSNorm (sum of squares in double, as rmsnorm_forward_kernel),
 * then RoPE at pos[r] (as rope_kernel), into qn / kn; a kv head's warp
 * also writes the row's key (the rotated values) and value to their cache
 * slot in bf16 (the decode kernel's layout). The lanes take the pairs
 * (i, i + D/2) so each rotates what it normalized. Same arithmetic as the q/k norms
 * and rotations of the training step's kernels (rmsnorm, rope) and one
 * launch instead of five: at batch 1 the launches cost about as much as
 * the work. */
__global__ static void qk_norm_rope_cache_kernel(float *qn, float *kn, __nv_bfloat16 *kv, const float *q,
                                                 const float *k, const float *v, const float *qw, const float *kw,
                                                 const int32_t *pos, const float *cosb, const float *sinb,
                                                 const int32_t *block_tables, int max_blocks, int R, int NH, int NKV,
                                                 int D, float eps, int block_size, size_t block_stride, size_t k_off,
                                                 size_t v_off) {
    long row_head = blockIdx.x * (long)(blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP, heads = NH + NKV;
    grid_dependents_launch();
    if (row_head >= (long)R * heads) {
        grid_dependency_wait();
        return;
    }
    int r = (int)(row_head / heads), h = (int)(row_head % heads);
    bool is_k = h >= NH;
    int hk = h - NH;
    const float *x = is_k ? k + ((size_t)r * NKV + hk) * D : q + ((size_t)r * NH + h) * D;
    const float *w = is_k ? kw : qw;
    float *o = is_k ? kn + ((size_t)r * NKV + hk) * D : qn + ((size_t)r * NH + h) * D;
    /* the position and the cache slot come from the step's upload, not
     * from a kernel: found before the wait for the products */
    int half = D / 2, p = pos[r];
    __nv_bfloat16 *kslot = NULL, *vslot = NULL;
    if (is_k) {
        __nv_bfloat16 *blk = kv + (size_t)block_tables[(size_t)r * max_blocks + p / block_size] * block_stride;
        size_t slot = ((size_t)(p % block_size) * NKV + hk) * D;
        kslot = blk + k_off + slot, vslot = blk + v_off + slot;
    }
    grid_dependency_wait();
    float rs = qk_head_rstd(x, D, eps, lane);
    for (int i = lane; i < half; i += WARP) {
        size_t tab = (size_t)p * half + i;
        float y1, y2;
        qk_rope_pair(x[i] * rs * w[i], x[i + half] * rs * w[i + half], cosb[tab], sinb[tab], y1, y2);
        o[i] = y1;
        o[i + half] = y2;
        if (is_k) {
            kslot[i] = __float2bfloat16_rn(y1);
            kslot[i + half] = __float2bfloat16_rn(y2);
        }
    }
    if (is_k) {
        const float *vr = v + ((size_t)r * NKV + hk) * D;
        for (int c = lane; c < D; c += WARP) vslot[c] = __float2bfloat16_rn(vr[c]);
    }
}

extern "C" void cuda_qk_norm_rope_cache_bf16(float *qn, float *kn, uint16_t *kv, const float *q, const float *k,
                                             const float *v, const float *q_norm_w, const float *k_norm_w,
                                             const int32_t *pos, const float *cosb, const float *sinb,
                                             const int32_t *block_tables, int max_blocks, int R, int NH, int NKV, int D,
                                             float eps, int block_size, size_t block_stride, size_t k_off, size_t v_off,
                                             cudaStream_t stream) {
    long warps = (long)R * (NH + NKV);
    if (warps <= 0) return;
    if (D % 2 != 0) {
        fprintf(stderr, "cuda_qk_norm_rope_cache_bf16: odd head_dim %d\n", D);
        exit(1);
    }
    const int per_block = 8;
    launch_dependent("qk_norm_rope_cache_kernel", qk_norm_rope_cache_kernel,
                     (unsigned)((warps + per_block - 1) / per_block), per_block * WARP, 0, stream, qn, kn,
                     (__nv_bfloat16 *)kv, q, k, v, q_norm_w, k_norm_w, pos, cosb, sinb, block_tables, max_blocks, R,
                     NH, NKV, D, eps, block_size, block_stride, k_off, v_off);
}
