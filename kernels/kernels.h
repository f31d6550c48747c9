/* kernels.h — the CUDA kernels of the GPU backend, callable from C.
 *
 * Each function launches one kernel family on `stream` and returns at once
 * (asynchronous, stream-ordered), unless it says otherwise. Every one has a
 * CPU twin in src/model/layers_cpu.h (or the function named next to it) with
 * the same argument order and shapes; pointers here are device pointers.
 * Matrices are row-major; weights are [out, in] as Hugging Face stores them.
 * Sizes are the local ones of a tensor-parallel rank, as on the CPU.
 *
 * Numerics: activations, gradients, master weights and optimizer moments are
 * fp32; matrix products take bf16 (or fp32) inputs and accumulate in fp32.
 * Reductions run in a fixed order (no atomics) except embedding_backward,
 * which adds rows of repeated tokens with atomicAdd (see there), so results
 * repeat bit for bit run to run on the same GPU and launch shapes.
 *
 * Scratch: a few wrappers need temporary device memory; they take it from
 * the device's stream-ordered memory pool (cudaMallocAsync), which
 * cuda_device_init keeps from returning memory to the driver between steps.
 *
 * bf16 values are passed as uint16_t (the bit pattern of __nv_bfloat16), so
 * this header is plain C.
 */
#ifndef TAU2_KERNELS_H
#define TAU2_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- checked calls ----
 * A failed CUDA or cuBLAS call is not a state the program can recover from:
 * print file:line, the call's text and the library's error string, exit(1). */
void cuda_check_at(cudaError_t rc, const char *what, const char *file, int line);
void cublas_check_at(int status, const char *what, const char *file, int line);
#define cuda_check(call) cuda_check_at((call), #call, __FILE__, __LINE__)
#define cublas_check(call) cublas_check_at((int)(call), #call, __FILE__, __LINE__)

/* Number of CUDA devices; 0 (not an error) when there is no driver or GPU. */
int cuda_device_count(void);
/* Select device `dev` for this thread and keep the stream-ordered pool's
 * memory cached across synchronizations (scratch of the wrappers). */
void cuda_device_init(int dev);
/* Hand the current device's pool memory that no allocation holds back to
 * the driver (after the device finished its work): an engine that frees
 * its memory so that another can take it with cudaMalloc calls this, as
 * the pool otherwise keeps what the kernels' scratch once took. */
void cuda_pool_trim(void);
/* Page-locks `bytes` of host memory where they are (cudaHostRegister), so
 * that copies to and from them run at the link's rate rather than through
 * the driver's staging (4.4x and 6.4 - 7.5x the pageable offload and onload on an
 * H100, doc/perf.md). False, with the driver's reason in err and the error
 * cleared, when it refuses (a memlock limit, too little memory): the memory
 * stays usable, pageable. cuda_host_unregister before the memory is freed. */
bool cuda_host_register(void *p, size_t bytes, char *err, size_t errlen);
void cuda_host_unregister(void *p);

/* Programmatic dependent launch (common.cuh) for the kernels this host
 * thread launches from now on that support it (the decode step's: the
 * norms, the few-row products, the q/k norms with RoPE, the decode
 * attention): on only where the current device has it (compute capability
 * 9.0 or more: cuda_dependent_launch_available). Returns whether it is on. */
bool cuda_dependent_launch_available(void);
bool cuda_dependent_launch_set(bool on);
bool cuda_dependent_launch_on(void);

/* ---- dtype conversions ---- */

/* out = bf16(x), round to nearest even. */
void cuda_f32_to_bf16(uint16_t *out /* (N) */, const float *x /* (N) */, long N, cudaStream_t stream);
void cuda_bf16_to_f32(float *out /* (N) */, const uint16_t *x /* (N) */, long N, cudaStream_t stream);

/* ---- embedding (twin: embedding_forward/backward[_shard]) ---- */

void cuda_embedding_forward(float *out /* (T, C) */, const int32_t *tokens /* (T) */,
                            const float *table /* (V, C) */, int T, int C, cudaStream_t stream);
/* The lookup from a bf16 table (the inference engine's weights), rows out in fp32. */
void cuda_embedding_forward_bf16(float *out /* (T, C) */, const int32_t *tokens /* (T) */,
                                 const uint16_t *table /* (V, C) */, int T, int C, cudaStream_t stream);
