/* train_device.h — where a model's training step runs: on the host model
 * itself, or on a device with memory of its own.
 *
 * The host model (Qwen3) stays the model of record: its weights are what
 * rollouts read, broadcasts send and checkpoints and exports write. A
 * TrainDevice runs forward, backward and AdamW for it:
 *
 *   TRAIN_DEVICE_CPU         the host model itself: no copies (the CPU path)
 *   TRAIN_DEVICE_CUDA        one GPU per rank (qwen3_gpu.h, bf16 products):
 *                            weights, gradients and AdamW moments live on
 *                            the GPU; TP shards talk over NCCL
 *   TRAIN_DEVICE_CPU_MIRROR  the CPU step on a second host model that stands
 *                            in for the GPU: weights, gradients and moments
 *                            of its own, synchronized exactly where the GPU's
 *                            are. Bit-identical to TRAIN_DEVICE_CPU when every
 *                            synchronization is in place, so a CPU machine
 *                            tests the job's GPU bookkeeping.
 *
 * Synchronization, all of it here:
 *   - train_device_adamw_step leaves the host weights and adam_step equal
 *     to the device's (one download per update);
 *   - train_device_new sends the host weights, and the moments and
 *     adam_step when the host has moments (a resume), to the device; from
 *     then on the device owns them, and the host's copy of the moments is
 *     only what the last pull brought back;
 *   - train_device_pull_moments brings the moments and adam_step to the
 *     host (before a checkpoint);
 *   - gradients never reach the host: the data-parallel sum runs where
 *     they are (train_device_allreduce_grads).
 *
 * Every call is collective over the model's TP group, as qwen3.h's.
 */
#ifndef TAU2_MODEL_TRAIN_DEVICE_H
#define TAU2_MODEL_TRAIN_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "model/qwen3.h"

struct Comm;

typedef enum {
    TRAIN_DEVICE_CPU = 0,
    TRAIN_DEVICE_CUDA = 1,
    TRAIN_DEVICE_CPU_MIRROR = 2,
} TrainDeviceKind;

typedef struct TrainDevice TrainDevice;

/* The kind a config names ("cpu", "cuda", "cpu_mirror"); -1 when unknown. */
int train_device_kind_parse(const char *name, TrainDeviceKind *out);

/* 0 when this build and machine can run kind for a model of TP size tp,
 * else -1 with err saying why (no CUDA in this build, no GPU visible, TP
 * not built for the GPU yet). */
int train_device_check(TrainDeviceKind kind, int tp, char *err, size_t errlen);

/* A device for host model m (borrowed; it must outlive the device), with
 * m's weights, and its moments when it has them, on it. node_rank: this
 * rank's index on its node (comm_node_rank); the CUDA kind takes GPU
 * node_rank modulo the GPUs the process sees. Dies when train_device_check
 * fails. */
TrainDevice *train_device_new(Qwen3 *m, TrainDeviceKind kind, int node_rank);
void train_device_free(TrainDevice *d);
/* The host model of record (borrowed). */
Qwen3 *train_device_host(const TrainDevice *d);

/* As qwen3_forward, qwen3_zero_grad, qwen3_backward (host arrays). */
void train_device_forward(TrainDevice *d, const Qwen3Batch *b, float *logprob /* (T) */, float *entropy /* (T) */);
void train_device_zero_grad(TrainDevice *d);
void train_device_backward(TrainDevice *d, const float *dlogprob /* (T) */, const float *dentropy /* (T) or NULL */);
/* As qwen3_forward_head_grad (then train_device_backward(d, NULL, NULL)):
 * every kind runs the head's backward inside the forward (the GPU step
 * through qwen3_gpu_forward_head_grad). */
void train_device_forward_head_grad(TrainDevice *d, const Qwen3Batch *b, float *logprob /* (T) */,
                                    float *entropy /* (T) */, Qwen3HeadGradFn grad_fn, void *grad_ctx,
                                    bool with_dentropy);

/* The data-parallel sum: the gradients summed over the ranks of dp (an MPI
 * comm of the ranks holding the same shard; collective over it). Where
 * they live: the host's over dp itself, the mirror's over dp, the GPU's
 * over a NCCL comm of dp's ranks, made at the first call (and again when
 * dp changes) and kept with the device. */
void train_device_allreduce_grads(TrainDevice *d, struct Comm *dp);

/* As qwen3_adamw_step, on the device; then the host weights and adam_step
 * are the device's. Returns the gradient norm before clipping. */
float train_device_adamw_step(TrainDevice *d, const Qwen3AdamW *opt, float lr);

/* Colocated jobs (offload_train): before a rollout phase the device gives
 * its memory back: the moments to the host model (allocated there if
 * needed), then the device frees its weights, gradients, moments and
 * activations (qwen3_gpu_offload). train_device_onload brings them back:
 * the weights from the host model, which train_device_adamw_step keeps
 * equal to the device's, the moments from the host; the gradients come
 * back zeroed. Any call that needs the device (forward, zero_grad,
 * backward, allreduce, AdamW) onloads first. The mirror does the same,
 * its state NaN in between, so that anything not brought back shows in
 * its numbers. Nothing for the CPU kind. train_device_offload returns
 * whether it gave memory back (false: the CPU kind, or offloaded already);
 * train_device_onload of a device not offloaded does nothing. */
bool train_device_offload(TrainDevice *d);
void train_device_onload(TrainDevice *d);

/* The CUDA kind's fp32 weights on its GPU (current after each step) and
 * that GPU's index in *device; NULL for the other kinds, while offloaded
 * and in a build without CUDA. */
const float *train_device_gpu_params(const TrainDevice *d, int *device);

/* Device -> host: the moments (allocated on the host if needed) and
 * adam_step, when the device has taken a step (offloaded: the host has
 * them already). */
void train_device_pull_moments(TrainDevice *d);

#endif
