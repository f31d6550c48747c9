/* sample.cu — one token per row of logits: greedy, temperature, top-k and
 * top-p sampling with sample_token's rules (src/model/sample.c).
 *
 * One block of 1024 threads per row. The kernel reproduces the CPU twin's
 * arithmetic, not only its rules, so the two pick the same token for the
 * same logits and u:
 *   - weights w = exp((z - max) * (1 / temperature)) use a port of the CPU's
 *     exp (exp_one in layers_cpu.c) in round-to-nearest intrinsics (no FMA
 *     contraction): the same bits as the CPU's w;
 *   - sums of w follow sample.c's order: blocks of 1024 tokens, 8 strided
 *     lanes per block added in a fixed tree, block sums added in block
 *     order; CDF walks are sequential in double, as on the CPU.
 * Weights are recomputed (from z) by every pass instead of being stored:
 * no (R, V) scratch, and the recomputation gives the same bits each time.
 *
 * Truncated draws (top-k and/or top-p) never sort the vocabulary:
 *   1. a radix select over the float bits of w (positive floats order like
 *      their bits), 8 bits per pass from the top, finds the boundary of a
 *      prefix of the ranking (larger w first, lower id on ties) that holds
 *      every kept token: per digit, counts (for top_k) and masses (for top_p,
 *      with a margin over top_p * total) of the tokens still in play;
 *   2. that prefix is gathered and sorted by rank in shared memory (bitonic),
 *      and thread 0 runs sample.c's keep loop and draw on it exactly;
 *   3. if the prefix has more than SAMPLE_CAND_CAP tokens (a flat
 *      distribution under a large top_p or top_k), the fallback draws from
 *      it in id order instead (see sample_truncated): the same distribution,
 *      but not the CPU's token for a given u.
 * Histogram masses are 64-bit fixed point (integer atomics: the sums do not
 * depend on the order of the additions), so every result is repeatable bit
 * for bit; the float sums are all in a fixed order.
 */
#include <limits.h>

#include "common.cuh"

#define SAMPLE_THREADS 1024
#define SAMPLE_BLOCK 1024                           /* tokens per block sum, as sample.c */
#define SAMPLE_LANES 8                              /* lanes of a block sum, as sample.c's block_sum */
#define SAMPLE_MAX_BLOCKS 4096                      /* block sums held in shared memory */
#define SAMPLE_MAX_V (SAMPLE_MAX_BLOCKS * SAMPLE_BLOCK)
#define SAMPLE_CAND_CAP 4096                        /* ranked candidates sorted in shared memory */
#define RADIX_BINS 256                              /* 8-bit digits */

/* ---- weights, bit for bit as the CPU ---- */

/* exp_one (src/model/layers_cpu.c) step by step: each operation rounded as
 * the CPU rounds it (C11 keeps contraction off there; the intrinsics keep
 * nvcc from fusing here). Subnormal results flush to 0, as there. */
#define EXP_LO (-87.33654f)
#define EXP_HI 88.72283f

__device__ static float exp_cpu(float x) {
    if (x != x) return x;
    if (x < EXP_LO) return 0.0f;
    if (x > EXP_HI) return INFINITY;
    float n = __fsub_rn(__fadd_rn(__fmul_rn(x, 1.44269504088896341f), 12582912.0f), 12582912.0f);
    float r = __fsub_rn(x, __fmul_rn(n, 0.693359375f));
    r = __fsub_rn(r, __fmul_rn(n, -2.12194440e-4f));
    float y = 1.9875691500e-4f;
    y = __fadd_rn(__fmul_rn(y, r), 1.3981999507e-3f);
    y = __fadd_rn(__fmul_rn(y, r), 8.3334519073e-3f);
    y = __fadd_rn(__fmul_rn(y, r), 4.1665795894e-2f);
    y = __fadd_rn(__fmul_rn(y, r), 1.6666665459e-1f);
    y = __fadd_rn(__fmul_rn(y, r), 5.0000001201e-1f);
    y = __fadd_rn(__fadd_rn(__fmul_rn(y, __fmul_rn(r, r)), r), 1.0f);
    /* n in [-126, 128]; 2^128 is not a float: that case takes 2^127 * 2 */
    int ni = (int)n, top = ni > 127;
    y = __fmul_rn(y, __int_as_float((ni + 127 - top) << 23));
    return top ? __fmul_rn(y, 2.0f) : y;
}

