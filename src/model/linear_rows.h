/* linear_rows.h — batch-invariant matrix products for decode.
 *
 * out[r][o] = inp[r] . w[o] for a few rows (the decode step's one token per
 * sequence). Each output is one dot product whose sequence of operations
 * depends on IC only: never on R, on the tile the output falls in, or on the
 * thread count. So a sequence's logits are the same bits whether it decodes
 * alone or beside 31 others, which a per-sequence seed needs to reproduce a
 * sample. (sgemm does not promise this: its blocking follows the shape.)
 *
 * The weights are read once per group of rows and reused from cache for
 * every input row, so batched decode streams the weights from memory once
 * per step whatever the batch.
 *
 * Kernels: a portable one (8 lanes in plain C), AVX2 (8 lanes) and AVX-512
 * (16 lanes), picked once from the CPU. Results are bit-identical across
 * batch, tiles and threads for one kernel; two kernels differ in rounding.
 */
#ifndef TAU2_MODEL_LINEAR_ROWS_H
#define TAU2_MODEL_LINEAR_ROWS_H

#include <stdbool.h>

typedef enum {
    LINEAR_ROWS_GENERIC = 0,
    LINEAR_ROWS_AVX2 = 1,
    LINEAR_ROWS_AVX512 = 2,
    LINEAR_ROWS_N_KERNELS = 3
} LinearRowsKernel;

/* out (R, OC) = inp (R, IC) @ w (OC, IC)^T with the best kernel this CPU runs. */
void linear_rows(float *out, const float *inp, const float *w, int R, int IC, int OC);

/* The same with a chosen kernel (tests and benchmarks); it must be supported. */
void linear_rows_with(LinearRowsKernel k, float *out, const float *inp, const float *w, int R, int IC, int OC);

bool linear_rows_supported(LinearRowsKernel k);
LinearRowsKernel linear_rows_best(void);
const char *linear_rows_kernel_name(LinearRowsKernel k); /* "generic", "avx2", "avx512" */

#endif