/* dtable[tokens[t]] += dout[t]. A token repeated in the batch adds its rows
 * with atomicAdd: the order of those additions varies between runs (the
 * last bits of that row's gradient may too); rows of tokens seen once are
 * exact and repeatable. */
void cuda_embedding_backward(float *dtable /* (V, C) */, const float *dout /* (T, C) */,
                             const int32_t *tokens /* (T) */, int T, int C, cudaStream_t stream);
/* Vocab-parallel: rows [v0, v0 + Vs) of the table on this rank. */
void cuda_embedding_forward_shard(float *out /* (T, C) */, const int32_t *tokens /* (T) */,
                                  const float *table /* (Vs, C) */, int T, int C, int v0, int Vs,
                                  cudaStream_t stream);
void cuda_embedding_backward_shard(float *dtable /* (Vs, C) */, const float *dout /* (T, C) */,
                                   const int32_t *tokens /* (T) */, int T, int C, int v0, int Vs,
                                   cudaStream_t stream);

/* ---- RMSNorm (twin: rmsnorm_forward/backward; q/k norm with N = T*heads, C = head_dim) ---- */

void cuda_rmsnorm_forward(float *out /* (N, C) */, float *rstd /* (N) */, const float *x /* (N, C) */,
                          const float *w /* (C) */, int N, int C, float eps, cudaStream_t stream);
/* The same forward with its output rounded to bf16 (the operand of the
 * next product); rstd NULL where no backward follows (inference). */
void cuda_rmsnorm_forward_bf16(uint16_t *out /* (N, C) */, float *rstd /* (N) or NULL */, const float *x /* (N, C) */,
                               const float *w /* (C) */, int N, int C, float eps, cudaStream_t stream);
/* dx (+)= d/dx (accumulate_dx adds into dx); dw += sum over rows of dout * x * rstd. */
void cuda_rmsnorm_backward(float *dx /* (N, C) */, float *dw /* (C) */, const float *dout /* (N, C) */,
                           const float *x /* (N, C) */, const float *w /* (C) */, const float *rstd /* (N) */,
                           int N, int C, bool accumulate_dx, cudaStream_t stream);
/* The weight gradient alone: dw += sum over rows of dout * x * rstd (two
 * stages, the rows' partial sums in double, the same sum every run). */
void cuda_rmsnorm_backward_dw(float *dw /* (C) */, const float *dout /* (N, C) */, const float *x /* (N, C) */,
                              const float *rstd /* (N) */, int N, int C, cudaStream_t stream);
/* The pool scratch cuda_rmsnorm_backward_dw (and so cuda_rmsnorm_backward)
 * takes for N rows of C values, for a memory plan. */
size_t cuda_rmsnorm_backward_dw_scratch_bytes(int N, int C);

/* ---- matrix products (cuBLAS, twin: matmul_forward/backward) ---- */

typedef enum { CUDA_F32 = 0, CUDA_BF16 = 1 } CudaDtype;
typedef struct CudaBlas CudaBlas;

/* One cuBLAS handle (and its workspace of CUDA_BLAS_WORKSPACE_BYTES of
 * device memory) per thread that launches products. */
#define CUDA_BLAS_WORKSPACE_BYTES ((size_t)32 << 20)
/* What the cuBLAS handle takes of device memory itself, beyond that
 * workspace: 64 MiB on an H100 with CUDA 13.0 (test_cuda_memory_plan
 * prints the reading), given back by cuda_blas_free. The memory plans
 * count both (CUDA_BLAS_BYTES). */
#define CUDA_BLAS_HANDLE_BYTES ((size_t)64 << 20)
#define CUDA_BLAS_BYTES (CUDA_BLAS_WORKSPACE_BYTES + CUDA_BLAS_HANDLE_BYTES)
CudaBlas *cuda_blas_new(void);
void cuda_blas_free(CudaBlas *b);

/* out = inp @ w^T. inp and w are both of dtype `dt` (bf16: fp32 accumulate;
 * f32: full fp32, no TF32), out is fp32. */
