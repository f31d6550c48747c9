/* linear_rows.c — batch-invariant decode matrix products (see linear_rows.h).
 *
 * Written by hand rather than through sgemm because the contract is the
 * order of operations per output, which BLAS leaves to its blocking. Every
 * kernel walks the same loop: each thread takes groups of LINEAR_GROUP
 * weight rows (contiguous in memory, so one stream from DRAM) and runs the
 * input rows under them in tiles, a tile of weight rows times a tile of
 * input rows held in registers. Remainder rows take a narrower tile that
 * does the same operations per output, so no output depends on its tile.
 */
#include "model/linear_rows.h"

#include <stddef.h>

#include "core/error.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LINEAR_ROWS_X86 1
#endif

/* Weight rows per group (both x86 kernels): 8 rows of Qwen3-4B's 2560
 * inputs are 80 KiB, in L2 beside the input rows; smaller models' groups
 * fit in L1. */
#define LINEAR_GROUP 8

/* ------------------------------------------------------------ portable */

/* 8 lanes over the row, lanes summed in a fixed tree, then the tail. */
static void linear_rows_generic(float *out /* (R, OC) */, const float *inp /* (R, IC) */,
                                const float *w /* (OC, IC) */, int R, int IC, int OC) {
    int IC8 = IC & ~7;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < OC; o++) {
        const float *wr = w + (size_t)o * IC;
        for (int r = 0; r < R; r++) {
            const float *xr = inp + (size_t)r * IC;
            float lane[8] = {0};
            for (int c = 0; c < IC8; c += 8) {
                for (int i = 0; i < 8; i++) lane[i] += wr[c + i] * xr[c + i];
            }
            float s = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
            for (int c = IC8; c < IC; c++) s += wr[c] * xr[c];
            out[(size_t)r * OC + o] = s;
        }
    }
}

#ifdef LINEAR_ROWS_X86

/* ------------------------------------------------------------ AVX2 */

__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* lanes i + (i+4) */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                      /* (0+4)+(2+6), (1+5)+(3+7) */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static inline float tail_dot(const float *a, const float *b, int c0, int n) {
    float s = 0.0f;
    for (int c = c0; c < n; c++) s += a[c] * b[c];
    return s;
}

/* 2 weight rows x 4 input rows: 8 accumulators in registers. */
__attribute__((target("avx2,fma"))) static inline void tile_2x4(float *out, const float *inp, const float *w, int r,
                                                                int o0, int o1, int IC, int OC) {
    int IC8 = IC & ~7;
    const float *w0 = w + (size_t)o0 * IC, *w1 = w + (size_t)o1 * IC;
    const float *x0 = inp + (size_t)r * IC, *x1 = x0 + IC, *x2 = x1 + IC, *x3 = x2 + IC;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    for (int c = 0; c < IC8; c += 8) {
        __m256 v0 = _mm256_loadu_ps(w0 + c), v1 = _mm256_loadu_ps(w1 + c);
        __m256 y = _mm256_loadu_ps(x0 + c);
        a00 = _mm256_fmadd_ps(v0, y, a00);
        a10 = _mm256_fmadd_ps(v1, y, a10);
        y = _mm256_loadu_ps(x1 + c);
        a01 = _mm256_fmadd_ps(v0, y, a01);
        a11 = _mm256_fmadd_ps(v1, y, a11);
        y = _mm256_loadu_ps(x2 + c);
        a02 = _mm256_fmadd_ps(v0, y, a02);
        a12 = _mm256_fmadd_ps(v1, y, a12);
        y = _mm256_loadu_ps(x3 + c);
        a03 = _mm256_fmadd_ps(v0, y, a03);
        a13 = _mm256_fmadd_ps(v1, y, a13);
    }
    float *orow = out + (size_t)r * OC;
    orow[o0] = hsum8(a00) + tail_dot(w0, x0, IC8, IC);
    orow[OC + o0] = hsum8(a01) + tail_dot(w0, x1, IC8, IC);
    orow[2 * (size_t)OC + o0] = hsum8(a02) + tail_dot(w0, x2, IC8, IC);
    orow[3 * (size_t)OC + o0] = hsum8(a03) + tail_dot(w0, x3, IC8, IC);
    orow[o1] = hsum8(a10) + tail_dot(w1, x0, IC8, IC);
    orow[OC + o1] = hsum8(a11) + tail_dot(w1, x1, IC8, IC);
    orow[2 * (size_t)OC + o1] = hsum8(a12) + tail_dot(w1, x2, IC8, IC);
    orow[3 * (size_t)OC + o1] = hsum8(a13) + tail_dot(w1, x3, IC8, IC);
}