/* w_j = exp((z_j - max) * inv_t), as sample.c's sum_exp. */
__device__ static float weight(const float *z, int j, float mx, float inv_t) {
    return exp_cpu(__fmul_rn(__fsub_rn(z[j], mx), inv_t));
}

/* The radix key of a weight: its bits when positive, else 0 (never kept). */
__device__ static unsigned wkey(float w) { return w > 0.0f ? __float_as_uint(w) : 0u; }

/* The kept set of a truncated draw, a prefix of the ranking: keys above T,
 * and of the keys equal to T those with id <= tie_last. {0, -1}: every
 * positive weight (also what the untruncated sums use: zeros add nothing). */
struct KeptSet {
    unsigned T;
    int tie_last;
};

__device__ static bool is_kept(KeptSet k, unsigned key, int j) {
    return key > k.T || (key == k.T && key != 0u && j <= k.tie_last);
}

__device__ static float kept_weight(const float *z, int j, float mx, float inv_t, KeptSet k) {
    float w = weight(z, j, mx, inv_t);
    return is_kept(k, wkey(w), j) ? w : 0.0f;
}

/* ---- shared memory of a block (one row) ---- */

/* The radix select's state, kept by thread 0 between passes. */
struct SelectState {
    unsigned prefix, mask;         /* the key bits decided so far */
    int count_above;               /* tokens whose key is above the prefix's bin */
    unsigned long long mass_above; /* their mass, fixed point */
    int count_bin;                 /* tokens in the chosen bin of the last pass */
    int all;                       /* no boundary: every positive weight is in play */
};

struct SampleShared {
    union {
        double bsum[SAMPLE_MAX_BLOCKS];           /* block sums of the weights */
        unsigned long long cand[SAMPLE_CAND_CAP]; /* candidates: (~key << 32) | id */
    } u;
    float wbuf[SAMPLE_BLOCK];                     /* the weights of the block a CDF walk ends in */
    unsigned hcnt[RADIX_BINS];                    /* radix histogram: tokens per digit */
    unsigned long long hmass[RADIX_BINS];         /* and their mass, fixed point */
    float fred[WARP];                             /* reduction scratch */
    int ired[WARP];
    SelectState sel;
    double dval; /* values thread 0 hands to the block */
    int ival;
    int ncand;
};

/* ---- block-wide helpers: every thread calls them and gets the result ----
 * Each starts with __syncthreads(): the shared values it writes may still be
 * being read by the helper before it. */

/* The better of (bv, bi) and the other lanes' pairs (the larger value, the
 * lower id on ties; NaN never wins), in every lane of the warp. */
__device__ static void warp_argmax(float &bv, int &bi) {
    for (int o = WARP / 2; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(FULL_MASK, bv, o);
        int oi = __shfl_xor_sync(FULL_MASK, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
}

/* The best pair of the block (warp_argmax's order), in every thread; fred
 * and ired: WARP values each of shared scratch. */
__device__ static void block_argmax(float &bv, int &bi, float *fred, int *ired) {
    warp_argmax(bv, bi);
    int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
    __syncthreads();
    if (lane == 0) fred[w] = bv, ired[w] = bi;
    __syncthreads();
    bv = lane < nw ? fred[lane] : -INFINITY;
    bi = lane < nw ? ired[lane] : INT_MAX;
    warp_argmax(bv, bi);
}

/* The argmax of z, the lowest id on ties (sample.c's argmax; NaN never wins). */
__device__ static int row_argmax(const float *z, int V, SampleShared *sh) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        if (z[j] > bv || (z[j] == bv && j < bi)) bv = z[j], bi = j;
    }
    block_argmax(bv, bi, sh->fred, sh->ired);
    return bi == INT_MAX ? 0 : bi; /* all NaN: token 0 */
}

/* Exclusive prefix sum of one int per thread, in thread order. */
__device__ static int block_exclusive_scan(int x, SampleShared *sh) {
    int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
    int incl = x;
    for (int o = 1; o < WARP; o <<= 1) {
        int y = __shfl_up_sync(FULL_MASK, incl, o);
        if (lane >= o) incl += y;
    }
    __syncthreads();
    if (lane == WARP - 1) sh->ired[w] = incl;
    __syncthreads();
    if (w == 0) {
        int v = lane < nw ? sh->ired[lane] : 0, vi = v;
        for (int o = 1; o < WARP; o <<= 1) {
            int y = __shfl_up_sync(FULL_MASK, vi, o);
            if (lane >= o) vi += y;
        }
        if (lane < nw) sh->ired[lane] = vi - v; /* the warps before this one */
    }
    __syncthreads();
    return sh->ired[w] + incl - x;
}

