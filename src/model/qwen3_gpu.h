/* qwen3_gpu.h — the Qwen3 training step on one GPU: the twin of qwen3.c's
 * forward, backward, zero_grad and AdamW, built on the kernels of
 * kernels/kernels.h and cuBLAS.
 *
 * The engine keeps its own device copy of a host model's weights (fp32
 * master weights), gradients, AdamW moments and activations. Its layer
 * order, chunked output head, head mask and formulas are qwen3.c's, so a
 * step on the GPU gives the CPU step's results within the tolerances of
 * doc/cuda.md. Matrix products take bf16 inputs with fp32 accumulation
 * (QWEN3_GPU_BF16, the production setting) or stay fp32 (QWEN3_GPU_F32, the
 * parity reference); everything else is fp32.
 *
 * One GPU per rank. When the host model is a tensor-parallel shard (its
 * TP comm, an MPI comm, of size > 1), the engine holds that shard and runs
 * qwen3.c's sharded step, its collectives through a NCCL comm of the same
 * ranks made at qwen3_gpu_new (each rank on its own GPU). Activations are
 * kept for every layer, or, when the host model's `recompute` is set at the
 * forward pass, only each layer's input and attention output: backward runs
 * the rest of the layer again into one shared slot, as qwen3.c does. Only defined in the CUDA build
 * (TAU2_HAVE_CUDA); every call needs a CUDA device, and every call is
 * collective over the TP group, as qwen3.h's are.
 */
#ifndef TAU2_MODEL_QWEN3_GPU_H
#define TAU2_MODEL_QWEN3_GPU_H

#include <stdbool.h>
#include <stddef.h>

#include "model/qwen3.h"

struct Comm;

typedef enum {
    QWEN3_GPU_BF16 = 0, /* products in bf16 (fp32 accumulate) */
    QWEN3_GPU_F32 = 1,  /* products in fp32 (no TF32) */
} Qwen3GpuMath;

typedef struct Qwen3Gpu Qwen3Gpu;

/* The logits scratch a GPU step's output head may take (vocab_chunk rows x
 * the vocab shard, fp32): qwen3_vocab_chunk_within(shard, this) rows. The
 * head's weight gradient is read and written once per chunk (1.2 GiB each
 * for Qwen3's vocabulary): at the CPU default of 128 rows that pass cost
 * 1.5 ms per 128 tokens on an H100, more than the chunk's products. */
#define QWEN3_GPU_LOGITS_BYTES (1L << 30)
/* The head chunk a GPU step runs with (the host model's vocab_chunk, set by
 * train_device_new): qwen3_vocab_chunk_within(vocab_shard, the above). */
int qwen3_gpu_vocab_chunk(int vocab_shard);

/* The device memory an engine takes (bytes), by part, counted from shapes
 * before any engine exists: a model of config c at tensor-parallel size tp,
 * batches of up to T tokens, the head in qwen3_gpu_vocab_chunk rows, the
 * activations in the recomputation's layout or not. train: the engine runs
 * backward passes and AdamW steps (gradients and moments); else forward
 * passes only (a KL reference). Every part is what the engine allocates, to
 * the byte, but the pool's: a bound of what its kernels take from the pool
 * (which keeps it from step to step). */
typedef struct {
    size_t weights;     /* fp32 master weights, and their bf16 copy in bf16 math */
    size_t train_state; /* gradients and AdamW's two moments (train) */
    size_t activations; /* the activation arenas for T tokens */
    size_t workspace;   /* the cuBLAS handle and its workspace (CUDA_BLAS_BYTES), the step's scalars */
    size_t pool;        /* the kernels' scratch from the stream-ordered pool, at most */
} Qwen3GpuPlan;
void qwen3_gpu_plan(const Qwen3Config *c, int tp, int T, bool recompute, Qwen3GpuMath math, bool train,
                    Qwen3GpuPlan *out);
size_t qwen3_gpu_plan_total(const Qwen3GpuPlan *p);

/* An engine on CUDA device `device` for host model m's shapes, with m's
 * weights uploaded. m is borrowed for its config, shard, TP comm and tensor
 * table and must outlive the engine; its weights are not changed (see
 * qwen3_gpu_download_params). At TP > 1 collective over m's TP comm (the
 * NCCL comm is made here). Dies with a clear message when the device
 * cannot be used. */
Qwen3Gpu *qwen3_gpu_new(const Qwen3 *m, int device, Qwen3GpuMath math);
void qwen3_gpu_free(Qwen3Gpu *g);

