/* linear_rows.cu — the matrix products of a decode step with a few rows
 * (the CUDA twin of src/model/linear_rows.c).
 *
 * With N <= CUDA_ROWS_MAX rows a product does 2N flops per weight, and reads
 * each weight once: it is bound by memory bandwidth. cuBLAS's kernels for
 * such shapes read a batch-1 step's weights at ~60% of an H100's bandwidth.
 * Here one warp computes a few output columns (rows_weight_rows: 4 at 1 or
 * 2 input rows, 2 at 3 or 4) for all N rows: its lanes stream those weight
 * rows in 16-byte pieces (8 bf16), four pieces of each in flight, multiply
 * each with the N input rows (a few KB, from cache) in fp32, and the lanes'
 * sums are added in a fixed butterfly at the end. An output's order of
 * operations depends on IC only, not on N or on how many outputs a warp
 * takes.
 *
 * What the decode step does around its products is folded in, one launch
 * where there were up to four:
 *   cuda_rows_matmul    up to three weight matrices on one input (q, k and
 *                       v), a residual added to the output (o and down),
 *                       the input in bf16 or in fp32 (rounded to bf16 as it
 *                       is read, as cuda_f32_to_bf16 would)
 *   cuda_rows_swiglu    the gate and up rows of an output together, and
 *                       silu(gate) * up into bf16 (as cuda_swiglu_forward_bf16)
 *   ..._normed          the RMSNorm before the product: the input is the
 *                       fp32 residual x, and RMSNorm(x) @ w^T = r (x * nw)
 *                       @ w^T with r = 1 / sqrt(mean(x^2) + eps) the same
 *                       for every output of a row. A warp reads all of x
 *                       for its dot product anyway, so it sums x^2 as it
 *                       goes and scales its sums by r at the end: the norm
 *                       costs no pass over x and no launch of its own (at
 *                       batch 1 the norm kernel took ~7 us a call, two a
 *                       layer). The norm's output is not rounded to bf16.
 */
#include <cuda_bf16.h>

#include "common.cuh"

#define ROWS_WARPS 4 /* outputs per block: one per warp */
#define ROWS_PARTS 3 /* weight matrices per launch */
#define ROWS_AHEAD 4 /* 16-byte pieces of each weight row a lane has in flight */

/* The weight matrices of one launch: part p is (OC[p], IC) into out[p]
 * (N, OC[p]); the parts past the last have OC 0. */
struct RowsParts {
    float *out[ROWS_PARTS];
    const __nv_bfloat16 *w[ROWS_PARTS];
    int OC[ROWS_PARTS];
};

/* 8 input values from inp + at (16-byte aligned) as fp32 of bf16 values. */
__device__ __forceinline__ void rows_input(float (&x)[8], const __nv_bfloat16 *inp, size_t at) {
    bf16x8_unpack(x, *(const uint4 *)(inp + at));
}
__device__ __forceinline__ void rows_input(float (&x)[8], const float *inp, size_t at) {
    float4 a = *(const float4 *)(inp + at), b = *(const float4 *)(inp + at + 4);
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int e = 0; e < 8; e++) x[e] = __bfloat162float(__float2bfloat16_rn(v[e]));
}

/* Piece `at` of an input row with the norm folded in: x's fp32 values
 * times the norm weights nv (loaded once for all rows), their squares
 * added to ss first (in double, as the norm kernel sums them). */
__device__ __forceinline__ void rows_input_normed(float (&x)[8], double &ss, const float *inp, size_t at,
                                                  const float (&nv)[8]) {
    float4 a = *(const float4 *)(inp + at), b = *(const float4 *)(inp + at + 4);
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int e = 0; e < 8; e++) {
        ss += (double)v[e] * v[e];
        x[e] = v[e] * nv[e];
    }
}

/* The weights of one round of rows_dot: the pieces c, c + 32, ... (c +
 * (ROWS_AHEAD - 1) * 32) of each weight row, those past the row's end not
 * loaded. The weights are read once: streaming loads. */
