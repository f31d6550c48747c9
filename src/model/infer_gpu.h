/* infer_gpu.h — the Qwen3 inference engine on one GPU: bf16 weights, a
 * paged bf16 KV cache, forward over appended tokens (prefill and batched
 * decode mixed in one call), and sampling on the GPU.
 *
 * The twin of infer.c's InferEngine at one rank, with the same sequences,
 * chunks, copy-on-write forks and error messages (the bookkeeping is
 * kv_blocks.c, shared by both). What differs:
 *
 *   - weights are a bf16 copy on the device (the norms stay fp32), products
 *     through cuBLAS in bf16 with fp32 accumulation; activations fp32;
 *   - the KV cache is bf16, (n_blocks, L, 2, block_size, NKV, D);
 *   - infer_gpu_forward_sample samples on the GPU (kernels' cuda_sample,
 *     sample.h's rules): per step the host sends the new tokens, block
 *     tables, sampling parameters and draws, and reads back one id and one
 *     logprob per chunk; logits never leave the device.
 *
 * Rows of a forward: chunks that extend a sequence (decode steps, later
 * turns) attend through the paged decode kernel, one query per row; a new
 * sequence's first chunk (a prompt) through the training flash kernel
 * within itself, as on the CPU. Results match the CPU engine within bf16
 * tolerances (doc/cuda.md), not bit for bit.
 *
 * Scope: one GPU, tensor parallel size 1 (gpu_check.h says whether it can
 * run here). Only defined in the CUDA build (TAU2_HAVE_CUDA); every call
 * needs a CUDA device.
 */
#ifndef TAU2_MODEL_INFER_GPU_H
#define TAU2_MODEL_INFER_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/infer.h"
#include "model/qwen3.h"
#include "model/sample.h"

typedef struct InferGpu InferGpu;

/* An engine on CUDA device `device` modulo the visible devices (a rank's
 * index on its node picks its GPU) for model's shapes, with model's weights
 * uploaded (model is borrowed for its config and tensor table only; see
 * infer_gpu_load_weights). opt as for infer_new (group must be NULL).
 * NULL with err when the model is tensor parallel, a shape is outside the
 * kernels' limits, or the device cannot be used; the device memory for
 * weights and cache is taken here (cudaMalloc failure is fatal). */
InferGpu *infer_gpu_new(const Qwen3 *model, const InferOptions *opt, int device, char *err, size_t errlen);
/* Frees the engine's memory and trims the device's pool (cuda_pool_trim),
 * so that what it held can be allocated again at once (e.g. by a trainer
 * between a colocated job's phases). */
void infer_gpu_free(InferGpu *e);

/* New weights in the model's layout (host fp32, num_parameters), e.g. after
 * a trainer step or a weight broadcast: converted to bf16 on the device.
 * Synchronizes. The KV cache is kept (the caller frees stale sequences). */
void infer_gpu_load_weights(InferGpu *e, const float *params /* (num_parameters) */);
/* The same from device memory on this engine's GPU: weights [off, off + n)
 * of the model's layout from src (n floats), e.g. the trainer's fp32
 * weights on the same GPU (off 0, all of them) or one bucket of a
 * broadcast. Work on other streams that writes src must be finished.
 * Synchronizes (src may be reused at once). */
void infer_gpu_load_weights_device(InferGpu *e, const float *src /* (n), device */, size_t off, size_t n);

/* The CUDA device the engine runs on. */
int infer_gpu_device(const InferGpu *e);
/* Whether the engine serves calls made with opt (as for infer_gpu_new):
 * the same block size, at least its KV blocks, sequences and length. */
bool infer_gpu_fits(const InferGpu *e, const InferOptions *opt);
/* Decode steps (every chunk one token of a sequence with a cache) replay
 * CUDA graphs of their launches (infer_gpu.c says how they are keyed and
 * kept); on by default, off when the environment has TAU2_CUDA_GRAPHS=0.
 * Off or on, a step computes the same bits. Turning them off drops the
 * graphs held. */