void cuda_matmul_forward(CudaBlas *b, float *out /* (N, OC) */, const void *inp /* (N, IC) */,
                         const void *w /* (OC, IC) */, CudaDtype dt, int N, int IC, int OC, cudaStream_t stream);
/* dinp (+)= dout @ w (skipped when dinp is NULL); dw += dout^T @ inp.
 * dout, inp and w of dtype dt; dinp and dw fp32. */
void cuda_matmul_backward(CudaBlas *b, float *dinp /* (N, IC) */, float *dw /* (OC, IC) */,
                          const void *dout /* (N, OC) */, const void *inp /* (N, IC) */, const void *w /* (OC, IC) */,
                          CudaDtype dt, int N, int IC, int OC, bool accumulate_dinp, cudaStream_t stream);

/* ---- products of a few rows: the decode step (twin: linear_rows) ----
 * One warp per output, the weights (bf16) streamed once, fp32 sums; for
 * N <= CUDA_ROWS_MAX rows, IC a multiple of 8 and 16-byte aligned
 * operands (cuda_rows_fit says whether N and IC are); more rows go to
 * cuBLAS (cuda_matmul_forward). */
#define CUDA_ROWS_MAX 4
bool cuda_rows_fit(int N, int IC);
/* out[p] (N, OC[p]) = inp (N, IC) @ w[p]^T (w[p]: (OC[p], IC)) for 1 to 3
 * parts in one launch; with add (one part only): out = add (N, OC) + the
 * product (add may be out itself). inp bf16, or fp32 rounded to bf16 as
 * it is read (the result of cuda_f32_to_bf16 and then the product). */
void cuda_rows_matmul(int n_parts, float *const out[], const uint16_t *const w[], const int OC[], const float *add,
                      const uint16_t *inp /* (N, IC) */, int N, int IC, cudaStream_t stream);
void cuda_rows_matmul_f32in(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                            const float *add, const float *inp /* (N, IC) */, int N, int IC, cudaStream_t stream);
/* h (N, I) = bf16(silu(inp @ wgate^T) * (inp @ wup^T)), wgate and wup (I, IC):
 * the two products and cuda_swiglu_forward_bf16 in one launch. */
void cuda_rows_swiglu(uint16_t *h /* (N, I) */, const uint16_t *wgate /* (I, IC) */, const uint16_t *wup /* (I, IC) */,
                      const uint16_t *inp /* (N, IC) */, int N, int IC, int I, cudaStream_t stream);
/* The same two with the RMSNorm before them folded in: the input is
 * rmsnorm(x, norm_w, eps) (fp32, not rounded to bf16; twin: rmsnorm_forward
 * then linear_rows), computed by each warp as it reads x (no add). */
void cuda_rows_matmul_normed(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                             const float *x /* (N, IC) */, const float *norm_w /* (IC) */, float eps, int N, int IC,
                             cudaStream_t stream);
void cuda_rows_swiglu_normed(uint16_t *h /* (N, I) */, const uint16_t *wgate /* (I, IC) */,
                             const uint16_t *wup /* (I, IC) */, const float *x /* (N, IC) */,
                             const float *norm_w /* (IC) */, float eps, int N, int IC, int I, cudaStream_t stream);

/* ---- products of up to 32 rows on tensor cores (rows_mma.cu; twin: linear_rows) ----
 * A warp per 16 outputs, mma.sync over operands loaded straight from
 * global memory, the weights read once; for a decode step of 5 to 32 rows,
 * instead of cuBLAS. N <= CUDA_ROWS_MMA_MAX, IC a multiple of 32, 16-byte
 * aligned operands (cuda_rows_mma_fit says whether N and IC are). The
 * arguments are cuda_rows_matmul's: 1 to 3 parts, add with one part (may
 * be out itself); the fp32 input is rounded to bf16 as it is read. */
#define CUDA_ROWS_MMA_MAX 32
bool cuda_rows_mma_fit(int N, int IC);
void cuda_rows_mma_matmul(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                          const float *add, const uint16_t *inp /* (N, IC) */, int N, int IC, cudaStream_t stream);
void cuda_rows_mma_matmul_f32in(int n_parts, float *const out[], const uint16_t *const w[], const int OC[],
                                const float *add, const float *inp /* (N, IC) */, int N, int IC, cudaStream_t stream);