template <int NW>
__device__ __forceinline__ void rows_load(uint4 (&wv)[NW][ROWS_AHEAD], const __nv_bfloat16 *const (&wrow)[NW], int c,
                                          int pieces) {
#pragma unroll
    for (int w = 0; w < NW; w++)
#pragma unroll
        for (int u = 0; u < ROWS_AHEAD; u++)
            if (c + u * WARP < pieces) wv[w][u] = __ldcs((const uint4 *)wrow[w] + c + u * WARP);
}

/* acc[w][r] = weight row wrow[w] . input row r (inp (NR, IC)), summed over
 * the warp; every lane gets the sums. With NORM (inp fp32), the input is
 * x * nw and ss[r] the sum of row r's squares. A lane takes the pieces
 * lane, lane + 32, ... in order, ROWS_AHEAD of them per weight row loaded
 * before any is used: a 2560-wide row is three round trips to memory, a
 * 9728-wide one ten. wv holds the first round's, loaded by the caller
 * (rows_load with c = lane) before it waits for the kernel that wrote inp:
 * a programmatic dependent's first loads overlap that kernel's end. On an
 * H100 at batch 1 and 4 (bench_decode_gpu), 4 pieces and 4 warps a block
 * gave steps 3-5% (batch 1) and 13-15% (batch 4) shorter than 8 pieces and
 * 8 warps (53-55 registers instead of 36-38: 4 blocks an SM, the q/k/v grid in
 * 1.5 waves); 8 warps with 4 pieces were as fast as 4. */
template <int NR, int NW, bool NORM, typename In>
__device__ __forceinline__ void rows_dot(float (&acc)[NW][NR], double (&ss)[NR], uint4 (&wv)[NW][ROWS_AHEAD],
                                         const __nv_bfloat16 *const (&wrow)[NW], const In *inp, const float *nw,
                                         int IC, int lane) {
    constexpr int U = ROWS_AHEAD;
    const int pieces = IC / 8;
#pragma unroll
    for (int r = 0; r < NR; r++) {
        ss[r] = 0.0;
#pragma unroll
        for (int w = 0; w < NW; w++) acc[w][r] = 0.0f;
    }
    for (int c = lane; c < pieces; c += U * WARP) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (c + u * WARP >= pieces) break;
            size_t at = (size_t)(c + u * WARP) * 8;
            float wf[NW][8], nv[8];
#pragma unroll
            for (int w = 0; w < NW; w++) bf16x8_unpack(wf[w], wv[w][u]);
            if (NORM) {
                float4 a = *(const float4 *)(nw + at), b = *(const float4 *)(nw + at + 4);
                nv[0] = a.x, nv[1] = a.y, nv[2] = a.z, nv[3] = a.w, nv[4] = b.x, nv[5] = b.y, nv[6] = b.z, nv[7] = b.w;
            }
#pragma unroll
            for (int r = 0; r < NR; r++) {
                float x[8];
                if (NORM) rows_input_normed(x, ss[r], (const float *)inp, (size_t)r * IC + at, nv);
                else rows_input(x, inp, (size_t)r * IC + at);
#pragma unroll
                for (int w = 0; w < NW; w++)
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[w][r] += wf[w][e] * x[e];
            }
        }
        if (c + U * WARP < pieces) rows_load<NW>(wv, wrow, c + U * WARP, pieces);
    }
#pragma unroll
    for (int w = 0; w < NW; w++)
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
            for (int o = WARP / 2; o > 0; o >>= 1) acc[w][r] += __shfl_xor_sync(FULL_MASK, acc[w][r], o);
    if (NORM)
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
            for (int o = WARP / 2; o > 0; o >>= 1) ss[r] += __shfl_xor_sync(FULL_MASK, ss[r], o);
}

/* What the sums of row r are multiplied by: RMSNorm's r (as the norm
 * kernel computes it from the same kind of sum), or 1 (exact: the sums
 * unchanged). */
template <bool NORM>
__device__ __forceinline__ float rows_scale(double ss, int IC, float eps) {
    return NORM ? (float)(1.0 / sqrt(ss / IC + (double)eps)) : 1.0f;
}