/* 2 weight rows x 1 input row: the same operations per output as tile_2x4. */
__attribute__((target("avx2,fma"))) static inline void tile_2x1(float *out, const float *inp, const float *w, int r,
                                                                int o0, int o1, int IC, int OC) {
    int IC8 = IC & ~7;
    const float *w0 = w + (size_t)o0 * IC, *w1 = w + (size_t)o1 * IC;
    const float *x0 = inp + (size_t)r * IC;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int c = 0; c < IC8; c += 8) {
        __m256 y = _mm256_loadu_ps(x0 + c);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), y, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), y, a1);
    }
    out[(size_t)r * OC + o0] = hsum8(a0) + tail_dot(w0, x0, IC8, IC);
    out[(size_t)r * OC + o1] = hsum8(a1) + tail_dot(w1, x0, IC8, IC);
}

__attribute__((target("avx2,fma"))) static void linear_rows_avx2(float *out, const float *inp, const float *w, int R,
                                                                  int IC, int OC) {
    int n_groups = (OC + LINEAR_GROUP - 1) / LINEAR_GROUP;
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < n_groups; gi++) {
        int g0 = gi * LINEAR_GROUP, g1 = g0 + LINEAR_GROUP < OC ? g0 + LINEAR_GROUP : OC;
        int r = 0;
        for (; r + 4 <= R; r += 4) {
            for (int o0 = g0; o0 < g1; o0 += 2) {
                int o1 = o0 + 1 < g1 ? o0 + 1 : o0; /* odd group end: o0 computed twice */
                tile_2x4(out, inp, w, r, o0, o1, IC, OC);
            }
        }
        for (; r < R; r++) {
            for (int o0 = g0; o0 < g1; o0 += 2) {
                int o1 = o0 + 1 < g1 ? o0 + 1 : o0;
                tile_2x1(out, inp, w, r, o0, o1, IC, OC);
            }
        }
    }
}

/* ------------------------------------------------------------ AVX-512 */

/* 16 lanes summed in a fixed tree: i + (i+8), then as hsum8. */
__attribute__((target("avx512f,avx2,fma"))) static inline float hsum16(__m512 v) {
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi));
}

/* 8 weight rows x 3 input rows: 24 accumulators. Per step of 16 columns it
 * loads 8 weight vectors (from L1: the group) and 3 input vectors (from L2
 * once the batch outgrows L1) for 24 FMAs, so neither load port nor L2 sets
 * the pace. A row's last IC % 16 columns are one masked step: the zero
 * lanes add exact zeros. The accumulators are named one by one: as an array
 * GCC keeps them on the stack. */