/* ---- rotary position embedding (twin: rope_forward/backward; tables from rope_tables) ---- */

void cuda_rope_forward(float *x /* (T, NH, D) */, const int32_t *pos /* (T) */, const float *cosb /* (P, D/2) */,
                       const float *sinb /* (P, D/2) */, int T, int NH, int D, cudaStream_t stream);
void cuda_rope_backward(float *dx /* (T, NH, D) */, const int32_t *pos /* (T) */, const float *cosb,
                        const float *sinb, int T, int NH, int D, cudaStream_t stream);

/* The training step's q/k path (twin: qk_norm_rope_forward/backward): per
 * head, the RMSNorm then RoPE in one launch, with each head row's rstd;
 * the values of cuda_rmsnorm_forward then cuda_rope_forward on each, up to
 * the FMA contraction of a rotation. D even. */
void cuda_qk_norm_rope_forward(float *qr /* (T, NH, D) */, float *q_rstd /* (T, NH) */,
                               const float *q /* (T, NH, D) */, const float *q_w /* (D) */, int NH,
                               float *kr /* (T, NKV, D) */, float *k_rstd /* (T, NKV) */,
                               const float *k /* (T, NKV, D) */, const float *k_w /* (D) */, int NKV,
                               const int32_t *pos /* (T) */, const float *cosb /* (P, D/2) */,
                               const float *sinb /* (P, D/2) */, int T, int D, float eps, cudaStream_t stream);
/* Its backward: dqr and dkr (the outputs' gradients) rotated back in place,
 * then dq, dk = the norms' input gradients (overwritten) and dq_w, dk_w +=
 * their weight gradients; cuda_rope_backward then cuda_rmsnorm_backward on
 * each. */
void cuda_qk_norm_rope_backward(float *dq /* (T, NH, D) */, float *dq_w /* (D) */, float *dqr /* (T, NH, D) */,
                                const float *q /* (T, NH, D) */, const float *q_w /* (D) */,
                                const float *q_rstd /* (T, NH) */, int NH, float *dk /* (T, NKV, D) */,
                                float *dk_w /* (D) */, float *dkr /* (T, NKV, D) */, const float *k /* (T, NKV, D) */,
                                const float *k_w /* (D) */, const float *k_rstd /* (T, NKV) */, int NKV,
                                const int32_t *pos /* (T) */, const float *cosb, const float *sinb, int T, int D,
                                cudaStream_t stream);
/* The same with dq and dk written in bf16 (the q/k products' operands). */
void cuda_qk_norm_rope_backward_bf16(uint16_t *dq /* (T, NH, D) */, float *dq_w /* (D) */,
                                     float *dqr /* (T, NH, D) */, const float *q /* (T, NH, D) */,
                                     const float *q_w /* (D) */, const float *q_rstd /* (T, NH) */, int NH,
                                     uint16_t *dk /* (T, NKV, D) */, float *dk_w /* (D) */,
                                     float *dkr /* (T, NKV, D) */, const float *k /* (T, NKV, D) */,
                                     const float *k_w /* (D) */, const float *k_rstd /* (T, NKV) */, int NKV,
                                     const int32_t *pos /* (T) */, const float *cosb, const float *sinb, int T,
                                     int D, cudaStream_t stream);

/* ---- causal GQA attention over packed sequences (twin: attention_forward/backward) ---- */

/* Largest head_dim the attention kernels take. */
#define CUDA_ATT_MAX_D 256

/* Sequence s spans tokens [seq_start[s], seq_start[s+1]); seq_of[t] is t's
 * sequence (non-decreasing). Flash-style: tiles in shared memory, online
 * softmax, lse (T, NH) saved for backward. D <= 256, NH % NKV == 0.
 * dt CUDA_F32: fp32 products on the CUDA cores (tiles of 32 x 32; the parity
 * reference). dt CUDA_BF16: bf16 products with fp32 accumulation on the
 * tensor cores (attention_tc.cu, tiles of 64 x 64) where head_dim is 32, 64
 * or 128 (cuda_attention_tc_supported), the fp32 kernels otherwise. */