void infer_gpu_set_graphs(InferGpu *e, bool on);
/* Graphs captured and graph launches so far. */
void infer_gpu_graph_counts(const InferGpu *e, long *captured, long *replayed);
/* Programmatic dependent launch of a step's kernels (kernels/common.cuh):
 * each may start while the one before it ends, loading its weights before
 * it waits for that kernel's results. On by default, off when the
 * environment has TAU2_CUDA_PDL=0; it applies to the steps whose products
 * are the few-row kernels (1 to 4 rows), and only on GPUs of compute
 * capability 9.0 and up (infer_gpu_dependent_launch says whether it
 * can). Off or on, a step computes the same bits. Changing it drops the
 * graphs held. */
void infer_gpu_set_dependent_launch(InferGpu *e, bool on);
/* A decode step's q/k norms, RoPE and cache write done by the decode
 * attention's blocks instead of a launch of their own
 * (cuda_decode_attention_folded_bf16), where the shape allows. On by
 * default, off when the environment has TAU2_CUDA_DECODE_FOLD=0. Off or on,
 * a step computes the same bits. Changing it drops the graphs held. */
void infer_gpu_set_decode_fold(InferGpu *e, bool on);
/* Whether decode steps fold it (on, and a shape the folded kernel takes). */
bool infer_gpu_decode_fold(const InferGpu *e);
bool infer_gpu_dependent_launch(const InferGpu *e);

/* Every sequence freed: the engine as new, weights kept (an engine kept
 * from one call of rollout_run to the next). */
void infer_gpu_reset(InferGpu *e);

/* Sequences, as infer.h's. */
int infer_gpu_seq_new(InferGpu *e, char *err, size_t errlen);
int infer_gpu_seq_fork(InferGpu *e, int src, char *err, size_t errlen);
void infer_gpu_seq_free(InferGpu *e, int seq);
int infer_gpu_seq_len(const InferGpu *e, int seq);
int infer_gpu_free_tokens(const InferGpu *e);
/* The device memory an engine takes (bytes), by part, counted from shapes
 * before it exists: made with opt (as for infer_gpu_new) for a model of
 * config c, its steps fed at most step_tokens pending tokens beyond one per
 * decoding sequence (infer_gen_set_step_tokens' limit: 0 its default, < 0
 * none). The parts are what the engine allocates, the scratch at the
 * largest step those settings allow. */
typedef struct {
    size_t weights;   /* bf16 weights, fp32 norms, the RoPE table */
    size_t kv_cache;  /* the paged bf16 cache */
    size_t scratch;   /* a step's activations, block tables, sampling and decode partials */
    size_t workspace; /* the cuBLAS handle and its workspace (CUDA_BLAS_BYTES), the weights' upload staging */
    size_t pool;      /* a prompt's attention scratch from the stream-ordered pool, at most */
} InferGpuPlan;
void infer_gpu_plan(const Qwen3Config *c, const InferOptions *opt, int step_tokens, InferGpuPlan *out);
size_t infer_gpu_plan_total(const InferGpuPlan *p);

/* Bytes of device memory the engine holds (weights, cache, scratch). */
size_t infer_gpu_device_bytes(const InferGpu *e);

/* As infer_forward: append each chunk's tokens and, when logits is not NULL,
 * copy the logits after each chunk's last token to the host (n_chunks, V).
 * 0, or -1 with err (nothing changed). */
int infer_gpu_forward(InferGpu *e, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen);

/* The forward, then one token per chunk sampled on the GPU from the logits
 * after its last token: params[i] (checked as sample_check_params) and the
 * draw u[i] in [0, 1) (rng_uniform, as infer.c's generator). ids[i] and
 * logprobs[i] (log_softmax at temperature 1) come back to the host.
 * 0, or -1 with err (nothing changed). */
int infer_gpu_forward_sample(InferGpu *e, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                             const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen);

/* The engine for infer_gen_new_backend: continuous batching with stop ids
 * and strings on the GPU engine, the draws as on the CPU. */
InferBackend infer_gpu_backend(InferGpu *e);

#endif