/* Grid: one warp per NW consecutive outputs over the parts' outputs in
 * order (every part's OC a multiple of NW, so a warp's outputs never
 * straddle two parts).
 * out[p] of row r, column o = add[r, o] (when add is given: one part) + the
 * dot product (NORM: of RMSNorm(inp) with weights nw). Two weight rows a
 * warp keep twice the bytes in flight for the same round trips: at batch 1
 * on an H100 the one-row kernel read q/k/v's 2560-wide rows at 1.5 TB/s
 * (three round trips a row, Nsight Compute), the two-row gate/up kernel at
 * 2.4. Each output's sums are those of the one-row kernel, bit for bit. */
template <int NR, int NW, bool NORM, typename In>
__global__ __launch_bounds__(ROWS_WARPS *WARP) static void rows_matmul_kernel(RowsParts parts, const float *add,
                                                                            const In *inp, const float *nw,
                                                                            float eps, int IC) {
    int lane = threadIdx.x % WARP;
    int o = (blockIdx.x * ROWS_WARPS + threadIdx.x / WARP) * NW, OC;
    float *out;
    const __nv_bfloat16 *w;
    /* the output's part, its fields picked by value (indexing a parameter
     * copies it to the stack); unused parts have no outputs */
    grid_dependents_launch();
    if (o < parts.OC[0]) out = parts.out[0], w = parts.w[0], OC = parts.OC[0];
    else if ((o -= parts.OC[0]) < parts.OC[1]) out = parts.out[1], w = parts.w[1], OC = parts.OC[1];
    else if ((o -= parts.OC[1]) < parts.OC[2]) out = parts.out[2], w = parts.w[2], OC = parts.OC[2];
    else { /* the whole warp: past the last output */
        grid_dependency_wait();
        return;
    }
    const __nv_bfloat16 *wrow[NW];
#pragma unroll
    for (int k = 0; k < NW; k++) wrow[k] = w + (size_t)(o + k) * IC;
    uint4 wv[NW][ROWS_AHEAD];
    rows_load<NW>(wv, wrow, lane, IC / 8);
    grid_dependency_wait(); /* inp and add are the previous kernels' */
    float acc[NW][NR];
    double ss[NR];
    rows_dot<NR, NW, NORM>(acc, ss, wv, wrow, inp, nw, IC, lane);
#pragma unroll
    for (int r = 0; r < NR; r++) {
        if (lane != r) continue;
        float scale = rows_scale<NORM>(ss[r], IC, eps);
#pragma unroll
        for (int k = 0; k < NW; k++) {
            size_t at = (size_t)r * OC + o + k;
            float y = acc[k][r] * scale;
            out[at] = add ? y + add[at] : y;
        }
    }
}

/* Grid: one warp per NO output columns o, o + 1, ... of I (NO 2: I even):
 * h[r, o] = bf16(silu(g) * u) with g, u the products of row r (NORM: of
 * RMSNorm(inp) with weights nw) with wgate[o] and wup[o]. */
template <int NR, int NO, bool NORM, typename In>
__global__ __launch_bounds__(ROWS_WARPS *WARP) static void rows_swiglu_kernel(__nv_bfloat16 *h,
                                                                            const __nv_bfloat16 *wgate,
                                                                            const __nv_bfloat16 *wup, const In *inp,
                                                                            const float *nw, float eps, int IC,
                                                                            int I) {
    int lane = threadIdx.x % WARP;
    int o = (blockIdx.x * ROWS_WARPS + threadIdx.x / WARP) * NO;
    grid_dependents_launch();
    if (o >= I) {
        grid_dependency_wait();
        return;
    }
    const __nv_bfloat16 *wrow[2 * NO]; /* gate and up of each output */
#pragma unroll
    for (int k = 0; k < NO; k++) wrow[2 * k] = wgate + (size_t)(o + k) * IC, wrow[2 * k + 1] = wup + (size_t)(o + k) * IC;
    uint4 wv[2 * NO][ROWS_AHEAD];
    rows_load<2 * NO>(wv, wrow, lane, IC / 8);
    grid_dependency_wait(); /* inp is the previous kernel's */
    float acc[2 * NO][NR];
    double ss[NR];
    rows_dot<NR, 2 * NO, NORM>(acc, ss, wv, wrow, inp, nw, IC, lane);
#pragma unroll
    for (int r = 0; r < NR; r++) {
        if (lane != r) continue;
        float scale = rows_scale<NORM>(ss[r], IC, eps);
#pragma unroll
        for (int k = 0; k < NO; k++) {
            float g = acc[2 * k][r] * scale, u = acc[2 * k + 1][r] * scale;
            float s = 1.0f / (1.0f + expf(-g));
            h[(size_t)r * I + o + k] = __float2bfloat16_rn(g * s * u);
        }
    }
}