void cuda_attention_forward(float *out /* (T, NH, D) */, float *lse /* (T, NH) */, const float *q /* (T, NH, D) */,
                            const float *k /* (T, NKV, D) */, const float *v /* (T, NKV, D) */,
                            const int32_t *seq_of /* (T) */, const int32_t *seq_start /* (n_seqs + 1) */, int T,
                            int NH, int NKV, int D, CudaDtype dt, cudaStream_t stream);
/* dq, dk, dv overwritten; delta (T, NH) scratch. P recomputed from lse. */
void cuda_attention_backward(float *dq /* (T, NH, D) */, float *dk /* (T, NKV, D) */, float *dv /* (T, NKV, D) */,
                             float *delta /* (T, NH) */, const float *dout /* (T, NH, D) */,
                             const float *out /* (T, NH, D) */, const float *lse /* (T, NH) */, const float *q,
                             const float *k, const float *v, const int32_t *seq_of, const int32_t *seq_start, int T,
                             int NH, int NKV, int D, CudaDtype dt, cudaStream_t stream);

/* The pool scratch those two take for T rows (the bf16 kernels' copies of
 * their inputs, the backward's per-head dk and dv; the fp32 kernels none),
 * with TAU2_CUDA_ATTENTION as it is now: for a memory plan. */
size_t cuda_attention_scratch_bytes(int T, int NH, int NKV, int D, CudaDtype dt, bool backward);

/* The tensor-core kernels themselves (what dt CUDA_BF16 dispatches to). The
 * backward takes delta = rowsum(dout * out) (T, NH) already computed. */
bool cuda_attention_tc_supported(int D);
void cuda_attention_tc_forward(float *out /* (T, NH, D) */, float *lse /* (T, NH) */, const float *q /* (T, NH, D) */,
                               const float *k /* (T, NKV, D) */, const float *v /* (T, NKV, D) */,
                               const int32_t *seq_of /* (T) */, const int32_t *seq_start /* (n_seqs + 1) */, int T,
                               int NH, int NKV, int D, cudaStream_t stream);
void cuda_attention_tc_backward(float *dq /* (T, NH, D) */, float *dk /* (T, NKV, D) */, float *dv /* (T, NKV, D) */,
                                const float *delta /* (T, NH) */, const float *dout /* (T, NH, D) */,
                                const float *lse /* (T, NH) */, const float *q, const float *k, const float *v,
                                const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D,
                                cudaStream_t stream);

/* The same attention FlashAttention-2 style (attention_mma.cu: mma.sync
 * with scores and accumulators in registers, cp.async double buffering),
 * head_dim 32, 64 or 128; what dt CUDA_BF16 dispatches to under
 * TAU2_CUDA_ATTENTION=mma. */
bool cuda_attention_mma_supported(int D);
/* Whether TAU2_CUDA_ATTENTION picks attention_mma.cu ("mma") over
 * attention_tc.cu ("wmma" or unset); any other value exits 2. */
bool cuda_attention_mma_chosen(void);
void cuda_attention_mma_forward(float *out /* (T, NH, D) */, float *lse /* (T, NH) */, const float *q /* (T, NH, D) */,
                                const float *k /* (T, NKV, D) */, const float *v /* (T, NKV, D) */,
                                const int32_t *seq_of /* (T) */, const int32_t *seq_start /* (n_seqs + 1) */, int T,
                                int NH, int NKV, int D, cudaStream_t stream);
void cuda_attention_mma_backward(float *dq /* (T, NH, D) */, float *dk /* (T, NKV, D) */, float *dv /* (T, NKV, D) */,
                                 const float *delta /* (T, NH) */, const float *dout /* (T, NH, D) */,
                                 const float *lse /* (T, NH) */, const float *q, const float *k, const float *v,
                                 const int32_t *seq_of, const int32_t *seq_start, int T, int NH, int NKV, int D,
                                 cudaStream_t stream);
/* For the tests: one warp runs mma.cuh's instruction wrappers on m (16 x 16
 * bf16, row-major) and writes each lane's registers to out (32 x 16 words;
 * the layout in attention_mma.cu). */
void cuda_mma_probe(uint32_t *out /* (32, 16) */, const uint16_t *m /* (16, 16) */, cudaStream_t stream);
/* dk (T, NKV, D) = scale * the sum of dkh (T, NH, D) over each kv head's
 * query heads, dv the same sum of dvh unscaled; heads added in order. */
