/* job_memory.h — the host memory a job's ranks will take, added up per rank
 * and per node and checked against what the node allows, before anything
 * large is allocated: a plan that cannot fit is refused at start (exit 2)
 * instead of ending in an allocation failure or the kernel's OOM killer
 * midway. Each rank fills in its own parts from the config alone. */
#ifndef TAU2_RL_JOB_MEMORY_H
#define TAU2_RL_JOB_MEMORY_H

#include <stddef.h>

#include "comm/comm.h"

typedef struct {
    double weights;     /* fp32 weights on the host: the policy's shard, the KL reference's, a separate engine's */
    double train_state; /* the CPU trainer's gradients and AdamW moments */
    double activations; /* the CPU trainer's activations for its longest micro-batch */
    double kv_cache;    /* the CPU engine's KV cache */
    double activation_tokens; /* the micro-batch size the activations are for (tokens) */
} JobMemory;

double job_memory_total(const JobMemory *m);

/* Collective over c. Adds each rank's parts over the ranks of c that share
 * its node (host name) and compares the sum with the node's limit
 * (sysmem_limit_bytes, the smallest its ranks read: Slurm's cgroup holds a
 * job's tasks on a node together). Every rank gets the same answer: 0, and
 * c's rank 0 prints one line about its node (ranks, planned total, limit,
 * parts); or -1 with err naming the first node (in rank order) over its
 * limit, with the sum and its parts. */
int job_memory_check(Comm *c, const JobMemory *mine, char *err, size_t errlen);

#endif
