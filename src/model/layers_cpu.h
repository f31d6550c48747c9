/* layers_cpu.h — the CPU layer functions of the Qwen3 engine.
 *
 * Each function is the CPU twin of one CUDA kernel (kernels/): plain float
 * arrays, sizes as arguments, shapes written next to every tensor argument.
 * Matrices are row-major; weights are [out, in] as Hugging Face stores them.
 *
 * Sizes are the local ones (n_heads, kv_heads, intermediate, vocab of this
 * tensor-parallel rank), so sharding changes only the numbers passed in.
 *
 * Determinism: every output element is computed by one thread, in a fixed
 * order, so results are bit-identical whatever the OpenMP thread count.
 * Reductions over tokens (weight gradients) are parallel over the reduced
 * tensor's columns, never over tokens. Matrix products are cut into output
 * tiles whose sizes depend on the shapes only; each tile is one cblas_sgemm
 * on one thread (these functions keep OpenBLAS itself at one thread: its own
 * pool would spin against the OpenMP threads).
 *
 * Backward functions accumulate into weight gradients (+=) so several
 * micro-batches can add up before an optimizer step; input gradients are
 * overwritten unless the function says otherwise.
 */
#ifndef TAU2_MODEL_LAYERS_CPU_H
#define TAU2_MODEL_LAYERS_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- embedding ---- */

/* out[t] = table[tokens[t]]. */
void embedding_forward(float *out /* (T, C) */, const int32_t *tokens /* (T) */,
                       const float *table /* (V, C) */, int T, int C);
/* dtable[tokens[t]] += dout[t], tokens in order (parallel over columns). */
void embedding_backward(float *dtable /* (V, C) */, const float *dout /* (T, C) */,
                        const int32_t *tokens /* (T) */, int T, int C);

/* Vocab-parallel (TP): this rank holds rows [v0, v0 + Vs) of the table.
 * out[t] = table[tokens[t] - v0] for tokens in the shard, zeros otherwise (the
 * all-reduce over ranks then gives the full embedding). */
void embedding_forward_shard(float *out /* (T, C) */, const int32_t *tokens /* (T) */,
                             const float *table /* (Vs, C) */, int T, int C, int v0, int Vs);
/* dtable[tokens[t] - v0] += dout[t] for tokens in the shard. */
void embedding_backward_shard(float *dtable /* (Vs, C) */, const float *dout /* (T, C) */,
                              const int32_t *tokens /* (T) */, int T, int C, int v0, int Vs);

/* ---- RMSNorm (fp32; also the per-head q/k norm with N = T*heads, C = head_dim) ---- */

/* out = x / sqrt(mean(x^2) + eps) * w; rstd keeps 1/sqrt(mean(x^2) + eps). */
void rmsnorm_forward(float *out /* (N, C) */, float *rstd /* (N) */, const float *x /* (N, C) */,
                     const float *w /* (C) */, int N, int C, float eps);
/* x += y (the residual stream), then out = RMSNorm(x) as rmsnorm_forward, row
 * by row in one pass. */
void residual_rmsnorm_forward(float *x /* (N, C) */, const float *y /* (N, C) */, float *out /* (N, C) */,
                              float *rstd /* (N) */, const float *w /* (C) */, int N, int C, float eps);
/* dx (+)= d/dx; dw += sum over rows of dout * x * rstd. accumulate_dx adds
 * into dx (the residual stream) instead of overwriting it. dx must not
 * alias dout. */
void rmsnorm_backward(float *dx /* (N, C) */, float *dw /* (C) */, const float *dout /* (N, C) */,
                      const float *x /* (N, C) */, const float *w /* (C) */,
                      const float *rstd /* (N) */, int N, int C, bool accumulate_dx);

/* ---- linear layers (cblas_sgemm) ---- */

/* out = inp @ w^T. */
void matmul_forward(float *out /* (N, OC) */, const float *inp /* (N, IC) */,
                    const float *w /* (OC, IC) */, int N, int IC, int OC);
/* dinp (+)= dout @ w (dinp may be NULL); dw += dout^T @ inp. */
void matmul_backward(float *dinp /* (N, IC) */, float *dw /* (OC, IC) */,
                     const float *dout /* (N, OC) */, const float *inp /* (N, IC) */,
                     const float *w /* (OC, IC) */, int N, int IC, int OC, bool accumulate_dinp);

/* Several linear layers on one input (q/k/v, gate/up), as one group of
 * tiles over the threads; the same bits as one call per layer.
 * outs[i] = inp @ ws[i]^T, i < n <= 8. */
void matmul_forward_multi(int n, float *const *outs /* n x (N, OCs[i]) */, const float *inp /* (N, IC) */,
                          const float *const *ws /* n x (OCs[i], IC) */, const int *OCs, int N, int IC);