/* A block sum's 8 lanes (8 consecutive threads) combined as sample.c's
 * block_sum does, ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7)), in lane 0: three
 * butterfly shuffles (double addition commutes, so a + b and b + a are the
 * same bits). */
__device__ static double lanes_sum(double s) {
    s += __shfl_xor_sync(FULL_MASK, s, 4); /* lane u: l_u + l_(u+4) */
    s += __shfl_xor_sync(FULL_MASK, s, 1); /* lane 0: (l0+l4)+(l1+l5), lane 2: (l2+l6)+(l3+l7) */
    s += __shfl_xor_sync(FULL_MASK, s, 2);
    return s;
}

/* The nb block sums in sh->u.bsum added in block order by one thread;
 * every thread gets the total. */
__device__ static double bsum_total(int nb, SampleShared *sh) {
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int b = 0; b < nb; b++) total += sh->u.bsum[b];
        sh->dval = total;
    }
    __syncthreads();
    return sh->dval;
}

/* The sum of the kept weights in sample.c's order (sum_exp, block_sum):
 * per block of SAMPLE_BLOCK tokens, lane u of 8 adds tokens u, u + 8, ...
 * in double; the lanes combine as ((l0+l4)+(l1+l5))+((l2+l6)+(l3+l7)); the
 * block sums (left in sh->u.bsum for invert_blocks) add in block order.
 * One thread per (block, lane); the 8 lanes of a block are 8 consecutive
 * threads of a warp, so the tree is three butterfly shuffles (double
 * addition commutes, so a + b and b + a are the same bits). */