__attribute__((target("avx512f,avx2,fma"))) static inline void tile_8x3(float *out, const float *inp,
                                                                       const float *const wr[8], int r, const int o[8],
                                                                       int IC, int OC) {
    const float *x0 = inp + (size_t)r * IC, *x1 = x0 + IC, *x2 = x1 + IC;
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00; /* a<weight row><input row> */
    __m512 a10 = a00, a11 = a00, a12 = a00, a20 = a00, a21 = a00, a22 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a40 = a00, a41 = a00, a42 = a00;
    __m512 a50 = a00, a51 = a00, a52 = a00, a60 = a00, a61 = a00, a62 = a00;
    __m512 a70 = a00, a71 = a00, a72 = a00;
    for (int c = 0; c < IC; c += 16) {
        __mmask16 k = IC - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (IC - c)) - 1);
        __m512 y0 = _mm512_maskz_loadu_ps(k, x0 + c), y1 = _mm512_maskz_loadu_ps(k, x1 + c);
        __m512 y2 = _mm512_maskz_loadu_ps(k, x2 + c), v;
        v = _mm512_maskz_loadu_ps(k, wr[0] + c);
        a00 = _mm512_fmadd_ps(v, y0, a00), a01 = _mm512_fmadd_ps(v, y1, a01), a02 = _mm512_fmadd_ps(v, y2, a02);
        v = _mm512_maskz_loadu_ps(k, wr[1] + c);
        a10 = _mm512_fmadd_ps(v, y0, a10), a11 = _mm512_fmadd_ps(v, y1, a11), a12 = _mm512_fmadd_ps(v, y2, a12);
        v = _mm512_maskz_loadu_ps(k, wr[2] + c);
        a20 = _mm512_fmadd_ps(v, y0, a20), a21 = _mm512_fmadd_ps(v, y1, a21), a22 = _mm512_fmadd_ps(v, y2, a22);
        v = _mm512_maskz_loadu_ps(k, wr[3] + c);
        a30 = _mm512_fmadd_ps(v, y0, a30), a31 = _mm512_fmadd_ps(v, y1, a31), a32 = _mm512_fmadd_ps(v, y2, a32);
        v = _mm512_maskz_loadu_ps(k, wr[4] + c);
        a40 = _mm512_fmadd_ps(v, y0, a40), a41 = _mm512_fmadd_ps(v, y1, a41), a42 = _mm512_fmadd_ps(v, y2, a42);
        v = _mm512_maskz_loadu_ps(k, wr[5] + c);
        a50 = _mm512_fmadd_ps(v, y0, a50), a51 = _mm512_fmadd_ps(v, y1, a51), a52 = _mm512_fmadd_ps(v, y2, a52);
        v = _mm512_maskz_loadu_ps(k, wr[6] + c);
        a60 = _mm512_fmadd_ps(v, y0, a60), a61 = _mm512_fmadd_ps(v, y1, a61), a62 = _mm512_fmadd_ps(v, y2, a62);
        v = _mm512_maskz_loadu_ps(k, wr[7] + c);
        a70 = _mm512_fmadd_ps(v, y0, a70), a71 = _mm512_fmadd_ps(v, y1, a71), a72 = _mm512_fmadd_ps(v, y2, a72);
    }
    float *y0 = out + (size_t)r * OC, *y1 = y0 + OC, *y2 = y1 + OC;
    y0[o[0]] = hsum16(a00), y1[o[0]] = hsum16(a01), y2[o[0]] = hsum16(a02);
    y0[o[1]] = hsum16(a10), y1[o[1]] = hsum16(a11), y2[o[1]] = hsum16(a12);
    y0[o[2]] = hsum16(a20), y1[o[2]] = hsum16(a21), y2[o[2]] = hsum16(a22);
    y0[o[3]] = hsum16(a30), y1[o[3]] = hsum16(a31), y2[o[3]] = hsum16(a32);
    y0[o[4]] = hsum16(a40), y1[o[4]] = hsum16(a41), y2[o[4]] = hsum16(a42);
    y0[o[5]] = hsum16(a50), y1[o[5]] = hsum16(a51), y2[o[5]] = hsum16(a52);
    y0[o[6]] = hsum16(a60), y1[o[6]] = hsum16(a61), y2[o[6]] = hsum16(a62);
    y0[o[7]] = hsum16(a70), y1[o[7]] = hsum16(a71), y2[o[7]] = hsum16(a72);
}