/* Their backward: dinp (+)= sum_i douts[i] @ ws[i], added in the order
 * i = 0, 1, ... (as matmul_backward per layer, the first with
 * accumulate_dinp, the rest accumulating); dws[i] += douts[i]^T @ inp;
 * i < n <= 7. */
void matmul_backward_multi(int n, float *dinp /* (N, IC) */, float *const *dws /* n x (OCs[i], IC) */,
                           const float *const *douts /* n x (N, OCs[i]) */, const float *inp /* (N, IC) */,
                           const float *const *ws /* n x (OCs[i], IC) */, const int *OCs, int N, int IC,
                           bool accumulate_dinp);

/* ---- rotary position embedding (rotate-half, as Hugging Face) ---- */

/* cos/sin tables for positions 0..P-1, computed as transformers does in fp32:
 * inv_freq[i] = 1 / theta^(2i/D), angle = (float)pos * inv_freq[i]. */
void rope_tables(float *cosb /* (P, D/2) */, float *sinb /* (P, D/2) */, int P, int D, double theta);
/* In place on each head of each token: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin
 * where x1, x2 are the first and second halves of the head. */
void rope_forward(float *x /* (T, NH, D) */, const int32_t *pos /* (T) */,
                  const float *cosb, const float *sinb, int T, int NH, int D);
/* The transpose (rotation by -angle), in place on the gradient. */
void rope_backward(float *dx /* (T, NH, D) */, const int32_t *pos /* (T) */,
                   const float *cosb, const float *sinb, int T, int NH, int D);

/* The attention's q/k path in one pass over the tokens: per-head RMSNorm
 * (weights q_w, k_w) then RoPE, for q and k; the same bits as
 * rmsnorm_forward then rope_forward on each. */
void qk_norm_rope_forward(float *qr /* (T, NH, D) */, float *q_rstd /* (T, NH) */, const float *q /* (T, NH, D) */,
                          const float *q_w /* (D) */, int NH, float *kr /* (T, NKV, D) */,
                          float *k_rstd /* (T, NKV) */, const float *k /* (T, NKV, D) */, const float *k_w /* (D) */,
                          int NKV, const int32_t *pos /* (T) */, const float *cosb, const float *sinb, int T, int D,
                          float eps);
/* The backward of qk_norm_rope_forward: dqr and dkr (the gradients of its
 * outputs) are rotated back in place, then dq = the RMSNorm's input
 * gradient (overwritten), dq_w += its weight gradient; the same for k. The
 * same bits as rope_backward then rmsnorm_backward on each. */
void qk_norm_rope_backward(float *dq /* (T, NH, D) */, float *dq_w /* (D) */, float *dqr /* (T, NH, D) */,
                           const float *q /* (T, NH, D) */, const float *q_w /* (D) */,
                           const float *q_rstd /* (T, NH) */, int NH, float *dk /* (T, NKV, D) */,
                           float *dk_w /* (D) */, float *dkr /* (T, NKV, D) */, const float *k /* (T, NKV, D) */,
                           const float *k_w /* (D) */, const float *k_rstd /* (T, NKV) */, int NKV,
                           const int32_t *pos /* (T) */, const float *cosb, const float *sinb, int T, int D);

/* ---- exp and max over arrays ---- */

/* y[i] = exp(x[i]) (in place allowed), vectorized; within 1 ulp of expf for
 * normal results, results below FLT_MIN flush to 0. Attention, the output
 * head and the sampler all use it. */
void exp_array(float *y /* (n) */, const float *x /* (n) */, int n);
/* max of x[0, n) (-inf when n is 0; NaNs are passed over), vectorized. */
float max_array(const float *x /* (n) */, int n);

/* ---- causal grouped-query attention over packed sequences ---- */

/* Sequence s spans tokens [seq_start[s], seq_start[s+1]); a token attends to
 * itself and earlier tokens of its own sequence only. Query head h reads kv
 * head h / (NH / NKV). Scale 1/sqrt(D). Flash-attention tiles: 64 query rows
 * of one head against 64 keys at a time (cblas_sgemm), online softmax across
 * key tiles; lse keeps each row's log-sum-exp of scaled scores for the
 * backward pass. Memory is O(tile) per thread, never T x T. Tokens of a
 * sequence are contiguous and sequences in order (seq_of non-decreasing).
 * D <= 512. */
void attention_forward(float *out /* (T, NH, D) */, float *lse /* (T, NH) */,
                       const float *q /* (T, NH, D) */, const float *k /* (T, NKV, D) */,
                       const float *v /* (T, NKV, D) */, const int32_t *seq_of /* (T) */,
                       const int32_t *seq_start /* (n_seqs + 1) */, int T, int NH, int NKV, int D);