__device__ static double blocked_sums(const float *z, int V, float mx, float inv_t, KeptSet k, SampleShared *sh) {
    int nb = (V + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK, tasks = nb * SAMPLE_LANES;
    __syncthreads();
    /* the loop bound is uniform over the block: every lane reaches the shuffles */
    for (int q0 = 0; q0 < tasks; q0 += blockDim.x) {
        int q = q0 + threadIdx.x, b = q / SAMPLE_LANES, lane = q % SAMPLE_LANES;
        double s = 0.0;
        if (q < tasks) {
            int j0 = b * SAMPLE_BLOCK, n = min(SAMPLE_BLOCK, V - j0);
            for (int i = lane; i < n; i += SAMPLE_LANES) s += (double)kept_weight(z, j0 + i, mx, inv_t, k);
        }
        s = lanes_sum(s);
        if (q < tasks && lane == 0) sh->u.bsum[b] = s;
    }
    return bsum_total(nb, sh);
}

/* Invert the CDF of the kept weights in id order at target, sample.c's
 * invert_cdf: whole blocks are skipped by the sums blocked_sums left (it
 * must have run with the same arguments), then the block where the running
 * sum passes target is walked token by token; if rounding leaves target
 * unreached, the last positive weight. */
__device__ static int invert_blocks(const float *z, int V, float mx, float inv_t, KeptSet k, double target,
                                    SampleShared *sh) {
    int nb = (V + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    __syncthreads();
    if (threadIdx.x == 0) {
        double cum = 0.0, t = INFINITY;
        int blk = -1, last = -1;
        for (int b = 0; b < nb; b++) {
            double s = sh->u.bsum[b];
            if (!(s > 0.0)) continue;
            if (cum + s > target) {
                blk = b, t = target - cum;
                break;
            }
            cum += s;
            last = b;
        }
        sh->ival = blk >= 0 ? blk : last; /* unreached: t stays inf, the walk ends at the last positive */
        sh->dval = t;
    }
    __syncthreads();
    int blk = sh->ival;
    double t = sh->dval;
    if (blk < 0) return 0; /* no positive weight (uniform over the block) */
    int j0 = blk * SAMPLE_BLOCK, n = min(SAMPLE_BLOCK, V - j0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) sh->wbuf[i] = kept_weight(z, j0 + i, mx, inv_t, k);
    __syncthreads();
    if (threadIdx.x == 0) {
        /* sample.c's pick_in_block */
        int tok = -1;
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            float w = sh->wbuf[i];
            if (w <= 0.0f) continue;
            tok = j0 + i;
            cum += w;
            if (cum > t) break;
        }
        sh->ival = tok >= 0 ? tok : 0;
    }
    __syncthreads();
    return sh->ival;
}

/* ---- truncation: radix select, candidates, ranked draw ---- */

/* A weight in the histogram's fixed point: w * 2^s rounded, with s chosen by
 * the host so that V weights <= 1 sum below 2^63. Integer sums do not depend
 * on the order of the atomic additions. */
__device__ static unsigned long long fixed(float w, double scale) { return __double2ull_rn((double)w * scale); }

/* The boundary of the candidate prefix, as thread 0 scans one pass's
 * histogram from the heaviest digit: the first digit whose tokens bring the
 * count to k (top_k; 0: off) or the mass past limit_hi holds the last
 * candidate. The histogram covers exactly the tokens of the previous pass's
 * chosen digit, whose own count or mass crossed: a later pass always finds
 * its digit. No crossing in the first pass: every positive weight is in. */
__device__ static void select_scan(SelectState *st, const unsigned *hcnt, const unsigned long long *hmass, int shift,
                                   int k, unsigned long long limit_hi) {
    int c = 0;
    unsigned long long ms = 0;
    for (int d = RADIX_BINS - 1; d >= 0; d--) {
        if (hcnt[d] == 0) continue;
        bool by_count = k > 0 && st->count_above + c + (int)hcnt[d] >= k;
        bool by_mass = st->mass_above + ms + hmass[d] > limit_hi;
        if (by_count || by_mass) {
            st->prefix |= (unsigned)d << shift;
            st->mask |= (unsigned)(RADIX_BINS - 1) << shift;
            st->count_above += c;
            st->mass_above += ms;
            st->count_bin = (int)hcnt[d];
            return;
        }
        c += (int)hcnt[d];
        ms += hmass[d];
    }
    st->all = 1;
    st->count_above += c;
}

/* Four passes of 8-bit digits over the keys of the positive weights: the
 * key T of the last candidate, how many tokens rank above it, and how many
 * share it. Returns false when every positive weight is a candidate (then
 * only count_above, their number, is set). */
__device__ static bool radix_select(SelectState *out, const float *z, int V, float mx, float inv_t, int k,
                                    unsigned long long limit_hi, double scale, SampleShared *sh) {
    __syncthreads();
    if (threadIdx.x == 0) sh->sel = SelectState{0u, 0u, 0, 0ull, 0, 0};
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int d = threadIdx.x; d < RADIX_BINS; d += blockDim.x) sh->hcnt[d] = 0, sh->hmass[d] = 0;
        __syncthreads();
        unsigned prefix = sh->sel.prefix, mask = sh->sel.mask;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float w = weight(z, j, mx, inv_t);
            unsigned key = wkey(w);
            if (key == 0u || (key & mask) != prefix) continue;
            unsigned d = (key >> shift) & (RADIX_BINS - 1);
            atomicAdd(&sh->hcnt[d], 1u);
            atomicAdd(&sh->hmass[d], fixed(w, scale));
        }
        __syncthreads();
        if (threadIdx.x == 0) select_scan(&sh->sel, sh->hcnt, sh->hmass, shift, k, limit_hi);
        __syncthreads();
        if (sh->sel.all) break; /* uniform over the block */
    }
    *out = sh->sel;
    return !out->all;
}

/* The id of the n-th (from 0) token whose key is T, in id order: each thread
 * counts the ties in a contiguous segment of the row, a scan places the
 * segments, and the thread whose segment holds the n-th walks it. */
__device__ static int nth_tie_id(const float *z, int V, float mx, float inv_t, unsigned T, int n, SampleShared *sh) {
    int seg = (V + blockDim.x - 1) / blockDim.x, j0 = threadIdx.x * seg, j1 = min(V, j0 + seg);
    int c = 0;
    for (int j = j0; j < j1; j++) c += wkey(weight(z, j, mx, inv_t)) == T;
    int before = block_exclusive_scan(c, sh); /* starts with __syncthreads */
    if (n >= before && n < before + c) {
        int left = n - before;
        for (int j = j0; j < j1; j++) {
            if (wkey(weight(z, j, mx, inv_t)) == T && left-- == 0) {
                sh->ival = j;
                break;
            }
        }
    }
    __syncthreads();
    return sh->ival;
}

