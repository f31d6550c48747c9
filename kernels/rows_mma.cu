/* rows_mma.cu — the matrix products of a decode step with 5 to 32 rows, on
 * tensor cores (the CUDA twin of src/model/linear_rows.c).
 *
 * At a batch of 5 to 32 a product still reads each weight once and does
 * 2N flops with it: memory-bound, like the few-row case, but the warp per
 * output of linear_rows.cu would read N input rows through L1 for every
 * 16 bytes of weights. Here a warp computes 16 outputs for up to 32 rows
 * with mma.sync m16n8k16 (bf16 in, fp32 sums), each lane taking its
 * operands straight from global memory, with no shared-memory staging:
 *
 * The sum over k does not care in which order k comes, as long as A (the
 * weights) and B (the input rows) agree. So a lane (g = lane / 4,
 * t = lane % 4) loads 16 contiguous bytes, elements 8t .. 8t + 7 of a
 * 32-wide chunk of k, of weight rows g and g + 8 and of input rows g,
 * g + 8, g + 16, g + 24; the four 32-bit words of each load are the
 * fragments of two mma steps (mma.cuh's layouts: words 0 and 1 stand for
 * columns 2t and 2t + 8 of the first, words 2 and 3 of the second). Both
 * operands see the same permutation of k, so the products are the true
 * dot products, and every load is a full 16 bytes.
 *
 * A block is 4 warps on the same 16 outputs, warp w taking the chunks w,
 * w + 4, ...; their sums are added in shared memory in warp order (the
 * same bits every run, and for a row alone as among others). Each warp
 * has ROWS_MMA_AHEAD chunks of weights and inputs in flight. Blocks: one
 * per 16 outputs of the launch's parts (a part's last tile may be short). */
#include <cuda_bf16.h>

#include "common.cuh"
#include "mma.cuh"

#define ROWS_MMA_WARPS 4
#define ROWS_MMA_PARTS 3
#define ROWS_MMA_AHEAD 2 /* chunks of 32 k per warp loaded before any is used */

/* The weight matrices of one launch, as RowsParts in linear_rows.cu: part
 * p is (OC[p], IC) into out[p] (N, OC[p]), in tiles[p] = ceil(OC[p] / 16)
 * tiles of 16 outputs (the last one's outputs past OC[p] neither loaded
 * nor written). */
struct RowsMmaParts {
    float *out[ROWS_MMA_PARTS];
    const __nv_bfloat16 *w[ROWS_MMA_PARTS];
    int OC[ROWS_MMA_PARTS], tiles[ROWS_MMA_PARTS];
};

/* 16 bytes of weight row `row` at k, or zeros past the last row (OC). */
__device__ __forceinline__ uint4 rows_mma_weights(const __nv_bfloat16 *w, int row, int OC, int IC, int k) {
    if (row >= OC) return make_uint4(0u, 0u, 0u, 0u);
    return __ldcs((const uint4 *)(w + (size_t)row * IC + k));
}

/* Elements 8t .. 8t + 7 of row `row`'s chunk at k (zeros past N) as four
 * bf16 pairs: bf16 input as it is, fp32 input rounded to nearest even (the
 * values cuda_f32_to_bf16 would give). */
__device__ __forceinline__ uint4 rows_mma_input(const __nv_bfloat16 *inp, int row, int N, int IC, int k) {
    if (row >= N) return make_uint4(0u, 0u, 0u, 0u);
    return *(const uint4 *)(inp + (size_t)row * IC + k);
}
__device__ __forceinline__ uint4 rows_mma_input(const float *inp, int row, int N, int IC, int k) {
    if (row >= N) return make_uint4(0u, 0u, 0u, 0u);
    const float *p = inp + (size_t)row * IC + k;
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    return make_uint4(bf16x2_pack(a.x, a.y), bf16x2_pack(a.z, a.w), bf16x2_pack(b.x, b.y), bf16x2_pack(b.z, b.w));
}

/* Grid: one block per tile of 16 outputs over the parts' tiles in order. NT
 * tiles of 8 rows (N <= 8 NT). out[p] of row n, column o = add[n, o]
 * (when add is given: one part) + the dot product. */