void cuda_attention_group_sum(float *dk, float *dv, const float *dkh, const float *dvh, int T, int NH, int NKV, int D,
                              float scale, cudaStream_t stream);

/* ---- KV-cache decode attention (twin: attention_paged in src/model/infer.c) ---- */

/* One query token per row r (R rows, each of its own sequence) against the
 * keys and values at positions 0..pos[r] of that sequence's paged cache.
 * The cache is infer.c's layout: block b of layer l holds keys at
 * kv + b * block_stride + k_off, (block_size, NKV, D), values at + v_off.
 * block_tables (R, max_blocks): row r's block ids, position j in block
 * block_tables[r * max_blocks + j / block_size]. max_len >= every pos[r] + 1
 * (a host-side bound that sizes the split of long contexts over blocks).
 * Query head h reads kv head h / (NH / NKV); scale 1/sqrt(D). work: device
 * scratch of at least cuda_decode_attention_work_bytes(R, NH, D, max_len)
 * bytes for the pieces' partial results, owned by the caller so that a
 * step allocates nothing (one workspace serves every layer: the launches
 * on a stream run in order). Pieces grow so that the partials stay under
 * 256 MiB (TAU2_CUDA_DECODE_WORK_MAX, bytes, overrides) unless one piece
 * per row and head passes it. */
size_t cuda_decode_attention_work_bytes(int R, int NH, int D, int max_len);
/* An upper bound of cuda_decode_attention_work_bytes(r, NH, D, len) over
 * every r <= R and every len: the partials stay under the cap, or one
 * piece per row and head holds the whole context (a memory plan sizes the
 * workspace with it). */
size_t cuda_decode_attention_work_bound(int R, int NH, int D);
void cuda_decode_attention(float *out /* (R, NH, D) */, const float *q /* (R, NH, D) */, const float *kv,
                           const int32_t *block_tables /* (R, max_blocks) */, int max_blocks,
                           const int32_t *pos /* (R) */, int R, int NH, int NKV, int D, int block_size,
                           size_t block_stride, size_t k_off, size_t v_off, int max_len, float *work,
                           size_t work_bytes, cudaStream_t stream);

/* The same attention over a bf16 cache (the production layout: half the
 * bytes per step), scores and sums in fp32. */
void cuda_decode_attention_bf16(float *out /* (R, NH, D) */, const float *q /* (R, NH, D) */, const uint16_t *kv,
                                const int32_t *block_tables /* (R, max_blocks) */, int max_blocks,
                                const int32_t *pos /* (R) */, int R, int NH, int NKV, int D, int block_size,
                                size_t block_stride, size_t k_off, size_t v_off, int max_len, float *work,
                                size_t work_bytes, cudaStream_t stream);


/* The inference step's q/k stage in one launch: per (row, head) the q/k
 * RMSNorm and RoPE at pos[r] into qn / kn (the arithmetic of
 * cuda_rmsnorm_forward and cuda_rope_forward), and each row's key (rotated)
 * and value rounded to bf16 into its slot of the cache: position pos[r]
 * through row r's block table, in the layout of cuda_decode_attention
 * (elements of kv counted in bf16 values). D even. */
void cuda_qk_norm_rope_cache_bf16(float *qn /* (R, NH, D) */, float *kn /* (R, NKV, D) */, uint16_t *kv,
                                  const float *q /* (R, NH, D) */, const float *k /* (R, NKV, D) */,
                                  const float *v /* (R, NKV, D) */, const float *q_norm_w /* (D) */,
                                  const float *k_norm_w /* (D) */, const int32_t *pos /* (R) */,
                                  const float *cosb /* (P, D/2) */, const float *sinb /* (P, D/2) */,
                                  const int32_t *block_tables /* (R, max_blocks) */, int max_blocks, int R, int NH,
                                  int NKV, int D, float eps, int block_size, size_t block_stride, size_t k_off,
                                  size_t v_off, cudaStream_t stream);