/* Gather the kept set into sh->u.cand as (~key << 32) | id, whose ascending
 * order is the ranking (larger w first, lower id on ties), pad to a power of
 * two with ~0 and sort (bitonic, every pair of a stage swapped by one
 * thread). The gather's slots come from an atomic counter; the sort makes
 * the result independent of their order. Returns the count (<= cap). */
__device__ static int gather_sorted(const float *z, int V, float mx, float inv_t, KeptSet k, SampleShared *sh) {
    unsigned long long *cand = sh->u.cand;
    __syncthreads();
    if (threadIdx.x == 0) sh->ncand = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        unsigned key = wkey(weight(z, j, mx, inv_t));
        if (!is_kept(k, key, j)) continue;
        int slot = atomicAdd(&sh->ncand, 1);
        if (slot < SAMPLE_CAND_CAP) cand[slot] = (unsigned long long)(~key) << 32 | (unsigned)j;
    }
    __syncthreads();
    int n = min(sh->ncand, SAMPLE_CAND_CAP), P = 1;
    while (P < n) P <<= 1;
    for (int i = n + threadIdx.x; i < P; i += blockDim.x) cand[i] = ~0ull;
    __syncthreads();
    for (int size = 2; size <= P; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < P; i += blockDim.x) {
                int l = i ^ stride;
                if (l <= i) continue;
                unsigned long long a = cand[i], b = cand[l];
                bool ascending = (i & size) == 0;
                if ((a > b) == ascending) cand[i] = b, cand[l] = a;
            }
            __syncthreads();
        }
    }
    return n;
}

__device__ static float cand_weight(unsigned long long c) { return __uint_as_float(~(unsigned)(c >> 32)); }
__device__ static int cand_id(unsigned long long c) { return (int)(unsigned)(c & 0xffffffffu); }

/* sample.c's keep loop and draw over the n ranked candidates (thread 0, in
 * the CPU's order): keep rank r while the mass ranked above it is <= limit
 * (rank 0 always), then invert the kept tokens' CDF at u * their mass. */
__device__ static int draw_ranked(int n, double limit, double u, SampleShared *sh) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned long long *cand = sh->u.cand;
        double above = 0.0;
        int keep = 0;
        while (keep < n && (keep == 0 || above <= limit)) above += cand_weight(cand[keep++]);
        double kept = 0.0;
        for (int i = 0; i < keep; i++) kept += cand_weight(cand[i]);
        double target = u * kept, cum = 0.0;
        int tok = keep > 0 ? cand_id(cand[keep - 1]) : 0; /* n == 0: no positive weight */
        for (int i = 0; i < keep; i++) {
            cum += cand_weight(cand[i]);
            if (cum > target) {
                tok = cand_id(cand[i]);
                break;
            }
        }
        sh->ival = tok;
    }
    __syncthreads();
    return sh->ival;
}

/* A top-k / top-p draw. limit = top_p * total (sample.c's). The select
 * compares fixed-point sums with limit_hi = limit plus a margin above both
 * rounding errors (of the fixed point, <= V/2 units, and of the CPU's
 * rank-order double sum, < 2^-28 relative for V <= SAMPLE_MAX_V), so its
 * prefix holds every token the CPU keeps; the exact keep loop then trims it.
 *
 * Fallback, when the prefix exceeds SAMPLE_CAND_CAP tokens: the prefix is
 * the kept set (it may hold the few extra tokens of the margin, whose mass
 * ranked above them is within the margin of limit) and the draw inverts its
 * CDF in id order: the same distribution, a different token for a given u
 * than the CPU's rank-order draw. */