template <int NT, typename In>
__global__ __launch_bounds__(ROWS_MMA_WARPS *WARP) static void rows_mma_kernel(RowsMmaParts parts, const float *add,
                                                                             const In *inp, int N, int IC) {
    __shared__ float red[ROWS_MMA_WARPS - 1][NT][4][WARP];
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, g = lane / 4, t = lane % 4;
    int tile = blockIdx.x, OC;
    float *out;
    const __nv_bfloat16 *w;
    grid_dependents_launch();
    /* the tile's part, its fields picked by value (indexing a parameter
     * copies it to the stack) */
    if (tile < parts.tiles[0]) out = parts.out[0], w = parts.w[0], OC = parts.OC[0];
    else if ((tile -= parts.tiles[0]) < parts.tiles[1]) out = parts.out[1], w = parts.w[1], OC = parts.OC[1];
    else tile -= parts.tiles[1], out = parts.out[2], w = parts.w[2], OC = parts.OC[2];
    const int o = tile * 16, chunks = IC / 32, kt = 8 * t;

    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = 0.0f;
    /* the first round of weights before the wait: no kernel writes them */
    uint4 wa[ROWS_MMA_AHEAD], wb[ROWS_MMA_AHEAD], xv[ROWS_MMA_AHEAD][NT];
#pragma unroll
    for (int a = 0; a < ROWS_MMA_AHEAD; a++) {
        int c = warp + a * ROWS_MMA_WARPS;
        if (c < chunks)
            wa[a] = rows_mma_weights(w, o + g, OC, IC, c * 32 + kt), wb[a] = rows_mma_weights(w, o + g + 8, OC, IC, c * 32 + kt);
    }
    grid_dependency_wait(); /* inp and add are the previous kernels' */
    for (int c0 = warp; c0 < chunks; c0 += ROWS_MMA_AHEAD * ROWS_MMA_WARPS) {
#pragma unroll
        for (int a = 0; a < ROWS_MMA_AHEAD; a++) {
            int c = c0 + a * ROWS_MMA_WARPS;
#pragma unroll
            for (int j = 0; j < NT; j++)
                if (c < chunks) xv[a][j] = rows_mma_input(inp, 8 * j + g, N, IC, c * 32 + kt);
        }
#pragma unroll
        for (int a = 0; a < ROWS_MMA_AHEAD; a++) {
            if (c0 + a * ROWS_MMA_WARPS >= chunks) break;
            const uint32_t a0[4] = {wa[a].x, wb[a].x, wa[a].y, wb[a].y}, a1[4] = {wa[a].z, wb[a].z, wa[a].w, wb[a].w};
#pragma unroll
            for (int j = 0; j < NT; j++) {
                mma_bf16_16816(acc[j], a0, xv[a][j].x, xv[a][j].y);
                mma_bf16_16816(acc[j], a1, xv[a][j].z, xv[a][j].w);
            }
        }
        /* the next round's weights */
#pragma unroll
        for (int a = 0; a < ROWS_MMA_AHEAD; a++) {
            int c = c0 + (ROWS_MMA_AHEAD + a) * ROWS_MMA_WARPS;
            if (c < chunks)
                wa[a] = rows_mma_weights(w, o + g, OC, IC, c * 32 + kt),
                wb[a] = rows_mma_weights(w, o + g + 8, OC, IC, c * 32 + kt);
        }
    }

    /* the warps' sums in warp order; lane (g, t) holds rows 8j + 2t and
     * 8j + 2t + 1 of outputs g and g + 8 */
    if (warp > 0)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) red[warp - 1][j][e][lane] = acc[j][e];
    __syncthreads();
    if (warp > 0) return;
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float s = acc[j][e];
            for (int v = 0; v < ROWS_MMA_WARPS - 1; v++) s += red[v][j][e][lane];
            int n = 8 * j + 2 * t + (e & 1), col = o + g + (e >= 2 ? 8 : 0);
            if (n >= N || col >= OC) continue;
            size_t at = (size_t)n * OC + col;
            out[at] = add ? s + add[at] : s;
        }
}

static void rows_mma_require(bool ok, const char *what, int N, int IC) {
    if (ok) return;
    fprintf(stderr,
            "cuda_rows_mma: %s (N %d, IC %d; needs 1 <= N <= %d, IC a multiple of 32, 16-byte aligned operands)\n",
            what, N, IC, CUDA_ROWS_MMA_MAX);
    exit(1);
}

extern "C" bool cuda_rows_mma_fit(int N, int IC) { return N >= 1 && N <= CUDA_ROWS_MMA_MAX && IC > 0 && IC % 32 == 0; }

template <typename In>
static void rows_mma(int n_parts, float *const out[], const uint16_t *const w[], const int OC[], const float *add,
                     const In *inp, int N, int IC, cudaStream_t stream) {
    rows_mma_require(n_parts >= 1 && n_parts <= ROWS_MMA_PARTS && (add == NULL || n_parts == 1),
                     "1 to 3 parts, add with one", N, IC);
    rows_mma_require(aligned16(inp), "input", N, IC);
    rows_mma_require(cuda_rows_mma_fit(N, IC), "unsupported shape", N, IC);
    RowsMmaParts parts = {};
    long blocks = 0;
    for (int p = 0; p < n_parts; p++) {
        rows_mma_require(aligned16(w[p]) && OC[p] > 0, "weights", N, IC);
        parts.out[p] = out[p];
        parts.w[p] = (const __nv_bfloat16 *)w[p];
        parts.OC[p] = OC[p];
        parts.tiles[p] = (OC[p] + 15) / 16;
        blocks += parts.tiles[p];
    }
    int NT = (N + 7) / 8;
    void (*kernel)(RowsMmaParts, const float *, const In *, int, int) = NT == 1   ? rows_mma_kernel<1, In>
                                                                       : NT == 2 ? rows_mma_kernel<2, In>
                                                                       : NT == 3 ? rows_mma_kernel<3, In>
                                                                                 : rows_mma_kernel<4, In>;
    launch_dependent("rows_mma_kernel", kernel, (unsigned)blocks, ROWS_MMA_WARPS * WARP, 0, stream, parts, add, inp, N,
                     IC);
}

extern "C" void cuda_rows_mma_matmul(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                     const float *add, const uint16_t *inp, int N, int IC, cudaStream_t stream) {
    rows_mma(n_parts, out, w, OC, add, (const __nv_bfloat16 *)inp, N, IC, stream);
}

extern "C" void cuda_rows_mma_matmul_f32in(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                           const float *add, const float *inp, int N, int IC, cudaStream_t stream) {
    rows_mma(n_parts, out, w, OC, add, inp, N, IC, stream);
}