/* dq, dk, dv overwritten. delta (T, NH) is scratch. P is recomputed from lse
 * tile by tile, dS = P (dP - rowsum(dout * out)). dq is parallel over (query
 * tile, head), dk/dv over (key tile, kv head) summing its heads and query
 * tiles in a fixed order: no accumulation races, no thread-count dependence. */
void attention_backward(float *dq /* (T, NH, D) */, float *dk /* (T, NKV, D) */,
                        float *dv /* (T, NKV, D) */, float *delta /* (T, NH) */,
                        const float *dout /* (T, NH, D) */, const float *out /* (T, NH, D) */,
                        const float *lse /* (T, NH) */, const float *q, const float *k,
                        const float *v, const int32_t *seq_of, const int32_t *seq_start,
                        int T, int NH, int NKV, int D);

/* ---- SwiGLU ---- */

/* h = silu(gate) * up. */
void swiglu_forward(float *h /* (N) */, const float *gate /* (N) */, const float *up /* (N) */, long N);
void swiglu_backward(float *dgate /* (N) */, float *dup /* (N) */, const float *dh /* (N) */,
                     const float *gate /* (N) */, const float *up /* (N) */, long N);

/* ---- residual ---- */

/* x += y. */
void residual_add(float *x /* (N) */, const float *y /* (N) */, long N);

/* ---- output head: per-token logprob and entropy from a chunk of logits ---- */

/* For each row r of logits (R rows of the chunk): lse[r] = logsumexp(z),
 * entropy[r] = lse - sum p z, logprob[r] = z[target] - lse (0 when target < 0).
 * Sums in double. Vocab-parallel TP: max, sum-exp and sum p z all-reduce
 * across ranks; the target's rank supplies z[target]. */
void logprob_entropy_forward(float *logprob /* (R) */, float *entropy /* (R) */, float *lse /* (R) */,
                             const float *logits /* (R, V) */, const int32_t *targets /* (R) */,
                             int R, int V);
/* Vocab-parallel forward in three steps around two all-reduces; logits is
 * this rank's (R, Vs) slice, columns [v0, v0 + Vs) of the vocabulary:
 *   vocab_row_max               mx[r] = max_j z   -> all-reduce max
 *   logprob_entropy_partial     stats[r] = (sum e, sum e (mx - z), z[target] - mx
 *                               or 0 when the target is elsewhere), e = exp(z - mx)
 *                                                 -> all-reduce sum
 *   logprob_entropy_finish      the same formulas as logprob_entropy_forward. */
void vocab_row_max(float *mx /* (R) */, const float *logits /* (R, Vs) */, int R, int Vs);
void logprob_entropy_partial(double *stats /* (R, 3) */, const float *logits /* (R, Vs) */,
                             const int32_t *targets /* (R) */, const float *mx /* (R) */, int R, int Vs, int v0);
void logprob_entropy_finish(float *logprob /* (R) */, float *entropy /* (R) */, float *lse /* (R) */,
                            const double *stats /* (R, 3) */, const float *mx /* (R) */,
                            const int32_t *targets /* (R) */, int R);

/* Overwrite the chunk's logits with dloss/dlogits:
 *   dz_j = dlogprob (1[j == target] - p_j) - dentropy p_j (z_j - (lse - entropy)). */
void logprob_entropy_backward(float *logits /* (R, V), in: z, out: dz */,
                              const float *dlogprob /* (R) */, const float *dentropy /* (R) */,
                              const float *lse /* (R) */, const float *entropy /* (R) */,
                              const int32_t *targets /* (R) */, int R, int V);
/* The same on this rank's vocab slice [v0, v0 + Vs) (lse and entropy global). */
void logprob_entropy_backward_shard(float *logits /* (R, Vs), in: z, out: dz */,
                                    const float *dlogprob /* (R) */, const float *dentropy /* (R) */,
                                    const float *lse /* (R) */, const float *entropy /* (R) */,
                                    const int32_t *targets /* (R) */, int R, int Vs, int v0);

/* ---- optimizer (the CPU twin of kernels/adamw.cu) ---- */

/* sum of x[i]^2 in double; x*x is exact in double, and the sum runs in 16
 * fixed lanes, so every vector width gives the same bits. */
double sum_squares_array(const float *x /* (n) */, size_t n);
/* AdamW on n elements (PyTorch's order of operations; the caller rounds the
 * scalars once): g' = g gscale, m = b1 m + (1 - b1) g', v = b2 v + (1 - b2) g'^2,
 * p = p decay - step_size m / (sqrt(v) / bc2_sqrt + eps). */
void adamw_update_array(float *p /* (n) */, const float *g /* (n) */, float *m /* (n) */, float *v /* (n) */,
                        size_t n, float gscale, float b1, float b2, float eps, float decay, float step_size,
                        float bc2_sqrt);

#endif