__device__ static int sample_truncated(const float *z, int V, float mx, float inv_t, int k, double limit, double u,
                                       double scale, SampleShared *sh) {
    unsigned long long limit_fx = __double2ull_rn(limit * scale);
    unsigned long long limit_hi = limit_fx + (limit_fx >> 28) + (unsigned long long)V + 2;
    SelectState st;
    KeptSet kept = {0u, -1};
    int n;
    if (radix_select(&st, z, V, mx, inv_t, k, limit_hi, scale, sh)) {
        /* the tokens of key T (weight wT, each fw in fixed point) rank by id;
         * take the first m: enough to reach k, or to push the mass past
         * limit_hi, at most all of them */
        unsigned T = st.prefix;
        unsigned long long fw = fixed(__uint_as_float(T), scale);
        long long m = st.count_bin;
        if (k > 0) m = min(m, (long long)(k - st.count_above));
        if (fw > 0) m = min(m, (long long)min((limit_hi - st.mass_above) / fw + 1, (unsigned long long)st.count_bin));
        m = max(m, 1ll);
        kept.T = T;
        kept.tie_last = m < st.count_bin ? nth_tie_id(z, V, mx, inv_t, T, (int)m - 1, sh) : V;
        n = st.count_above + (int)m;
    } else {
        n = st.count_above; /* every positive weight */
    }
    if (n <= SAMPLE_CAND_CAP) {
        n = gather_sorted(z, V, mx, inv_t, kept, sh);
        return draw_ranked(n, limit, u, sh);
    }
    double mass = blocked_sums(z, V, mx, inv_t, kept, sh);
    return invert_blocks(z, V, mx, inv_t, kept, u * mass, sh);
}

/* ---- the passes over the whole row, spread over many blocks ----
 *
 * One block per row reads a row of 151 936 logits three times (the max, the
 * sums, and again at temperature 1 for the logprob) at a block's rate: an
 * H100 took 0.18 ms for one row, 4% of a batch-1 decode step, with 131 SMs
 * idle. cuda_sample_wide first runs those passes over parts of SAMPLE_PART
 * tokens, a block per (part, row):
 *   sample_part_max_kernel   each part's max and argmax (the lowest id of
 *                            its largest value: row_argmax's rule);
 *   sample_part_sums_kernel  the row's max from the parts' (max is exact in
 *                            any order), then each block of SAMPLE_BLOCK
 *                            tokens' sum of weights with blocked_sums's
 *                            lanes and tree, at the row's temperature and,
 *                            when that is neither 0 nor 1, at 1 as well;
 * and sample_kernel takes those: the parts' max and argmax combined in part
 * order, the block sums added in block order by one thread, as blocked_sums
 * adds its own. Every value is the one the single block computes, so the
 * ids and logprobs are the same bits. Truncated draws still rank and walk
 * the row in the one block. */
#define SAMPLE_PART (8 * SAMPLE_BLOCK) /* tokens per part: whole blocks of the sums */
#define SAMPLE_PART_THREADS 256

/* Where the parts' results are, row r's at r * n_parts (part values) and
 * r * n_blocks (block sums); n_parts 0: none (one block makes every pass). */
struct SampleWide {
    const float *pmax; /* (R, n_parts) each part's max: the value at its argmax (-inf: every value NaN) */
    const int *parg;   /* (R, n_parts) each part's argmax (INT_MAX: every value NaN) */
    const double *bsum; /* (R, n_blocks) block sums at the row's temperature (1 when greedy) */
    const double *bsum1; /* (R, n_blocks) at temperature 1, for temperatures other than 0 and 1 */
    int n_parts, n_blocks;
};

/* Each part's argmax and the value there, which is also the part's max as
 * block_max takes it (fmaxf and the argmax both pass over NaN), but for
 * the sign of a zero max: a difference z - mx, all the sampler makes of
 * mx, is the same bits for mx = +0 and -0 but for z = -0, where both give a
 * zero whose exp is 1 and whose logprob term is the same. */
__global__ __launch_bounds__(SAMPLE_PART_THREADS) static void sample_part_max_kernel(float *pmax, int *parg,
                                                                                   const float *logits, int V,
                                                                                   int n_parts) {
    __shared__ float fred[WARP];
    __shared__ int ired[WARP];
    int part = blockIdx.x, r = blockIdx.y;
    const float *z = logits + (size_t)r * V;
    int j0 = part * SAMPLE_PART, j1 = min(V, j0 + SAMPLE_PART);
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        if (z[j] > bv || (z[j] == bv && j < bi)) bv = z[j], bi = j;
    }
    block_argmax(bv, bi, fred, ired);
    if (threadIdx.x == 0) {
        size_t at = (size_t)r * n_parts + part;
        pmax[at] = bv, parg[at] = bi;
    }
}

/* The row's max from its parts' (every thread the same value). */
__device__ static float parts_max(const float *pmax, int n_parts) {
    float mx = -INFINITY;
    for (int p = 0; p < n_parts; p++) mx = fmaxf(mx, pmax[p]);
    return mx;
}