/* Weights host -> device (after a load or a broadcast), device -> host (for
 * a checkpoint, an export or the rollout engine). Both synchronize. */
void qwen3_gpu_upload_params(Qwen3Gpu *g, const float *params /* (num_parameters) */);
void qwen3_gpu_download_params(const Qwen3Gpu *g, float *params /* (num_parameters) */);
/* Gradients device -> host and host -> device, in the host model's layout
 * (both synchronize). The device's gradients exist from the first
 * zero_grad, backward or upload on; an engine that only runs forward
 * passes never allocates them. */
void qwen3_gpu_download_grads(Qwen3Gpu *g, float *grads /* (num_parameters) */);
void qwen3_gpu_upload_grads(Qwen3Gpu *g, const float *grads /* (num_parameters) */);
/* The data-parallel sum: the gradients summed over the ranks of dp, a NCCL
 * comm (comm_nccl_from_mpi) whose ranks hold the same shard, on the device
 * (queued on the engine's stream). Collective over dp. */
void qwen3_gpu_allreduce_grads(Qwen3Gpu *g, struct Comm *dp);
/* AdamW's state: the moments m and v and the count of steps taken, for a
 * checkpoint (download; false, with only *adam_step set, when no step has
 * run and the moments do not exist yet) and a resume (upload). */
bool qwen3_gpu_download_moments(const Qwen3Gpu *g, float *m /* (num_parameters) */, float *v /* (num_parameters) */,
                                int *adam_step);
void qwen3_gpu_upload_moments(Qwen3Gpu *g, const float *m /* (num_parameters) */, const float *v /* (num_parameters) */,
                              int adam_step);

/* Between the phases of a colocated job, the engine gives its memory to
 * the rollout engine on the same GPU (the job's offload_train):
 * qwen3_gpu_offload sends the moments (when the engine has them) to m_host
 * and v_host (num_parameters each), then frees the weights, their bf16
 * copy, the gradients, the moments and the activations, and trims the
 * device's pool; the engine keeps its stream, cuBLAS handle and workspace
 * and the step's scalars (a plan's `workspace`), its NCCL comm and
 * adam_step. qwen3_gpu_onload makes it whole again from the weights (the
 * host model's, which train_device keeps equal to the device's) and the
 * moments (NULL: none) the offload brought out; the gradients come back
 * zeroed (each update zeroes them first anyway). Until then every other
 * call but qwen3_gpu_free dies, and qwen3_gpu_params_device is NULL. An
 * offload of an offloaded engine does nothing. Both synchronize. */
void qwen3_gpu_offload(Qwen3Gpu *g, float *m_host /* (num_parameters) */, float *v_host /* (num_parameters) */);
void qwen3_gpu_onload(Qwen3Gpu *g, const float *params /* (num_parameters) */,
                      const float *m_host /* (num_parameters) or NULL */, const float *v_host);
bool qwen3_gpu_is_offloaded(const Qwen3Gpu *g);

/* The fp32 master weights on the device (num_parameters, the host model's
 * layout; current after each AdamW step) and the device's index: what an
 * inference engine on the same GPU converts its weights from. */
const float *qwen3_gpu_params_device(const Qwen3Gpu *g);
int qwen3_gpu_device(const Qwen3Gpu *g);

/* As qwen3_forward / qwen3_zero_grad / qwen3_backward / qwen3_adamw_step:
 * the batch, logprob, entropy, dlogprob and dentropy are host arrays. */
void qwen3_gpu_forward(Qwen3Gpu *g, const Qwen3Batch *b, float *logprob /* (T) */, float *entropy /* (T) */);
/* As qwen3_forward_head_grad: the head's backward chunk by chunk inside the
 * forward, with the gradients grad_fn gives for each chunk's rows (asked on
 * the host as each chunk's logprobs come back), so the backward
 * (qwen3_gpu_backward(g, NULL, NULL)) computes no logits again. Zero the
 * gradients before it. */
void qwen3_gpu_forward_head_grad(Qwen3Gpu *g, const Qwen3Batch *b, float *logprob /* (T) */, float *entropy /* (T) */,
                                 Qwen3HeadGradFn grad_fn, void *grad_ctx, bool with_dentropy);
void qwen3_gpu_zero_grad(Qwen3Gpu *g);
void qwen3_gpu_backward(Qwen3Gpu *g, const float *dlogprob /* (T) */, const float *dentropy /* (T) or NULL */);
/* (both NULL after qwen3_gpu_forward_head_grad) */
float qwen3_gpu_adamw_step(Qwen3Gpu *g, const Qwen3AdamW *opt, float lr);

#endif
