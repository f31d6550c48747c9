/* job_memory.h — the host memory a job's ranks will take, added up per rank
 * and per node and checked against what the node allows, before anything
 * large is allocated: a plan that cannot fit is refused at start (exit 2)
 * instead of ending in an allocation failure or the kernel's OOM killer
 * midway. Each rank fills in its own parts from the config alone. */
#ifndef TAU2_RL_JOB_MEMORY_H
#define TAU2_RL_JOB_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"
#ifdef TAU2_HAVE_CUDA
#include "model/infer_gpu.h"
#include "model/qwen3_gpu.h"
#endif

/* A rank's parts, on the host (job_memory_check) or on its GPU
 * (job_gpu_memory_check). */
typedef struct {
    double weights;     /* host: fp32 weights of the policy's shard, the KL reference's, a separate engine's;
                         * GPU: the engines' copies (fp32 and bf16) */
    double train_state; /* the trainer's gradients and AdamW moments */
    double activations; /* the trainer's (and the KL reference's) activations for its longest micro-batch */
    double kv_cache;    /* the inference engine's KV cache */
    double workspace;   /* GPU: the engines' step scratch and library workspaces */
    double activation_tokens; /* the micro-batch size the activations are for (tokens) */
} JobMemory;

double job_memory_total(const JobMemory *m);
/* dst's parts plus src's (the activations' tokens: the larger). */
void job_memory_add(JobMemory *dst, const JobMemory *src);

/* Collective over c. Adds each rank's parts over the ranks of c that share
 * its node (host name) and compares the sum with the node's limit
 * (sysmem_limit_bytes, the smallest its ranks read: Slurm's cgroup holds a
 * job's tasks on a node together). Every rank gets the same answer: 0, and
 * c's rank 0 prints one line about its node (ranks, planned total, limit,
 * parts); or -1 with err naming the first node (in rank order) over its
 * limit, with the sum and its parts. */
int job_memory_check(Comm *c, const JobMemory *mine, char *err, size_t errlen);

/* The GPU a rank's parts live on, for job_gpu_memory_check: its UUID and
 * name, and the memory free on it, read once every rank of the job has
 * its context there. uses_gpu false: the rank takes no GPU. */
typedef struct {
    bool uses_gpu;
    unsigned char uuid[16];
    char name[64];
    double free_bytes;
} JobGpu;

/* What each rank using a GPU holds back beyond its plan: NCCL's buffers
 * (NVLS on NVSwitch machines takes most), cuBLAS's handle, CUDA graphs. */
#define JOB_GPU_RESERVE_BYTES (1024.0 * 1024 * 1024)

/* The phases a job's ranks go through together: a colocated job's
 * trainers and engines take turns with a GPU (offload_train and
 * offload_rollout free one side's memory for the other), so what a GPU
 * must hold is the larger phase's sum, not the sum of both. A rank whose
 * memory does not change gives the same parts for each. */
enum { JOB_PHASE_TRAIN, JOB_PHASE_ROLLOUT, JOB_PHASES };

/* Collective over c. As job_memory_check for device memory, phase by
 * phase: each rank's parts in the phase, added over the ranks of c on the
 * same GPU (host name and UUID), plus JOB_GPU_RESERVE_BYTES per rank,
 * against that GPU's free memory (the least its ranks read). 0, and c's
 * rank 0 prints one line about the first GPU in rank order (both phases
 * when they differ), and room (when not NULL) gets what this rank's GPU
 * has to spare in each phase (0 without a GPU): what a later, larger need
 * is checked against; or -1 on every rank with err naming the first GPU
 * over and the phase. */
int job_gpu_memory_check(Comm *c, const JobMemory mine[JOB_PHASES], const JobGpu *gpu, double room[JOB_PHASES],
                         char *err, size_t errlen);

#ifdef TAU2_HAVE_CUDA
/* A GPU engine's plan added to a rank's parts (the engines' pool scratch,
 * step scratch and workspaces as "scratch and workspaces"). */
void job_memory_add_qwen3_gpu(JobMemory *m, const Qwen3GpuPlan *p);
void job_memory_add_infer_gpu(JobMemory *m, const InferGpuPlan *p);

/* Collective over c: each rank that uses a GPU takes its GPU (gpu_pick_device
 * of node_rank) and makes its context there; once every rank has, each
 * reads its GPU into *out (uses_gpu false: *out says so, nothing read). */
void job_gpu_read(Comm *c, bool uses_gpu, int node_rank, JobGpu *out);
#endif

#endif