/* Grid (parts, R), SAMPLE_LANES threads per block of the part: thread
 * (b, lane) sums block b's tokens lane, lane + 8, ... as blocked_sums does. */
__global__ static void sample_part_sums_kernel(double *bsum, double *bsum1, const float *pmax, const float *logits,
                                               const CudaSampleParams *params, int V, int n_parts, int n_blocks) {
    int part = blockIdx.x, r = blockIdx.y;
    const float *z = logits + (size_t)r * V;
    float t = params[r].temperature;
    float mx = parts_max(pmax + (size_t)r * n_parts, n_parts);
    int b = part * (SAMPLE_PART / SAMPLE_BLOCK) + threadIdx.x / SAMPLE_LANES, lane = threadIdx.x % SAMPLE_LANES;
    const KeptSet all = {0u, -1};
    /* the temperatures whose sums the row needs: its own (1 when greedy), and 1 beside another */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && (t == 0.0f || t == 1.0f)) break; /* uniform over the block */
        float inv_t = pass == 0 && t != 0.0f ? 1.0f / t : 1.0f;
        double s = 0.0;
        if (b < n_blocks) {
            int j0 = b * SAMPLE_BLOCK, n = min(SAMPLE_BLOCK, V - j0);
            for (int i = lane; i < n; i += SAMPLE_LANES) s += (double)kept_weight(z, j0 + i, mx, inv_t, all);
        }
        s = lanes_sum(s);
        if (b < n_blocks && lane == 0) (pass == 0 ? bsum : bsum1)[(size_t)r * n_blocks + b] = s;
    }
}

/* blocked_sums's result and sh->u.bsum from the block sums sample_part_sums_kernel left for this row. */
__device__ static double wide_sums(const double *bsum, int n_blocks, SampleShared *sh) {
    __syncthreads();
    for (int b = threadIdx.x; b < n_blocks; b += blockDim.x) sh->u.bsum[b] = bsum[b];
    return bsum_total(n_blocks, sh);
}

/* row_argmax's result from the parts' argmaxes, combined in part order. */
__device__ static int wide_argmax(const float *pmax, const int *parg, int n_parts) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int p = 0; p < n_parts; p++)
        if (pmax[p] > bv || (pmax[p] == bv && parg[p] < bi)) bv = pmax[p], bi = parg[p];
    return bi == INT_MAX ? 0 : bi;
}

/* ---- the kernel ---- */

/* Grid R, one block per row; parts: the parts' results (cuda_sample_wide),
 * by value, or n_parts 0 when this block makes every pass itself. */
__global__ __launch_bounds__(SAMPLE_THREADS) static void sample_kernel(int32_t *ids, float *logprobs,
                                                                       const float *logits,
                                                                       const CudaSampleParams *params,
                                                                       const double *u, int V, double scale,
                                                                       SampleWide parts) {
    __shared__ SampleShared sh;
    int r = blockIdx.x;
    const float *z = logits + (size_t)r * V;
    CudaSampleParams p = params[r];
    const SampleWide *wide = parts.n_parts > 0 ? &parts : NULL;
    size_t wp = wide ? (size_t)r * wide->n_parts : 0, wb = wide ? (size_t)r * wide->n_blocks : 0;

    float mx;
    if (wide) {
        mx = parts_max(wide->pmax + wp, wide->n_parts);
    } else {
        mx = -INFINITY;
        for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, z[j]);
        mx = block_max(mx, sh.fred); /* exact: the CPU's max_array */
    }

    const KeptSet all = {0u, -1};
    double lse1 = -1.0; /* log sum exp(z - max) at temperature 1, once known */
    int tok;
    if (p.temperature == 0.0f) {
        tok = wide ? wide_argmax(wide->pmax + wp, wide->parg + wp, wide->n_parts) : row_argmax(z, V, &sh);
        if (wide) lse1 = log(wide_sums(wide->bsum + wb, wide->n_blocks, &sh)); /* its sums are at 1 */
    } else {
        float inv_t = 1.0f / p.temperature;
        double total = wide ? wide_sums(wide->bsum + wb, wide->n_blocks, &sh) : blocked_sums(z, V, mx, inv_t, all, &sh);
        if (p.temperature == 1.0f) lse1 = log(total);
        int top_k = p.top_k > 0 && p.top_k < V ? p.top_k : 0;
        if (top_k == 0 && p.top_p >= 1.0f)
            tok = invert_blocks(z, V, mx, inv_t, all, u[r] * total, &sh); /* plain: id order */
        else
            tok = sample_truncated(z, V, mx, inv_t, top_k, (double)p.top_p * total, u[r], scale, &sh);
    }
    if (lse1 < 0.0)
        lse1 = log(wide ? wide_sums(wide->bsum1 + wb, wide->n_blocks, &sh) : blocked_sums(z, V, mx, 1.0f, all, &sh));
    if (threadIdx.x == 0) {
        ids[r] = tok;
        logprobs[r] = (float)((double)__fsub_rn(z[tok], mx) - lse1);
    }
}