/* A decode step's q/k stage and attention in the pieces' launch: the same
 * bits as cuda_qk_norm_rope_cache_bf16 (into qn) then
 * cuda_decode_attention_bf16 (on qn), without the first launch or its
 * fp32 outputs. q, k, v are the raw products; each block of the attention
 * normalizes and rotates its query heads itself, and the block whose piece
 * holds row r's position pos[r] writes that row's key and value into the
 * cache before it reads the cache. So every row must be its own sequence's
 * only new token (a decode step), and the shape one that
 * cuda_decode_fold_fit takes (D 32, 64, 128 or 256, up to 8 query heads a
 * kv head, a power-of-two block size); q, q_norm_w and the RoPE tables
 * 16-byte aligned, the cache too. work as cuda_decode_attention's. */
bool cuda_decode_fold_fit(int NH, int NKV, int D, int block_size);
void cuda_decode_attention_folded_bf16(float *out /* (R, NH, D) */, uint16_t *kv, const float *q /* (R, NH, D) */,
                                       const float *k /* (R, NKV, D) */, const float *v /* (R, NKV, D) */,
                                       const float *q_norm_w /* (D) */, const float *k_norm_w /* (D) */,
                                       const float *cosb /* (P, D/2) */, const float *sinb /* (P, D/2) */, float eps,
                                       const int32_t *block_tables /* (R, max_blocks) */, int max_blocks,
                                       const int32_t *pos /* (R) */, int R, int NH, int NKV, int D, int block_size,
                                       size_t block_stride, size_t k_off, size_t v_off, int max_len, float *work,
                                       size_t work_bytes, cudaStream_t stream);

/* ---- sampling (twin: sample_token in src/model/sample.c) ---- */

/* A row's sampling parameters, the fields of SampleParams (sample.h). */
typedef struct {
    float temperature; /* >= 0; 0: greedy */
    float top_p;       /* (0, 1]; 1: off */
    int top_k;         /* >= 0; 0: off */
} CudaSampleParams;

/* One token per row of logits, sample_token's rules: temperature 0 is the
 * argmax (lower id on ties); otherwise w = exp((z - max) / temperature), the
 * kept set is the tokens ranked (larger w first, lower id on ties) below
 * top_k whose mass ranked above them is <= top_p * sum(w), and the draw
 * inverts the kept tokens' cumulative distribution at u[r] * their mass:
 * in id order when nothing is truncated, in rank order otherwise (in id
 * order again when more than 4096 tokens could be kept: the same
 * distribution, not the CPU's token for a given u; sample.cu).
 * logprobs[r] = log_softmax(logits[r])[ids[r]] at temperature 1. All
 * arguments are device pointers; the host reads only ids and logprobs. */
void cuda_sample(int32_t *ids /* (R) */, float *logprobs /* (R) */, const float *logits /* (R, V) */,
                 const CudaSampleParams *params /* (R) */, const double *u /* (R) */, int R, int V,
                 cudaStream_t stream);
/* cuda_sample with the passes over whole rows (max, argmax, the sums of the
 * weights) spread over blocks of 8192 logits first, for few rows (one block
 * per row leaves most SMs idle): the same ids and logprobs, bit for bit.
 * work: device memory of at least cuda_sample_work_bytes(R, V) bytes. */
size_t cuda_sample_work_bytes(int R, int V);
void cuda_sample_wide(int32_t *ids /* (R) */, float *logprobs /* (R) */, const float *logits /* (R, V) */,
                      const CudaSampleParams *params /* (R) */, const double *u /* (R) */, int R, int V, void *work,
                      size_t work_bytes, cudaStream_t stream);

/* ---- SwiGLU and residual (twin: swiglu_forward/backward, residual_add) ---- */

void cuda_swiglu_forward(float *h /* (N) */, const float *gate /* (N) */, const float *up /* (N) */, long N,
                         cudaStream_t stream);
/* h rounded to bf16 (the down projection's operand): inference. */
void cuda_swiglu_forward_bf16(uint16_t *h /* (N) */, const float *gate /* (N) */, const float *up /* (N) */, long N,
                              cudaStream_t stream);
void cuda_swiglu_backward(float *dgate /* (N) */, float *dup /* (N) */, const float *dh /* (N) */,
                          const float *gate /* (N) */, const float *up /* (N) */, long N, cudaStream_t stream);
/* dgate and dup rounded to bf16 (the gate/up products' backward operands). */
void cuda_swiglu_backward_bf16(uint16_t *dgate /* (N) */, uint16_t *dup /* (N) */, const float *dh /* (N) */,
                               const float *gate /* (N) */, const float *up /* (N) */, long N, cudaStream_t stream);