/* Weight rows a warp streams at once for N input rows: a product's warp
 * takes that many outputs when every part's OC divides by it (else 2, else
 * 1), SwiGLU's half as many (gate and up); the sums of each output do not
 * change. More rows a warp keep more bytes in flight for the same round
 * trips, at the cost of registers. On an H100 (doc/perf.md) 4 rows gave
 * 1.6% and 2.6% more tokens/s than 2 at 1 and 2 rows (2048 tokens), 2 gave
 * 1.9% more than 4 at 4 rows (168 registers a thread there against 126).
 * TAU2_CUDA_ROWS_WEIGHT_ROWS (1, 2 or 4, read once) overrides. */
static int rows_weight_rows(int N) {
    static int forced = -1;
    if (forced < 0) {
        const char *e = getenv("TAU2_CUDA_ROWS_WEIGHT_ROWS");
        int v = e ? atoi(e) : 0;
        forced = v == 1 || v == 2 || v == 4 ? v : 0;
    }
    return forced ? forced : N <= 2 ? 4 : 2;
}

static void rows_require(bool ok, const char *what, int N, int IC) {
    if (ok) return;
    fprintf(stderr, "cuda_rows: %s (N %d, IC %d; needs 1 <= N <= %d, IC a multiple of 8, 16-byte aligned operands)\n",
            what, N, IC, CUDA_ROWS_MAX);
    exit(1);
}

extern "C" bool cuda_rows_fit(int N, int IC) { return N >= 1 && N <= CUDA_ROWS_MAX && IC > 0 && IC % 8 == 0; }

/* rows_matmul_kernel with NW outputs a warp, for N rows (1 to 4), launched. */
template <int NW, bool NORM, typename In>
static void rows_matmul_launch(int N, unsigned blocks, cudaStream_t stream, RowsParts parts, const float *add,
                               const In *inp, const float *nw, float eps, int IC) {
    void (*kernel)(RowsParts, const float *, const In *, const float *, float, int) =
        N == 1 ? rows_matmul_kernel<1, NW, NORM, In>
        : N == 2 ? rows_matmul_kernel<2, NW, NORM, In>
        : N == 3 ? rows_matmul_kernel<3, NW, NORM, In>
                 : rows_matmul_kernel<4, NW, NORM, In>;
    launch_dependent("rows_matmul_kernel", kernel, blocks, ROWS_WARPS * WARP, 0, stream, parts, add, inp, nw, eps, IC);
}

/* rows_swiglu_kernel with NO outputs a warp, for N rows (1 to 4), launched. */
template <int NO, bool NORM, typename In>
static void rows_swiglu_launch(int N, unsigned blocks, cudaStream_t stream, __nv_bfloat16 *h,
                               const __nv_bfloat16 *wgate, const __nv_bfloat16 *wup, const In *inp, const float *nw,
                               float eps, int IC, int I) {
    typedef __nv_bfloat16 B;
    void (*kernel)(B *, const B *, const B *, const In *, const float *, float, int, int) =
        N == 1 ? rows_swiglu_kernel<1, NO, NORM, In>
        : N == 2 ? rows_swiglu_kernel<2, NO, NORM, In>
        : N == 3 ? rows_swiglu_kernel<3, NO, NORM, In>
                 : rows_swiglu_kernel<4, NO, NORM, In>;
    launch_dependent("rows_swiglu_kernel", kernel, blocks, ROWS_WARPS * WARP, 0, stream, h, wgate, wup, inp, nw, eps,
                     IC, I);
}