static void sample_require_vocab(int V) {
    if (V < 1 || V > SAMPLE_MAX_V) {
        fprintf(stderr, "cuda_sample: unsupported vocabulary size %d (expected 1..%d)\n", V, SAMPLE_MAX_V);
        exit(1);
    }
}

/* The fixed point of the histogram masses: V weights <= 1 sum below 2^63. */
static double sample_scale(int V) {
    int bits = 0;
    while ((1L << bits) < (long)V + 1) bits++;
    return ldexp(1.0, 63 - bits);
}

extern "C" void cuda_sample(int32_t *ids, float *logprobs, const float *logits, const CudaSampleParams *params,
                            const double *u, int R, int V, cudaStream_t stream) {
    if (R <= 0) return;
    sample_require_vocab(V);
    SampleWide none = {};
    sample_kernel<<<R, SAMPLE_THREADS, 0, stream>>>(ids, logprobs, logits, params, u, V, sample_scale(V), none);
    cuda_check_launch();
}

/* The workspace's layout: pmax, parg (R x parts), bsum, bsum1
 * (R x blocks), each 16-byte aligned. */
static size_t wide_align(size_t n) { return (n + 15) / 16 * 16; }

extern "C" size_t cuda_sample_work_bytes(int R, int V) {
    if (R <= 0 || V <= 0) return 0;
    size_t parts = (size_t)(V + SAMPLE_PART - 1) / SAMPLE_PART, blocks = (size_t)(V + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    return 2 * wide_align((size_t)R * parts * sizeof(float)) + 2 * wide_align((size_t)R * blocks * sizeof(double));
}

extern "C" void cuda_sample_wide(int32_t *ids, float *logprobs, const float *logits, const CudaSampleParams *params,
                                 const double *u, int R, int V, void *work, size_t work_bytes, cudaStream_t stream) {
    if (R <= 0) return;
    sample_require_vocab(V);
    size_t need = cuda_sample_work_bytes(R, V);
    if (work == NULL || work_bytes < need) {
        fprintf(stderr, "cuda_sample_wide: workspace of %zu bytes, %zu needed (R %d, V %d)\n",
                work == NULL ? (size_t)0 : work_bytes, need, R, V);
        exit(1);
    }
    int parts = (V + SAMPLE_PART - 1) / SAMPLE_PART, blocks = (V + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    size_t part_bytes = wide_align((size_t)R * parts * sizeof(float));
    unsigned char *it = (unsigned char *)work;
    float *pmax = (float *)it;
    int *parg = (int *)(it + part_bytes);
    double *bsum = (double *)(it + 2 * part_bytes);
    double *bsum1 = (double *)(it + 2 * part_bytes + wide_align((size_t)R * blocks * sizeof(double)));
    SampleWide wide = {pmax, parg, bsum, bsum1, parts, blocks}; /* by value: a CUDA graph keeps it */
    sample_part_max_kernel<<<dim3(parts, R), SAMPLE_PART_THREADS, 0, stream>>>(pmax, parg, logits, V, parts);
    cuda_check_launch();
    sample_part_sums_kernel<<<dim3(parts, R), (SAMPLE_PART / SAMPLE_BLOCK) * SAMPLE_LANES, 0, stream>>>(
        bsum, bsum1, pmax, logits, params, V, parts, blocks);
    cuda_check_launch();
    sample_kernel<<<R, SAMPLE_THREADS, 0, stream>>>(ids, logprobs, logits, params, u, V, sample_scale(V), wide);
    cuda_check_launch();
}