/* x += y. */
void cuda_residual_add(float *x /* (N) */, const float *y /* (N) */, long N, cudaStream_t stream);

/* ---- output head over a chunk of logits (twin: logprob_entropy_*, vocab_row_max) ---- */

/* lse, entropy, logprob of each row (0 when target < 0); sums in double. */
void cuda_logprob_entropy_forward(float *logprob /* (R) */, float *entropy /* (R) */, float *lse /* (R) */,
                                  const float *logits /* (R, V) */, const int32_t *targets /* (R) */, int R, int V,
                                  cudaStream_t stream);
/* Vocab-parallel: max -> all-reduce max -> partial -> all-reduce sum -> finish. */
void cuda_vocab_row_max(float *mx /* (R) */, const float *logits /* (R, Vs) */, int R, int Vs, cudaStream_t stream);
void cuda_logprob_entropy_partial(double *stats /* (R, 3) */, const float *logits /* (R, Vs) */,
                                  const int32_t *targets /* (R) */, const float *mx /* (R) */, int R, int Vs, int v0,
                                  cudaStream_t stream);
void cuda_logprob_entropy_finish(float *logprob /* (R) */, float *entropy /* (R) */, float *lse /* (R) */,
                                 const double *stats /* (R, 3) */, const float *mx /* (R) */,
                                 const int32_t *targets /* (R) */, int R, cudaStream_t stream);
/* logits (R, V) in: z, out: dloss/dz. dentropy may be NULL. */
void cuda_logprob_entropy_backward(float *logits /* (R, V) */, const float *dlogprob /* (R) */,
                                   const float *dentropy /* (R) */, const float *lse /* (R) */,
                                   const float *entropy /* (R) */, const int32_t *targets /* (R) */, int R, int V,
                                   cudaStream_t stream);
void cuda_logprob_entropy_backward_shard(float *logits /* (R, Vs) */, const float *dlogprob /* (R) */,
                                         const float *dentropy /* (R) */, const float *lse /* (R) */,
                                         const float *entropy /* (R) */, const int32_t *targets /* (R) */, int R,
                                         int Vs, int v0, cudaStream_t stream);

/* ---- optimizer (twin: qwen3_grad_norm, qwen3_adamw_step in src/model/qwen3.c) ---- */

/* *sumsq (one device double) (+)= sum of g^2 over n elements, in fixed
 * blocks and a fixed tree order. Call once per tensor with accumulate after
 * the first; all-reduce *sumsq over TP ranks before cuda_clip_scale. */
void cuda_sum_squares(double *sumsq /* (1) */, const float *g /* (n) */, size_t n, bool accumulate,
                      cudaStream_t stream);
/* The pool scratch cuda_sum_squares takes for n elements, for a memory plan. */
size_t cuda_sum_squares_scratch_bytes(size_t n);
/* From *sumsq: *norm = sqrt(sumsq) (fp32) and *gscale = max_norm / (norm +
 * 1e-6) when that is < 1, else 1 (always 1 when max_norm <= 0), as
 * qwen3_adamw_step clips. All device scalars: no host round trip. */
void cuda_clip_scale(float *norm /* (1) */, float *gscale /* (1) */, const double *sumsq /* (1) */,
                     float max_norm, cudaStream_t stream);
/* One AdamW step on one tensor, qwen3_adamw_step's formula:
 *   g' = gscale g; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
 *   p = p (1 - lr wd) - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
 * with bc1 = 1 - b1^step, bc2 = 1 - b2^step computed by the caller in double
 * (the scalars rounded once to float, as the CPU twin). g is not changed.
 * gscale is a device scalar (NULL: 1). With p_bf16, the new weights are
 * also written there in bf16 (what cuda_f32_to_bf16 of p would give, in
 * the same pass). */
void cuda_adamw_update(float *p /* (n) */, uint16_t *p_bf16 /* (n) or NULL */, const float *g /* (n) */,
                       float *m /* (n) */, float *v /* (n) */, size_t n, const float *gscale /* (1) or NULL */,
                       float lr, float beta1, float beta2, float eps, float weight_decay, double bc1, double bc2,
                       cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