template <bool NORM, typename In>
static void rows_matmul(int n_parts, float *const out[], const uint16_t *const w[], const int OC[], const float *add,
                        const In *inp, const float *nw, float eps, int N, int IC, cudaStream_t stream) {
    rows_require(cuda_rows_fit(N, IC) && aligned16(inp) && (!NORM || aligned16(nw)), "unsupported shape", N, IC);
    rows_require(n_parts >= 1 && n_parts <= ROWS_PARTS && (add == NULL || n_parts == 1), "1 to 3 parts, add with one",
                 N, IC);
    RowsParts parts = {};
    long total = 0;
    int per = rows_weight_rows(N); /* outputs a warp: one that divides every part's OC */
    for (int p = 0; p < n_parts; p++) {
        rows_require(aligned16(w[p]) && OC[p] > 0, "weights", N, IC);
        parts.out[p] = out[p];
        parts.w[p] = (const __nv_bfloat16 *)w[p];
        parts.OC[p] = OC[p];
        total += OC[p];
        while (OC[p] % per) per /= 2;
    }
    unsigned blocks = (unsigned)((total / per + ROWS_WARPS - 1) / ROWS_WARPS);
    if (per == 4) rows_matmul_launch<4, NORM>(N, blocks, stream, parts, add, inp, nw, eps, IC);
    else if (per == 2) rows_matmul_launch<2, NORM>(N, blocks, stream, parts, add, inp, nw, eps, IC);
    else rows_matmul_launch<1, NORM>(N, blocks, stream, parts, add, inp, nw, eps, IC);
}

extern "C" void cuda_rows_matmul(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                 const float *add, const uint16_t *inp, int N, int IC, cudaStream_t stream) {
    rows_matmul<false>(n_parts, out, w, OC, add, (const __nv_bfloat16 *)inp, (const float *)NULL, 0.0f, N, IC,
                       stream);
}

extern "C" void cuda_rows_matmul_f32in(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                       const float *add, const float *inp, int N, int IC, cudaStream_t stream) {
    rows_matmul<false>(n_parts, out, w, OC, add, inp, (const float *)NULL, 0.0f, N, IC, stream);
}

extern "C" void cuda_rows_matmul_normed(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                        const float *x, const float *norm_w, float eps, int N, int IC,
                                        cudaStream_t stream) {
    rows_matmul<true>(n_parts, out, w, OC, (const float *)NULL, x, norm_w, eps, N, IC, stream);
}

template <bool NORM, typename In>
static void rows_swiglu(uint16_t *h, const uint16_t *wgate, const uint16_t *wup, const In *inp, const float *nw,
                        float eps, int N, int IC, int I, cudaStream_t stream) {
    rows_require(cuda_rows_fit(N, IC) && aligned16(inp) && (!NORM || aligned16(nw)) && aligned16(wgate) &&
                     aligned16(wup) && I > 0,
                 "unsupported shape", N, IC);
    typedef __nv_bfloat16 B;
    B *hb = (B *)h;
    const B *g = (const B *)wgate, *u = (const B *)wup;
    int per = rows_weight_rows(N) / 2; /* outputs a warp: gate and up rows of each */
    if (per < 1 || I % per) per = 1;
    unsigned blocks = (unsigned)((I / per + ROWS_WARPS - 1) / ROWS_WARPS);
    if (per == 2) rows_swiglu_launch<2, NORM>(N, blocks, stream, hb, g, u, inp, nw, eps, IC, I);
    else rows_swiglu_launch<1, NORM>(N, blocks, stream, hb, g, u, inp, nw, eps, IC, I);
}

extern "C" void cuda_rows_swiglu(uint16_t *h, const uint16_t *wgate, const uint16_t *wup, const uint16_t *inp, int N,
                                 int IC, int I, cudaStream_t stream) {
    rows_swiglu<false>(h, wgate, wup, (const __nv_bfloat16 *)inp, (const float *)NULL, 0.0f, N, IC, I, stream);
}

extern "C" void cuda_rows_swiglu_normed(uint16_t *h, const uint16_t *wgate, const uint16_t *wup, const float *x,
                                        const float *norm_w, float eps, int N, int IC, int I, cudaStream_t stream) {
    rows_swiglu<true>(h, wgate, wup, x, norm_w, eps, N, IC, I, stream);
}