/* 8 weight rows x 1 input row: the same operations per output as tile_8x3. */
__attribute__((target("avx512f,avx2,fma"))) static inline void tile_8x1(float *out, const float *inp,
                                                                       const float *const wr[8], int r, const int o[8],
                                                                       int IC, int OC) {
    const float *x0 = inp + (size_t)r * IC;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int c = 0; c < IC; c += 16) {
        __mmask16 k = IC - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (IC - c)) - 1);
        __m512 y = _mm512_maskz_loadu_ps(k, x0 + c);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[0] + c), y, a0);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[1] + c), y, a1);
        a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[2] + c), y, a2);
        a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[3] + c), y, a3);
        a4 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[4] + c), y, a4);
        a5 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[5] + c), y, a5);
        a6 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[6] + c), y, a6);
        a7 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, wr[7] + c), y, a7);
    }
    float *orow = out + (size_t)r * OC;
    orow[o[0]] = hsum16(a0), orow[o[1]] = hsum16(a1), orow[o[2]] = hsum16(a2), orow[o[3]] = hsum16(a3);
    orow[o[4]] = hsum16(a4), orow[o[5]] = hsum16(a5), orow[o[6]] = hsum16(a6), orow[o[7]] = hsum16(a7);
}

__attribute__((target("avx512f,avx2,fma"))) static void linear_rows_avx512(float *out, const float *inp,
                                                                            const float *w, int R, int IC, int OC) {
    int n_groups = (OC + LINEAR_GROUP - 1) / LINEAR_GROUP;
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < n_groups; gi++) {
        int o[LINEAR_GROUP]; /* a short last group repeats its last row: computed twice, same bits */
        const float *wr[LINEAR_GROUP];
        for (int i = 0; i < LINEAR_GROUP; i++) {
            o[i] = gi * LINEAR_GROUP + i < OC ? gi * LINEAR_GROUP + i : OC - 1;
            wr[i] = w + (size_t)o[i] * IC;
        }
        int r = 0;
        for (; r + 3 <= R; r += 3) tile_8x3(out, inp, wr, r, o, IC, OC);
        for (; r < R; r++) tile_8x1(out, inp, wr, r, o, IC, OC);
    }
}

#endif /* LINEAR_ROWS_X86 */

/* ------------------------------------------------------------ dispatch */

bool linear_rows_supported(LinearRowsKernel k) {
    switch (k) {
    case LINEAR_ROWS_GENERIC:
        return true;
#ifdef LINEAR_ROWS_X86
    case LINEAR_ROWS_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case LINEAR_ROWS_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
        return false;
    }
}

LinearRowsKernel linear_rows_best(void) {
    static int best = -1; /* the CPU does not change while we run */
    if (best < 0) {
        int b = LINEAR_ROWS_GENERIC;
        if (linear_rows_supported(LINEAR_ROWS_AVX2)) b = LINEAR_ROWS_AVX2;
        if (linear_rows_supported(LINEAR_ROWS_AVX512)) b = LINEAR_ROWS_AVX512;
        best = b;
    }
    return (LinearRowsKernel)best;
}

const char *linear_rows_kernel_name(LinearRowsKernel k) {
    switch (k) {
    case LINEAR_ROWS_GENERIC:
        return "generic";
    case LINEAR_ROWS_AVX2:
        return "avx2";
    case LINEAR_ROWS_AVX512:
        return "avx512";
    default:
        return "unknown";
    }
}

void linear_rows_with(LinearRowsKernel k, float *out, const float *inp, const float *w, int R, int IC, int OC) {
    if (R <= 0) return;
    if (!linear_rows_supported(k)) die_runtime("linear_rows: kernel %s is not supported on this CPU",
                                               linear_rows_kernel_name(k));
    switch (k) {
#ifdef LINEAR_ROWS_X86
    case LINEAR_ROWS_AVX512:
        linear_rows_avx512(out, inp, w, R, IC, OC);
        return;
    case LINEAR_ROWS_AVX2:
        linear_rows_avx2(out, inp, w, R, IC, OC);
        return;
#endif
    default:
        linear_rows_generic(out, inp, w, R, IC, OC);
        return;
    }
}

void linear_rows(float *out, const float *inp, const float *w, int R, int IC, int OC) {
    linear_rows_with(linear_rows_best(), out, inp, w, R, IC, OC);
}
